//! Merging one incoming row change into a stored row.

use std::collections::BTreeMap;

use meshsync_core::{Cell, Change, Op, Value, Version};
use serde::{Deserialize, Serialize};

use crate::{
    config::{Resolved, TablePolicies},
    order::values_equal,
    policy::Winner,
    state::{Breakpoint, CellState, ColumnState, CounterParts, RowState},
};

/// One incoming row change, as merge sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct IncomingRow {
    /// What happened.
    pub op: Op,
    /// The change's version.
    pub version: Version,
    /// Cells: [`Cell::Value`] = written by the change; [`Cell::Kept`] = not written, held this
    /// value at the origin; [`Cell::Unchanged`] = not written, unknown. Empty for a delete.
    pub cells: Vec<(String, Cell)>,
    /// For written counter columns: the origin's new cumulative parts (see
    /// [`crate::CounterParts`]). A counter column written without parts is a plain write.
    pub counters: BTreeMap<String, CounterParts>,
}

impl IncomingRow {
    /// The merge view of a captured change (no counter parts).
    pub fn from_change(change: &Change) -> Self {
        IncomingRow {
            op: change.op,
            version: change.version(),
            cells: change.columns.clone(),
            counters: BTreeMap::new(),
        }
    }
}

/// What apply must do to the target row.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum RowAction {
    /// Nothing visible changed.
    None,
    /// The row appears: write these columns; every other table column is NULL.
    Insert(BTreeMap<String, Value>),
    /// The row stays: write these columns (a column that became unknown is `Value::Null`).
    Update(BTreeMap<String, Value>),
    /// The row disappears.
    Delete,
}

/// One resolved conflict, for the conflict stream and metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The column; `None` for the row (a delete against an insert/update).
    pub column: Option<String>,
    /// Version of the stored side.
    pub local: Version,
    /// Version of the incoming side.
    pub incoming: Version,
    /// Label of the deciding policy (`tombstone` for delete against insert/update).
    pub policy: String,
    /// Which side won.
    pub winner: Winner,
}

/// The result of [`merge_row`].
#[derive(Clone, Debug, PartialEq)]
pub struct RowMerge {
    /// The row state to store.
    pub state: RowState,
    /// What to write to the target row.
    pub action: RowAction,
    /// Conflicts resolved on the way.
    pub conflicts: Vec<Conflict>,
}

impl RowMerge {
    /// Whether the visible row changed.
    pub fn visible_changed(&self) -> bool {
        self.action != RowAction::None
    }
}

/// Merges an incoming change into a stored row (pure; `local` is not modified).
///
/// - **Delete** at `d`: the tombstone becomes `max(tombstone, d)`; every write and the insert
///   marker at or below it are dropped (I3).
/// - **Insert/update** at `v <= tombstone`: ignored (the delete is newer; a delete wins a tie).
///   Otherwise the insert marker becomes `max(live, v)`, so the row is visible again if it was
///   deleted before `v`, and each cell joins its column: under a column policy only
///   [`Cell::Value`] competes and [`Cell::Kept`] only fills a column with no live write; under
///   row-level `lww` `Kept` cells compete too, so the newest row wins with all its cells.
///   [`Cell::Unchanged`] is skipped.
///
/// Every column keeps the join of its writes newer than the tombstone (see [`ColumnState`]),
/// so any delivery order of a set of changes, with duplicates, gives one state (I4, I5).
pub fn merge_row(local: &RowState, incoming: &IncomingRow, policies: &TablePolicies) -> RowMerge {
    let (state, conflicts) = merge_state(local, incoming, policies);
    let action = diff(local.visible(), state.visible());
    RowMerge {
        state,
        action,
        conflicts,
    }
}

/// [`merge_row`] without the visible diff (apply computes what to write once per key, with
/// [`row_action`], not once per change).
pub(crate) fn merge_state(
    local: &RowState,
    incoming: &IncomingRow,
    policies: &TablePolicies,
) -> (RowState, Vec<Conflict>) {
    let mut state = local.clone();
    let mut conflicts = Vec::new();
    let v = &incoming.version;
    match incoming.op {
        Op::Delete => {
            if let Some(live) = local.live.as_ref().filter(|_| local.is_visible())
                && live.origin != v.origin
            {
                let winner = if v > live {
                    Winner::Incoming
                } else {
                    Winner::Local
                };
                conflicts.push(row_conflict(live, v, winner));
            }
            state.delete(v);
        }
        Op::Insert | Op::Update => {
            if let Some(t) = state.tombstone.as_ref().filter(|t| v <= *t) {
                if t.origin != v.origin {
                    conflicts.push(row_conflict(t, v, Winner::Local));
                }
            } else {
                if state.live.as_ref().is_none_or(|l| l < v) {
                    state.live = Some(v.clone());
                }
                for (name, cell) in &incoming.cells {
                    let resolved = policies.for_column(name);
                    let column = state.columns.entry(name.clone()).or_default();
                    match cell {
                        Cell::Value(x) => {
                            let w = cell_state(x, v, incoming.counters.get(name), resolved);
                            conflicts.extend(add_written(column, w, resolved, name));
                        }
                        Cell::Kept(x) if resolved.row_level => {
                            let w = cell_state(x, v, None, resolved);
                            conflicts.extend(add_written(column, w, resolved, name));
                        }
                        Cell::Kept(x) => {
                            let w = CellState::written(x.clone(), v.clone());
                            if column.kept.as_ref().is_none_or(|k| *k < w) {
                                column.kept = Some(w);
                            }
                        }
                        Cell::Unchanged => {}
                    }
                }
                state.columns.retain(|_, c| !c.is_empty());
            }
        }
    }
    (state, conflicts)
}

