//! MariaDB column types meshsync carries, and their values in both directions:
//! [`from_binlog`] for capture (values as mysql_common decodes ROW binlog events),
//! [`to_sql`] for apply (a value to bind with sqlx) and [`from_select_text`] for verify
//! (values as a `SELECT` prints them, read as capture gives them). The crate README has the full table.
//!
//! The logical type of a column comes from `information_schema` ([`MariaType::from_catalog`]):
//! the binlog alone cannot tell JSON from LONGTEXT or UUID from BINARY(16).
//!
//! # Time zones
//!
//! `TIMESTAMP` is an instant: the binlog stores seconds since the Unix epoch in UTC, and
//! capture gives [`meshsync_core::Value::Timestamp`] in UTC whatever the server's
//! `time_zone`. For apply, [`to_sql`] prints the instant as UTC text, so **the apply session
//! must run with `SET time_zone = '+00:00'`**. `DATETIME`, `DATE` and `TIME` carry no zone and
//! travel as wall-clock values.
//!
//! Errors never carry the value itself: values are customer data.

mod charset;
mod civil;
mod from_binlog;
mod from_text;
mod to_sql;

use std::fmt;

pub use charset::Charset;
pub use civil::{civil_from_days, days_from_civil};
pub use from_binlog::{from_binlog, uuid_from_record, uuid_to_record};
pub use from_text::from_select_text;
pub use to_sql::{SqlValue, to_sql};

/// A column type meshsync knows how to carry, with what apply must check.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MariaType {
    /// TINYINT (1 byte) .. BIGINT (8 bytes), MEDIUMINT is 3 -> `Int`, or `UInt` above `i64::MAX`.
    Int {
        /// Storage size in bytes: 1, 2, 3, 4 or 8.
        bytes: u8,
        /// `UNSIGNED`.
        unsigned: bool,
    },
    /// DECIMAL(p, s) -> `Decimal` text.
    Decimal {
        /// Total digits.
        precision: u32,
        /// Digits after the point.
        scale: u32,
    },
    /// FLOAT -> `Float` (widened exactly).
    Float,
    /// DOUBLE -> `Float`.
    Double,
    /// BIT(n) -> `Int` (`UInt` for a BIT(64) value above `i64::MAX`).
    Bit {
        /// Width in bits, 1..=64.
        bits: u32,
    },
    /// YEAR -> `Int` (0 or 1901..=2155).
    Year,
    /// DATE -> `Date`.
    Date,
    /// DATETIME(fsp) -> `LocalTimestamp`.
    DateTime {
        /// Fractional-second digits, 0..=6.
        fsp: u32,
    },
    /// TIMESTAMP(fsp) -> `Timestamp` (UTC).
    Timestamp {
        /// Fractional-second digits, 0..=6.
        fsp: u32,
    },
    /// TIME(fsp) -> `Time` when within one day.
    Time {
        /// Fractional-second digits, 0..=6.
        fsp: u32,
    },
    /// CHAR, VARCHAR, TINYTEXT..LONGTEXT in utf8mb4/utf8mb3/ascii/latin1 -> `Text`.
    Text {
        /// How the bytes are encoded.
        charset: Charset,
        /// Maximum length in characters.
        max_chars: u64,
        /// Maximum length in bytes.
        max_bytes: u64,
    },
    /// BINARY, VARBINARY, TINYBLOB..LONGBLOB -> `Bytes`.
    Binary {
        /// Maximum length in bytes.
        max_bytes: u64,
        /// BINARY(n): values are padded with zero bytes to `max_bytes` (the binlog strips
        /// the padding; SELECT shows it, and so does capture).
        fixed: bool,
    },
    /// JSON (MariaDB: LONGTEXT with `CHECK (json_valid(col))`) -> `Json`.
    Json,
    /// ENUM -> `Text` (the label).
    Enum(Vec<String>),
    /// SET -> `Text` (labels joined by `,`, in definition order).
    Set(Vec<String>),
    /// UUID (MariaDB 10.7+) -> `Uuid`.
    Uuid,
}

