//! Shared helpers: versions, rows and policies in one line.

use meshsync_core::{Cell, Hlc, Op, PeerId, Value, Version};
use meshsync_merge::{IncomingRow, PolicyKind, RowMerge, RowState, TablePolicies, merge_row};

/// A peer id.
pub fn peer(id: &str) -> PeerId {
    PeerId::new(id).unwrap()
}

/// A version at `time` from `origin`.
pub fn ver(time: u64, origin: &str) -> Version {
    Version::new(Hlc { time, node: 0 }, peer(origin), 0)
}

/// A change with the given cells.
pub fn change(op: Op, time: u64, origin: &str, cells: &[(&str, Cell)]) -> IncomingRow {
    IncomingRow {
        op,
        version: ver(time, origin),
        cells: cells
            .iter()
            .map(|(n, c)| ((*n).to_owned(), c.clone()))
            .collect(),
        counters: Default::default(),
    }
}

/// A delete.
pub fn delete(time: u64, origin: &str) -> IncomingRow {
    change(Op::Delete, time, origin, &[])
}

/// A text value.
pub fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// Column-level LWW everywhere.
pub fn column_lww() -> TablePolicies {
    TablePolicies::new(PolicyKind::LwwColumn)
}

/// Applies changes in order from an empty row, returning the last merge.
pub fn apply_all(changes: &[IncomingRow], policies: &TablePolicies) -> RowMerge {
    let mut state = RowState::default();
    let mut last = None;
    for c in changes {
        let m = merge_row(&state, c, policies);
        state = m.state.clone();
        last = Some(m);
    }
    last.unwrap()
}
