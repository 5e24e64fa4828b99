//! A total order over [`Value`]s, the same on every peer, used by `max`, `min` and every tie-break.
//!
//! Values are ordered first by *family*, then inside the family:
//!
//! | family (low to high) | order inside |
//! |---|---|
//! | `Null` | all equal |
//! | `Bool` | `false < true` |
//! | numbers: `Int`, `UInt`, `Float` | exact real value (no rounding between `i64`/`u64`/`f64`); every NaN above `+inf`; equal reals break on kind (`Int < UInt < Float`), then on the float's bits (`-0.0 < +0.0`) |
//! | `Decimal` | exact decimal value of the canonical text; then the text (`1.0 < 1.00`); text that is not a plain decimal sorts above every valid one, by text |
//! | `Text` | UTF-8 bytes |
//! | `Bytes` | bytes |
//! | `Timestamp`, `LocalTimestamp`, `Date`, `Time` | one family each, by number |
//! | `Uuid` | bytes |
//! | `Json` | text |
//!
//! Two values compare [`Ordering::Equal`] only if they are the same value, bit for bit.

use std::cmp::Ordering;

use meshsync_core::Value;

/// Compares two values in the total order of this module.
pub fn cmp_values(a: &Value, b: &Value) -> Ordering {
    family(a).cmp(&family(b)).then_with(|| match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Decimal(x), Value::Decimal(y)) => cmp_decimal(x, y).then_with(|| x.cmp(y)),
        (Value::Text(x), Value::Text(y)) | (Value::Json(x), Value::Json(y)) => x.cmp(y),
        (Value::Bytes(x), Value::Bytes(y)) => x.cmp(y),
        (Value::Timestamp(x), Value::Timestamp(y))
        | (Value::LocalTimestamp(x), Value::LocalTimestamp(y))
        | (Value::Time(x), Value::Time(y)) => x.cmp(y),
        (Value::Date(x), Value::Date(y)) => x.cmp(y),
        (Value::Uuid(x), Value::Uuid(y)) => x.cmp(y),
        _ => cmp_numbers(a, b),
    })
}

/// Whether two values are the same value in the order of [`cmp_values`] (NaN equals itself).
pub fn values_equal(a: &Value, b: &Value) -> bool {
    cmp_values(a, b) == Ordering::Equal
}

/// Compares optional values: absent (`None`) first.
pub fn cmp_opt_values(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => cmp_values(x, y),
    }
}

/// Rank of a value's family in the total order.
fn family(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Int(_) | Value::UInt(_) | Value::Float(_) => 2,
        Value::Decimal(_) => 3,
        Value::Text(_) => 4,
        Value::Bytes(_) => 5,
        Value::Timestamp(_) => 6,
        Value::LocalTimestamp(_) => 7,
        Value::Date(_) => 8,
        Value::Time(_) => 9,
        Value::Uuid(_) => 10,
        Value::Json(_) => 11,
    }
}

/// A number of the numeric family, widened without loss.
#[derive(Clone, Copy)]
enum Num {
    /// `Int` or `UInt`, exactly.
    Int(i128),
    /// `Float`.
    Float(f64),
}

/// The number inside a numeric value, and its kind rank for ties.
fn num(v: &Value) -> (Num, u8) {
    match v {
        Value::Int(i) => (Num::Int(i128::from(*i)), 0),
        Value::UInt(u) => (Num::Int(i128::from(*u)), 1),
        Value::Float(f) => (Num::Float(*f), 2),
        // Not reached: callers pass numbers only. Sorts with zero, deterministically.
        _ => (Num::Int(0), 3),
    }
}

/// Numbers by exact real value, then kind, then float bits.
fn cmp_numbers(a: &Value, b: &Value) -> Ordering {
    let ((x, kx), (y, ky)) = (num(a), num(b));
    cmp_real(x, y).then(kx.cmp(&ky)).then_with(|| match (x, y) {
        (Num::Float(f), Num::Float(g)) => f.total_cmp(&g),
        _ => Ordering::Equal,
    })
}

