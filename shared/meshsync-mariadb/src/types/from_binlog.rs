//! Capture: a value as mysql_common decodes it from a ROW binlog event (with the table map's
//! type, metadata and signedness) to the engine-neutral [`Value`].

use mysql_async::{
    Value as MyValue,
    binlog::{
        jsonb::{self, JsonContainer, JsonDom, JsonNumber, JsonScalar},
        value::BinlogValue,
    },
};

use meshsync_core::Value;

use super::{MariaType, TypeError, civil::days_from_civil};

/// A MySQL 8 JSON value (binary JSON in the binlog) as the compact JSON text MariaDB's JSON
/// columns carry: the same [`Value::Json`] for the same document, whichever server wrote it
/// (MySQL normalises documents anyway: keys sorted, no whitespace).
fn json_of_jsonb(j: &jsonb::Value<'_>, ty: &MariaType) -> Result<Value, TypeError> {
    let dom = j.clone().parse().map_err(|_| TypeError::Capture {
        ty: ty.to_string(),
        why: "MySQL binary JSON that does not decode",
    })?;
    Ok(Value::Json(json_of_dom(dom).to_string()))
}

/// mysql_common's JSON tree as serde_json's. Unlike its own conversion, a DECIMAL stays a
/// JSON number (as MySQL prints it), not a string.
fn json_of_dom(dom: JsonDom) -> serde_json::Value {
    match dom {
        JsonDom::Container(JsonContainer::Array(items)) => {
            serde_json::Value::Array(items.into_iter().map(json_of_dom).collect())
        }
        JsonDom::Container(JsonContainer::Object(map)) => {
            serde_json::Value::Object(map.into_iter().map(|(k, v)| (k, json_of_dom(v))).collect())
        }
        JsonDom::Scalar(JsonScalar::Number(JsonNumber::Decimal(d))) => {
            let text = d.to_string();
            serde_json::from_str::<serde_json::Number>(&text)
                .map_or(serde_json::Value::String(text), serde_json::Value::Number)
        }
        JsonDom::Scalar(s) => s.into(),
    }
}

/// Microseconds per day.
const DAY_US: i64 = 86_400_000_000;

