//! Apply: an engine-neutral [`Value`] to a value sqlx binds for a MariaDB column. A value the
//! column cannot hold exactly is a [`TypeError`], never a wrap, truncation or rounding.

use meshsync_core::Value;
use sqlx::{MySql, mysql::MySqlArguments, query::Query};

use super::{Charset, MariaType, TypeError, civil::civil_from_days};
use crate::catalog::Column;

/// Microseconds per day.
const DAY_US: i64 = 86_400_000_000;
/// Last instant a MariaDB 10.11 TIMESTAMP holds: 2038-01-19 03:14:07.999999 UTC.
const TIMESTAMP_MAX_US: i64 = (i32::MAX as i64) * 1_000_000 + 999_999;

/// A value ready to bind to a `?` placeholder. Dates and times are text in MariaDB's literal
/// format (`TIMESTAMP` in UTC: the session needs `time_zone = '+00:00'`).
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    /// NULL.
    Null,
    /// Signed integer.
    Int(i64),
    /// Unsigned integer (BIGINT UNSIGNED, BIT(64)).
    UInt(u64),
    /// Double.
    Float(f64),
    /// Text (also decimals, dates, times, JSON, UUIDs, ENUM and SET labels).
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
}

impl SqlValue {
    /// Binds this value as the next parameter of `q`.
    pub fn bind<'q>(self, q: Query<'q, MySql, MySqlArguments>) -> Query<'q, MySql, MySqlArguments> {
        match self {
            SqlValue::Null => q.bind(None::<String>),
            SqlValue::Int(i) => q.bind(i),
            SqlValue::UInt(u) => q.bind(u),
            SqlValue::Float(f) => q.bind(f),
            SqlValue::Text(s) => q.bind(s),
            SqlValue::Bytes(b) => q.bind(b),
        }
    }
}

