//! Calendar arithmetic and the ISO text forms of PostgreSQL dates and times, by hand: the
//! proleptic Gregorian calendar as PostgreSQL uses it, years BC written with a ` BC` suffix.
//! Parsers return `None` on anything malformed or out of `i64` range; callers name the type.

/// Microseconds per day.
pub(crate) const DAY_MICROS: i64 = 86_400_000_000;

/// Earliest instant PostgreSQL timestamps hold (4714-11-24 00:00 BC), µs since 1970.
pub(crate) const PG_MIN_TIMESTAMP: i64 = -210_866_803_200_000_000;

/// Earliest date PostgreSQL holds (4714-11-24 BC), days since 1970.
pub(crate) const PG_MIN_DATE: i64 = -2_440_588;

/// Day after the last date PostgreSQL holds (5874898-01-01), days since 1970.
pub(crate) const PG_END_DATE: i64 = 2_145_042_906;

/// Days since 1970-01-01 of a proleptic Gregorian date (astronomical year: 0 = 1 BC).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// Days in a month of an astronomical year.
fn month_days(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A run of 1..=max ASCII digits as a number.
fn digits(s: &str, min: usize, max: usize) -> Option<i64> {
    let ok = (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    if ok { s.parse().ok() } else { None }
}

/// Splits off a trailing ` BC`.
fn strip_bc(s: &str) -> (&str, bool) {
    match s.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (s, false),
    }
}

/// `YYYY-MM-DD` (year may be longer) to days since 1970, given the BC flag.
fn date_part(s: &str, bc: bool) -> Option<i64> {
    let mut it = s.splitn(3, '-');
    let y = digits(it.next()?, 4, 7)?;
    let m = digits(it.next()?, 2, 2)?;
    let d = digits(it.next()?, 2, 2)?;
    let y = if bc { 1 - y } else { y };
    let ok = (bc && y <= 0 || !bc && y >= 1) && (1..=12).contains(&m);
    (ok && (1..=month_days(y, m)).contains(&d)).then(|| days_from_civil(y, m, d))
}

/// `HH:MM:SS[.ffffff]` to µs since midnight; `24:00:00` only when `allow_24`.
fn time_part(s: &str, allow_24: bool) -> Option<i64> {
    let (hms, frac) = match s.split_once('.') {
        Some((hms, frac)) => (hms, Some(frac)),
        None => (s, None),
    };
    let mut it = hms.splitn(3, ':');
    let h = digits(it.next()?, 2, 2)?;
    let m = digits(it.next()?, 2, 2)?;
    let sec = digits(it.next()?, 2, 2)?;
    let micros = match frac {
        Some(f) => digits(f, 1, 6)? * 10_i64.pow(6 - u32::try_from(f.len()).ok()?),
        None => 0,
    };
    let total = ((h * 60 + m) * 60 + sec) * 1_000_000 + micros;
    let ok = h < 24 && m < 60 && sec < 60 || allow_24 && h == 24 && total == DAY_MICROS;
    ok.then_some(total)
}

/// Splits `date<sep>time` at the first space or `T`.
fn split_date_time(s: &str) -> Option<(&str, &str)> {
    let i = s.find([' ', 'T'])?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// Parses a `date`: `YYYY-MM-DD[ BC]` to days since 1970.
pub(crate) fn parse_date(s: &str) -> Option<i64> {
    let (s, bc) = strip_bc(s);
    date_part(s, bc)
}

/// Parses a `time`: `HH:MM:SS[.ffffff]` to µs since midnight (`24:00:00` allowed).
pub(crate) fn parse_time(s: &str) -> Option<i64> {
    time_part(s, true)
}

/// Parses a `timestamp`: `YYYY-MM-DD HH:MM:SS[.ffffff][ BC]` to µs since 1970 (wall clock).
pub(crate) fn parse_local_timestamp(s: &str) -> Option<i64> {
    let (s, bc) = strip_bc(s);
    let (d, t) = split_date_time(s)?;
    date_part(d, bc)?
        .checked_mul(DAY_MICROS)?
        .checked_add(time_part(t, false)?)
}

/// Parses a `timestamptz`: like a timestamp, then `Z` or `+HH`, `+HH:MM`, `+HH:MM:SS`, `+HHMM`
/// (PostgreSQL prints the session zone's offset), to UTC µs since 1970.
pub(crate) fn parse_timestamptz(s: &str) -> Option<i64> {
    let (s, bc) = strip_bc(s);
    let (d, rest) = split_date_time(s)?;
    let (t, offset_secs) = if let Some(t) = rest.strip_suffix('Z') {
        (t, 0)
    } else {
        let i = rest.rfind(['+', '-'])?;
        (rest.get(..i)?, parse_offset(rest.get(i..)?)?)
    };
    let local = date_part(d, bc)?
        .checked_mul(DAY_MICROS)?
        .checked_add(time_part(t, false)?)?;
    local.checked_sub(offset_secs * 1_000_000)
}

/// `+HH[:MM[:SS]]` or `+HHMM` to seconds east of UTC.
fn parse_offset(s: &str) -> Option<i64> {
    let (sign, body) = match s.split_at_checked(1)? {
        ("+", b) => (1, b),
        ("-", b) => (-1, b),
        _ => return None,
    };
    let parts: Vec<&str> = if body.len() == 4 && !body.contains(':') {
        vec![body.get(..2)?, body.get(2..)?]
    } else {
        body.split(':').collect()
    };
    let mut secs = 0;
    for (i, unit) in [3600, 60, 1].into_iter().enumerate() {
        if let Some(p) = parts.get(i) {
            let n = digits(p, 2, 2)?;
            if i > 0 && n >= 60 {
                return None;
            }
            secs += n * unit;
        }
    }
    (!parts.is_empty() && parts.len() <= 3 && secs < 16 * 3600).then_some(sign * secs)
}

/// Formats days since 1970 as `YYYY-MM-DD`, and whether the year is BC.
fn date_text(days: i64) -> (String, bool) {
    let (y, m, d) = civil_from_days(days);
    let (y, bc) = if y <= 0 { (1 - y, true) } else { (y, false) };
    (format!("{y:04}-{m:02}-{d:02}"), bc)
}

/// Formats µs since midnight as `HH:MM:SS.ffffff`.
pub(crate) fn format_time(micros: i64) -> String {
    let (secs, us) = (micros / 1_000_000, micros % 1_000_000);
    format!(
        "{:02}:{:02}:{:02}.{us:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Formats a `date`.
pub(crate) fn format_date(days: i64) -> String {
    match date_text(days) {
        (d, true) => format!("{d} BC"),
        (d, false) => d,
    }
}

/// Formats a `timestamp`: `YYYY-MM-DD HH:MM:SS.ffffff[ BC]`.
pub(crate) fn format_local_timestamp(micros: i64) -> String {
    let (d, bc) = date_text(micros.div_euclid(DAY_MICROS));
    let t = format_time(micros.rem_euclid(DAY_MICROS));
    if bc {
        format!("{d} {t} BC")
    } else {
        format!("{d} {t}")
    }
}

/// Formats a UTC instant: RFC 3339 (`2026-11-26T17:21:39.102600Z`) for years 1-9999, the
/// PostgreSQL form with `+00` outside them (RFC 3339 has no such years).
pub(crate) fn format_utc_timestamp(micros: i64) -> String {
    let (d, bc) = date_text(micros.div_euclid(DAY_MICROS));
    let t = format_time(micros.rem_euclid(DAY_MICROS));
    if bc {
        format!("{d} {t}+00 BC")
    } else if d.len() > 10 {
        format!("{d} {t}+00")
    } else {
        format!("{d}T{t}Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for days in [-800_000, -719_468, -1, 0, 1, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("4714-11-24 BC"), Some(PG_MIN_DATE));
        assert_eq!(parse_date("5874898-01-01"), Some(PG_END_DATE));
        assert_eq!(parse_date("2023-02-29"), None);
    }

    #[test]
    fn timestamps_with_offsets() {
        let utc = parse_timestamptz("2026-11-26 17:21:39.1026+00").unwrap();
        assert_eq!(
            parse_timestamptz("2026-11-26 22:51:39.1026+05:30"),
            Some(utc)
        );
        assert_eq!(
            parse_timestamptz("2026-11-26T14:21:39.102600-03"),
            Some(utc)
        );
        assert_eq!(parse_timestamptz("2026-11-26T17:21:39.102600Z"), Some(utc));
        assert_eq!(format_utc_timestamp(utc), "2026-11-26T17:21:39.102600Z");
        assert_eq!(
            parse_timestamptz("1800-01-01 05:53:28+05:53:28"),
            parse_timestamptz("1800-01-01 00:00:00Z")
        );
        assert_eq!(
            parse_local_timestamp("1969-12-31 23:59:59.999999"),
            Some(-1)
        );
        assert_eq!(parse_local_timestamp("infinity"), None);
        assert_eq!(parse_time("24:00:00"), Some(DAY_MICROS));
        assert_eq!(parse_time("23:60:00"), None);
        assert_eq!(format_local_timestamp(-1), "1969-12-31 23:59:59.999999");
    }
}
