//! One table's share of an apply transaction: validate the incoming rows, read their keys'
//! states, merge (meshsync-merge), write the rows that changed, store the states. Keys taken
//! as new skip the read: prepared messages ([`plain`]) or the merge against no state
//! ([`fresh`]).

use std::collections::{HashMap, HashSet};

use meshsync_core::{Cell, ChangeBatch, PeerId, Value, hlc_column};
use meshsync_merge::{
    ConflictRecord, FreshGuess, PlannedRow, RowAction, RowInput, RowResult, StoredRow, TablePlan,
    TablePolicies, plan_table, tally,
};
use tracing::debug;

mod fresh;

use fresh::merge_fresh;

use super::{
    BatchReport, Parked,
    copy::RowsCopy,
    key::KeyForm,
    plain::{self, Prepared},
    state::{self, StateRow},
    write::{self, RowWrite},
};
use crate::{
    catalog::{Column, TableInfo},
    error::PgError,
    types::to_sql_text,
};

/// The key as this peer's column types print it: the same bytes for the same row whatever
/// engine and types the origin has.
pub(super) fn key_text(
    info: &TableInfo,
    names: &[String],
    key: &[Value],
) -> Result<Vec<Option<String>>, String> {
    names
        .iter()
        .zip(key)
        .map(|(name, v)| {
            let col = info
                .column(name)
                .ok_or_else(|| format!("no key column {name:?}"))?;
            to_sql_text(v, &col.ty).map_err(|e| format!("key column {name:?}: {e}"))
        })
        .collect()
}

/// Whether `cell` writes NULL into `col`, which is NOT NULL here.
pub(super) fn null_refused(col: &Column, cell: &Cell) -> bool {
    col.not_null && cell.is_written() && cell.value().is_some_and(Value::is_null)
}

/// Checks that every value of an incoming row fits its column here (I10).
fn check_values(info: &TableInfo, batch: &ChangeBatch, cells: &[Cell]) -> Result<(), String> {
    for (name, cell) in batch.columns.iter().zip(cells) {
        let Some(v) = cell.value() else { continue };
        let col = info
            .column(name)
            .ok_or_else(|| format!("no column {name:?}"))?;
        if null_refused(col, cell) {
            return Err(format!(
                "column {name:?} is NOT NULL here but the change sets it to NULL"
            ));
        }
        to_sql_text(v, &col.ty).map_err(|e| format!("column {name:?}: {e}"))?;
    }
    Ok(())
}

/// What one table's merge produced, besides the reports.
pub struct TableOutcome {
    /// Conflicts resolved.
    pub conflicts: Vec<ConflictRecord>,
    /// Rows written with COPY.
    pub copied: u64,
    /// Of those, rows written from prepared messages.
    pub prepared: u64,
}

/// The incoming rows that fit this table, with their normalised keys; the others are parked.
struct Checked<'b> {
    /// Rows to merge, in stream order.
    inputs: Vec<RowInput<'b>>,
    /// Key values as SQL text, by normalised key.
    key_texts: HashMap<Vec<u8>, Vec<Option<String>>>,
}

fn check<'b>(
    info: &TableInfo,
    batches: &[&'b ChangeBatch],
    reports: &mut [BatchReport],
) -> Checked<'b> {
    let mut out = Checked {
        inputs: Vec::new(),
        key_texts: HashMap::new(),
    };
    let form = KeyForm::of(info);
    for (b, batch) in batches.iter().enumerate() {
        for row in &batch.rows {
            let checked = key_text(info, &batch.key_columns, &row.key).and_then(|k| {
                check_values(info, batch, &row.cells)?;
                Ok(k)
            });
            match checked {
                Ok(text) => {
                    let key = form.encode(&text);
                    out.key_texts.entry(key.clone()).or_insert(text);
                    out.inputs.push(RowInput { batch: b, row, key });
                }
                Err(reason) => reports[b].parked.push(Parked {
                    row: Some(row.index),
                    reason,
                }),
            }
        }
    }
    out
}

/// How this peer merges a table's rows.
#[derive(Clone, Copy)]
struct Merge<'a> {
    policies: &'a TablePolicies,
    me: &'a PeerId,
}

/// A merge decided against the states read: the row writes and the keys refused before
/// writing (a merged value this column cannot hold).
struct Decided<'b> {
    plan: TablePlan<'b>,
    /// Statements' rows: all of them, or only the deletes when the rows went to COPY data.
    writes: Vec<RowWrite>,
    /// Reason by plan row.
    refused: HashMap<usize, String>,
}

