//! Another peer's plain inserts, prepared for COPY while the message waits in apply's intake.
//!
//! Catching up, each apply transaction validated its rows, built their states and COPY text
//! (5 ms per 4,096 rows) before the first byte went to the database, and PostgreSQL sat idle
//! meanwhile: half its time in a catch-up. A [`Preparer`] does that work per message on the
//! intake's task, ahead of the transaction, so the transaction only sends what is ready.
//!
//! What is prepared is exactly what the planner would store and write for a key with no state
//! (see [`meshsync_merge::fresh_insert`]), and the database still proves the guess: states are
//! inserted without `ON CONFLICT`, so a key that has one after all fails the COPY, the
//! transaction goes back to its savepoint and the key's state is read as usual.

use std::{collections::HashMap, sync::Arc};

use meshsync_core::{ChangeBatch, PeerId, RowChange, TableName};
use meshsync_merge::{PolicySet, TablePolicies, fresh_insert, fresh_insert_bytes};

use super::{
    copy::{self, RowsCopy, StatesCopy},
    key::KeyForm,
    state,
    table::{copy_cells, key_text, null_refused},
};
use crate::{catalog::TableInfo, error::PgError};

/// Prepares messages for the plain path; cheap to clone into the intake.
#[derive(Clone)]
pub struct Preparer {
    tables: Arc<HashMap<TableName, TableInfo>>,
    policies: PolicySet,
    peer: PeerId,
}

/// One message's rows, ready to COPY: states and rows, with the keys they claim.
pub struct Prepared {
    /// Stored keys, one per row, distinct.
    pub(super) keys: Vec<Vec<u8>>,
    pub(super) states: StatesCopy,
    pub(super) rows: Vec<RowsCopy>,
}

impl Preparer {
    pub(super) fn new(
        tables: Arc<HashMap<TableName, TableInfo>>,
        policies: PolicySet,
        peer: PeerId,
    ) -> Preparer {
        Preparer {
            tables,
            policies,
            peer,
        }
    }

    /// `batch` prepared, or `None` when some row needs more than the plain path: this
    /// peer's own change, not a plain insert, a key named twice, a table or column unknown
    /// here, a value its column cannot hold. Those go through the planner, which parks or
    /// merges them.
    pub fn prepare(&self, batch: &ChangeBatch) -> Option<Prepared> {
        if batch.origin == self.peer {
            return None;
        }
        let info = self.tables.get(&batch.table)?;
        batch
            .check_shape(&info.key, |c| info.column(c).is_some())
            .ok()?;
        let policies = self.policies.table(&batch.table);
        let form = KeyForm::of(info);
        let mut out = Prepared::new(&info.name.to_string());
        for row in &batch.rows {
            let text = key_text(info, &batch.key_columns, &row.key).ok()?;
            // A value its column cannot hold fails in `push_row`, which converts every value
            // to its column's text; a NULL only the constraint refuses is caught here.
            if nulls_refused(info, batch, row) {
                return None;
            }
            let key = form.encode(&text);
            push_row(info, batch, row, &key, Some(&text), &policies, &mut out)?;
            out.keys.push(key);
        }
        distinct(out.keys.iter().map(Vec::as_slice)).then_some(out)
    }
}

/// Whether no key comes twice.
fn distinct<'k>(keys: impl Iterator<Item = &'k [u8]>) -> bool {
    let mut keys: Vec<&[u8]> = keys.collect();
    let n = keys.len();
    keys.sort_unstable();
    keys.dedup();
    keys.len() == n
}

/// Whether `row` sets a NOT NULL column to NULL.
fn nulls_refused(info: &TableInfo, batch: &ChangeBatch, row: &RowChange) -> bool {
    batch
        .columns
        .iter()
        .zip(&row.cells)
        .any(|(name, cell)| info.column(name).is_some_and(|c| null_refused(c, cell)))
}

/// Adds `row`, a plain insert of a key with no state, to `out`'s COPY data; `None` when it is
/// not one or a value does not fit its column.
pub(super) fn push_row(
    info: &TableInfo,
    batch: &ChangeBatch,
    row: &RowChange,
    key: &[u8],
    key_text: Option<&Vec<Option<String>>>,
    policies: &TablePolicies,
    out: &mut Prepared,
) -> Option<()> {
    if let Some((state, cells)) = fresh_insert_bytes(batch, row, policies) {
        copy_cells(info, key_text, cells.into_iter(), &mut out.rows).ok()?;
        out.states.push(key, &state, None);
        return Some(());
    }
    let stored = fresh_insert(batch, row, policies)?;
    copy_cells(info, key_text, stored.state.visible_cells(), &mut out.rows).ok()?;
    out.states.push(key, &stored.encode(), None);
    Some(())
}

impl Prepared {
    /// Nothing prepared yet, for table `tbl`.
    pub(super) fn new(tbl: &str) -> Prepared {
        Prepared {
            keys: Vec::new(),
            states: StatesCopy::new(tbl),
            rows: Vec::new(),
        }
    }

    /// Rows prepared.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether nothing was prepared.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The COPY data of several messages of one table together; `None` when two of them claim
/// the same key (the planner orders those).
pub(super) fn combine(tbl: &str, parts: &[&Prepared]) -> Option<(StatesCopy, Vec<RowsCopy>)> {
    if !distinct(parts.iter().flat_map(|p| p.keys.iter().map(Vec::as_slice))) {
        return None;
    }
    let mut states = StatesCopy::new(tbl);
    let mut rows: Vec<RowsCopy> = Vec::new();
    for p in parts {
        states.append(&p.states);
        for r in &p.rows {
            match rows.iter_mut().find(|g| g.columns == r.columns) {
                Some(g) => g.append(r),
                None => rows.push(r.clone()),
            }
        }
    }
    Some((states, rows))
}

/// Writes the combined COPY data of prepared messages inside the open transaction: the rows
/// copied, or `None` when the database refused them (a key had a state after all, or a row
/// broke a constraint) and the transaction went back to its savepoint.
pub(super) async fn write(
    conn: &mut sqlx::PgConnection,
    info: &TableInfo,
    states: StatesCopy,
    rows: &[RowsCopy],
) -> Result<Option<u64>, PgError> {
    state::savepoint(conn).await?;
    let mut written = match states.finish() {
        Some(states) => copy::states(conn, &states).await?,
        None => true,
    };
    for r in rows {
        written = written && copy::rows(conn, info, r).await?;
    }
    if !written {
        state::rollback_to_savepoint(conn).await?;
        return Ok(None);
    }
    Ok(Some(rows.iter().map(|r| r.len).sum()))
}
