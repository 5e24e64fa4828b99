//! Merging a table's incoming batches into the stored row states, the same for every engine:
//! the apply sink reads the states of the keys involved, calls [`plan_table`], then writes
//! the planned rows and states in one transaction.

use std::collections::{BTreeMap, HashMap};

use meshsync_core::{ChangeBatch, Op, PeerId, RowChange, TableName, Value, Version};
use serde::{Deserialize, Serialize};

use crate::{
    config::TablePolicies,
    fresh::RowResult,
    insert::fresh_insert,
    row::{Conflict, IncomingRow, RowAction, merge_state, row_action},
    state::{CounterParts, RowState},
    stored::StoredRow,
};

/// One incoming row, ready to merge: which batch it came from and its key as the sink
/// normalises it (the same bytes for the same row whatever the origin's engine).
#[derive(Clone, Debug)]
pub struct RowInput<'b> {
    /// Position of the batch in the slice given to [`plan_table`].
    pub batch: usize,
    /// The row.
    pub row: &'b RowChange,
    /// Normalised key.
    pub key: Vec<u8>,
}

/// How one incoming row fared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It changed the stored state.
    Applied,
    /// It changed nothing: older than what is stored, or already applied (I4).
    Superseded,
}

/// The result for one key.
#[derive(Clone, Debug)]
pub struct PlannedRow<'b> {
    /// Normalised key.
    pub key: Vec<u8>,
    /// Key values, from the last incoming row of the key.
    pub key_values: &'b [Value],
    /// What to write to the table; `None` when the table already holds it (this peer's own
    /// write, never overwritten: only its state is recorded).
    pub write: Option<RowAction>,
    /// The state to store.
    pub stored: StoredRow,
    /// Whether `stored` differs from what was read (otherwise nothing to write at all).
    pub state_changed: bool,
    /// Whether a state was read for the key (else the sink inserts a new one).
    pub existed: bool,
    /// Positions in the input of the rows that made it.
    pub inputs: Vec<usize>,
}

/// A resolved conflict with what a person needs to read it: the row, the versions, the policy,
/// the winner and (for column conflicts) the two values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConflictRecord {
    /// The table.
    pub table: TableName,
    /// Key values.
    pub key_values: Vec<Value>,
    /// The resolution.
    pub conflict: Conflict,
    /// Value of the stored side (column conflicts only).
    pub local_value: Option<Value>,
    /// Value of the incoming side (column conflicts only).
    pub incoming_value: Option<Value>,
}

/// The merge of one table's rows.
#[derive(Clone, Debug, Default)]
pub struct TablePlan<'b> {
    /// One per distinct key, in order of first appearance.
    pub rows: Vec<PlannedRow<'b>>,
    /// One per input row.
    pub outcomes: Vec<Outcome>,
    /// Conflicts resolved on the way.
    pub conflicts: Vec<ConflictRecord>,
}

impl TablePlan<'_> {
    /// What became of every incoming row of `inputs` (the rows planned): parked with
    /// `reason(id)` when its key (plan row `id`) could not be written, else its outcome.
    pub fn results<'r>(
        &self,
        inputs: &[RowInput<'_>],
        reason: impl Fn(usize) -> Option<&'r String>,
    ) -> Vec<RowResult> {
        let mut out = Vec::with_capacity(inputs.len());
        for (id, row) in self.rows.iter().enumerate() {
            let reason = reason(id);
            for i in &row.inputs {
                let result = match reason {
                    Some(reason) => Err(reason.clone()),
                    None => Ok(self.outcomes[*i]),
                };
                out.push((inputs[*i].batch, inputs[*i].row.index, result));
            }
        }
        out
    }
}