/// Merges `inputs` against `stored`; with `copy`, inserted and updated rows become COPY data
/// there (by column set) instead of [`RowWrite`]s.
fn decide<'b>(
    info: &TableInfo,
    batches: &[&'b ChangeBatch],
    key_texts: &HashMap<Vec<u8>, Vec<Option<String>>>,
    inputs: &[RowInput<'b>],
    stored: &HashMap<Vec<u8>, StoredRow>,
    merge: Merge<'_>,
    mut copy: Option<&mut Vec<RowsCopy>>,
) -> Decided<'b> {
    let plan = plan_table(batches, inputs, stored, merge.policies, merge.me);
    let (mut writes, mut refused) = (Vec::new(), HashMap::new());
    for (id, row) in plan.rows.iter().enumerate() {
        let Some(action) = &row.write else { continue };
        if let (Some(groups), RowAction::Insert(_) | RowAction::Update(_)) =
            (copy.as_deref_mut(), action)
        {
            if let Err(reason) = copy_row(info, key_texts, row, groups) {
                refused.insert(id, reason);
            }
            continue;
        }
        let key = key_texts.get(&row.key).cloned().unwrap_or_default();
        let (delete, cells, changed) = match action {
            RowAction::Delete => (true, Ok(Vec::new()), Vec::new()),
            RowAction::Insert(cols) | RowAction::Update(cols) => (
                false,
                cells_text(info, row.stored.state.visible_cells())
                    .map(|cells| cells.into_iter().map(|(c, t)| (c.clone(), t)).collect()),
                cols.keys().cloned().collect(),
            ),
            RowAction::None => continue,
        };
        match cells {
            Ok(cells) => writes.push(RowWrite {
                id,
                delete,
                key,
                cells,
                changed,
            }),
            Err(reason) => {
                refused.insert(id, reason);
            }
        }
    }
    Decided {
        plan,
        writes,
        refused,
    }
}

/// Adds a merged row to the COPY group of its columns; `Err` when a value does not fit.
fn copy_row(
    info: &TableInfo,
    key_texts: &HashMap<Vec<u8>, Vec<Option<String>>>,
    row: &PlannedRow<'_>,
    groups: &mut Vec<RowsCopy>,
) -> Result<(), String> {
    copy_cells(
        info,
        key_texts.get(&row.key),
        row.stored.state.visible_cells(),
        groups,
    )
}

/// Adds a row of `cells` and `key` to the COPY group of its columns; `Err` when a value does
/// not fit.
pub(super) fn copy_cells<'s>(
    info: &TableInfo,
    key: Option<&Vec<Option<String>>>,
    cells: impl Iterator<Item = (&'s String, &'s Value)>,
    groups: &mut Vec<RowsCopy>,
) -> Result<(), String> {
    let cells = cells_text(info, cells)?;
    // Key columns the cells do not carry come from the key.
    let from_key: Vec<(&String, Option<&str>)> = info
        .key
        .iter()
        .enumerate()
        .filter(|(_, k)| !cells.iter().any(|(c, _)| c == k))
        .map(|(i, k)| (k, key.and_then(|t| t.get(i)).and_then(|v| v.as_deref())))
        .collect();
    let columns = from_key
        .iter()
        .map(|(k, _)| *k)
        .chain(cells.iter().map(|(c, _)| *c));
    let group = match groups
        .iter()
        .position(|g| g.columns.iter().eq(columns.clone()))
    {
        Some(g) => g,
        None => {
            groups.push(RowsCopy::new(columns.cloned().collect()));
            groups.len() - 1
        }
    };
    let values = from_key
        .iter()
        .map(|(_, v)| *v)
        .chain(cells.iter().map(|(_, t)| t.as_deref()));
    groups[group].push(values);
    Ok(())
}

impl Decided<'_> {
    /// The states to store, new and changed, but none for keys in `refused` or `failed`.
    fn states(&self, failed: &HashMap<usize, String>) -> (Vec<StateRow<'_>>, Vec<StateRow<'_>>) {
        let (mut new, mut changed) = (Vec::new(), Vec::new());
        for (id, row) in self.plan.rows.iter().enumerate() {
            if !row.state_changed || self.refused.contains_key(&id) || failed.contains_key(&id) {
                continue;
            }
            let deleted_at = match (&row.stored.state.tombstone, row.stored.state.is_visible()) {
                (Some(t), false) => Some(hlc_column::to_columns(t.hlc).0),
                _ => None,
            };
            let to = if row.existed { &mut changed } else { &mut new };
            to.push((row.key.as_slice(), row.stored.encode(), deleted_at));
        }
        (new, changed)
    }

    /// What became of every incoming row: parked with its key's reason when refused or
    /// `failed`, else applied or superseded.
    fn results(&self, inputs: &[RowInput<'_>], failed: &HashMap<usize, String>) -> Vec<RowResult> {
        self.plan.results(inputs, |id| {
            self.refused.get(&id).or_else(|| failed.get(&id))
        })
    }
}