impl fmt::Display for MariaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MariaType::Int { bytes, unsigned } => {
                let name = match bytes {
                    1 => "tinyint",
                    2 => "smallint",
                    3 => "mediumint",
                    4 => "int",
                    _ => "bigint",
                };
                write!(f, "{name}{}", if *unsigned { " unsigned" } else { "" })
            }
            MariaType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            MariaType::Float => f.write_str("float"),
            MariaType::Double => f.write_str("double"),
            MariaType::Bit { bits } => write!(f, "bit({bits})"),
            MariaType::Year => f.write_str("year"),
            MariaType::Date => f.write_str("date"),
            MariaType::DateTime { fsp } => write!(f, "datetime({fsp})"),
            MariaType::Timestamp { fsp } => write!(f, "timestamp({fsp})"),
            MariaType::Time { fsp } => write!(f, "time({fsp})"),
            MariaType::Text { max_chars, .. } => write!(f, "text({max_chars})"),
            MariaType::Binary { max_bytes, fixed } => {
                write!(f, "{}binary({max_bytes})", if *fixed { "" } else { "var" })
            }
            MariaType::Json => f.write_str("json"),
            MariaType::Enum(labels) => write!(f, "enum({})", labels.join(",")),
            MariaType::Set(labels) => write!(f, "set({})", labels.join(",")),
            MariaType::Uuid => f.write_str("uuid"),
        }
    }
}

/// What `information_schema.COLUMNS` says about one column.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatalogColumn {
    /// `DATA_TYPE`, lower case (`int`, `varchar`, `longtext`, ...).
    pub data_type: String,
    /// `COLUMN_TYPE` (`int(10) unsigned`, `enum('a','b')`).
    pub column_type: String,
    /// `NUMERIC_PRECISION` (and the width of BIT).
    pub precision: Option<u64>,
    /// `NUMERIC_SCALE`.
    pub scale: Option<u64>,
    /// `DATETIME_PRECISION`.
    pub fsp: Option<u64>,
    /// `CHARACTER_MAXIMUM_LENGTH`.
    pub max_chars: Option<u64>,
    /// `CHARACTER_OCTET_LENGTH`.
    pub max_bytes: Option<u64>,
    /// `CHARACTER_SET_NAME` (`None` for binary and non-character types).
    pub charset: Option<String>,
    /// Whether a `CHECK (json_valid(col))` constraint makes the column JSON.
    pub json_check: bool,
}

/// A column type meshsync cannot carry; the message names the type and the fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "column type {column_type} is not supported by meshsync{why}; change the column to a \
     supported type (see the meshsync-mariadb README) or remove the table from database.tables"
)]
pub struct UnsupportedType {
    /// `COLUMN_TYPE` as the catalog prints it.
    pub column_type: String,
    /// Extra reason, starting with `: ` (or empty).
    pub why: String,
}

impl MariaType {
    /// The type of a column from its catalog entry.
    pub fn from_catalog(c: &CatalogColumn) -> Result<MariaType, UnsupportedType> {
        let unsupported = |why: &str| UnsupportedType {
            column_type: c.column_type.clone(),
            why: why.to_owned(),
        };
        let unsigned = c.column_type.to_ascii_lowercase().contains("unsigned");
        let fsp = c.fsp.unwrap_or(0).min(6) as u32;
        let int = |bytes| Ok(MariaType::Int { bytes, unsigned });
        match c.data_type.to_ascii_lowercase().as_str() {
            "tinyint" => int(1),
            "smallint" => int(2),
            "mediumint" => int(3),
            "int" | "integer" => int(4),
            "bigint" => int(8),
            "decimal" | "numeric" => Ok(MariaType::Decimal {
                precision: c.precision.unwrap_or(10) as u32,
                scale: c.scale.unwrap_or(0) as u32,
            }),
            "float" => Ok(MariaType::Float),
            "double" | "real" => Ok(MariaType::Double),
            "bit" => Ok(MariaType::Bit {
                bits: c.precision.unwrap_or(1).clamp(1, 64) as u32,
            }),
            "year" => Ok(MariaType::Year),
            "date" => Ok(MariaType::Date),
            "datetime" => Ok(MariaType::DateTime { fsp }),
            "timestamp" => Ok(MariaType::Timestamp { fsp }),
            "time" => Ok(MariaType::Time { fsp }),
            "uuid" => Ok(MariaType::Uuid),
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                Ok(MariaType::Binary {
                    max_bytes: c.max_bytes.or(c.max_chars).unwrap_or(u64::MAX),
                    fixed: c.data_type.eq_ignore_ascii_case("binary"),
                })
            }
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "json" => {
                match c.charset.as_deref() {
                    None | Some("binary") => Ok(MariaType::Binary {
                        max_bytes: c.max_bytes.or(c.max_chars).unwrap_or(u64::MAX),
                        fixed: c.data_type.eq_ignore_ascii_case("char"),
                    }),
                    Some(cs) if Charset::from_name(cs).is_none() => Err(unsupported(&format!(
                        ": character set {cs} is not supported (convert the column to utf8mb4)"
                    ))),
                    Some(_) if c.json_check || c.data_type.eq_ignore_ascii_case("json") => {
                        Ok(MariaType::Json)
                    }
                    Some(cs) => Ok(MariaType::Text {
                        charset: Charset::from_name(cs).unwrap_or(Charset::Utf8),
                        max_chars: c.max_chars.unwrap_or(u64::MAX),
                        max_bytes: c.max_bytes.unwrap_or(u64::MAX),
                    }),
                }
            }
            "enum" => Ok(MariaType::Enum(
                parse_labels(&c.column_type)
                    .ok_or_else(|| unsupported(": its label list does not parse"))?,
            )),
            "set" => Ok(MariaType::Set(
                parse_labels(&c.column_type)
                    .ok_or_else(|| unsupported(": its label list does not parse"))?,
            )),
            _ => Err(unsupported("")),
        }
    }
}

