//! Keys taken as new to this peer ([`FreshGuess`](meshsync_merge::FreshGuess)): merged
//! against no state and written without reading, chunk by chunk, under a savepoint that a
//! key with a state after all rolls back (the caller then reads the states).

use std::collections::{HashMap, HashSet};

use meshsync_core::ChangeBatch;
use meshsync_merge::{
    ConflictRecord, Outcome, RowInput, RowResult, chunks_by_key, is_plain_insert, overlapped,
};

use super::{Checked, Decided, Merge, decide};
use crate::{
    apply::{
        copy::{self, RowsCopy, StatesCopy},
        plain::{self, Prepared},
        state, write,
    },
    catalog::TableInfo,
    error::PgError,
};

/// Distinct keys per chunk of a batch taken as new and not prepared ([`plain`] writes a whole
/// transaction in one COPY pair). Chunks of 500 let the agent decide one chunk while the
/// database wrote the one before, but on two busy cores that overlap no longer pays once plain
/// inserts skip the planner ([`decide_plain`]), and every COPY costs PostgreSQL its set-up and
/// up to 1,000 buffered slots: catch-up measured 135,000-148,000 rows/s at 4,096 against
/// 119,000-122,000 at 500 (2026-11-27, same runs, one chunk per 4,096-row transaction).
const FRESH_CHUNK_KEYS: usize = 4096;

/// One chunk of a batch taken as new, done: its rows' results and conflicts.
pub(super) struct ChunkDone {
    pub(super) results: Vec<RowResult>,
    pub(super) conflicts: Vec<ConflictRecord>,
    pub(super) copied: u64,
}

/// How the rows and states of keys taken as new reach the database.
enum FreshWrite {
    /// COPY: the states' binary data and the rows by column set (deletes stay statements).
    Copy {
        states: Option<Vec<u8>>,
        rows: Vec<RowsCopy>,
    },
    /// Statements: the new states, owned (a decided chunk cannot borrow from itself).
    Insert(Vec<(Vec<u8>, Vec<u8>, Option<i64>)>),
}

/// A chunk of keys taken as new, decided.
struct FreshChunk<'b> {
    /// The planner's decision; `None` for a chunk of plain inserts ([`decide_plain`]): every
    /// row applied, no conflicts, nothing but the COPYs to write.
    decided: Option<Decided<'b>>,
    /// Every key's state changes: a key whose state would not could not prove it had none.
    fresh: bool,
    write: FreshWrite,
}

/// Merges `chunk` against no states and prepares its writes.
fn decide_fresh<'b>(
    info: &TableInfo,
    batches: &[&'b ChangeBatch],
    key_texts: &HashMap<Vec<u8>, Vec<Option<String>>>,
    chunk: &[RowInput<'b>],
    merge: Merge<'_>,
    copy: bool,
) -> FreshChunk<'b> {
    if copy && let Some(plain) = decide_plain(info, batches, key_texts, chunk, merge) {
        return plain;
    }
    let none = HashMap::new();
    let mut rows: Vec<RowsCopy> = Vec::new();
    let decided = decide(
        info,
        batches,
        key_texts,
        chunk,
        &none,
        merge,
        copy.then_some(&mut rows),
    );
    let fresh = decided.plan.rows.iter().all(|r| r.state_changed);
    let (new, _) = decided.states(&HashMap::new());
    let write = if copy {
        let mut states = StatesCopy::new(&info.name.to_string());
        for (k, s, d) in new {
            states.push(k, &s, d);
        }
        FreshWrite::Copy {
            states: states.finish(),
            rows,
        }
    } else {
        FreshWrite::Insert(
            new.into_iter()
                .map(|(k, s, d)| (k.to_vec(), s, d))
                .collect(),
        )
    };
    FreshChunk {
        decided: Some(decided),
        fresh,
        write,
    }
}

