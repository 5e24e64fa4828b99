//! Turning one captured transaction into change batches: one per table, split into chunks at
//! fixed row counts, so a re-capture produces the same batches with the same ids (I6).

use meshsync_core::{Cell, ChangeBatch, Hlc, Op, PeerId, RowChange, SourcePosition, TxnId};
use meshsync_pg::{catalog::TableInfo, source::row::RowImage};

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

/// The batches of one transaction, in order. `info` finds a table's shape.
pub fn batches<'i>(
    header: &TxnHeader<'_>,
    rows: Vec<RowImage>,
    info: impl Fn(&meshsync_core::TableName) -> Option<&'i TableInfo>,
) -> Vec<ChangeBatch> {
    let mut out: Vec<ChangeBatch> = Vec::new();
    let mut index: u32 = 0;
    for row in rows {
        let Some(table) = info(&row.table) else {
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
            ));
        }
        let names: Vec<String> = row.columns.iter().map(|(n, _)| n.clone()).collect();
        let cells: Vec<Cell> = row.columns.into_iter().map(|(_, c)| c).collect();
        changes.push((
            row.op,
            row.key.into_iter().map(|(_, v)| v).collect(),
            names,
            cells,
        ));
        for (op, key, names, cells) in changes {
            let change = RowChange {
                index,
                op,
                key,
                cells,
                deltas: Vec::new(),
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
                schema: table.schema,
                key_columns: table.key.clone(),
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
