//! Typed, engine-neutral column values.

use serde::{Deserialize, Serialize};

/// A column value every engine maps to and from. A value a target cannot hold is a clear,
/// parked error at apply, never a silent truncation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// Boolean.
    Bool(bool),
    /// Signed integer of up to 64 bits.
    Int(i64),
    /// Unsigned integer above `i64::MAX` is only representable here (MariaDB BIGINT UNSIGNED).
    UInt(u64),
    /// IEEE-754 double (float4 widens exactly).
    Float(f64),
    /// Exact decimal as canonical text (`-12.340`, as the engine printed it).
    Decimal(String),
    /// Text (UTF-8).
    Text(String),
    /// Raw bytes.
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Instant in time: microseconds since the Unix epoch, UTC (timestamptz, MariaDB TIMESTAMP).
    Timestamp(i64),
    /// Wall-clock date-time without zone: microseconds since 1970-01-01T00:00 (timestamp, DATETIME).
    LocalTimestamp(i64),
    /// Calendar date: days since 1970-01-01.
    Date(i32),
    /// Time of day: microseconds since midnight.
    Time(i64),
    /// UUID, 16 bytes big-endian.
    Uuid([u8; 16]),
    /// JSON document as text (objects, arrays; arrays of other types travel as JSON too).
    Json(String),
}

impl Value {
    /// Name of the kind, for error messages and metrics labels (never the value itself).
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::UInt(_) => "uint",
            Value::Float(_) => "float",
            Value::Decimal(_) => "decimal",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
            Value::Timestamp(_) => "timestamp",
            Value::LocalTimestamp(_) => "local_timestamp",
            Value::Date(_) => "date",
            Value::Time(_) => "time",
            Value::Uuid(_) => "uuid",
            Value::Json(_) => "json",
        }
    }

    /// Whether this is SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// One column of a row image after a change.
///
/// Row-level merges write the whole image ([`Cell::Value`] and [`Cell::Kept`]), so that
/// every peer ends with the winner's full row; column-level merges write only the columns
/// the change wrote ([`Cell::Value`]). [`Cell::Unchanged`] is never written: the engine did
/// not send the value (an unchanged TOASTed value without an old row image).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Cell {
    /// The change wrote this value.
    Value(Value),
    /// The change did not write this column; it held this value at the origin.
    Kept(Value),
    /// The change did not write this column and its value is unknown; the target keeps its own.
    Unchanged,
}

impl Cell {
    /// The column's value after the change, if known (written or kept).
    pub fn value(&self) -> Option<&Value> {
        match self {
            Cell::Value(v) | Cell::Kept(v) => Some(v),
            Cell::Unchanged => None,
        }
    }

    /// Whether the change wrote this column.
    pub fn is_written(&self) -> bool {
        matches!(self, Cell::Value(_))
    }
}

impl From<Value> for Cell {
    fn from(v: Value) -> Self {
        Cell::Value(v)
    }
}