/// Converts one binlog value of a column of type `ty`. NULL is [`Value::Null`] for every type.
pub fn from_binlog(v: &BinlogValue<'_>, ty: &MariaType) -> Result<Value, TypeError> {
    let capture = |why: &'static str| TypeError::Capture {
        ty: ty.to_string(),
        why,
    };
    let v = match v {
        BinlogValue::Value(v) => v,
        BinlogValue::Jsonb(j) if matches!(ty, MariaType::Json) => return json_of_jsonb(j, ty),
        BinlogValue::Jsonb(_) => {
            return Err(capture("MySQL binary JSON in a column that is not JSON"));
        }
        BinlogValue::JsonDiff(_) => {
            return Err(capture(
                "a partial JSON update (binlog_row_value_options=PARTIAL_JSON) has no value",
            ));
        }
    };
    if matches!(v, MyValue::NULL) {
        return Ok(Value::Null);
    }
    let unexpected = || capture("the binlog value has an unexpected form for this type");
    match ty {
        MariaType::Int { bytes, unsigned } => {
            let n: i128 = match v {
                MyValue::Int(i) => i128::from(*i),
                MyValue::UInt(u) => i128::from(*u),
                _ => return Err(unexpected()),
            };
            // Without signedness metadata mysql_common reads unsigned columns as signed, and
            // it does not sign-extend a signed MEDIUMINT: reinterpret within the width.
            let width = 1i128 << (8 * u32::from(*bytes));
            let n = if *unsigned && n < 0 {
                n + width
            } else if !*unsigned && n >= width / 2 {
                n - width
            } else {
                n
            };
            int_value(n).ok_or_else(unexpected)
        }
        MariaType::Decimal { .. } => Ok(Value::Decimal(utf8(v).ok_or_else(unexpected)?)),
        MariaType::Float | MariaType::Double => match v {
            MyValue::Float(f) => Ok(Value::Float(f64::from(*f))),
            MyValue::Double(f) => Ok(Value::Float(*f)),
            _ => Err(unexpected()),
        },
        MariaType::Bit { .. } => match v {
            MyValue::Bytes(b) if b.len() <= 8 => {
                let n = b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
                int_value(i128::from(n)).ok_or_else(unexpected)
            }
            _ => Err(unexpected()),
        },
        MariaType::Year => {
            let y: i64 = match v {
                MyValue::Int(i) => *i,
                MyValue::UInt(u) => i64::try_from(*u).map_err(|_| unexpected())?,
                MyValue::Bytes(b) => std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(unexpected)?,
                _ => return Err(unexpected()),
            };
            // mysql_common prints the stored 0 (year 0000) as 1900, a year YEAR cannot hold.
            Ok(Value::Int(if y == 1900 { 0 } else { y }))
        }
        MariaType::Date => match v {
            MyValue::Date(y, m, d, ..) => {
                if *y == 0 || *m == 0 || *d == 0 {
                    return Err(capture("zero dates (0000-00-00) have no calendar value"));
                }
                let days = days_from_civil(i64::from(*y), u32::from(*m), u32::from(*d));
                Ok(Value::Date(i32::try_from(days).map_err(|_| unexpected())?))
            }
            _ => Err(unexpected()),
        },
        MariaType::DateTime { .. } => match v {
            MyValue::Date(y, mo, d, h, mi, s, us) => {
                if *y == 0 || *mo == 0 || *d == 0 {
                    return Err(capture("zero dates (0000-00-00) have no calendar value"));
                }
                let days = days_from_civil(i64::from(*y), u32::from(*mo), u32::from(*d));
                let secs = i64::from(*h) * 3600 + i64::from(*mi) * 60 + i64::from(*s);
                Ok(Value::LocalTimestamp(
                    days * DAY_US + secs * 1_000_000 + i64::from(*us),
                ))
            }
            _ => Err(unexpected()),
        },
        MariaType::Timestamp { .. } => {
            let us = match v {
                MyValue::Int(sec) => sec.checked_mul(1_000_000),
                MyValue::Bytes(b) => timestamp_text(b),
                _ => None,
            }
            .ok_or_else(unexpected)?;
            if us == 0 {
                return Err(capture(
                    "the zero TIMESTAMP (0000-00-00 00:00:00) is not an instant",
                ));
            }
            Ok(Value::Timestamp(us))
        }
        MariaType::Time { .. } => match v {
            MyValue::Time(neg, days, h, m, s, us) => {
                if *neg || *days > 0 {
                    return Err(capture(
                        "TIME values outside 00:00:00..23:59:59.999999 are not a time of day",
                    ));
                }
                let secs = i64::from(*h) * 3600 + i64::from(*m) * 60 + i64::from(*s);
                Ok(Value::Time(secs * 1_000_000 + i64::from(*us)))
            }
            _ => Err(unexpected()),
        },
        MariaType::Text { charset, .. } => match v {
            MyValue::Bytes(b) => {
                Ok(Value::Text(charset.decode(b).ok_or_else(|| {
                    capture("text is not valid in the column's character set")
                })?))
            }
            _ => Err(unexpected()),
        },
        MariaType::Json => Ok(Value::Json(
            utf8(v).ok_or_else(|| capture("JSON text is not valid UTF-8"))?,
        )),
        MariaType::Binary { max_bytes, fixed } => match v {
            MyValue::Bytes(b) => {
                let mut b = b.clone();
                if *fixed {
                    let n = usize::try_from(*max_bytes).map_err(|_| unexpected())?;
                    if b.len() < n {
                        b.resize(n, 0);
                    }
                }
                Ok(Value::Bytes(b))
            }
            _ => Err(unexpected()),
        },
        MariaType::Enum(labels) => match v {
            MyValue::Int(0) => Ok(Value::Text(String::new())),
            MyValue::Int(i) => usize::try_from(*i - 1)
                .ok()
                .and_then(|i| labels.get(i))
                .map(|l| Value::Text(l.clone()))
                .ok_or_else(|| capture("ENUM index beyond the labels the catalog lists")),
            _ => Err(unexpected()),
        },
        MariaType::Set(labels) => match v {
            MyValue::Bytes(b) => {
                let mut out: Vec<&str> = Vec::new();
                for (byte_i, byte) in b.iter().enumerate() {
                    for bit in 0..8 {
                        if byte & (1 << bit) != 0 {
                            let label = labels
                                .get(byte_i * 8 + bit)
                                .ok_or_else(|| capture("SET bit beyond the catalog's labels"))?;
                            out.push(label);
                        }
                    }
                }
                Ok(Value::Text(out.join(",")))
            }
            _ => Err(unexpected()),
        },
        MariaType::Uuid => match v {
            // Like BINARY(16), the binlog drops trailing zero bytes.
            MyValue::Bytes(b) if b.len() <= 16 => {
                let mut rec = [0u8; 16];
                rec[..b.len()].copy_from_slice(b);
                Ok(Value::Uuid(uuid_from_record(rec)))
            }
            _ => Err(unexpected()),
        },
    }
}

/// `Int` when it fits, else `UInt`; `None` outside both.
fn int_value(n: i128) -> Option<Value> {
    if let Ok(i) = i64::try_from(n) {
        Some(Value::Int(i))
    } else {
        u64::try_from(n).ok().map(Value::UInt)
    }
}

/// The UTF-8 text of a bytes value.
fn utf8(v: &MyValue) -> Option<String> {
    match v {
        MyValue::Bytes(b) => String::from_utf8(b.clone()).ok(),
        _ => None,
    }
}

