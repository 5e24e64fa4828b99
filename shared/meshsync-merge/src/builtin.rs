//! The built-in policies. Each is a join-semilattice (see [`MergePolicy`]); the ones that keep a
//! side whole pick the maximum of a total order over states, which is always a join.

use std::cmp::Ordering;

use meshsync_core::{PeerId, Value};

use crate::{
    order::cmp_values,
    policy::{Joined, MergePolicy, combine, pick},
    set::{canonical_array, union_arrays},
    state::CellState,
};

/// Last writer wins: the higher [`meshsync_core::Version`] (HLC, then origin) wins. Equal
/// versions are the same write; should they differ anyway, the greater state (by value, then
/// parts) wins, so the result stays a join.
#[derive(Clone, Copy, Debug, Default)]
pub struct Lww;

impl MergePolicy for Lww {
    fn canonical_is_identity(&self) -> bool {
        true
    }

    fn name(&self) -> &'static str {
        "lww"
    }

    fn join(&self, local: &CellState, incoming: &CellState) -> Joined {
        pick(self.name(), local, incoming, incoming > local)
    }
}

/// Rank of a state for `max`/`min`: absent below SQL NULL below any other value, so a NULL
/// never beats a number.
fn presence(s: &CellState) -> u8 {
    match &s.value {
        None => 0,
        Some(Value::Null) => 1,
        Some(_) => 2,
    }
}

/// Compares the values of two states of the same presence (non-NULL ones by [`cmp_values`]).
fn cmp_present(a: &CellState, b: &CellState) -> Ordering {
    match (&a.value, &b.value) {
        (Some(x), Some(y)) if presence(a) == 2 => cmp_values(x, y),
        _ => Ordering::Equal,
    }
}

/// The greatest value wins ([`crate::cmp_values`] order; NULL and absent lose to any value);
/// equal values break on version, so the newest write of the winning value is kept.
#[derive(Clone, Copy, Debug, Default)]
pub struct Max;

impl MergePolicy for Max {
    fn canonical_is_identity(&self) -> bool {
        true
    }

    fn name(&self) -> &'static str {
        "max"
    }

    fn join(&self, local: &CellState, incoming: &CellState) -> Joined {
        let order = presence(incoming)
            .cmp(&presence(local))
            .then_with(|| cmp_present(incoming, local))
            .then_with(|| incoming.cmp(local));
        pick(self.name(), local, incoming, order == Ordering::Greater)
    }
}

/// The smallest value wins ([`crate::cmp_values`] order; NULL and absent lose to any value);
/// equal values break on version, so the newest write of the winning value is kept.
#[derive(Clone, Copy, Debug, Default)]
pub struct Min;

impl MergePolicy for Min {
    fn canonical_is_identity(&self) -> bool {
        true
    }

    fn name(&self) -> &'static str {
        "min"
    }

    fn join(&self, local: &CellState, incoming: &CellState) -> Joined {
        let order = presence(incoming)
            .cmp(&presence(local))
            .then_with(|| cmp_present(local, incoming))
            .then_with(|| incoming.cmp(local));
        pick(self.name(), local, incoming, order == Ordering::Greater)
    }
}

/// A PN-counter (see [`crate::CounterParts`] for how a delta travels and for overflow).
///
/// A state with parts has the value `Int(sum of parts)` and the newest version joined; two such
/// states join per origin. A state *without* parts (a write that carried no delta, e.g. a
/// snapshot row) is a plain LWW register that any state with parts supersedes: capture and
/// bootstrap should turn every counter write into a part of its origin.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counter;

impl MergePolicy for Counter {
    fn name(&self) -> &'static str {
        "counter"
    }

    fn join(&self, local: &CellState, incoming: &CellState) -> Joined {
        match (&local.parts, &incoming.parts) {
            (Some(a), Some(b)) => {
                let version = local.version.clone().max(incoming.version.clone());
                combine(
                    self.name(),
                    local,
                    incoming,
                    CellState::counter(a.join(b), version),
                )
            }
            (Some(_), None) => pick(self.name(), local, incoming, false),
            (None, Some(_)) => pick(self.name(), local, incoming, true),
            (None, None) => pick(self.name(), local, incoming, incoming > local),
        }
    }

    fn canonical(&self, state: &CellState) -> CellState {
        match &state.parts {
            Some(p) => CellState::counter(p.clone(), state.version.clone()),
            None => state.clone(),
        }
    }
}

/// Grow-only set union of JSON arrays: the union of the elements, deduplicated and sorted by
/// their canonical JSON text (object keys sorted, no spaces), so every peer writes the same
/// text; the version is the newest joined. A value that is not a JSON array (NULL, absent,
/// scalar, object, invalid) is a plain LWW register below every array. Removing an element is
/// not supported (that would need an observed-remove set).
#[derive(Clone, Copy, Debug, Default)]
pub struct SetUnion;

impl MergePolicy for SetUnion {
    fn name(&self) -> &'static str {
        "set-union"
    }

    fn join(&self, local: &CellState, incoming: &CellState) -> Joined {
        match (array_text(local), array_text(incoming)) {
            (Some(a), Some(b)) => {
                let state = CellState {
                    value: Some(Value::Json(union_arrays(a, b))),
                    version: local.version.clone().max(incoming.version.clone()),
                    parts: None,
                };
                combine(self.name(), local, incoming, state)
            }
            (Some(_), None) => pick(self.name(), local, incoming, false),
            (None, Some(_)) => pick(self.name(), local, incoming, true),
            (None, None) => pick(self.name(), local, incoming, incoming > local),
        }
    }

    fn canonical(&self, state: &CellState) -> CellState {
        let value = match &state.value {
            Some(Value::Json(text)) => match canonical_array(text) {
                Some(c) => Some(Value::Json(c)),
                None => state.value.clone(),
            },
            other => other.clone(),
        };
        CellState {
            value,
            version: state.version.clone(),
            parts: None,
        }
    }
}

/// The JSON text of a state whose value is a JSON array.
fn array_text(s: &CellState) -> Option<&str> {
    match &s.value {
        Some(Value::Json(t)) if canonical_array(t).is_some() => Some(t),
        _ => None,
    }
}

/// The write of the higher-ranked origin wins: the first listed origin ranks highest, any
/// unlisted origin below every listed one; equal ranks (the same origin, or two unlisted ones)
/// fall back to LWW.
#[derive(Clone, Debug, Default)]
pub struct OriginPriority(pub Vec<PeerId>);

impl OriginPriority {
    /// Rank of an origin: higher wins, 0 for unlisted.
    fn rank(&self, origin: &PeerId) -> usize {
        self.0
            .iter()
            .position(|p| p == origin)
            .map_or(0, |i| self.0.len() - i)
    }
}

impl MergePolicy for OriginPriority {
    fn canonical_is_identity(&self) -> bool {
        true
    }

    fn name(&self) -> &'static str {
        "origin-priority"
    }

    fn join(&self, local: &CellState, incoming: &CellState) -> Joined {
        let order = self
            .rank(&incoming.version.origin)
            .cmp(&self.rank(&local.version.origin))
            .then_with(|| incoming.cmp(local));
        pick(self.name(), local, incoming, order == Ordering::Greater)
    }
}
