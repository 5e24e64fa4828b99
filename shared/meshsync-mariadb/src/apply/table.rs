//! One table's share of an apply transaction: check the incoming rows, normalise their keys,
//! read and lock their states, merge (meshsync-merge), write the rows that changed, store the
//! states. The same steps as the PostgreSQL sink's.

use std::collections::{BTreeMap, HashMap, HashSet};

use meshsync_core::{BatchReport, Cell, ChangeBatch, Parked, PeerId, Value, digest};
use meshsync_merge::{
    ConflictRecord, FreshGuess, RowAction, RowInput, RowResult, StoredRow, TablePlan,
    TablePolicies, chunks_by_key, overlapped, plan_table, tally,
};
use sqlx::MySqlConnection;

use super::{
    RowWrite,
    state::{self, StateRow},
    write_rows,
};
use crate::{
    catalog::{Column, TableInfo},
    error::MariaDbError,
    flavour::Flavour,
    hlc_column,
    setup::ROW_STATE_KEY_BYTES,
    types::{MariaType, SqlValue, to_sql},
};

/// One key value as this peer's column stores it, in text: the same for the same row
/// whatever engine and types the origin has (`Int(5)` and `UInt(5)` alike, `1.50` and `1.5`
/// in a DECIMAL, a BINARY(n) value with or without its zero padding).
fn key_part(col: &Column, v: &Value) -> Result<Option<String>, String> {
    let sql = to_sql(v, col).map_err(|e| format!("key column {:?}: {e}", col.name))?;
    Ok(match sql {
        SqlValue::Null => None,
        SqlValue::Int(i) => Some(i.to_string()),
        SqlValue::UInt(u) => Some(u.to_string()),
        // 0 and -0 are one key (-0.0 + 0.0 is 0.0).
        SqlValue::Float(f) => Some(format!("{:?}", f + 0.0)),
        SqlValue::Text(s) if matches!(col.ty, MariaType::Decimal { .. }) => {
            Some(digest::normalize_decimal(&s).into_owned())
        }
        SqlValue::Text(s) => Some(s),
        SqlValue::Bytes(mut b) => {
            if let MariaType::Binary {
                fixed: true,
                max_bytes,
            } = col.ty
            {
                b.resize(
                    usize::try_from(max_bytes).unwrap_or(b.len()).max(b.len()),
                    0,
                );
            }
            Some(b.iter().map(|x| format!("{x:02x}")).collect())
        }
    })
}

