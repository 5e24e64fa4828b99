//! Capture direction: the text pgoutput sends for a column, to a [`Value`].

use meshsync_core::Value;

use super::{PgType, TypeError, array, datetime};

/// Parses PostgreSQL's text output of a non-NULL value of type `ty`.
pub fn from_text(text: &str, ty: &PgType) -> Result<Value, TypeError> {
    let bad = |reason| TypeError::invalid(ty, reason);
    Ok(match ty {
        PgType::Int2 => Value::Int(int(text, ty, i64::from(i16::MIN), i64::from(i16::MAX))?),
        PgType::Int4 => Value::Int(int(text, ty, i64::from(i32::MIN), i64::from(i32::MAX))?),
        PgType::Int8 => Value::Int(int(text, ty, i64::MIN, i64::MAX)?),
        PgType::Numeric if is_numeric(text) => Value::Decimal(text.to_owned()),
        PgType::Numeric => return Err(bad("not a decimal number")),
        PgType::Float4 => {
            let f =
                special_float(text).map_or_else(|| text.parse::<f32>().ok(), |f| Some(f as f32));
            Value::Float(f64::from(
                f.ok_or_else(|| bad("not a floating-point number"))?,
            ))
        }
        PgType::Float8 => Value::Float(
            special_float(text)
                .or_else(|| text.parse::<f64>().ok())
                .ok_or_else(|| bad("not a floating-point number"))?,
        ),
        PgType::Bool => match text {
            "t" => Value::Bool(true),
            "f" => Value::Bool(false),
            _ => return Err(bad("expected 't' or 'f'")),
        },
        PgType::Text | PgType::Varchar | PgType::Bpchar | PgType::Name | PgType::Enum => {
            Value::Text(text.to_owned())
        }
        PgType::Bytea => {
            Value::Bytes(bytea(text).ok_or_else(|| bad("not bytea hex or escape text"))?)
        }
        PgType::Uuid => Value::Uuid(uuid(text).ok_or_else(|| bad("not a UUID"))?),
        PgType::Json | PgType::Jsonb => Value::Json(text.to_owned()),
        PgType::Timestamp => Value::LocalTimestamp(
            datetime::parse_local_timestamp(text).ok_or_else(|| date_err(text, ty))?,
        ),
        PgType::Timestamptz => {
            Value::Timestamp(datetime::parse_timestamptz(text).ok_or_else(|| date_err(text, ty))?)
        }
        PgType::Date => {
            let days = datetime::parse_date(text).ok_or_else(|| date_err(text, ty))?;
            Value::Date(
                i32::try_from(days).map_err(|_| TypeError::range(ty, "date beyond i32 days"))?,
            )
        }
        PgType::Time => {
            Value::Time(datetime::parse_time(text).ok_or_else(|| bad("not HH:MM:SS[.ffffff]"))?)
        }
        PgType::Array(elem) => Value::Json(array::literal_to_json(text, ty, elem)?),
    })
}

/// The error for an unparsable date/time, telling infinities apart (meshsync has no value
/// for them).
fn date_err(text: &str, ty: &PgType) -> TypeError {
    if text.ends_with("infinity") {
        TypeError::range(ty, "'infinity' and '-infinity' cannot be replicated")
    } else {
        TypeError::invalid(
            ty,
            "not ISO YYYY-MM-DD HH:MM:SS[.ffffff] (is DateStyle ISO?)",
        )
    }
}

/// A decimal integer within `min..=max`.
fn int(text: &str, ty: &PgType, min: i64, max: i64) -> Result<i64, TypeError> {
    let n: i64 = match text.parse() {
        Ok(n) => n,
        Err(e)
            if matches!(
                e.kind(),
                std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow
            ) =>
        {
            return Err(TypeError::range(ty, "integer too large"));
        }
        Err(_) => return Err(TypeError::invalid(ty, "not an integer")),
    };
    if (min..=max).contains(&n) {
        Ok(n)
    } else {
        Err(TypeError::range(ty, "integer too large"))
    }
}