/// The labels of `enum('a','b''c')` / `set(...)`: single-quoted, `''` for a quote, `\\` and
/// `\'` as backslash escapes.
pub fn parse_labels(column_type: &str) -> Option<Vec<String>> {
    let open = column_type.find('(')?;
    let inner = column_type.get(open + 1..)?.strip_suffix(')')?;
    let mut labels = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        if chars.next()? != '\'' {
            return None;
        }
        let mut label = String::new();
        loop {
            match chars.next()? {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    label.push('\'');
                }
                '\'' => break,
                '\\' => label.push(chars.next()?),
                c => label.push(c),
            }
        }
        labels.push(label);
        match chars.next() {
            None => return Some(labels),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

/// A value that does not fit its column, or binlog bytes that do not fit the column type.
/// Names kinds and types, never the value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    /// The column cannot hold a value of this kind at all.
    #[error("a {kind} value cannot be stored in a {ty} column")]
    Kind {
        /// [`meshsync_core::Value::kind`].
        kind: &'static str,
        /// The column type.
        ty: String,
    },
    /// The kind fits but this value is out of the column's range or precision; storing it
    /// would wrap, truncate or round.
    #[error("a {kind} value is out of range for a {ty} column ({why}); it would be truncated")]
    Range {
        /// [`meshsync_core::Value::kind`].
        kind: &'static str,
        /// The column type.
        ty: String,
        /// Which limit.
        why: &'static str,
    },
    /// NULL into a NOT NULL column.
    #[error("NULL cannot be stored in a NOT NULL {ty} column")]
    Null {
        /// The column type.
        ty: String,
    },
    /// The binlog sent a value meshsync cannot represent (e.g. a TIME beyond one day, a zero
    /// date).
    #[error("binlog value of a {ty} column cannot be carried: {why}")]
    Capture {
        /// The column type.
        ty: String,
        /// What is wrong.
        why: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse() {
        assert_eq!(
            parse_labels("enum('a','b''c','d,e')").unwrap(),
            ["a", "b'c", "d,e"]
        );
        assert_eq!(parse_labels("set('')").unwrap(), [""]);
        assert!(parse_labels("enum(a)").is_none());
    }

    #[test]
    fn catalog_types() {
        let c = |dt: &str, ct: &str, cs: Option<&str>| CatalogColumn {
            data_type: dt.into(),
            column_type: ct.into(),
            charset: cs.map(str::to_owned),
            ..Default::default()
        };
        assert_eq!(
            MariaType::from_catalog(&c("bigint", "bigint(20) unsigned", None)).unwrap(),
            MariaType::Int {
                bytes: 8,
                unsigned: true
            }
        );
        assert!(MariaType::from_catalog(&c("varchar", "varchar(3)", Some("latin1"))).is_ok());
        assert!(MariaType::from_catalog(&c("varchar", "varchar(3)", Some("sjis"))).is_err());
        assert!(MariaType::from_catalog(&c("geometry", "geometry", None)).is_err());
        let mut j = c("longtext", "longtext", Some("utf8mb4"));
        j.json_check = true;
        assert_eq!(MariaType::from_catalog(&j).unwrap(), MariaType::Json);
    }
}