/// The bytes `meshsync.row_state.pk` holds for `key` (values of `names`, the key columns):
/// JSON of the parts' text.
fn key_bytes(info: &TableInfo, names: &[String], key: &[Value]) -> Result<Vec<u8>, String> {
    let parts = names
        .iter()
        .zip(key)
        .map(|(name, v)| {
            let col = info
                .column(name)
                .ok_or_else(|| format!("no key column {name:?}"))?;
            key_part(col, v)
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Serialising strings cannot fail.
    let bytes = serde_json::to_vec(&parts).unwrap_or_default();
    if bytes.len() > ROW_STATE_KEY_BYTES {
        return Err(format!(
            "the row's key takes {} bytes encoded; meshsync.row_state keeps merge states for \
             keys of up to {ROW_STATE_KEY_BYTES} bytes: shorten the primary key of {}",
            bytes.len(),
            info.name
        ));
    }
    Ok(bytes)
}

/// Checks that every value of an incoming row fits its column here (I10).
fn check_values(info: &TableInfo, batch: &ChangeBatch, cells: &[Cell]) -> Result<(), String> {
    for (name, cell) in batch.columns.iter().zip(cells) {
        let Some(v) = cell.value() else { continue };
        let col = info
            .column(name)
            .ok_or_else(|| format!("no column {name:?}"))?;
        if col.generated {
            // Never written: MariaDB computes it.
            continue;
        }
        if v.is_null() {
            if col.not_null && cell.is_written() {
                return Err(format!(
                    "column {name:?} is NOT NULL here but the change sets it to NULL"
                ));
            }
            continue;
        }
        to_sql(v, col).map_err(|e| format!("column {name:?}: {e}"))?;
    }
    Ok(())
}

/// The write of a merged row: the whole visible row for an insert, of which an existing row
/// gets only the columns the merge changed. Key columns come from the key.
fn row_write(
    info: &TableInfo,
    key: &[Value],
    whole: BTreeMap<String, Value>,
    changed: &BTreeMap<String, Value>,
) -> RowWrite {
    let keep = |name: &String| info.column(name).is_some() && !info.key.contains(name);
    // A changed column the state no longer knows keeps its value here (as on PostgreSQL).
    let changed = changed
        .keys()
        .filter(|n| keep(n) && whole.contains_key(*n))
        .cloned()
        .collect();
    RowWrite::UpsertChanged {
        key: key.to_vec(),
        columns: whole.into_iter().filter(|(n, _)| keep(n)).collect(),
        changed,
    }
}

/// What [`apply`] did besides the reports.
pub struct Merged {
    /// The conflicts resolved.
    pub conflicts: Vec<ConflictRecord>,
    /// Whether any row of the table was written (and not refused): the transaction must
    /// then record itself in `meshsync.applied` (MySQL loop prevention, I7).
    pub wrote_rows: bool,
}

/// The incoming rows that fit this table, with their normalised keys; the others are parked.
fn check<'b>(
    info: &TableInfo,
    batches: &[&'b ChangeBatch],
    reports: &mut [BatchReport],
) -> (Vec<RowInput<'b>>, HashSet<Vec<u8>>) {
    let mut inputs: Vec<RowInput<'b>> = Vec::new();
    let mut keys: HashSet<Vec<u8>> = HashSet::new();
    for (b, batch) in batches.iter().enumerate() {
        for row in &batch.rows {
            let checked = key_bytes(info, &batch.key_columns, &row.key).and_then(|k| {
                check_values(info, batch, &row.cells)?;
                Ok(k)
            });
            match checked {
                Ok(key) => {
                    keys.insert(key.clone());
                    inputs.push(RowInput { batch: b, row, key });
                }
                Err(reason) => reports[b].parked.push(Parked {
                    row: Some(row.index),
                    reason,
                }),
            }
        }
    }
    (inputs, keys)
}

/// A merge decided against the states read, with its row writes.
struct Decided<'b> {
    plan: TablePlan<'b>,
    writes: Vec<RowWrite>,
    /// The plan row of each write.
    write_ids: Vec<usize>,
}

fn decide<'b>(
    info: &TableInfo,
    batches: &[&'b ChangeBatch],
    inputs: &[RowInput<'b>],
    stored: &HashMap<Vec<u8>, StoredRow>,
    policies: &TablePolicies,
    me: &PeerId,
) -> Decided<'b> {
    let plan = plan_table(batches, inputs, stored, policies, me);
    let (mut writes, mut write_ids) = (Vec::new(), Vec::new());
    for (id, row) in plan.rows.iter().enumerate() {
        let write = match &row.write {
            None | Some(RowAction::None) => continue,
            Some(RowAction::Delete) => RowWrite::Delete {
                key: row.key_values.to_vec(),
            },
            Some(RowAction::Insert(cols) | RowAction::Update(cols)) => {
                let whole = row.stored.state.visible().unwrap_or_default();
                row_write(info, row.key_values, whole, cols)
            }
        };
        writes.push(write);
        write_ids.push(id);
    }
    Decided {
        plan,
        writes,
        write_ids,
    }
}

impl Decided<'_> {
    /// Writes the rows; returns the server's refusals by plan row.
    async fn write(
        &self,
        conn: &mut MySqlConnection,
        flavour: Flavour,
        info: &TableInfo,
    ) -> Result<HashMap<usize, String>, MariaDbError> {
        let refused = write_rows(conn, flavour, info, &self.writes).await?;
        Ok(refused
            .into_iter()
            .filter_map(|(w, reason)| Some((*self.write_ids.get(w)?, reason)))
            .collect())
    }

    /// The states to store, new and changed, but none for keys in `failed`.
    fn states(&self, failed: &HashMap<usize, String>) -> (Vec<StateRow<'_>>, Vec<StateRow<'_>>) {
        let (mut new, mut changed) = (Vec::new(), Vec::new());
        for (id, row) in self.plan.rows.iter().enumerate() {
            if !row.state_changed || failed.contains_key(&id) {
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

    /// What became of every incoming row: parked with the reason when its key is in
    /// `failed`, else applied or superseded.
    fn results(&self, inputs: &[RowInput<'_>], failed: &HashMap<usize, String>) -> Vec<RowResult> {
        self.plan.results(inputs, |id| failed.get(&id))
    }
}

/// Distinct keys per chunk of a batch taken as new: the server writes one chunk while the
/// agent decides the next.
const FRESH_CHUNK_KEYS: usize = 1_000;

/// One chunk of a batch taken as new, done.
struct ChunkDone {
    results: Vec<RowResult>,
    conflicts: Vec<ConflictRecord>,
    /// Whether any row was written.
    wrote_rows: bool,
}

/// Merges `inputs` taking every key as new: chunk by chunk, states inserted first (adding
/// only missing ones), then rows. `None` when the guess missed: everything it wrote is
/// rolled back.
#[allow(clippy::too_many_arguments)]
async fn merge_fresh<'b>(
    conn: &mut MySqlConnection,
    flavour: Flavour,
    info: &TableInfo,
    policies: &TablePolicies,
    batches: &[&'b ChangeBatch],
    inputs: &[RowInput<'b>],
    me: &PeerId,
) -> Result<Option<Vec<ChunkDone>>, MariaDbError> {
    let tbl = info.name.to_string();
    let chunks = chunks_by_key(inputs, FRESH_CHUNK_KEYS);
    let none = HashMap::new();
    state::savepoint(conn).await?;
    let decide = |chunk: &Vec<RowInput<'b>>| {
        let decided = decide(info, batches, chunk, &none, policies, me);
        // A key whose state would not change could not prove it had none.
        let fresh = decided.plan.rows.iter().all(|r| r.state_changed);
        let new: Vec<(Vec<u8>, Vec<u8>, Option<i64>)> = decided
            .states(&HashMap::new())
            .0
            .into_iter()
            .map(|(k, s, d)| (k.to_vec(), s, d))
            .collect();
        (decided, fresh, new)
    };
    let done = overlapped(
        &chunks,
        decide,
        async |chunk: &Vec<RowInput<'b>>, (decided, fresh, new): &(Decided<'b>, bool, _)| {
            if !*fresh {
                return Ok::<_, MariaDbError>(None);
            }
            if !state::insert_new(conn, &tbl, new).await? {
                return Ok(None);
            }
            let failed = decided.write(conn, flavour, info).await?;
            if !failed.is_empty() {
                let keys: Vec<&[u8]> = failed
                    .keys()
                    .map(|id| decided.plan.rows[*id].key.as_slice())
                    .collect();
                state::forget(conn, &tbl, &keys).await?;
            }
            Ok(Some(ChunkDone {
                results: decided.results(chunk, &failed),
                conflicts: decided.plan.conflicts.clone(),
                wrote_rows: failed.len() < decided.writes.len(),
            }))
        },
    )
    .await?;
    if done.is_none() {
        state::rollback_to_savepoint(conn).await?;
    }
    Ok(done)
}

/// Merges `batches` (one table, stream order) into the database inside the open transaction.
/// `reports` has one entry per batch. When `guess` says so, the keys are taken to be new to
/// this peer and their states inserted without a read; should one exist, that insert is
/// undone and the states read.
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    conn: &mut MySqlConnection,
    flavour: Flavour,
    info: &TableInfo,
    policies: &TablePolicies,
    batches: &[&ChangeBatch],
    reports: &mut [BatchReport],
    me: &PeerId,
    guess: &mut FreshGuess,
) -> Result<Merged, MariaDbError> {
    let started = std::time::Instant::now();
    let tbl = info.name.to_string();
    let (mut inputs, keys) = check(info, batches, reports);
    if guess.try_now() {
        if let Some(done) = merge_fresh(conn, flavour, info, policies, batches, &inputs, me).await?
        {
            guess.hit();
            let (mut conflicts, mut wrote_rows) = (Vec::new(), false);
            for chunk in done {
                tally(chunk.results, reports);
                conflicts.extend(chunk.conflicts);
                wrote_rows |= chunk.wrote_rows;
            }
            tracing::debug!(
                table = %tbl,
                rows = inputs.len(),
                fresh = true,
                total = ?started.elapsed(),
                "table merged"
            );
            return Ok(Merged {
                conflicts,
                wrote_rows,
            });
        }
        guess.missed();
    }

    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
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
    let decided = decide(info, batches, &inputs, &stored.rows, policies, me);
    let failed = decided.write(conn, flavour, info).await?;
    let written = started.elapsed();
    let wrote_rows = failed.len() < decided.writes.len();
    tally(decided.results(&inputs, &failed), reports);
    let (new, changed) = decided.states(&failed);
    state::write(conn, &tbl, &new, &changed).await?;
    tracing::debug!(
        table = %tbl,
        rows = inputs.len(),
        ?read,
        ?written,
        total = ?started.elapsed(),
        "table merged"
    );
    Ok(Merged {
        conflicts: decided.plan.conflicts,
        wrote_rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Charset;

    fn col(ty: MariaType) -> Column {
        Column {
            name: "k".into(),
            ty,
            column_type: String::new(),
            not_null: true,
            required: true,
            generated: false,
        }
    }

    #[test]
    fn key_parts_are_canonical() {
        let int = col(MariaType::Int {
            bytes: 4,
            unsigned: true,
        });
        assert_eq!(
            key_part(&int, &Value::Int(5)),
            key_part(&int, &Value::UInt(5))
        );
        assert_eq!(key_part(&int, &Value::Int(5)), Ok(Some("5".into())));
        assert!(key_part(&int, &Value::Int(-1)).is_err());
        let dec = col(MariaType::Decimal {
            precision: 6,
            scale: 2,
        });
        assert_eq!(
            key_part(&dec, &Value::Decimal("1.50".into())),
            key_part(&dec, &Value::Decimal("1.5".into()))
        );
        let bin = col(MariaType::Binary {
            max_bytes: 4,
            fixed: true,
        });
        assert_eq!(
            key_part(&bin, &Value::Bytes(vec![1])),
            key_part(&bin, &Value::Bytes(vec![1, 0, 0, 0]))
        );
        assert_eq!(
            key_part(&bin, &Value::Bytes(vec![1])),
            Ok(Some("01000000".into()))
        );
        let text = col(MariaType::Text {
            charset: Charset::Utf8,
            max_chars: 10,
            max_bytes: 40,
        });
        assert_eq!(
            key_part(&text, &Value::Text("a".into())),
            Ok(Some("a".into()))
        );
        assert_ne!(
            key_part(&text, &Value::Text("a".into())),
            key_part(&text, &Value::Text("A".into()))
        );
    }
}
