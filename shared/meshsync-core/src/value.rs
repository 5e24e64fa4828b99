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

/// One column of a row image: a value, or "unchanged" (the engine did not send it, e.g. an
/// unchanged TOASTed value, or the column was not part of the update). An unchanged cell must
/// never overwrite the column on another peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Cell {
    /// The column holds this value after the change.
    Value(Value),
    /// The change did not touch this column; whatever the target holds stays.
    Unchanged,
}

impl Cell {
    /// The value, unless unchanged.
    pub fn value(&self) -> Option<&Value> {
        match self {
            Cell::Value(v) => Some(v),
            Cell::Unchanged => None,
        }
    }
}

impl From<Value> for Cell {
    fn from(v: Value) -> Self {
        Cell::Value(v)
    }
}
