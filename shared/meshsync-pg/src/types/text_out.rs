//! Apply direction: a [`Value`] to the text literal PostgreSQL accepts for a column type, to
//! bind as a text parameter with an explicit cast (`$1::timestamptz`). Never wraps or
//! truncates: a value the column cannot hold is a [`TypeError`].

use std::fmt::Write as _;

use meshsync_core::Value;

use super::{PgType, TypeError, array, datetime, text_in::is_numeric};

/// The text literal for `value` in a column of type `ty`; `None` for NULL.
pub fn to_sql_text(value: &Value, ty: &PgType) -> Result<Option<String>, TypeError> {
    if value.is_null() {
        return Ok(None);
    }
    let mismatch = || TypeError::Mismatch {
        ty: ty.to_string(),
        kind: value.kind(),
    };
    let text = match (ty, value) {
        (PgType::Int2, _) => int_text(value, ty, i64::from(i16::MIN), i64::from(i16::MAX))?,
        (PgType::Int4, _) => int_text(value, ty, i64::from(i32::MIN), i64::from(i32::MAX))?,
        (PgType::Int8, _) => int_text(value, ty, i64::MIN, i64::MAX)?,
        (PgType::Numeric, Value::Decimal(d)) if is_numeric(d) => d.clone(),
        (PgType::Numeric, Value::Decimal(_)) => {
            return Err(TypeError::invalid(ty, "not a decimal number"));
        }
        (PgType::Numeric, Value::Int(i)) => i.to_string(),
        (PgType::Numeric, Value::UInt(u)) => u.to_string(),
        (PgType::Numeric, Value::Float(f)) => float_text(*f),
        (PgType::Float8, Value::Float(f)) => float_text(*f),
        (PgType::Float4, Value::Float(f)) => {
            let narrow = *f as f32;
            if f.is_finite() && !narrow.is_finite() {
                return Err(TypeError::range(ty, "beyond float4"));
            }
            if narrow.is_finite() {
                format!("{narrow:?}")
            } else {
                float_text(f64::from(narrow))
            }
        }
        (PgType::Float4 | PgType::Float8, Value::Int(i)) => i.to_string(),
        (PgType::Float4 | PgType::Float8, Value::UInt(u)) => u.to_string(),
        (PgType::Float4 | PgType::Float8, Value::Decimal(d)) if is_numeric(d) => d.clone(),
        (PgType::Bool, Value::Bool(b)) => if *b { "t" } else { "f" }.to_owned(),
        (PgType::Bool, Value::Int(0)) => "f".to_owned(),
        (PgType::Bool, Value::Int(1)) => "t".to_owned(),
        (
            PgType::Text | PgType::Varchar | PgType::Bpchar | PgType::Name | PgType::Enum,
            Value::Text(s),
        ) => {
            if s.contains('\0') {
                return Err(TypeError::invalid(ty, "text contains a NUL character"));
            }
            s.clone()
        }
        (PgType::Bytea, Value::Bytes(b)) => {
            let mut s = String::with_capacity(2 + 2 * b.len());
            s.push_str("\\x");
            for byte in b {
                let _ = write!(s, "{byte:02x}");
            }
            s
        }
        (PgType::Uuid, Value::Uuid(u)) => uuid_text(u),
        (PgType::Json | PgType::Jsonb, Value::Json(j)) => j.clone(),
        (PgType::Timestamp, Value::LocalTimestamp(t)) => {
            check_min(*t, datetime::PG_MIN_TIMESTAMP, ty)?;
            datetime::format_local_timestamp(*t)
        }
        (PgType::Timestamptz, Value::Timestamp(t)) => {
            check_min(*t, datetime::PG_MIN_TIMESTAMP, ty)?;
            datetime::format_utc_timestamp(*t)
        }
        (PgType::Date, Value::Date(d)) => {
            let d = i64::from(*d);
            check_min(d, datetime::PG_MIN_DATE, ty)?;
            if d >= datetime::PG_END_DATE {
                return Err(TypeError::range(ty, "after the last date PostgreSQL holds"));
            }
            datetime::format_date(d)
        }
        (PgType::Time, Value::Time(t)) => {
            if !(0..=datetime::DAY_MICROS).contains(t) {
                return Err(TypeError::range(ty, "not within one day"));
            }
            datetime::format_time(*t)
        }
        (PgType::Array(elem), Value::Json(j)) => array::json_to_literal(j, ty, elem)?,
        _ => return Err(mismatch()),
    };
    Ok(Some(text))
}