/// Exact comparison of real values; every NaN is above everything else and equal to each other.
fn cmp_real(x: Num, y: Num) -> Ordering {
    match (x, y) {
        (Num::Int(i), Num::Int(j)) => i.cmp(&j),
        (Num::Int(i), Num::Float(f)) => cmp_int_float(i, f),
        (Num::Float(f), Num::Int(i)) => cmp_int_float(i, f).reverse(),
        (Num::Float(f), Num::Float(g)) => match (f.is_nan(), g.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => f.partial_cmp(&g).unwrap_or(Ordering::Equal),
        },
    }
}

/// Exact comparison of an integer with a float (NaN above all).
fn cmp_int_float(i: i128, f: f64) -> Ordering {
    /// 2^127 as a float: every i128 is below it.
    const LIMIT: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;
    if f.is_nan() || f >= LIMIT {
        return Ordering::Less;
    }
    if f < -LIMIT {
        return Ordering::Greater;
    }
    let whole = f.trunc();
    // In range and integral: the cast is exact.
    #[allow(clippy::cast_possible_truncation)]
    let w = whole as i128;
    i.cmp(&w)
        .then_with(|| 0.0_f64.partial_cmp(&(f - whole)).unwrap_or(Ordering::Equal))
}

/// A parsed decimal: sign, integer digits without leading zeros, fraction digits without
/// trailing zeros. Zero is never negative.
struct Decimal<'a> {
    /// Below zero.
    negative: bool,
    /// Integer digits.
    int: &'a str,
    /// Fraction digits.
    frac: &'a str,
}

/// Parses `[-+]digits[.digits]`; `None` for anything else.
fn parse_decimal(s: &str) -> Option<Decimal<'_>> {
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return None;
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let negative = negative && !(int.is_empty() && frac.is_empty());
    Some(Decimal {
        negative,
        int,
        frac,
    })
}

/// Compares decimal texts by value; invalid texts above valid ones (and equal to each other).
fn cmp_decimal(a: &str, b: &str) -> Ordering {
    match (parse_decimal(a), parse_decimal(b)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => match (x.negative, y.negative) {
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (neg, _) => {
                let magnitude = x
                    .int
                    .len()
                    .cmp(&y.int.len())
                    .then_with(|| x.int.cmp(y.int))
                    .then_with(|| x.frac.cmp(y.frac));
                if neg { magnitude.reverse() } else { magnitude }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_exactly_across_kinds() {
        let big = Value::Int(9_007_199_254_740_993); // 2^53 + 1, not a float
        assert_eq!(
            cmp_values(&big, &Value::Float(9_007_199_254_740_992.0)),
            Ordering::Greater
        );
        assert_eq!(
            cmp_values(&Value::Int(-2), &Value::Float(-2.5)),
            Ordering::Greater
        );
        assert_eq!(
            cmp_values(&Value::UInt(u64::MAX), &Value::Int(i64::MAX)),
            Ordering::Greater
        );
        assert_eq!(
            cmp_values(&Value::Float(f64::NAN), &Value::Float(f64::INFINITY)),
            Ordering::Greater
        );
        assert_eq!(
            cmp_values(&Value::Int(2), &Value::Float(2.0)),
            Ordering::Less
        );
        assert_eq!(
            cmp_values(&Value::Float(-0.0), &Value::Float(0.0)),
            Ordering::Less
        );
    }

    #[test]
    fn decimals_compare_by_value_then_text() {
        let d = |s: &str| Value::Decimal(s.into());
        assert_eq!(cmp_values(&d("-12.340"), &d("-2")), Ordering::Less);
        assert_eq!(cmp_values(&d("10"), &d("9.99")), Ordering::Greater);
        assert_eq!(cmp_values(&d("1.0"), &d("1.00")), Ordering::Less);
        assert_eq!(
            cmp_values(&d("-0"), &d("0")),
            Ordering::Less,
            "text tie-break"
        );
        assert_eq!(cmp_values(&d("NaN"), &d("1e9")), Ordering::Greater);
    }
}
