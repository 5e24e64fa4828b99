//! Canonical JSON text for set-union: the same set prints the same on every peer.

use serde_json::Value as Json;

/// Canonical text of a JSON value: object keys sorted by their text, no whitespace, numbers and
/// strings as `serde_json` prints them. Independent of `serde_json`'s `preserve_order` feature.
pub fn canonical_json(v: &Json) -> String {
    let mut out = String::new();
    write_json(v, &mut out);
    out
}

/// Appends the canonical text of `v` to `out`.
fn write_json(v: &Json, out: &mut String) {
    match v {
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Json::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Json::String(k.clone()).to_string());
                out.push(':');
                write_json(val, out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The elements of a JSON array as canonical texts, sorted and deduplicated; `None` if `text`
/// is not a JSON array.
fn elements(text: &str) -> Option<Vec<String>> {
    match serde_json::from_str::<Json>(text) {
        Ok(Json::Array(items)) => {
            let mut out: Vec<String> = items.iter().map(canonical_json).collect();
            out.sort();
            out.dedup();
            Some(out)
        }
        _ => None,
    }
}

/// Joins canonical element texts into an array text.
fn array_of(elements: &[String]) -> String {
    format!("[{}]", elements.join(","))
}

/// The canonical text of a JSON array as a set (sorted, deduplicated elements); `None` if
/// `text` is not a JSON array.
pub fn canonical_array(text: &str) -> Option<String> {
    elements(text).map(|e| array_of(&e))
}

/// The canonical union of two JSON arrays; a side that is not an array counts as empty.
pub fn union_arrays(a: &str, b: &str) -> String {
    let mut all = elements(a).unwrap_or_default();
    all.extend(elements(b).unwrap_or_default());
    all.sort();
    all.dedup();
    array_of(&all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_is_sorted_and_canonical() {
        assert_eq!(
            union_arrays(r#"[3, "x", {"b":1,"a":2}]"#, r#"[1, 3, {"a": 2, "b": 1}]"#),
            r#"["x",1,3,{"a":2,"b":1}]"#
        );
        assert_eq!(canonical_array("{}"), None);
        assert_eq!(canonical_array("[]").as_deref(), Some("[]"));
    }
}