/// Merges `inputs` (in stream order, then transaction order) of `batches` into `stored`.
/// `me` is this peer: a key with no stored state whose changes are all its own is already in
/// the table, so only its state is recorded.
pub fn plan_table<'b>(
    batches: &[&'b ChangeBatch],
    inputs: &[RowInput<'b>],
    stored: &HashMap<Vec<u8>, StoredRow>,
    policies: &TablePolicies,
    me: &PeerId,
) -> TablePlan<'b> {
    let mut plan = TablePlan {
        outcomes: vec![Outcome::Superseded; inputs.len()],
        ..TablePlan::default()
    };
    let mut by_key: HashMap<&[u8], usize> = HashMap::new();
    let mut before: Vec<Option<&StoredRow>> = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let batch = batches[input.batch];
        let slot = *by_key.entry(input.key.as_slice()).or_insert_with(|| {
            let found = stored.get(&input.key);
            before.push(found);
            plan.rows.push(PlannedRow {
                key: input.key.clone(),
                key_values: &input.row.key,
                write: None,
                stored: found.cloned().unwrap_or_default(),
                state_changed: false,
                existed: found.is_some(),
                inputs: Vec::new(),
            });
            plan.rows.len() - 1
        });
        let row = &mut plan.rows[slot];
        row.key_values = &input.row.key;
        row.inputs.push(i);
        // A key's first change with nothing stored: a plain insert's state is built directly.
        if !row.existed
            && row.inputs.len() == 1
            && let Some(state) = fresh_insert(batch, input.row, policies)
        {
            row.stored = state;
            plan.outcomes[i] = Outcome::Applied;
            continue;
        }
        let version = batch.row_version(input.row);
        let incoming = IncomingRow {
            op: input.row.op,
            version: version.clone(),
            cells: if input.row.op == Op::Delete {
                Vec::new()
            } else {
                batch
                    .columns
                    .iter()
                    .cloned()
                    .zip(input.row.cells.iter().cloned())
                    .collect()
            },
            counters: counter_parts(&mut row.stored, batch, input.row, &version),
        };
        let (merged, conflicts) = merge_state(&row.stored.state, &incoming, policies);
        for conflict in conflicts {
            let (local_value, incoming_value) = match &conflict.column {
                Some(c) => (
                    row.stored.state.cell(c).and_then(|s| s.value.clone()),
                    incoming
                        .cells
                        .iter()
                        .find(|(n, _)| n == c)
                        .and_then(|(_, cell)| cell.value().cloned()),
                ),
                None => (None, None),
            };
            plan.conflicts.push(ConflictRecord {
                table: batch.table.clone(),
                key_values: input.row.key.clone(),
                conflict,
                local_value,
                incoming_value,
            });
        }
        if merged != row.stored.state {
            plan.outcomes[i] = Outcome::Applied;
            row.stored.state = merged;
        }
    }
    for (row, before) in plan.rows.iter_mut().zip(before) {
        let empty = RowState::default();
        let old = before.map(|b| &b.state).unwrap_or(&empty);
        row.state_changed = before != Some(&row.stored);
        let own = |i: &usize| batches[inputs[*i].batch].origin == *me;
        let own_only = row.inputs.iter().all(own);
        // An own insert that lost to a delete: the insert committed while the apply
        // transaction of that delete was open, after its DELETE had found no row (READ
        // COMMITTED does not wait for rows not yet committed), so the table may hold it.
        let own_lost = row
            .inputs
            .iter()
            .any(|i| own(i) && plan.outcomes[*i] == Outcome::Superseded);
        let gone = !row.stored.state.is_visible();
        row.write = match row_action(old, &row.stored.state) {
            _ if before.is_none() && own_only => None,
            // The state says the row is gone, and a change from another peer moved it: the
            // table may still hold this peer's own row written since (not recorded yet, and
            // older than the winning delete), so delete it (deleting nothing is harmless).
            RowAction::None if gone && (row.state_changed && !own_only || own_lost) => {
                Some(RowAction::Delete)
            }
            RowAction::None => None,
            action => Some(action),
        };
    }
    plan
}

/// The cumulative counter parts of `origin` after this row's deltas, counting each delta once
/// (see [`StoredRow::counted`]).
fn counter_parts(
    stored: &mut StoredRow,
    batch: &ChangeBatch,
    row: &RowChange,
    version: &Version,
) -> BTreeMap<String, CounterParts> {
    let mut out = BTreeMap::new();
    for (pos, delta) in &row.deltas {
        let Some(column) = batch.columns.get(*pos as usize) else {
            continue;
        };
        let current = stored
            .state
            .columns
            .get(column)
            .and_then(|c| c.current())
            .and_then(|c| c.parts.clone())
            .unwrap_or_default();
        let own = CounterParts::from_totals([(
            batch.origin.clone(),
            current.get(&batch.origin).pos,
            current.get(&batch.origin).neg,
        )]);
        let counted = stored.counted.entry(column.clone()).or_default();
        let parts = if counted.get(&batch.origin).is_some_and(|v| v >= version) {
            own
        } else {
            counted.insert(batch.origin.clone(), version.clone());
            own.with_delta(&batch.origin, i128::from(*delta))
        };
        out.insert(column.clone(), parts);
    }
    out
}
