//! The merge-policy contract.

use serde::Serialize;

use crate::{order::values_equal, state::CellState};

/// How two states of one cell combine.
///
/// # Contract
///
/// `join` must make cell states a **join-semilattice**, on the states [`MergePolicy::canonical`]
/// returns, comparing states with `==` of [`CellState`] (exact, NaN equal to itself):
///
/// - **commutative**: `join(a, b).state == join(b, a).state`;
/// - **associative**: `join(join(a, b), c).state == join(a, join(b, c)).state`;
/// - **idempotent**: `join(a, a).state == a`;
/// - **canonical output**: `canonical(&join(a, b).state) == join(a, b).state`.
///
/// It must also be **deterministic across peers**: a pure function of its two arguments, with no
/// clock, randomness, locale, hash-map order or configuration that may differ between peers.
/// These laws are what makes every delivery order and every redelivery converge (I4, I5);
/// `laws::check_join_laws` (feature `laws`) tests them, and every policy should run it.
///
/// The `conflict` of [`Joined`] is reporting only: it need not be symmetric, and it never
/// changes the state. Report one when both sides carried different values and one was
/// discarded, or both were combined into a state neither side held.
///
/// Deletes are not the policy's business: the row merge drops writes at or below the row's
/// tombstone before and after joining (see [`crate::RowState`]).
pub trait MergePolicy: Send + Sync + std::fmt::Debug {
    /// Name: the config key, metric label and conflict-record field.
    fn name(&self) -> &'static str;

    /// Joins the stored state with an incoming one.
    fn join(&self, local: &CellState, incoming: &CellState) -> Joined;

    /// The canonical form of a state, as the policy stores it (e.g. a sorted JSON array for
    /// set-union, a counter's value recomputed from its parts). Row merge passes every incoming
    /// write through it before joining. The default keeps the state as it is.
    fn canonical(&self, state: &CellState) -> CellState {
        state.clone()
    }

    /// Whether [`MergePolicy::canonical`] returns every state unchanged, so that a plain
    /// insert's state can be stored without passing through it ([`crate::fresh_insert_bytes`]).
    /// `false` unless a policy says so: one that forgets cannot be stored wrongly.
    fn canonical_is_identity(&self) -> bool {
        false
    }
}

/// The result of a join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    /// The merged state.
    pub state: CellState,
    /// Set when the join resolved a conflict.
    pub conflict: Option<ConflictKind>,
}

/// Which policy resolved a conflict, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ConflictKind {
    /// [`MergePolicy::name`] of the deciding policy.
    pub policy: &'static str,
    /// Which side won.
    pub winner: Winner,
}

/// The side a conflict went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Winner {
    /// The stored state was kept; the incoming value was discarded.
    Local,
    /// The incoming state replaced the stored one.
    Incoming,
    /// Both were combined (counter, set-union).
    Combined,
}

impl Winner {
    /// Lower-case name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Winner::Local => "local",
            Winner::Incoming => "incoming",
            Winner::Combined => "combined",
        }
    }
}

/// The [`Joined`] of a policy that keeps one side whole.
///
/// A conflict is reported when both sides hold different values and came from different
/// origins (one origin's own writes are ordered by its clock and never conflict).
pub fn pick(
    policy: &'static str,
    local: &CellState,
    incoming: &CellState,
    incoming_wins: bool,
) -> Joined {
    let (state, winner) = if incoming_wins {
        (incoming.clone(), Winner::Incoming)
    } else {
        (local.clone(), Winner::Local)
    };
    let conflict = match (&local.value, &incoming.value) {
        (Some(a), Some(b))
            if !values_equal(a, b) && local.version.origin != incoming.version.origin =>
        {
            Some(ConflictKind { policy, winner })
        }
        _ => None,
    };
    Joined { state, conflict }
}

/// The [`Joined`] of a policy that combined both sides into `state`: a conflict iff the result
/// differs from both sides (neither already held the other's contribution).
pub fn combine(
    policy: &'static str,
    local: &CellState,
    incoming: &CellState,
    state: CellState,
) -> Joined {
    let conflict = (state != *local && state != *incoming).then_some(ConflictKind {
        policy,
        winner: Winner::Combined,
    });
    Joined { state, conflict }
}