/// PostgreSQL's spellings of non-finite floats.
fn special_float(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// Whether `text` is numeric output: `[-]digits[.digits]`, optional exponent, or NaN/±Infinity.
pub(crate) fn is_numeric(text: &str) -> bool {
    if matches!(text, "NaN" | "Infinity" | "-Infinity") {
        return true;
    }
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exp) = match body.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['-', '+']).unwrap_or(e))),
        None => (body, None),
    };
    let (int_part, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    all_digits(int_part)
        && frac.is_none_or(all_digits)
        && !(int_part.is_empty() && frac.is_none_or(str::is_empty))
        && exp.is_none_or(|e| !e.is_empty() && all_digits(e))
}

/// `\x` hex (the default output) or the legacy escape format.
fn bytea(text: &str) -> Option<Vec<u8>> {
    if let Some(hex) = text.strip_prefix("\\x") {
        let h = hex.as_bytes();
        if h.len() % 2 != 0 {
            return None;
        }
        return h
            .chunks_exact(2)
            .map(|p| Some(hex_val(*p.first()?)? << 4 | hex_val(*p.get(1)?)?))
            .collect();
    }
    let mut out = Vec::with_capacity(text.len());
    let mut it = text.bytes();
    while let Some(b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match it.next()? {
            b'\\' => out.push(b'\\'),
            d0 @ b'0'..=b'3' => {
                let (d1, d2) = (it.next()?, it.next()?);
                if !(b'0'..=b'7').contains(&d1) || !(b'0'..=b'7').contains(&d2) {
                    return None;
                }
                out.push((d0 - b'0') << 6 | (d1 - b'0') << 3 | (d2 - b'0'));
            }
            _ => return None,
        }
    }
    Some(out)
}

/// One hex digit.
fn hex_val(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, either case.
fn uuid(text: &str) -> Option<[u8; 16]> {
    let b = text.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|i| b.get(*i) != Some(&b'-')) {
        return None;
    }
    let hex: Vec<u8> = b.iter().copied().filter(|c| *c != b'-').collect();
    let mut out = [0u8; 16];
    for (o, p) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *o = hex_val(*p.first()?)? << 4 | hex_val(*p.get(1)?)?;
    }
    (hex.len() == 32).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars() {
        assert_eq!(from_text("-32768", &PgType::Int2), Ok(Value::Int(-32768)));
        assert!(matches!(
            from_text("32768", &PgType::Int2),
            Err(TypeError::OutOfRange { .. })
        ));
        assert_eq!(
            from_text("NaN", &PgType::Numeric),
            Ok(Value::Decimal("NaN".into()))
        );
        assert_eq!(
            from_text("-12.340", &PgType::Numeric),
            Ok(Value::Decimal("-12.340".into()))
        );
        assert!(from_text("1.2.3", &PgType::Numeric).is_err());
        assert_eq!(
            from_text("1.1", &PgType::Float4),
            Ok(Value::Float(f64::from(1.1f32)))
        );
        assert_eq!(
            from_text("-Infinity", &PgType::Float8),
            Ok(Value::Float(f64::NEG_INFINITY))
        );
        assert_eq!(
            from_text("\\xdeadBEEF", &PgType::Bytea),
            Ok(Value::Bytes(vec![0xde, 0xad, 0xbe, 0xef]))
        );
        assert_eq!(
            from_text("a\\\\b\\001", &PgType::Bytea),
            Ok(Value::Bytes(b"a\\b\x01".to_vec()))
        );
        assert!(from_text("\\xabc", &PgType::Bytea).is_err());
        assert_eq!(
            from_text("24:00:00", &PgType::Time),
            Ok(Value::Time(86_400_000_000))
        );
    }

    #[test]
    fn errors_never_show_the_value() {
        let err = from_text("secret-42", &PgType::Int4)
            .unwrap_err()
            .to_string();
        assert!(err.contains("int4") && !err.contains("secret"), "{err}");
        let err = from_text("infinity", &PgType::Timestamp)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("timestamp") && err.contains("infinity"),
            "{err}"
        );
    }
}
