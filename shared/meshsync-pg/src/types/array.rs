//! Arrays travel as JSON arrays: PostgreSQL array literals (`{1,NULL}`, `{{"a b"},{c}}`) become
//! nested JSON arrays of the element values and back.
//!
//! Element encoding in JSON (the same on every peer, so replicas compare equal): NULL as
//! `null`, booleans as JSON booleans, integers, finite floats and finite numerics as JSON
//! numbers (exact text, never through `f64`), everything else as a JSON string holding the
//! element's [`to_sql_text`](super::to_sql_text) form (`NaN`, timestamps in RFC 3339, `json`
//! elements as their document text, ...).

use meshsync_core::Value;
use serde_json::value::RawValue;

use super::{PgType, TypeError, from_text, text_in::is_numeric, to_sql_text};

/// PostgreSQL's limit on array dimensions (MAXDIM).
const MAX_DIMS: usize = 6;

/// A parsed array literal.
enum Node {
    /// Unquoted `NULL`.
    Null,
    /// An element's text, unescaped.
    Item(String),
    /// A (sub-)array.
    List(Vec<Node>),
}

/// Converts an array literal of `elem` values to the JSON text described in the module docs.
pub(crate) fn literal_to_json(text: &str, ty: &PgType, elem: &PgType) -> Result<String, TypeError> {
    if text.starts_with('[') {
        return Err(TypeError::invalid(
            ty,
            "array lower bounds other than 1 are not supported",
        ));
    }
    let mut p = Parser {
        s: text.as_bytes(),
        pos: 0,
    };
    let node = p
        .list(1)
        .ok_or_else(|| TypeError::invalid(ty, "not an array literal"))?;
    p.ws();
    if p.pos != text.len() {
        return Err(TypeError::invalid(ty, "not an array literal"));
    }
    let mut out = String::with_capacity(text.len() + 2);
    node_json(&node, elem, &mut out)?;
    Ok(out)
}

/// Appends the JSON of one node.
fn node_json(node: &Node, elem: &PgType, out: &mut String) -> Result<(), TypeError> {
    match node {
        Node::Null => out.push_str("null"),
        Node::Item(s) => out.push_str(&value_to_json(&from_text(s, elem)?, elem)?),
        Node::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                node_json(item, elem, out)?;
            }
            out.push(']');
        }
    }
    Ok(())
}

/// The JSON encoding of one element value (see the module docs).
pub(crate) fn value_to_json(v: &Value, elem: &PgType) -> Result<String, TypeError> {
    Ok(match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) if f.is_finite() => to_sql_text(v, elem)?.unwrap_or_default(),
        Value::Decimal(d) if is_json_number(d) => d.clone(),
        _ => json_string(&to_sql_text(v, elem)?.unwrap_or_default()),
    })
}

/// Whether `s` is a JSON number token.
fn is_json_number(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    let int_end = body.find(['.', 'e', 'E']).unwrap_or(body.len());
    let int_part = body.get(..int_end).unwrap_or_default();
    is_numeric(s)
        && !s.starts_with('+')
        && !matches!(s, "NaN" | "Infinity" | "-Infinity")
        && !int_part.is_empty()
        && (int_part == "0" || !int_part.starts_with('0'))
        && !body.contains(".e")
        && !body.contains(".E")
        && !body.ends_with('.')
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// Converts a JSON array (as [`literal_to_json`] makes) back to an array literal of `elem`.
pub(crate) fn json_to_literal(json: &str, ty: &PgType, elem: &PgType) -> Result<String, TypeError> {
    if !json.trim_start().starts_with('[') {
        return Err(TypeError::invalid(ty, "not a JSON array"));
    }
    let mut out = String::with_capacity(json.len() + 2);
    json_node(json, ty, elem, &mut out)?;
    Ok(out)
}

/// Appends the literal of one JSON node.
fn json_node(raw: &str, ty: &PgType, elem: &PgType, out: &mut String) -> Result<(), TypeError> {
    let bad = || TypeError::invalid(ty, "not valid JSON for an array");
    let raw = raw.trim();
    let token = match raw.as_bytes().first() {
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(raw).map_err(|_| bad())?;
            out.push('{');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_node(item.get(), ty, elem, out)?;
            }
            out.push('}');
            return Ok(());
        }
        Some(b'n') if raw == "null" => {
            out.push_str("NULL");
            return Ok(());
        }
        Some(b'"') => serde_json::from_str::<String>(raw).map_err(|_| bad())?,
        Some(b'{') if matches!(elem, PgType::Json | PgType::Jsonb) => raw.to_owned(),
        Some(b'{') => return Err(TypeError::invalid(ty, "JSON object as an array element")),
        _ if raw == "true" => "t".to_owned(),
        _ if raw == "false" => "f".to_owned(),
        _ => {
            serde_json::from_str::<&RawValue>(raw).map_err(|_| bad())?;
            raw.to_owned()
        }
    };
    let text = to_sql_text(&from_text(&token, elem)?, elem)?.unwrap_or_default();
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(())
}