/// A row-level conflict between a delete and an insert/update.
fn row_conflict(local: &Version, incoming: &Version, winner: Winner) -> Conflict {
    Conflict {
        column: None,
        local: local.clone(),
        incoming: incoming.clone(),
        policy: "tombstone".into(),
        winner,
    }
}

/// The canonical state of one incoming write.
fn cell_state(
    value: &Value,
    v: &Version,
    parts: Option<&CounterParts>,
    resolved: &Resolved,
) -> CellState {
    resolved.policy.canonical(&CellState {
        value: Some(value.clone()),
        version: v.clone(),
        parts: parts.cloned(),
    })
}

/// Joins a write into a column's steps (see [`ColumnState`]); returns the conflict against the
/// column's current value, if any.
fn add_written(
    column: &mut ColumnState,
    w: CellState,
    resolved: &Resolved,
    name: &str,
) -> Option<Conflict> {
    let policy = &resolved.policy;
    let conflict = column.written.first().and_then(|current| {
        let kind = policy.join(&current.state, &w).conflict?;
        Some(Conflict {
            column: Some(name.to_owned()),
            local: current.state.version.clone(),
            incoming: w.version.clone(),
            policy: resolved.label.clone(),
            winner: kind.winner,
        })
    });
    let since = w.version.clone();
    // Every step at or before `since` now includes the write.
    for b in column.written.iter_mut().filter(|b| b.since <= since) {
        b.state = policy.join(&b.state, &w).state;
    }
    if let Err(at) = column.written.binary_search_by(|b| b.since.cmp(&since)) {
        let state = match column.written.get(at) {
            Some(next) => policy.join(&next.state, &w).state,
            None => w,
        };
        column.written.insert(at, Breakpoint { since, state });
    }
    // Keep only the steps where the value changes.
    let mut steps: Vec<Breakpoint> = Vec::with_capacity(column.written.len());
    for b in column.written.drain(..).rev() {
        if steps.last().is_none_or(|newer| newer.state != b.state) {
            steps.push(b);
        }
    }
    steps.reverse();
    column.written = steps;
    conflict
}

/// What apply must do to turn the table row of `before` into that of `after`.
///
/// An update lists every column whose current state changed, by version as well as by value:
/// a newer write of the same value is written too, because the table may hold a different,
/// older value that `before` does not know of (this peer's own write whose change has not come
/// back yet, which loses to the newer one).
pub fn row_action(before: &RowState, after: &RowState) -> RowAction {
    match (before.is_visible(), after.is_visible()) {
        (true, true) => {
            let mut changed: BTreeMap<String, Value> = after
                .visible_cells()
                .filter(|(name, _)| before.cell(name) != after.cell(name))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            for (name, _) in before.visible_cells() {
                if after.cell(name).and_then(|c| c.value.as_ref()).is_none() {
                    changed.entry(name.clone()).or_insert(Value::Null);
                }
            }
            if changed.is_empty() {
                RowAction::None
            } else {
                RowAction::Update(changed)
            }
        }
        (false, true) => RowAction::Insert(after.visible().unwrap_or_default()),
        (true, false) => RowAction::Delete,
        (false, false) => RowAction::None,
    }
}

/// What changed between two visible rows.
fn diff(
    before: Option<BTreeMap<String, Value>>,
    after: Option<BTreeMap<String, Value>>,
) -> RowAction {
    match (before, after) {
        (None, None) => RowAction::None,
        (None, Some(row)) => RowAction::Insert(row),
        (Some(_), None) => RowAction::Delete,
        (Some(old), Some(new)) => {
            let mut changed: BTreeMap<String, Value> = new
                .iter()
                .filter(|(k, v)| old.get(*k).is_none_or(|o| !values_equal(o, v)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for k in old.keys().filter(|k| !new.contains_key(*k)) {
                changed.insert(k.clone(), Value::Null);
            }
            if changed.is_empty() {
                RowAction::None
            } else {
                RowAction::Update(changed)
            }
        }
    }
}
