//! Turning one captured transaction into change batches: one per table, split into chunks at
//! fixed row counts, so a re-capture produces the same batches with the same ids (I6).

use std::collections::HashMap;

use meshsync_core::RowImage;
use meshsync_core::{
    Cell, ChangeBatch, Hlc, Op, PeerId, RowChange, SchemaVersion, SourcePosition, TableName, TxnId,
    Value,
};

/// Most row changes in one NATS message (well under the 1 MiB default payload for rows of
/// ordinary width; a deterministic bound, never a byte count that could vary).
pub const MAX_ROWS_PER_BATCH: usize = 500;

/// What every batch of a transaction shares.
pub struct TxnHeader<'a> {
    /// This peer.
    pub origin: &'a PeerId,
    /// Database name at the origin.
    pub database: &'a str,
    /// Stamp of the transaction.
    pub hlc: Hlc,
    /// Commit position, zero-padded hex so text order is LSN order.
    pub position: SourcePosition,
    /// Transaction id.
    pub txn: TxnId,
}

/// Zero-padded hex of an LSN: sorts like the LSN, stable in message ids.
pub fn position_of(lsn: u64) -> SourcePosition {
    SourcePosition(format!("{lsn:016X}"))
}

/// The batches of one transaction, in order. `shape` finds a table's schema version and key
/// columns.
/// `counters` lists, per table, the columns merged as counters: their deltas travel along.
pub fn batches<'i>(
    header: &TxnHeader<'_>,
    rows: Vec<RowImage>,
    shape: impl Fn(&TableName) -> Option<(SchemaVersion, &'i [String])>,
    counters: &HashMap<TableName, Vec<String>>,
) -> Vec<ChangeBatch> {
    let mut out: Vec<ChangeBatch> = Vec::new();
    let mut index: u32 = 0;
    for row in rows {
        let Some((schema, key_columns)) = shape(&row.table) else {
            continue;
        };
        // A key change is a delete of the old key followed by the new row.
        let mut changes = Vec::with_capacity(2);
        if let Some(old) = &row.old_key {
            changes.push((
                Op::Delete,
                old.iter().map(|(_, v)| v.clone()).collect(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
            ));
        }
        let names: Vec<String> = row.columns.iter().map(|(n, _)| n.clone()).collect();
        let cells: Vec<Cell> = row.columns.into_iter().map(|(_, c)| c).collect();
        let deltas = counters
            .get(&row.table)
            .map(|c| deltas(row.op, &names, &cells, &row.previous, c))
            .unwrap_or_default();
        changes.push((
            row.op,
            row.key.into_iter().map(|(_, v)| v).collect(),
            names,
            cells,
            deltas,
        ));
        for (op, key, names, cells, deltas) in changes {
            let change = RowChange {
                index,
                op,
                key,
                cells,
                deltas,
            };
            index += 1;
            let fits = out.last().is_some_and(|b| {
                b.table == row.table
                    && b.rows.len() < MAX_ROWS_PER_BATCH
                    && (change.cells.is_empty() || b.columns.is_empty() || b.columns == names)
            });
            if fits {
                if let Some(b) = out.last_mut() {
                    if b.columns.is_empty() && !names.is_empty() {
                        b.columns = names;
                    }
                    b.rows.push(change);
                }
                continue;
            }
            let chunk = out.iter().filter(|b| b.table == row.table).count() as u32;
            out.push(ChangeBatch {
                origin: header.origin.clone(),
                database: header.database.to_owned(),
                table: row.table.clone(),
                hlc: header.hlc,
                position: header.position.clone(),
                txn: header.txn.clone(),
                chunk,
                schema,
                key_columns: key_columns.to_vec(),
                columns: names,
                rows: vec![change],
            });
        }
    }
    // Chunk numbers must be unique per (transaction, table) for stable message ids; they
    // are also unique per transaction here, since the id carries no table.
    for (i, b) in out.iter_mut().enumerate() {
        b.chunk = i as u32;
    }
    out
}

/// The counter deltas of one row: for each written counter column holding an integer, the new
/// value minus the one before (an insert starts from 0, as does a column that was NULL). A
/// written counter whose value before is unknown, or a difference beyond i64, travels as a
/// plain write.
fn deltas(
    op: Op,
    names: &[String],
    cells: &[Cell],
    previous: &[(String, Value)],
    counters: &[String],
) -> Vec<(u32, i64)> {
    let mut out = Vec::new();
    for (pos, (name, cell)) in names.iter().zip(cells).enumerate() {
        let (Cell::Value(Value::Int(new)), true) = (cell, counters.contains(name)) else {
            continue;
        };
        let before = match (op, previous.iter().find(|(n, _)| n == name)) {
            (Op::Insert, _) | (_, Some((_, Value::Null))) => Some(0),
            (_, Some((_, Value::Int(old)))) => Some(*old),
            _ => None,
        };
        if let Some(delta) = before.and_then(|b| new.checked_sub(b)) {
            out.push((pos as u32, delta));
        }
    }
    out
}
