//! Verify: a value as a `SELECT` prints it (the expressions of [`crate::verify`]) to the
//! engine-neutral [`Value`], exactly as capture ([`super::from_binlog`]) gives the same
//! stored value: integers as `Int` (`UInt` only above `i64::MAX`), DECIMAL as printed with
//! its scale, TIMESTAMP from `UNIX_TIMESTAMP` (UTC, whatever the session's zone), the same
//! errors for values capture cannot carry (zero dates, TIME beyond a day).

use meshsync_core::Value;

use super::{MariaType, TypeError, civil::days_from_civil};

/// Microseconds per day.
const DAY_US: i64 = 86_400_000_000;

/// The value of printed `text` of a column of type `ty`. Types read as bytes or floats
/// (text, JSON, binary, FLOAT, DOUBLE) are not printed: for them this is a `Capture` error.
pub fn from_select_text(text: &str, ty: &MariaType) -> Result<Value, TypeError> {
    let bad = |why: &'static str| TypeError::Capture {
        ty: ty.to_string(),
        why,
    };
    let unexpected = || bad(UNEXPECTED);
    match ty {
        MariaType::Int { .. } | MariaType::Bit { .. } => {
            let n: i128 = text.trim().parse().map_err(|_| unexpected())?;
            int_value(n).ok_or_else(unexpected)
        }
        MariaType::Year => Ok(Value::Int(text.trim().parse().map_err(|_| unexpected())?)),
        MariaType::Decimal { .. } => Ok(Value::Decimal(text.trim().to_owned())),
        MariaType::Date => {
            let days = date(text).map_err(bad)?;
            Ok(Value::Date(i32::try_from(days).map_err(|_| unexpected())?))
        }
        MariaType::DateTime { .. } => {
            let (d, t) = text.split_once(' ').ok_or_else(unexpected)?;
            let days = date(d).map_err(bad)?;
            let us = time_of_day(t).ok_or_else(unexpected)?;
            Ok(Value::LocalTimestamp(days * DAY_US + us))
        }
        MariaType::Timestamp { .. } => {
            let (sec, frac) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
            let sec: i64 = sec.parse().map_err(|_| unexpected())?;
            let us = sec
                .checked_mul(1_000_000)
                .and_then(|s| s.checked_add(micros(frac)?))
                .ok_or_else(unexpected)?;
            if us == 0 {
                return Err(bad(
                    "the zero TIMESTAMP (0000-00-00 00:00:00) is not an instant",
                ));
            }
            Ok(Value::Timestamp(us))
        }
        MariaType::Time { .. } => {
            let us = time_of_day(text).ok_or_else(|| {
                bad("TIME values outside 00:00:00..23:59:59.999999 are not a time of day")
            })?;
            Ok(Value::Time(us))
        }
        MariaType::Enum(_) | MariaType::Set(_) => Ok(Value::Text(text.to_owned())),
        MariaType::Uuid => {
            let hex: Vec<u8> = text.bytes().filter(|b| *b != b'-').collect();
            let mut out = [0u8; 16];
            if hex.len() != 32 {
                return Err(unexpected());
            }
            for (i, o) in out.iter_mut().enumerate() {
                let pair = std::str::from_utf8(&hex[2 * i..2 * i + 2]).map_err(|_| unexpected())?;
                *o = u8::from_str_radix(pair, 16).map_err(|_| unexpected())?;
            }
            Ok(Value::Uuid(out))
        }
        MariaType::Float
        | MariaType::Double
        | MariaType::Text { .. }
        | MariaType::Json
        | MariaType::Binary { .. } => Err(unexpected()),
    }
}

/// `Int` when it fits, else `UInt`; `None` outside both (as capture).
fn int_value(n: i128) -> Option<Value> {
    if let Ok(i) = i64::try_from(n) {
        Some(Value::Int(i))
    } else {
        u64::try_from(n).ok().map(Value::UInt)
    }
}

/// Up to six fractional digits as microseconds (`5` is 500,000).
fn micros(frac: &str) -> Option<i64> {
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let padded = format!("{frac:0<6}");
    padded.parse().ok()
}

/// Text of an unexpected form.
const UNEXPECTED: &str = "the server printed an unexpected form for this type";

/// Days since 1970-01-01 of `YYYY-MM-DD`; the reason otherwise (zero dates are an error, as
/// in capture).
fn date(text: &str) -> Result<i64, &'static str> {
    let mut parts = text.trim().splitn(3, '-');
    let mut next = || -> Result<i64, &'static str> {
        parts.next().and_then(|p| p.parse().ok()).ok_or(UNEXPECTED)
    };
    let (y, m, d) = (next()?, next()?, next()?);
    if y == 0 || m == 0 || d == 0 {
        return Err("zero dates (0000-00-00) have no calendar value");
    }
    let (Ok(m @ 1..=12), Ok(d @ 1..=31)) = (u32::try_from(m), u32::try_from(d)) else {
        return Err(UNEXPECTED);
    };
    Ok(days_from_civil(y, m, d))
}

/// Microseconds since midnight of `HH:MM:SS[.ffffff]` within one day.
fn time_of_day(text: &str) -> Option<i64> {
    let (hms, frac) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    let mut parts = hms.splitn(3, ':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let s: i64 = parts.next()?.parse().ok()?;
    if hms.starts_with('-')
        || !(0..24).contains(&h)
        || !(0..60).contains(&m)
        || !(0..60).contains(&s)
    {
        return None;
    }
    Some((h * 3600 + m * 60 + s) * 1_000_000 + micros(frac)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_values_parse_as_capture_gives_them() {
        let int = MariaType::Int {
            bytes: 8,
            unsigned: true,
        };
        assert_eq!(from_select_text("5", &int), Ok(Value::Int(5)));
        assert_eq!(
            from_select_text("18446744073709551615", &int),
            Ok(Value::UInt(u64::MAX))
        );
        assert_eq!(
            from_select_text("2024-03-01", &MariaType::Date),
            Ok(Value::Date(19_783))
        );
        assert_eq!(
            from_select_text("1970-01-02 00:00:01.5", &MariaType::DateTime { fsp: 1 }),
            Ok(Value::LocalTimestamp(DAY_US + 1_500_000))
        );
        assert_eq!(
            from_select_text("1709287200.500000", &MariaType::Timestamp { fsp: 6 }),
            Ok(Value::Timestamp(1_709_287_200_500_000))
        );
        assert!(from_select_text("0", &MariaType::Timestamp { fsp: 0 }).is_err());
        assert!(from_select_text("0000-00-00", &MariaType::Date).is_err());
        assert_eq!(
            from_select_text("23:59:58.125", &MariaType::Time { fsp: 3 }),
            Ok(Value::Time(
                (23 * 3600 + 59 * 60 + 58) * 1_000_000 + 125_000
            ))
        );
        assert!(from_select_text("25:00:00", &MariaType::Time { fsp: 0 }).is_err());
        assert!(from_select_text("-01:00:00", &MariaType::Time { fsp: 0 }).is_err());
        assert_eq!(
            from_select_text("000102030405060708090a0b0c0d0e0f", &MariaType::Uuid),
            from_select_text("00010203-0405-0607-0809-0a0b0c0d0e0f", &MariaType::Uuid)
        );
    }
}
