//! `MESHSYNC__SECTION__KEY=value` environment overrides, applied to the TOML before it is
//! parsed, so they meet the same unknown-key and validation checks as the file.

/// Prefix of override variables.
pub const PREFIX: &str = "MESHSYNC__";

/// The TOML `text` with every `MESHSYNC__A__B` in `vars` set at `a.b`. A value that parses as a
/// TOML value (number, bool, array) is taken as such, anything else as a string.
pub fn apply(
    text: &str,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<String, toml::de::Error> {
    let mut doc: toml::Table = toml::from_str(text)?;
    let mut changed = false;
    for (name, raw) in vars {
        let Some(path) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(raw));
        set(&mut doc, &keys, value);
        changed = true;
    }
    if !changed {
        return Ok(text.to_owned());
    }
    Ok(toml::to_string(&doc).unwrap_or_else(|_| text.to_owned()))
}

fn set(table: &mut toml::Table, keys: &[String], value: toml::Value) {
    match keys {
        [] => {}
        [last] => {
            table.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(t) = entry {
                set(t, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_and_add_values_with_types() {
        let text = "[database]\nurl = \"postgres://a\"\n";
        let vars = vec![
            (
                "MESHSYNC__DATABASE__URL".to_owned(),
                "postgres://app:secret@db/app".to_owned(),
            ),
            (
                "MESHSYNC__CLOCK__FUTURE_BOUND_MS".to_owned(),
                "250".to_owned(),
            ),
            ("OTHER".to_owned(), "x".to_owned()),
        ];
        let out: toml::Table = toml::from_str(&apply(text, vars.into_iter()).unwrap()).unwrap();
        assert_eq!(
            out["database"]["url"].as_str(),
            Some("postgres://app:secret@db/app")
        );
        assert_eq!(out["clock"]["future_bound_ms"].as_integer(), Some(250));
    }

    #[test]
    fn without_overrides_the_text_is_untouched() {
        let text = "[peer]\nid = \"a\" # comment\n";
        assert_eq!(apply(text, std::iter::empty()).unwrap(), text);
    }
}
