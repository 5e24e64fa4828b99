//! What a peer stores per cell: value, version and, for counters, the per-origin parts.

use std::{cmp::Ordering, collections::BTreeMap};

use meshsync_core::{PeerId, Value, Version};
use serde::{Deserialize, Serialize};

use crate::order::cmp_opt_values;

/// One origin's share of a PN-counter: the cumulative sums of its increments and of its
/// decrements (magnitudes), each only ever growing while the row lives.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct PnTotals {
    /// Sum of the increments this origin made.
    pub pos: u64,
    /// Sum of the magnitudes of the decrements this origin made.
    pub neg: u64,
}

/// A PN-counter: per origin, the cumulative [`PnTotals`] of the changes made at that origin.
///
/// # Representation of a delta
///
/// Capture sees a counter column go from `old` to `new` at origin `o`: a delta `new - old`.
/// A bare delta is not idempotent, so it never travels alone: the origin adds it to its own
/// stored part ([`CounterParts::with_delta`]) and sends *its new cumulative totals* for `o`
/// (only `o`'s entry is needed; more entries are harmless). Only origin `o` ever raises `o`'s
/// entry, so the join is the per-origin, per-component maximum ([`CounterParts::join`]), a
/// join-semilattice: redelivery and reordering change nothing (I4, I5).
///
/// # Overflow
///
/// Totals **saturate** at `u64::MAX` (a saturated total stays there; the join stays a join).
/// The exact sum [`CounterParts::total`] is an `i128`, which cannot overflow for fewer than
/// 2^63 origins. The column value [`CounterParts::value`] saturates to the `i64` range.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CounterParts(pub BTreeMap<PeerId, PnTotals>);

impl CounterParts {
    /// No parts: the counter is zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parts from `(origin, pos, neg)` triples; a repeated origin keeps the per-component max.
    pub fn from_totals(totals: impl IntoIterator<Item = (PeerId, u64, u64)>) -> Self {
        let mut parts = Self::new();
        for (origin, pos, neg) in totals {
            parts = parts.join(&CounterParts(BTreeMap::from([(
                origin,
                PnTotals { pos, neg },
            )])));
        }
        parts
    }

    /// The totals of one origin (zero if it never changed the counter).
    pub fn get(&self, origin: &PeerId) -> PnTotals {
        self.0.get(origin).copied().unwrap_or_default()
    }

    /// These parts after a local change of `delta` at `origin`: the part to send for it.
    /// Saturates at `u64::MAX`.
    pub fn with_delta(&self, origin: &PeerId, delta: i128) -> Self {
        let mut out = self.clone();
        let mut t = self.get(origin);
        let magnitude = u64::try_from(delta.unsigned_abs()).unwrap_or(u64::MAX);
        if delta >= 0 {
            t.pos = t.pos.saturating_add(magnitude);
        } else {
            t.neg = t.neg.saturating_add(magnitude);
        }
        out.0.insert(origin.clone(), t);
        out
    }

    /// Per origin, the maximum of each total: the PN-counter join.
    pub fn join(&self, other: &Self) -> Self {
        let mut out = self.clone();
        for (origin, t) in &other.0 {
            let e = out.0.entry(origin.clone()).or_default();
            e.pos = e.pos.max(t.pos);
            e.neg = e.neg.max(t.neg);
        }
        out
    }

    /// The exact counter value: the sum over origins of `pos - neg`.
    pub fn total(&self) -> i128 {
        self.0
            .values()
            .map(|t| i128::from(t.pos) - i128::from(t.neg))
            .sum()
    }

    /// The column value: [`CounterParts::total`] as `Value::Int`, saturated to the `i64` range.
    pub fn value(&self) -> Value {
        let t = self
            .total()
            .clamp(i128::from(i64::MIN), i128::from(i64::MAX));
        Value::Int(i64::try_from(t).unwrap_or_default())
    }
}

/// The state of one cell as a peer stores it, and as one write of it travels.
///
/// Equality and order are *total and exact* (values by [`crate::cmp_values`], so NaN equals
/// itself): the order is (version, value with absent first, parts) and serves tie-breaks. It is
/// not a merge; merging is [`crate::MergePolicy::join`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CellState {
    /// The value; `None` = absent (never written, or deleted).
    pub value: Option<Value>,
    /// The version of the write that decided the state (for combining policies, the newest
    /// version joined).
    pub version: Version,
    /// Per-origin parts of a counter column; `None` elsewhere.
    pub parts: Option<CounterParts>,
}

impl CellState {
    /// A plain written value.
    pub fn written(value: Value, version: Version) -> Self {
        CellState {
            value: Some(value),
            version,
            parts: None,
        }
    }

    /// A counter write: `parts` are the origin's new cumulative totals (see [`CounterParts`]).
    pub fn counter(parts: CounterParts, version: Version) -> Self {
        CellState {
            value: Some(parts.value()),
            version,
            parts: Some(parts),
        }
    }
}

