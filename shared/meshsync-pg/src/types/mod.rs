//! PostgreSQL types meshsync replicates, and their text representation in both directions:
//! [`from_text`] for capture (pgoutput sends text), [`to_sql_text`] for apply (bind as a text
//! parameter with an explicit cast `$1::<type>`, see [`PgType`]'s `Display`).
//!
//! Errors never carry the value itself: values are customer data.

mod array;
mod datetime;
mod text_in;
mod text_out;

use std::fmt;

use meshsync_core::TableName;

pub use text_in::from_text;
pub use text_out::to_sql_text;

/// A column type meshsync knows how to carry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PgType {
    /// `int2` -> `Value::Int`.
    Int2,
    /// `int4` -> `Value::Int`.
    Int4,
    /// `int8` -> `Value::Int`.
    Int8,
    /// `numeric` -> `Value::Decimal`, text as PostgreSQL printed it.
    Numeric,
    /// `float4` -> `Value::Float` (widened exactly).
    Float4,
    /// `float8` -> `Value::Float`.
    Float8,
    /// `bool` -> `Value::Bool`.
    Bool,
    /// `text` -> `Value::Text`.
    Text,
    /// `varchar` -> `Value::Text`.
    Varchar,
    /// `bpchar` (`char(n)`) -> `Value::Text`, padding kept.
    Bpchar,
    /// `name` -> `Value::Text`.
    Name,
    /// `bytea` -> `Value::Bytes`.
    Bytea,
    /// `uuid` -> `Value::Uuid`.
    Uuid,
    /// `json` -> `Value::Json`, text as given.
    Json,
    /// `jsonb` -> `Value::Json`, text as given.
    Jsonb,
    /// `timestamp` -> `Value::LocalTimestamp`.
    Timestamp,
    /// `timestamptz` -> `Value::Timestamp` (UTC).
    Timestamptz,
    /// `date` -> `Value::Date`.
    Date,
    /// `time` -> `Value::Time`.
    Time,
    /// A user-defined enum type -> `Value::Text` (its OID is not fixed: the caller says so).
    Enum,
    /// A one- or multi-dimensional array of a supported scalar -> `Value::Json` array.
    Array(Box<PgType>),
}

/// Element OIDs and array OIDs of the supported built-in scalars, with their type.
const BUILTINS: &[(u32, u32, PgType)] = &[
    (21, 1005, PgType::Int2),
    (23, 1007, PgType::Int4),
    (20, 1016, PgType::Int8),
    (1700, 1231, PgType::Numeric),
    (700, 1021, PgType::Float4),
    (701, 1022, PgType::Float8),
    (16, 1000, PgType::Bool),
    (25, 1009, PgType::Text),
    (1043, 1015, PgType::Varchar),
    (1042, 1014, PgType::Bpchar),
    (19, 1003, PgType::Name),
    (17, 1001, PgType::Bytea),
    (2950, 2951, PgType::Uuid),
    (114, 199, PgType::Json),
    (3802, 3807, PgType::Jsonb),
    (1114, 1115, PgType::Timestamp),
    (1184, 1185, PgType::Timestamptz),
    (1082, 1182, PgType::Date),
    (1083, 1183, PgType::Time),
];

impl PgType {
    /// The type of a built-in OID, scalar or array; `None` for anything else (including
    /// enums, whose OIDs differ per database: see [`check_supported_hinted`]).
    pub fn from_oid(oid: u32) -> Option<PgType> {
        BUILTINS.iter().find_map(|(scalar, array, ty)| {
            if *scalar == oid {
                Some(ty.clone())
            } else if *array == oid {
                Some(PgType::Array(Box::new(ty.clone())))
            } else {
                None
            }
        })
    }

    /// PostgreSQL's name of a scalar type (`"enum"` for enums, whose real name the caller has).
    fn scalar_name(&self) -> &'static str {
        match self {
            PgType::Int2 => "int2",
            PgType::Int4 => "int4",
            PgType::Int8 => "int8",
            PgType::Numeric => "numeric",
            PgType::Float4 => "float4",
            PgType::Float8 => "float8",
            PgType::Bool => "bool",
            PgType::Text => "text",
            PgType::Varchar => "varchar",
            PgType::Bpchar => "bpchar",
            PgType::Name => "name",
            PgType::Bytea => "bytea",
            PgType::Uuid => "uuid",
            PgType::Json => "json",
            PgType::Jsonb => "jsonb",
            PgType::Timestamp => "timestamp",
            PgType::Timestamptz => "timestamptz",
            PgType::Date => "date",
            PgType::Time => "time",
            PgType::Enum => "enum",
            PgType::Array(_) => "array",
        }
    }
}