/// How a table's incoming keys are taken: as new (no state read) when `guess` says so, and
/// then written with COPY when `copy`, from `prepared` when every batch has been.
pub struct NewKeys<'g> {
    pub guess: &'g mut FreshGuess,
    pub copy: bool,
    /// Per batch, in order, when all were prepared ([`plain`]).
    pub prepared: Option<Vec<&'g Prepared>>,
}

/// Merges `batches` (one table, stream order) into the database inside the open transaction.
/// `reports` has one entry per batch. When `guess` says so, the keys are taken to be new to
/// this peer and their states inserted without a read; should one exist, that insert is
/// undone and the states read.
pub async fn apply(
    conn: &mut sqlx::PgConnection,
    info: &TableInfo,
    policies: &TablePolicies,
    batches: &[&ChangeBatch],
    reports: &mut [BatchReport],
    me: &PeerId,
    new_keys: NewKeys<'_>,
) -> Result<TableOutcome, PgError> {
    let NewKeys {
        guess,
        copy,
        prepared,
    } = new_keys;
    let started = std::time::Instant::now();
    let tbl = info.name.to_string();
    let merge = Merge { policies, me };
    let mut guessing = guess.try_now();
    let combined = prepared
        .filter(|_| guessing && copy)
        .and_then(|p| plain::combine(&tbl, &p));
    if let Some((states, rows)) = combined {
        if let Some(copied) = plain::write(conn, info, states, &rows).await? {
            guess.hit();
            for (batch, report) in batches.iter().zip(reports.iter_mut()) {
                report.applied += batch.rows.len();
            }
            debug!(
                table = %tbl,
                rows = copied,
                prepared = true,
                total = ?started.elapsed(),
                "table merged"
            );
            return Ok(TableOutcome {
                conflicts: Vec::new(),
                copied,
                prepared: copied,
            });
        }
        // Taking them as new again would meet the same refusal.
        guess.missed();
        guessing = false;
    }
    let checked = check(info, batches, reports);
    if guessing {
        if let Some(done) = merge_fresh(conn, info, merge, batches, &checked, copy).await? {
            guess.hit();
            let (mut conflicts, mut copied) = (Vec::new(), 0);
            for chunk in done {
                tally(chunk.results, reports);
                conflicts.extend(chunk.conflicts);
                copied += chunk.copied;
            }
            debug!(
                table = %tbl,
                rows = checked.inputs.len(),
                fresh = true,
                total = ?started.elapsed(),
                "table merged"
            );
            return Ok(TableOutcome {
                conflicts,
                copied,
                prepared: 0,
            });
        }
        guess.missed();
    }

    // In index order: neighbouring probes touch the same index pages.
    let Checked {
        mut inputs,
        key_texts,
    } = checked;
    let mut keys: Vec<&[u8]> = key_texts.keys().map(Vec::as_slice).collect();
    keys.sort_unstable();
    let stored = state::read(conn, &tbl, &keys).await?;
    let read = started.elapsed();
    let unreadable: HashSet<&[u8]> = stored.unreadable.iter().map(Vec::as_slice).collect();
    inputs.retain(|i| {
        let bad = unreadable.contains(i.key.as_slice());
        if bad {
            reports[i.batch].parked.push(Parked {
                row: Some(i.row.index),
                reason: format!(
                    "the stored merge state of this row of {tbl} is unreadable (written by a \
                     newer meshsync?); upgrade this peer"
                ),
            });
        }
        !bad
    });
    let decided = decide(
        info,
        batches,
        &key_texts,
        &inputs,
        &stored.rows,
        merge,
        None,
    );
    let failed: HashMap<usize, String> = write::write(conn, info, &decided.writes)
        .await?
        .into_iter()
        .collect();
    let written = started.elapsed();
    tally(decided.results(&inputs, &failed), reports);
    let (new, changed) = decided.states(&failed);
    state::write(conn, &tbl, &new, &changed).await?;
    debug!(
        table = %tbl,
        rows = inputs.len(),
        ?read,
        ?written,
        total = ?started.elapsed(),
        "table merged"
    );
    Ok(TableOutcome {
        conflicts: decided.plan.conflicts,
        copied: 0,
        prepared: 0,
    })
}

/// The SQL text of merged column values, of the columns this table has (a value that does
/// not fit is a parked row).
fn cells_text<'s>(
    info: &TableInfo,
    cols: impl Iterator<Item = (&'s String, &'s Value)>,
) -> Result<Vec<(&'s String, Option<String>)>, String> {
    cols.filter_map(|(name, v)| info.column(name).map(|col| (name, v, col)))
        .map(|(name, v, col)| {
            let text = to_sql_text(v, &col.ty).map_err(|e| format!("column {name:?}: {e}"))?;
            Ok((name, text))
        })
        .collect()
}
