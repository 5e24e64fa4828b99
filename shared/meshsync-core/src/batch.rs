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

    /// Whether the batch fits a table whose primary key is `key` and whose columns
    /// `has_column` knows; the reason to park it otherwise (it names the mismatch, never row
    /// values). The same check for every engine's apply.
    pub fn check_shape(
        &self,
        key: &[String],
        has_column: impl Fn(&str) -> bool,
    ) -> Result<(), String> {
        if self.key_columns != key {
            return Err(format!(
                "primary key of {} is ({}) here but ({}) at origin {}",
                self.table,
                key.join(", "),
                self.key_columns.join(", "),
                self.origin
            ));
        }
        if let Some(c) = self.columns.iter().find(|c| !has_column(c)) {
            return Err(format!(
                "column {c:?} of {} does not exist on this peer",
                self.table
            ));
        }
        if let Some(row) = self.rows.iter().find(|row| {
            row.key.len() != self.key_columns.len()
                || (!row.cells.is_empty() && row.cells.len() != self.columns.len())
        }) {
            return Err(format!(
                "row {} of the batch does not match its column list",
                row.index
            ));
        }
        Ok(())
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

/// The positions of `batches` grouped by table, tables in order of first appearance and
/// positions in stream order within each: apply merges one table at a time, and since a key
/// lives in one table, per-key order holds.
pub fn by_table<'b>(batches: &[&'b ChangeBatch]) -> Vec<(&'b TableName, Vec<usize>)> {
    let mut out: Vec<(&TableName, Vec<usize>)> = Vec::new();
    for (i, b) in batches.iter().enumerate() {
        match out.iter_mut().find(|(t, _)| **t == b.table) {
            Some((_, members)) => members.push(i),
            None => out.push((&b.table, vec![i])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(table: &str, key: &[&str], columns: &[&str]) -> ChangeBatch {
        ChangeBatch {
            origin: PeerId::new("a").unwrap(),
            database: "db".into(),
            table: TableName::parse(table).unwrap(),
            hlc: Hlc { time: 1, node: 1 },
            position: SourcePosition("1".into()),
            txn: TxnId("1".into()),
            chunk: 0,
            schema: SchemaVersion(1),
            key_columns: key.iter().map(|k| (*k).to_owned()).collect(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: vec![RowChange {
                index: 3,
                op: Op::Insert,
                key: vec![Value::Int(1)],
                cells: vec![Value::Int(1).into(); columns.len()],
                deltas: Vec::new(),
            }],
        }
    }

    #[test]
    fn shape_checks_name_key_column_and_row_mismatches() {
        let key = vec!["id".to_owned()];
        let known = |c: &str| c == "id" || c == "v";
        assert_eq!(
            batch("s.t", &["id"], &["id", "v"]).check_shape(&key, known),
            Ok(())
        );
        let err = batch("s.t", &["k"], &["id"])
            .check_shape(&key, known)
            .unwrap_err();
        assert!(
            err.contains("primary key of s.t is (id) here but (k)"),
            "{err}"
        );
        let err = batch("s.t", &["id"], &["id", "w"])
            .check_shape(&key, known)
            .unwrap_err();
        assert!(err.contains("column \"w\""), "{err}");
        let mut b = batch("s.t", &["id"], &["id", "v"]);
        b.rows[0].cells.pop();
        let err = b.check_shape(&key, known).unwrap_err();
        assert!(err.contains("row 3"), "{err}");
    }

    #[test]
    fn batches_group_by_table_in_order_of_first_appearance() {
        let (x1, y, x2) = (
            batch("s.x", &[], &[]),
            batch("s.y", &[], &[]),
            batch("s.x", &[], &[]),
        );
        let groups = by_table(&[&x1, &y, &x2]);
        let names: Vec<(String, Vec<usize>)> = groups
            .into_iter()
            .map(|(t, m)| (t.to_string(), m))
            .collect();
        assert_eq!(
            names,
            vec![("s.x".into(), vec![0, 2]), ("s.y".into(), vec![1])]
        );
    }
}