/// An integer value within `min..=max`, as text.
fn int_text(value: &Value, ty: &PgType, min: i64, max: i64) -> Result<String, TypeError> {
    let n = match value {
        Value::Int(i) => *i,
        Value::UInt(u) => i64::try_from(*u)
            .map_err(|_| TypeError::range(ty, "unsigned value above the type's maximum"))?,
        other => {
            return Err(TypeError::Mismatch {
                ty: ty.to_string(),
                kind: other.kind(),
            });
        }
    };
    if (min..=max).contains(&n) {
        Ok(n.to_string())
    } else {
        Err(TypeError::range(ty, "integer beyond the type's range"))
    }
}

/// Shortest round-tripping text of a double, with PostgreSQL's names for non-finite values.
fn float_text(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f == f64::INFINITY {
        "Infinity".to_owned()
    } else if f == f64::NEG_INFINITY {
        "-Infinity".to_owned()
    } else {
        format!("{f:?}")
    }
}

/// Rejects values before `min`.
fn check_min(v: i64, min: i64, ty: &PgType) -> Result<(), TypeError> {
    if v < min {
        Err(TypeError::range(ty, "before 4714-11-24 BC"))
    } else {
        Ok(())
    }
}

/// Hyphenated lower-case UUID.
fn uuid_text(u: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(v: Value, ty: PgType) -> Result<Option<String>, TypeError> {
        to_sql_text(&v, &ty)
    }

    #[test]
    fn literals() {
        assert_eq!(out(Value::Null, PgType::Int4), Ok(None));
        assert_eq!(
            out(Value::Bytes(vec![0, 255]), PgType::Bytea)
                .unwrap()
                .unwrap(),
            "\\x00ff"
        );
        assert_eq!(
            out(Value::Timestamp(0), PgType::Timestamptz)
                .unwrap()
                .unwrap(),
            "1970-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            out(Value::LocalTimestamp(-1), PgType::Timestamp)
                .unwrap()
                .unwrap(),
            "1969-12-31 23:59:59.999999"
        );
        assert_eq!(
            out(Value::Float(f64::from(1.1f32)), PgType::Float4)
                .unwrap()
                .unwrap(),
            "1.1"
        );
        assert_eq!(
            out(Value::Float(1e-20), PgType::Float8).unwrap().unwrap(),
            "1e-20"
        );
        assert_eq!(
            out(Value::Uuid([0xab; 16]), PgType::Uuid).unwrap().unwrap(),
            "abababab-abab-abab-abab-abababababab"
        );
        let arr = PgType::Array(Box::new(PgType::Int8));
        assert_eq!(
            out(Value::Json("[[1,null],[3,4]]".into()), arr)
                .unwrap()
                .unwrap(),
            r#"{{"1",NULL},{"3","4"}}"#
        );
    }

    #[test]
    fn out_of_range_is_an_error_not_a_wrap() {
        assert!(matches!(
            out(Value::UInt(u64::MAX), PgType::Int8),
            Err(TypeError::OutOfRange { .. })
        ));
        assert!(matches!(
            out(Value::Int(40_000), PgType::Int2),
            Err(TypeError::OutOfRange { .. })
        ));
        assert!(matches!(
            out(Value::Float(1e300), PgType::Float4),
            Err(TypeError::OutOfRange { .. })
        ));
        assert!(matches!(
            out(Value::Time(-1), PgType::Time),
            Err(TypeError::OutOfRange { .. })
        ));
        assert!(matches!(
            out(Value::Text("x".into()), PgType::Int4),
            Err(TypeError::Mismatch { .. })
        ));
    }
}