/// The value to bind for `value` in `column`.
pub fn to_sql(value: &Value, column: &Column) -> Result<SqlValue, TypeError> {
    let ty = &column.ty;
    let kind_err = || TypeError::Kind {
        kind: value.kind(),
        ty: ty.to_string(),
    };
    let range = |why: &'static str| TypeError::Range {
        kind: value.kind(),
        ty: ty.to_string(),
        why,
    };
    if value.is_null() {
        return if column.not_null {
            Err(TypeError::Null { ty: ty.to_string() })
        } else {
            Ok(SqlValue::Null)
        };
    }
    match ty {
        MariaType::Int { bytes, unsigned } => {
            let n = integer(value).ok_or_else(kind_err)?;
            let bits = 8 * u32::from(*bytes);
            let (lo, hi) = if *unsigned {
                (0, (1i128 << bits) - 1)
            } else {
                (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
            };
            if n < lo || n > hi {
                return Err(range("outside the integer range"));
            }
            Ok(int_sql(n))
        }
        MariaType::Bit { bits } => {
            let n = match value {
                Value::Bytes(b) if b.len() <= 8 => {
                    i128::from(b.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x)))
                }
                _ => integer(value).ok_or_else(kind_err)?,
            };
            if n < 0 || n >= (1i128 << bits) {
                return Err(range("more bits than the column has"));
            }
            Ok(int_sql(n))
        }
        MariaType::Year => {
            let n = integer(value).ok_or_else(kind_err)?;
            if n != 0 && !(1901..=2155).contains(&n) {
                return Err(range("YEAR holds 0 and 1901..=2155"));
            }
            Ok(int_sql(n))
        }
        MariaType::Decimal { precision, scale } => {
            let text = match value {
                Value::Decimal(s) => s.trim().to_owned(),
                Value::Int(_) | Value::UInt(_) => integer(value).ok_or_else(kind_err)?.to_string(),
                _ => return Err(kind_err()),
            };
            let (int_digits, frac_digits) =
                decimal_digits(&text).ok_or_else(|| range("not a finite decimal number"))?;
            if int_digits > precision.saturating_sub(*scale) as usize {
                return Err(range("more integer digits than precision - scale"));
            }
            if frac_digits > *scale as usize {
                return Err(range("more fractional digits than the scale"));
            }
            Ok(SqlValue::Text(text))
        }
        MariaType::Float | MariaType::Double => {
            let single = *ty == MariaType::Float;
            let f = match value {
                Value::Float(f) => *f,
                Value::Int(_) | Value::UInt(_) => {
                    let n = integer(value).ok_or_else(kind_err)?;
                    let limit = if single { 1i128 << 24 } else { 1i128 << 53 };
                    if n.abs() > limit {
                        return Err(range("not exactly representable in floating point"));
                    }
                    n as f64
                }
                _ => return Err(kind_err()),
            };
            if !f.is_finite() {
                return Err(range("MariaDB stores no NaN or infinity"));
            }
            if single && f64::from(f as f32) != f {
                return Err(range("needs more precision than FLOAT (single) has"));
            }
            Ok(SqlValue::Float(f))
        }
        MariaType::Date => match value {
            Value::Date(d) => Ok(SqlValue::Text(
                date_text(i64::from(*d)).ok_or_else(|| range("DATE holds years 1..=9999"))?,
            )),
            _ => Err(kind_err()),
        },
        MariaType::DateTime { fsp } => match value {
            Value::LocalTimestamp(us) => {
                check_fsp(*us, *fsp).ok_or_else(|| range("more fractional digits than fsp"))?;
                Ok(SqlValue::Text(
                    datetime_text(*us).ok_or_else(|| range("DATETIME holds years 1..=9999"))?,
                ))
            }
            _ => Err(kind_err()),
        },
        MariaType::Timestamp { fsp } => match value {
            Value::Timestamp(us) => {
                check_fsp(*us, *fsp).ok_or_else(|| range("more fractional digits than fsp"))?;
                if !(1_000_000..=TIMESTAMP_MAX_US).contains(us) {
                    return Err(range(
                        "TIMESTAMP holds 1970-01-01 00:00:01 ..= 2038-01-19 03:14:07 UTC",
                    ));
                }
                Ok(SqlValue::Text(
                    datetime_text(*us).ok_or_else(|| range("TIMESTAMP range"))?,
                ))
            }
            _ => Err(kind_err()),
        },
        MariaType::Time { fsp } => match value {
            Value::Time(us) => {
                if !(0..DAY_US).contains(us) {
                    return Err(range("not a time of day"));
                }
                check_fsp(*us, *fsp).ok_or_else(|| range("more fractional digits than fsp"))?;
                Ok(SqlValue::Text(time_text(*us)))
            }
            _ => Err(kind_err()),
        },
        MariaType::Text {
            charset,
            max_chars,
            max_bytes,
        } => {
            let s = match value {
                Value::Text(s) => s.clone(),
                Value::Uuid(u) => uuid_text(u),
                _ => return Err(kind_err()),
            };
            // Octet length is the UTF-8 length for UTF-8 columns, the character count else.
            let octets = match charset {
                Charset::Utf8 => s.len() as u64,
                Charset::Latin1 => s.chars().count() as u64,
            };
            if octets > *max_bytes || s.chars().count() as u64 > *max_chars {
                return Err(range("longer than the column"));
            }
            if !charset.can_encode(&s) {
                return Err(range("characters the column's character set cannot hold"));
            }
            Ok(SqlValue::Text(s))
        }
        MariaType::Binary { max_bytes, .. } => {
            let b = match value {
                Value::Bytes(b) => b.clone(),
                Value::Uuid(u) => u.to_vec(),
                _ => return Err(kind_err()),
            };
            if b.len() as u64 > *max_bytes {
                return Err(range("longer than the column"));
            }
            Ok(SqlValue::Bytes(b))
        }
        MariaType::Json => match value {
            Value::Json(s) => Ok(SqlValue::Text(s.clone())),
            _ => Err(kind_err()),
        },
        MariaType::Enum(labels) => match value {
            Value::Text(s) if labels.contains(s) => Ok(SqlValue::Text(s.clone())),
            Value::Text(_) => Err(range("not one of the ENUM labels")),
            _ => Err(kind_err()),
        },
        MariaType::Set(labels) => match value {
            Value::Text(s) => {
                if !s.is_empty() && !s.split(',').all(|p| labels.iter().any(|l| l == p)) {
                    return Err(range("not a list of the SET labels"));
                }
                Ok(SqlValue::Text(s.clone()))
            }
            _ => Err(kind_err()),
        },
        MariaType::Uuid => match value {
            Value::Uuid(u) => Ok(SqlValue::Text(uuid_text(u))),
            _ => Err(kind_err()),
        },
    }
}

/// An integer-like value (`Int`, `UInt`, `Bool` as 0/1).
fn integer(v: &Value) -> Option<i128> {
    match v {
        Value::Int(i) => Some(i128::from(*i)),
        Value::UInt(u) => Some(i128::from(*u)),
        Value::Bool(b) => Some(i128::from(*b)),
        _ => None,
    }
}

/// `Int` when it fits, else `UInt` (callers checked the range).
fn int_sql(n: i128) -> SqlValue {
    match i64::try_from(n) {
        Ok(i) => SqlValue::Int(i),
        Err(_) => SqlValue::UInt(u64::try_from(n).unwrap_or(u64::MAX)),
    }
}

/// Significant integer and fractional digits of `[+-]digits[.digits]`; `None` otherwise.
fn decimal_digits(s: &str) -> Option<(usize, usize)> {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if int.len() + frac.len() == 0 || !digits(int) || !digits(frac) {
        return None;
    }
    Some((
        int.trim_start_matches('0').len(),
        frac.trim_end_matches('0').len(),
    ))
}

