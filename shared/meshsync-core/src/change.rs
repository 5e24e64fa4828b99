//! One row change, as capture produces it and apply consumes it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{
    ident::{PeerId, SchemaVersion, TableName},
    value::{Cell, Value},
    version::Version,
};
use meshsync_hlc::Hlc;

/// What happened to the row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// A new row.
    Insert,
    /// Some columns of an existing row.
    Update,
    /// The row is gone (leaves a tombstone at apply).
    Delete,
}

impl Op {
    /// Lower-case name, as in the `Mesh-Op` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }

    /// Parses [`Op::as_str`] output.
    pub fn parse(s: &str) -> Option<Op> {
        match s {
            "insert" => Some(Op::Insert),
            "update" => Some(Op::Update),
            "delete" => Some(Op::Delete),
            _ => None,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Opaque position in the engine's change log (PostgreSQL LSN, MariaDB GTID, ...), ordered
/// within one origin. Printable, since it is part of `Nats-Msg-Id`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SourcePosition(pub String);

impl fmt::Display for SourcePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Transaction id at the source, as the engine names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TxnId(pub String);

/// One row change. All changes of one source transaction share its HLC and commit position;
/// `index` orders them inside it. The merge order is (HLC, origin, index).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Peer where the change was committed.
    pub origin: PeerId,
    /// Database (catalog) the table lives in at the origin.
    pub database: String,
    /// The table.
    pub table: TableName,
    /// What happened.
    pub op: Op,
    /// Primary key: column names and typed values, in key order.
    pub key: Vec<(String, Value)>,
    /// Row image after the change, column by column (empty for a delete); columns the change
    /// did not touch are [`Cell::Unchanged`].
    pub columns: Vec<(String, Cell)>,
    /// Stamp of the source transaction.
    pub hlc: Hlc,
    /// Commit position of the source transaction.
    pub position: SourcePosition,
    /// Source transaction id.
    pub txn: TxnId,
    /// Index of this change inside its transaction, from 0.
    pub index: u32,
    /// Shape of the table at capture.
    pub schema: SchemaVersion,
}

impl Change {
    /// The version this change writes.
    pub fn version(&self) -> Version {
        Version::new(self.hlc, self.origin.clone(), self.index)
    }
}