/// The type name usable in a cast (`int4`, `timestamptz[]`). Enums print `enum`: cast those
/// to the enum's own (quoted) name instead.
impl fmt::Display for PgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgType::Array(elem) => write!(f, "{elem}[]"),
            other => f.write_str(other.scalar_name()),
        }
    }
}

/// What the catalog says about a type whose OID is not built in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeHint {
    /// Nothing known: only built-in OIDs are accepted.
    None,
    /// `pg_type.typtype = 'e'` (also hinted by a `Y` message naming it).
    Enum,
    /// An array whose element type is an enum.
    EnumArray,
}

/// A value that cannot be converted. Names the type and the problem, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    /// Text that is not a valid representation of the type.
    #[error("value of type {ty} is not valid: {reason}")]
    Invalid {
        /// The column type.
        ty: String,
        /// What is wrong, without the value.
        reason: &'static str,
    },
    /// A value outside what the type can hold (never wrapped or truncated).
    #[error("value of type {ty} is out of range: {reason}")]
    OutOfRange {
        /// The column type.
        ty: String,
        /// Which limit.
        reason: &'static str,
    },
    /// A value of a kind the column type cannot take.
    #[error("a {kind} value cannot be written to a column of type {ty}")]
    Mismatch {
        /// The column type.
        ty: String,
        /// [`meshsync_core::Value::kind`] of the value.
        kind: &'static str,
    },
}

impl TypeError {
    /// Shorthand for [`TypeError::Invalid`].
    pub(crate) fn invalid(ty: &PgType, reason: &'static str) -> Self {
        TypeError::Invalid {
            ty: ty.to_string(),
            reason,
        }
    }

    /// Shorthand for [`TypeError::OutOfRange`].
    pub(crate) fn range(ty: &PgType, reason: &'static str) -> Self {
        TypeError::OutOfRange {
            ty: ty.to_string(),
            reason,
        }
    }
}

/// A column whose type meshsync cannot replicate; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "column {column:?} of table {table} has type {type_name} (oid {oid}), which meshsync \
     cannot replicate: cast the column to text (ALTER TABLE {table} ALTER COLUMN {column:?} \
     TYPE text) or exclude the table from the mesh"
)]
pub struct UnsupportedType {
    /// The table.
    pub table: TableName,
    /// The column.
    pub column: String,
    /// The type's name, as the catalog prints it.
    pub type_name: String,
    /// The type's OID.
    pub oid: u32,
}

/// Checks that a column's built-in type is supported, before capture starts.
pub fn check_supported(
    table: &TableName,
    column: &str,
    type_name: &str,
    oid: u32,
) -> Result<PgType, UnsupportedType> {
    check_supported_hinted(table, column, type_name, oid, TypeHint::None)
}

/// Like [`check_supported`], for a type the catalog describes as an enum (or enum array).
pub fn check_supported_hinted(
    table: &TableName,
    column: &str,
    type_name: &str,
    oid: u32,
    hint: TypeHint,
) -> Result<PgType, UnsupportedType> {
    let found = match hint {
        TypeHint::Enum => Some(PgType::Enum),
        TypeHint::EnumArray => Some(PgType::Array(Box::new(PgType::Enum))),
        TypeHint::None => PgType::from_oid(oid),
    };
    found.ok_or_else(|| UnsupportedType {
        table: table.clone(),
        column: column.to_owned(),
        type_name: type_name.to_owned(),
        oid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_map_to_types() {
        assert_eq!(PgType::from_oid(23), Some(PgType::Int4));
        assert_eq!(
            PgType::from_oid(1007),
            Some(PgType::Array(Box::new(PgType::Int4)))
        );
        assert_eq!(
            PgType::from_oid(1185).map(|t| t.to_string()).as_deref(),
            Some("timestamptz[]")
        );
        assert_eq!(PgType::from_oid(600), None); // point
    }

    #[test]
    fn unsupported_names_table_column_and_fix() {
        let t = TableName::new("public", "shapes");
        let err = check_supported(&t, "where", "point", 600)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("public.shapes") && err.contains("\"where\"") && err.contains("point")
        );
        assert!(err.contains("cast the column to text") && err.contains("exclude the table"));
        let e = check_supported_hinted(&t, "m", "mood", 16385, TypeHint::Enum);
        assert_eq!(e, Ok(PgType::Enum));
    }
}