/// [`decide_fresh`] without the planner, for a chunk of plain inserts of distinct keys (see
/// [`meshsync_merge::fresh_insert`]) that were not prepared ([`plain`]). `None` when a row is
/// not one, or a value does not fit its column (the planner's path parks that row).
fn decide_plain<'b>(
    info: &TableInfo,
    batches: &[&'b ChangeBatch],
    key_texts: &HashMap<Vec<u8>, Vec<Option<String>>>,
    chunk: &[RowInput<'b>],
    merge: Merge<'_>,
) -> Option<FreshChunk<'b>> {
    // Checked for the whole chunk first: a mixed chunk goes to the planner without having
    // built states for its leading plain rows. This peer's own rows are in the table
    // already: the planner records only their states.
    let mut keys = HashSet::with_capacity(chunk.len());
    let plain = chunk.iter().all(|i| {
        keys.insert(i.key.as_slice())
            && batches[i.batch].origin != *merge.me
            && is_plain_insert(i.row)
    });
    if !plain {
        return None;
    }
    let mut out = Prepared::new(&info.name.to_string());
    for input in chunk {
        let key = key_texts.get(&input.key);
        let batch = batches[input.batch];
        plain::push_row(
            info,
            batch,
            input.row,
            &input.key,
            key,
            merge.policies,
            &mut out,
        )?;
    }
    Some(FreshChunk {
        decided: None,
        fresh: true,
        write: FreshWrite::Copy {
            states: out.states.finish(),
            rows: out.rows,
        },
    })
}

/// Writes a decided chunk of keys taken as new; false when one of them was not new after all
/// (or, with COPY, a row was refused: the path that reads states finds which).
async fn write_fresh(
    conn: &mut sqlx::PgConnection,
    info: &TableInfo,
    tbl: &str,
    chunk: &FreshChunk<'_>,
) -> Result<bool, PgError> {
    match &chunk.write {
        FreshWrite::Copy { states, rows } => {
            if let Some(states) = states
                && !copy::states(conn, states).await?
            {
                return Ok(false);
            }
            for r in rows {
                if !copy::rows(conn, info, r).await? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        FreshWrite::Insert(new) => state::insert_new(conn, tbl, new).await,
    }
}

/// Merges `checked` taking every key as new: chunk by chunk, states inserted first (which
/// fails if any has one), then rows. `None` when the guess missed: everything it wrote is
/// rolled back.
pub(super) async fn merge_fresh<'b>(
    conn: &mut sqlx::PgConnection,
    info: &TableInfo,
    merge: Merge<'_>,
    batches: &[&'b ChangeBatch],
    checked: &Checked<'b>,
    copy: bool,
) -> Result<Option<Vec<ChunkDone>>, PgError> {
    let tbl = info.name.to_string();
    let chunks = chunks_by_key(&checked.inputs, FRESH_CHUNK_KEYS);
    state::savepoint(conn).await?;
    let decide = |chunk: &Vec<RowInput<'b>>| {
        decide_fresh(info, batches, &checked.key_texts, chunk, merge, copy)
    };
    let done = overlapped(
        &chunks,
        decide,
        async |chunk: &Vec<RowInput<'b>>, c: &FreshChunk<'b>| {
            if !c.fresh || !write_fresh(conn, info, &tbl, c).await? {
                return Ok(None);
            }
            let copied = match &c.write {
                FreshWrite::Copy { rows, .. } => rows.iter().map(|r| r.len).sum(),
                FreshWrite::Insert(_) => 0,
            };
            let Some(decided) = &c.decided else {
                let results = chunk
                    .iter()
                    .map(|i| (i.batch, i.row.index, Ok(Outcome::Applied)))
                    .collect();
                return Ok(Some(ChunkDone {
                    results,
                    conflicts: Vec::new(),
                    copied,
                }));
            };
            let failed: HashMap<usize, String> = write::write(conn, info, &decided.writes)
                .await?
                .into_iter()
                .collect();
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
                copied,
            }))
        },
    )
    .await?;
    if done.is_none() {
        state::rollback_to_savepoint(conn).await?;
    }
    Ok(done)
}