/// `Some` when `us` has no more fractional digits than `fsp`.
fn check_fsp(us: i64, fsp: u32) -> Option<()> {
    let unit = 10i64.pow(6 - fsp.min(6));
    (us.rem_euclid(unit) == 0).then_some(())
}

/// `YYYY-MM-DD` for years 1..=9999.
fn date_text(days: i64) -> Option<String> {
    let (y, m, d) = civil_from_days(days);
    (1..=9999)
        .contains(&y)
        .then(|| format!("{y:04}-{m:02}-{d:02}"))
}

/// `YYYY-MM-DD HH:MM:SS.ffffff`.
fn datetime_text(us: i64) -> Option<String> {
    let date = date_text(us.div_euclid(DAY_US))?;
    Some(format!("{date} {}", time_text(us.rem_euclid(DAY_US))))
}

/// `HH:MM:SS.ffffff` of microseconds within a day.
fn time_text(us: i64) -> String {
    let secs = us / 1_000_000;
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        us % 1_000_000
    )
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn uuid_text(u: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(ty: MariaType) -> Column {
        Column {
            name: "c".into(),
            ty,
            column_type: String::new(),
            not_null: false,
            required: false,
            generated: false,
        }
    }

    #[test]
    fn integers_refuse_to_wrap() {
        let c = col(MariaType::Int {
            bytes: 1,
            unsigned: false,
        });
        assert_eq!(to_sql(&Value::Int(-128), &c), Ok(SqlValue::Int(-128)));
        assert!(to_sql(&Value::Int(128), &c).is_err());
        assert!(to_sql(&Value::Text("1".into()), &c).is_err());
        let u = col(MariaType::Int {
            bytes: 8,
            unsigned: true,
        });
        assert_eq!(
            to_sql(&Value::UInt(u64::MAX), &u),
            Ok(SqlValue::UInt(u64::MAX))
        );
        assert!(to_sql(&Value::Int(-1), &u).is_err());
    }

    #[test]
    fn decimals_and_floats_refuse_to_round() {
        let d = col(MariaType::Decimal {
            precision: 5,
            scale: 2,
        });
        assert!(to_sql(&Value::Decimal("123.45".into()), &d).is_ok());
        assert!(to_sql(&Value::Decimal("123.450".into()), &d).is_ok());
        assert!(to_sql(&Value::Decimal("1234.5".into()), &d).is_err());
        assert!(to_sql(&Value::Decimal("1.234".into()), &d).is_err());
        assert!(to_sql(&Value::Decimal("NaN".into()), &d).is_err());
        let f = col(MariaType::Float);
        assert!(to_sql(&Value::Float(0.5), &f).is_ok());
        assert!(to_sql(&Value::Float(0.1), &f).is_err());
    }

    #[test]
    fn times_print_as_literals() {
        let ts = col(MariaType::Timestamp { fsp: 6 });
        assert_eq!(
            to_sql(&Value::Timestamp(1_700_000_000_123_456), &ts),
            Ok(SqlValue::Text("2023-11-14 22:13:20.123456".into()))
        );
        assert!(to_sql(&Value::Timestamp(0), &ts).is_err());
        let t0 = col(MariaType::Time { fsp: 0 });
        assert!(to_sql(&Value::Time(1_500_000), &t0).is_err());
        assert!(to_sql(&Value::Time(DAY_US), &t0).is_err());
        let dt = col(MariaType::DateTime { fsp: 0 });
        assert_eq!(
            to_sql(&Value::LocalTimestamp(-1_000_000), &dt),
            Ok(SqlValue::Text("1969-12-31 23:59:59.000000".into()))
        );
    }

    #[test]
    fn text_lengths_enums_sets_null() {
        let t = col(MariaType::Text {
            charset: Charset::Utf8,
            max_chars: 2,
            max_bytes: 8,
        });
        assert!(to_sql(&Value::Text("éé".into()), &t).is_ok());
        assert!(to_sql(&Value::Text("abc".into()), &t).is_err());
        let e = col(MariaType::Enum(vec!["a".into(), "b".into()]));
        assert!(to_sql(&Value::Text("c".into()), &e).is_err());
        let s = col(MariaType::Set(vec!["a".into(), "b".into()]));
        assert!(to_sql(&Value::Text("a,b".into()), &s).is_ok());
        assert!(to_sql(&Value::Text("a,c".into()), &s).is_err());
        let mut nn = col(MariaType::Json);
        nn.not_null = true;
        assert!(matches!(
            to_sql(&Value::Null, &nn),
            Err(TypeError::Null { .. })
        ));
        assert_eq!(
            uuid_text(&[0xab; 16]),
            "abababab-abab-abab-abab-abababababab"
        );
    }
}
