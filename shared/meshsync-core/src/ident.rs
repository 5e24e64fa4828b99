//! Names and identities: peers, tables, schema versions.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An identity that does not follow the rules; the message names the rule and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    /// Peer ids appear in NATS subjects and message ids.
    #[error(
        "peer id {0:?} is not valid: use 1-64 characters from a-z, A-Z, 0-9, '-' and '_' \
         (it becomes part of NATS subjects and message ids)"
    )]
    BadPeer(String),
    /// Tables are named `schema.table`.
    #[error("table name {0:?} is not valid: write it as \"schema.table\", e.g. \"public.items\"")]
    BadTable(String),
}

/// Id of a peer (one database) in the mesh, unique in the mesh.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerId(String);

impl PeerId {
    /// Validates a peer id: 1-64 of `[A-Za-z0-9_-]`, so it is safe in subjects and ids.
    pub fn new(id: impl Into<String>) -> Result<Self, IdentError> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(PeerId(id))
        } else {
            Err(IdentError::BadPeer(id))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A namespaced table: `schema.table` (PostgreSQL schema, MariaDB database).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TableName {
    /// Namespace: PostgreSQL schema or MariaDB database.
    pub schema: String,
    /// Table name inside the namespace.
    pub name: String,
}

impl TableName {
    /// A table from its parts.
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        TableName {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// Parses `schema.table`; both parts non-empty, no further dots.
    pub fn parse(text: &str) -> Result<Self, IdentError> {
        match text.split_once('.') {
            Some((s, n)) if !s.is_empty() && !n.is_empty() && !n.contains('.') => {
                Ok(TableName::new(s, n))
            }
            _ => Err(IdentError::BadTable(text.to_owned())),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Version of a table's shape (columns and their types) as the capturing peer saw it.
/// Apply compares it with what it knows before trusting column positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SchemaVersion(pub u64);

impl SchemaVersion {
    /// The version of a table shape given as (column name, type name) in table order:
    /// FNV-1a 64 over both, stable across processes, platforms and Rust versions.
    pub fn of_columns<N: AsRef<str>, T: AsRef<str>>(
        columns: impl IntoIterator<Item = (N, T)>,
    ) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (name, ty) in columns {
            for b in name
                .as_ref()
                .bytes()
                .chain([0])
                .chain(ty.as_ref().bytes())
                .chain([0])
            {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        SchemaVersion(h)
    }
}

impl fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_are_subject_safe() {
        assert!(PeerId::new("site-a_1").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>", &"x".repeat(65)] {
            assert_eq!(PeerId::new(bad), Err(IdentError::BadPeer(bad.to_owned())));
        }
    }

    #[test]
    fn tables_need_a_schema() {
        assert_eq!(
            TableName::parse("public.items").unwrap().to_string(),
            "public.items"
        );
        for bad in ["items", ".items", "public.", "a.b.c"] {
            assert!(TableName::parse(bad).is_err(), "{bad}");
        }
    }
}