/// mysql_common prints TIMESTAMP2 as `sec` or `sec.micros` (six digits).
fn timestamp_text(b: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(b).ok()?;
    let (sec, frac) = s.split_once('.').unwrap_or((s, "0"));
    let sec: i64 = sec.parse().ok()?;
    let us: i64 = frac.parse().ok()?;
    sec.checked_mul(1_000_000)?.checked_add(us)
}

/// MariaDB's UUID on-disk (and binlog) order. For RFC 4122 UUIDs of versions 1..=5 (variant
/// bits `10`) the server stores the segments in reverse (`node`, `clock_seq`,
/// `time_hi_and_version`, `time_mid`, `time_low`) so that time-based values sort by time;
/// other UUIDs are stored as is. Segment (memory offset, record offset, length).
const UUID_SEGMENTS: [(usize, usize, usize); 5] =
    [(0, 12, 4), (4, 10, 2), (6, 8, 2), (8, 6, 2), (10, 0, 6)];

/// Whether the record bytes hold a swapped UUID (version 1..=5 and variant 1 in record order).
fn record_is_swapped(rec: &[u8; 16]) -> bool {
    (1..=0x5f).contains(&rec[8]) && rec[6] & 0xc0 == 0x80
}

/// Whether big-endian UUID bytes are stored swapped.
fn memory_needs_swap(mem: &[u8; 16]) -> bool {
    (1..=0x5f).contains(&mem[6]) && mem[8] & 0xc0 == 0x80
}

/// The big-endian UUID of MariaDB record bytes.
pub fn uuid_from_record(rec: [u8; 16]) -> [u8; 16] {
    if !record_is_swapped(&rec) {
        return rec;
    }
    let mut mem = [0u8; 16];
    for (m, r, len) in UUID_SEGMENTS {
        mem[m..m + len].copy_from_slice(&rec[r..r + len]);
    }
    mem
}

/// The MariaDB record bytes of a big-endian UUID (inverse of [`uuid_from_record`]).
pub fn uuid_to_record(mem: [u8; 16]) -> [u8; 16] {
    if !memory_needs_swap(&mem) {
        return mem;
    }
    let mut rec = [0u8; 16];
    for (m, r, len) in UUID_SEGMENTS {
        rec[r..r + len].copy_from_slice(&mem[m..m + len]);
    }
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bv(v: MyValue) -> BinlogValue<'static> {
        BinlogValue::Value(v)
    }

    #[test]
    fn integers_and_unsigned() {
        let u8t = MariaType::Int {
            bytes: 1,
            unsigned: true,
        };
        assert_eq!(
            from_binlog(&bv(MyValue::Int(-1)), &u8t),
            Ok(Value::Int(255))
        );
        let u64t = MariaType::Int {
            bytes: 8,
            unsigned: true,
        };
        assert_eq!(
            from_binlog(&bv(MyValue::UInt(u64::MAX)), &u64t),
            Ok(Value::UInt(u64::MAX))
        );
        assert_eq!(
            from_binlog(&bv(MyValue::Int(-1)), &u64t),
            Ok(Value::UInt(u64::MAX))
        );
    }

    #[test]
    fn signed_mediumint_is_sign_extended() {
        let m = MariaType::Int {
            bytes: 3,
            unsigned: false,
        };
        assert_eq!(
            from_binlog(&bv(MyValue::Int(8_388_608)), &m),
            Ok(Value::Int(-8_388_608))
        );
        assert_eq!(from_binlog(&bv(MyValue::Int(-1)), &m), Ok(Value::Int(-1)));
    }

    #[test]
    fn time_beyond_a_day_is_an_error() {
        let t = MariaType::Time { fsp: 0 };
        assert!(from_binlog(&bv(MyValue::Time(false, 1, 0, 0, 0, 0)), &t).is_err());
        assert!(from_binlog(&bv(MyValue::Time(true, 0, 1, 0, 0, 0)), &t).is_err());
        assert_eq!(
            from_binlog(&bv(MyValue::Time(false, 0, 1, 2, 3, 4)), &t),
            Ok(Value::Time(3_723_000_004))
        );
    }

    #[test]
    fn uuid_order_round_trips() {
        let v1 = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x11, 0xde, 0x81, 0x23, 1, 2, 3, 4, 5, 6,
        ];
        assert_ne!(uuid_to_record(v1), v1);
        assert_eq!(uuid_from_record(uuid_to_record(v1)), v1);
        let other = [0xff; 16];
        assert_eq!(uuid_to_record(other), other);
    }

    #[test]
    fn set_and_enum() {
        let labels = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let s = MariaType::Set(labels.clone());
        assert_eq!(
            from_binlog(&bv(MyValue::Bytes(vec![0b101])), &s),
            Ok(Value::Text("a,c".into()))
        );
        let e = MariaType::Enum(labels);
        assert_eq!(
            from_binlog(&bv(MyValue::Int(2)), &e),
            Ok(Value::Text("b".into()))
        );
        assert!(from_binlog(&bv(MyValue::Int(4)), &e).is_err());
    }
}