/// Recursive-descent parser of array literals; `None` on anything malformed.
struct Parser<'a> {
    /// The literal.
    s: &'a [u8],
    /// Offset of the next unread byte.
    pos: usize,
}

impl Parser<'_> {
    /// The byte at the cursor.
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    /// Skips ASCII whitespace.
    fn ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    /// `{ elem, ... }` at nesting `depth`.
    fn list(&mut self, depth: usize) -> Option<Node> {
        if depth > MAX_DIMS || self.peek()? != b'{' {
            return None;
        }
        self.pos += 1;
        self.ws();
        let mut items = Vec::new();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(Node::List(items));
        }
        loop {
            self.ws();
            let item = match self.peek()? {
                b'{' => self.list(depth + 1)?,
                b'"' => self.quoted()?,
                _ => self.unquoted()?,
            };
            items.push(item);
            self.ws();
            let sep = self.peek()?;
            self.pos += 1;
            match sep {
                b',' => continue,
                b'}' => return Some(Node::List(items)),
                _ => return None,
            }
        }
    }

    /// `"..."` with backslash escapes.
    fn quoted(&mut self) -> Option<Node> {
        self.pos += 1;
        let mut buf = Vec::new();
        loop {
            let b = self.peek()?;
            self.pos += 1;
            match b {
                b'"' => return String::from_utf8(buf).ok().map(Node::Item),
                b'\\' => {
                    buf.push(self.peek()?);
                    self.pos += 1;
                }
                _ => buf.push(b),
            }
        }
    }

    /// A bare element up to `,` or `}`; `NULL` (any case) is NULL.
    fn unquoted(&mut self) -> Option<Node> {
        let mut buf = Vec::new();
        let mut escaped = false;
        let mut keep = 0; // length without trailing unescaped whitespace
        while let Some(b) = self.peek() {
            match b {
                b',' | b'}' => break,
                b'{' | b'"' => return None,
                b'\\' => {
                    self.pos += 1;
                    buf.push(self.peek()?);
                    escaped = true;
                    keep = buf.len();
                }
                _ => {
                    buf.push(b);
                    if !b.is_ascii_whitespace() {
                        keep = buf.len();
                    }
                }
            }
            self.pos += 1;
        }
        buf.truncate(keep);
        if buf.is_empty() {
            return None;
        }
        if !escaped && buf.eq_ignore_ascii_case(b"NULL") {
            return Some(Node::Null);
        }
        String::from_utf8(buf).ok().map(Node::Item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(elem: PgType) -> PgType {
        PgType::Array(Box::new(elem))
    }

    #[test]
    fn literals_to_json() {
        let t = arr(PgType::Int4);
        assert_eq!(
            literal_to_json("{1,2,NULL}", &t, &PgType::Int4).unwrap(),
            "[1,2,null]"
        );
        assert_eq!(
            literal_to_json("{{1,2},{3,NULL}}", &t, &PgType::Int4).unwrap(),
            "[[1,2],[3,null]]"
        );
        assert_eq!(literal_to_json("{}", &t, &PgType::Int4).unwrap(), "[]");
        let t = arr(PgType::Text);
        let json =
            literal_to_json(r#"{"a b","c\"d",NULL,"NULL","",x}"#, &t, &PgType::Text).unwrap();
        assert_eq!(json, r#"["a b","c\"d",null,"NULL","","x"]"#);
        assert_eq!(
            json_to_literal(&json, &t, &PgType::Text).unwrap(),
            r#"{"a b","c\"d",NULL,"NULL","","x"}"#
        );
        assert!(literal_to_json("[0:1]={1,2}", &t, &PgType::Text).is_err());
        assert!(literal_to_json("{1,2", &t, &PgType::Text).is_err());
        assert!(literal_to_json("{{{{{{{1}}}}}}}", &t, &PgType::Text).is_err());
    }

    #[test]
    fn numbers_stay_exact() {
        let t = arr(PgType::Numeric);
        let json = literal_to_json("{12345678901234567890.123456789,NaN}", &t, &PgType::Numeric);
        assert_eq!(json.unwrap(), r#"[12345678901234567890.123456789,"NaN"]"#);
        assert!(is_json_number("-0.5") && !is_json_number("01") && !is_json_number("1."));
        let back = json_to_literal(r#"[1e3, "NaN", null]"#, &t, &PgType::Numeric).unwrap();
        assert_eq!(back, r#"{"1e3","NaN",NULL}"#);
        assert!(json_to_literal("[1.5]", &arr(PgType::Int4), &PgType::Int4).is_err());
    }
}
