//! One table's share of an apply transaction: validate the incoming rows, read their keys'
//! states, merge (meshsync-merge), write the rows that changed, store the states.

use std::collections::{HashMap, HashSet};

use meshsync_core::{Cell, ChangeBatch, PeerId, Value};
use meshsync_merge::{ConflictRecord, Outcome, RowAction, RowInput, TablePolicies, plan_table};

use super::{
    BatchReport, Parked, state,
    write::{self, RowWrite},
};
use crate::{catalog::TableInfo, error::PgError, hlc_column, types::to_sql_text};

/// The key as this peer's column types print it: the same bytes for the same row whatever
/// engine and types the origin has.
fn key_text(
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

fn key_bytes(text: &[Option<String>]) -> Vec<u8> {
    serde_json::to_vec(text).unwrap_or_default()
}

/// Checks that every value of an incoming row fits its column here (I10).
fn check_values(info: &TableInfo, batch: &ChangeBatch, cells: &[Cell]) -> Result<(), String> {
    for (name, cell) in batch.columns.iter().zip(cells) {
        let Some(v) = cell.value() else { continue };
        let col = info
            .column(name)
            .ok_or_else(|| format!("no column {name:?}"))?;
        if v.is_null() && col.not_null && cell.is_written() {
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
}

/// Merges `batches` (one table, stream order) into the database inside the open transaction.
/// `reports` has one entry per batch.
pub async fn apply(
    conn: &mut sqlx::PgConnection,
    info: &TableInfo,
    policies: &TablePolicies,
    batches: &[&ChangeBatch],
    reports: &mut [BatchReport],
    me: &PeerId,
) -> Result<TableOutcome, PgError> {
    let started = std::time::Instant::now();
    let tbl = info.name.to_string();
    let mut inputs: Vec<RowInput<'_>> = Vec::new();
    let mut key_texts: HashMap<Vec<u8>, Vec<Option<String>>> = HashMap::new();
    for (b, batch) in batches.iter().enumerate() {
        for row in &batch.rows {
            let checked = key_text(info, &batch.key_columns, &row.key).and_then(|k| {
                check_values(info, batch, &row.cells)?;
                Ok(k)
            });
            match checked {
                Ok(text) => {
                    let key = key_bytes(&text);
                    key_texts.entry(key.clone()).or_insert(text);
                    inputs.push(RowInput { batch: b, row, key });
                }
                Err(reason) => reports[b].parked.push(Parked {
                    row: Some(row.index),
                    reason,
                }),
            }
        }
    }
    // In index order: neighbouring probes touch the same index pages.
    let mut keys: Vec<&[u8]> = key_texts.keys().map(Vec::as_slice).collect();
    keys.sort_unstable();
    let checked = started.elapsed();
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

    let plan = plan_table(batches, &inputs, &stored.rows, policies, me);
    let planned = started.elapsed();
    let mut writes = Vec::new();
    for (id, row) in plan.rows.iter().enumerate() {
        let Some(action) = &row.write else { continue };
        let key = key_texts.get(&row.key).cloned().unwrap_or_default();
        let (delete, cells, changed) = match action {
            RowAction::Delete => (true, Ok(Vec::new()), Vec::new()),
            RowAction::Insert(cols) | RowAction::Update(cols) => (
                false,
                cells_text(info, row.stored.state.visible_cells()),
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
            Err(reason) => park_key(&plan.rows[id].inputs, &inputs, reports, &reason),
        }
    }
    let prepared = started.elapsed();
    let failed = write::write(conn, info, &writes).await?;
    let written = started.elapsed();
    let mut failed_keys = HashSet::new();
    for (id, reason) in failed {
        failed_keys.insert(id);
        park_key(&plan.rows[id].inputs, &inputs, reports, &reason);
    }
    let (mut new, mut changed) = (Vec::new(), Vec::new());
    for (id, row) in plan.rows.iter().enumerate() {
        if failed_keys.contains(&id) {
            continue;
        }
        for i in &row.inputs {
            match plan.outcomes[*i] {
                Outcome::Applied => reports[inputs[*i].batch].applied += 1,
                Outcome::Superseded => reports[inputs[*i].batch].superseded += 1,
            }
        }
        if row.state_changed {
            let to = if row.existed { &mut changed } else { &mut new };
            let deleted_at = match (&row.stored.state.tombstone, row.stored.state.is_visible()) {
                (Some(t), false) => Some(hlc_column::to_columns(t.hlc).0),
                _ => None,
            };
            to.push((row.key.as_slice(), row.stored.encode(), deleted_at));
        }
    }
    let encoded = started.elapsed();
    state::write(conn, &tbl, &new, &changed).await?;
    tracing::debug!(
        table = %tbl,
        rows = inputs.len(),
        ?checked,
        ?read,
        ?planned,
        ?prepared,
        ?written,
        ?encoded,
        total = ?started.elapsed(),
        "table merged"
    );
    Ok(TableOutcome {
        conflicts: plan.conflicts,
    })
}

/// The SQL text of merged column values (a value that does not fit is a parked row).
fn cells_text<'s>(
    info: &TableInfo,
    cols: impl Iterator<Item = (&'s String, &'s Value)>,
) -> Result<Vec<(String, Option<String>)>, String> {
    cols.filter(|(name, _)| info.column(name).is_some())
        .map(|(name, v)| {
            let col = info
                .column(name)
                .ok_or_else(|| format!("no column {name:?}"))?;
            let text = to_sql_text(v, &col.ty).map_err(|e| format!("column {name:?}: {e}"))?;
            Ok((name.clone(), text))
        })
        .collect()
}

/// Parks every incoming row that made one key's write.
fn park_key(members: &[usize], inputs: &[RowInput<'_>], reports: &mut [BatchReport], reason: &str) {
    for i in members {
        reports[inputs[*i].batch].parked.push(Parked {
            row: Some(inputs[*i].row.index),
            reason: reason.to_owned(),
        });
    }
}
