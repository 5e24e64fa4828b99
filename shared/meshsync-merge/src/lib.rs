//! The pure merge engine of meshsync: how concurrent writes to one row combine, the same way on
//! every peer, in any delivery order. No I/O, no clock, no randomness.
//!
//! - [`CellState`], [`CounterParts`], [`RowState`]: what a peer stores per cell and per row.
//! - [`MergePolicy`]: the join-semilattice contract; built-ins [`Lww`], [`Max`], [`Min`],
//!   [`Counter`], [`SetUnion`], [`OriginPriority`].
//! - [`PolicyKind`], [`PolicySet`], [`TablePolicies`]: which policy decides which column, from
//!   config strings (`lww`, `lww-column`, `max`, `min`, `counter`, `set-union`,
//!   `origin-priority:a,b,c`, or a registered custom name).
//! - [`merge_row`]: one incoming change against a stored row, with deletes (I3), giving the new
//!   state, the write for the target and the conflicts.
//! - `laws` (feature `laws`): proptest strategies and the join-law and order-independence
//!   checks (I5).
//!
//! # A custom policy
//!
//! "Longest text wins": a total order on states (text length, then the full state order, which
//! starts with the version), so taking the maximum is a join. Register it, name it in config,
//! and check its laws:
//!
//! ```
//! use std::sync::Arc;
//!
//! use meshsync_core::{TableName, Value};
//! use meshsync_merge::{CellState, Joined, MergePolicy, PolicySet, pick};
//!
//! /// The longest text wins; ties go to the newer write.
//! #[derive(Debug)]
//! struct LongestText;
//!
//! fn len(s: &CellState) -> usize {
//!     match &s.value {
//!         Some(Value::Text(t)) => t.chars().count(),
//!         _ => 0,
//!     }
//! }
//!
//! impl MergePolicy for LongestText {
//!     fn name(&self) -> &'static str {
//!         "longest-text"
//!     }
//!
//!     fn join(&self, local: &CellState, incoming: &CellState) -> Joined {
//!         let incoming_wins = (len(incoming), incoming) > (len(local), local);
//!         pick(self.name(), local, incoming, incoming_wins)
//!     }
//! }
//!
//! let mut policies = PolicySet::default();
//! policies.register_custom("longest-text", Arc::new(LongestText))?;
//! let items = TableName::parse("public.items")?;
//! policies.set_column(&items, "description", "longest-text")?;
//! assert_eq!(policies.table(&items).for_column("description").label, "longest-text");
//!
//! # #[cfg(feature = "laws")]
//! meshsync_merge::laws::check_join_laws(&LongestText, 64);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs, clippy::missing_docs_in_private_items)]

mod builtin;
mod config;
mod fresh;
mod insert;
#[cfg(feature = "laws")]
pub mod laws;
mod order;
mod plan;
mod policy;
mod row;
mod set;
mod state;
mod stored;

pub use builtin::{Counter, Lww, Max, Min, OriginPriority, SetUnion};
pub use config::{
    BUILTIN_NAMES, PolicyError, PolicyKind, PolicySet, Resolved, TablePolicies, fingerprint_of,
};
pub use fresh::{FreshGuess, RowResult, chunks_by_key, overlapped, tally};
pub use insert::{fresh_insert, fresh_insert_bytes, is_plain_insert};
pub use order::{cmp_opt_values, cmp_values, values_equal};
pub use plan::{ConflictRecord, Outcome, PlannedRow, RowInput, TablePlan, plan_table};
pub use policy::{ConflictKind, Joined, MergePolicy, Winner, combine, pick};
pub use row::{Conflict, IncomingRow, RowAction, RowMerge, merge_row, row_action};
pub use set::{canonical_array, canonical_json, union_arrays};
pub use state::{Breakpoint, CellState, ColumnState, CounterParts, PnTotals, RowState};
pub use stored::{StateError, StoredRow};
