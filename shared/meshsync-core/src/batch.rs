//! A batch of row changes that travels as one NATS message.

use serde::{Deserialize, Serialize};

use crate::{
    change::{Change, Op, SourcePosition, TxnId},
    ident::{PeerId, SchemaVersion, TableName},
    value::{Cell, Value},
    version::Version,
};
use meshsync_hlc::Hlc;

/// The changes of one source transaction to one table, or one deterministic chunk of them
/// (the same rows in the same chunks on every re-capture, so message ids stay stable: I6).
///
/// Shared fields are stored once; rows hold only what differs. All rows have the cells of
/// [`ChangeBatch::columns`] in that order (empty for deletes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeBatch {
    /// Peer where the transaction was committed.
    pub origin: PeerId,
    /// Database at the origin.
    pub database: String,
    /// The table every row belongs to.
    pub table: TableName,
    /// Stamp of the source transaction.
    pub hlc: Hlc,
    /// Commit position of the source transaction.
    pub position: SourcePosition,
    /// Source transaction id.
    pub txn: TxnId,
    /// Chunk number within (transaction, table), from 0.
    pub chunk: u32,
    /// Shape of the table at capture.
    pub schema: SchemaVersion,
    /// Primary-key column names, in key order.
    pub key_columns: Vec<String>,
    /// Column names of every row's cells, in table order.
    pub columns: Vec<String>,
    /// The row changes, in transaction order.
    pub rows: Vec<RowChange>,
}

/// One row change inside a [`ChangeBatch`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowChange {
    /// Index of the change inside its source transaction.
    pub index: u32,
    /// What happened.
    pub op: Op,
    /// Primary-key values, in the order of [`ChangeBatch::key_columns`].
    pub key: Vec<Value>,
    /// Cells in the order of [`ChangeBatch::columns`]; empty for a delete.
    pub cells: Vec<Cell>,
    /// For counter columns the change wrote: (position in [`ChangeBatch::columns`], new value
    /// minus the value before, at the origin). A counter travels as deltas, so concurrent
    /// increments add up instead of overwriting each other.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deltas: Vec<(u32, i64)>,
}

impl ChangeBatch {
    /// The version `row` of this batch writes.
    pub fn row_version(&self, row: &RowChange) -> Version {
        Version::new(self.hlc, self.origin.clone(), row.index)
    }

    /// The distinct operations present, in insert/update/delete order (`Mesh-Op`).
    pub fn ops(&self) -> Vec<Op> {
        [Op::Insert, Op::Update, Op::Delete]
            .into_iter()
            .filter(|op| self.rows.iter().any(|r| r.op == *op))
            .collect()
    }

    /// The rows as stand-alone [`Change`]s.
    pub fn changes(&self) -> impl Iterator<Item = Change> + '_ {
        self.rows.iter().map(|row| Change {
            origin: self.origin.clone(),
            database: self.database.clone(),
            table: self.table.clone(),
            op: row.op,
            key: self
                .key_columns
                .iter()
                .cloned()
                .zip(row.key.iter().cloned())
                .collect(),
            columns: if row.cells.is_empty() {
                Vec::new()
            } else {
                self.columns
                    .iter()
                    .cloned()
                    .zip(row.cells.iter().cloned())
                    .collect()
            },
            hlc: self.hlc,
            position: self.position.clone(),
            txn: self.txn.clone(),
            index: row.index,
            schema: self.schema,
        })
    }
}