impl PartialEq for CellState {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for CellState {}

impl PartialOrd for CellState {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for CellState {
    fn cmp(&self, other: &Self) -> Ordering {
        self.version
            .cmp(&other.version)
            .then_with(|| cmp_opt_values(self.value.as_ref(), other.value.as_ref()))
            .then_with(|| self.parts.cmp(&other.parts))
    }
}

/// One step of a column's delete-aware history: `state` is the join of every write to the
/// column with a version `>= since` (see [`ColumnState`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breakpoint {
    /// The version of the oldest write this step covers.
    pub since: Version,
    /// Join of all writes at or after `since`.
    pub state: CellState,
}

/// One column of a stored row.
///
/// `written` holds, oldest first, the points where "join of every write newer than a future
/// tombstone" changes. A delete at `d` keeps exactly the steps with `since > d`, so the
/// column always equals the join of the writes newer than the row's tombstone, whatever the
/// delivery order (I3, I5). Under LWW it has one step; under `max`/`min`/counters it keeps
/// older steps that a later delete could uncover (see [`RowState::compact`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnState {
    /// Steps, oldest first; adjacent states differ. The current value is the first state.
    pub written: Vec<Breakpoint>,
    /// Fallback: the newest `Kept` cell (a value the column held at an origin that did not
    /// write it), used only while `written` is empty, e.g. for an update that revives a row
    /// deleted concurrently.
    pub kept: Option<CellState>,
}

impl ColumnState {
    /// The column's current state: the oldest step (the join of every live write), else the
    /// kept fallback.
    pub fn current(&self) -> Option<&CellState> {
        self.written
            .first()
            .map(|b| &b.state)
            .or(self.kept.as_ref())
    }

    /// Whether nothing is known about the column.
    pub fn is_empty(&self) -> bool {
        self.written.is_empty() && self.kept.is_none()
    }

    /// Forgets every write at or below `tombstone`.
    pub fn prune(&mut self, tombstone: &Version) {
        self.written.retain(|b| b.since > *tombstone);
        if self.kept.as_ref().is_some_and(|k| k.version <= *tombstone) {
            self.kept = None;
        }
    }
}

/// A stored row: its columns, its newest delete and its newest insert/update.
///
/// **Visibility.** A row is visible iff `live > tombstone` (`None` below every version): some
/// insert or update is newer than every delete. A delete wins a tie (same version). Every
/// part of the state at or below the tombstone is dropped, so equal change sets give equal
/// states in any order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowState {
    /// Columns with anything live, by name.
    pub columns: BTreeMap<String, ColumnState>,
    /// Version of the newest delete.
    pub tombstone: Option<Version>,
    /// Version of the newest insert or update above the tombstone (the insert marker).
    pub live: Option<Version>,
}

impl RowState {
    /// Whether the row exists.
    pub fn is_visible(&self) -> bool {
        match (&self.live, &self.tombstone) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(l), Some(t)) => l > t,
        }
    }

    /// The current state of a column, if the row is visible and the column known.
    pub fn cell(&self, column: &str) -> Option<&CellState> {
        if !self.is_visible() {
            return None;
        }
        self.columns.get(column).and_then(ColumnState::current)
    }

    /// The visible row: every known column with a value; `None` if the row does not exist.
    pub fn visible(&self) -> Option<BTreeMap<String, Value>> {
        self.is_visible().then(|| {
            self.visible_cells()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect()
        })
    }

    /// The cells of [`RowState::visible`], borrowed, in column name order (none if the row
    /// does not exist): apply reads them for every row it writes, without copying.
    pub fn visible_cells(&self) -> impl Iterator<Item = (&String, &Value)> {
        let visible = self.is_visible();
        self.columns
            .iter()
            .filter(move |_| visible)
            .filter_map(|(name, c)| Some((name, c.current()?.value.as_ref()?)))
    }

    /// Raises the tombstone to `at` and drops everything at or below it.
    pub fn delete(&mut self, at: &Version) {
        if self.tombstone.as_ref().is_some_and(|t| t >= at) {
            return;
        }
        self.tombstone = Some(at.clone());
        if self.live.as_ref().is_some_and(|l| l <= at) {
            self.live = None;
        }
        for c in self.columns.values_mut() {
            c.prune(at);
        }
        self.columns.retain(|_, c| !c.is_empty());
    }

    /// Forgets history no future delete can uncover: once every peer has delivered every change
    /// at or below `stable`, no tombstone can land at or below it, so of the steps at or below
    /// `stable` only the oldest (the current value) matters. Apply may call this with the
    /// mesh-wide low-water mark; the result is then the same on every peer.
    pub fn compact(&mut self, stable: &Version) {
        for c in self.columns.values_mut() {
            let mut first = true;
            c.written
                .retain(|b| std::mem::replace(&mut first, false) || b.since > *stable);
        }
    }
}
