//! Targeted row merges: per-column survival, counters, deletes and resurrection (I3).

use std::collections::BTreeMap;

use meshsync_core::{Cell, Op, Value};
use meshsync_merge::{
    CounterParts, PolicyKind, RowAction, RowState, TablePolicies, Winner, merge_row,
};

use crate::support::{apply_all, change, column_lww, delete, peer, text, ver};

/// The insert both peers start from.
fn base_insert() -> meshsync_merge::IncomingRow {
    change(
        Op::Insert,
        1,
        "a",
        &[
            ("name", Cell::Value(text("n0"))),
            ("qty", Cell::Value(Value::Int(0))),
        ],
    )
}

#[test]
fn concurrent_updates_of_different_columns_both_survive() {
    let by_a = change(
        Op::Update,
        5,
        "a",
        &[
            ("name", Cell::Value(text("n1"))),
            ("qty", Cell::Kept(Value::Int(0))),
        ],
    );
    let by_b = change(
        Op::Update,
        5,
        "b",
        &[
            ("name", Cell::Kept(text("n0"))),
            ("qty", Cell::Value(Value::Int(7))),
        ],
    );
    let want = BTreeMap::from([
        ("name".to_owned(), text("n1")),
        ("qty".to_owned(), Value::Int(7)),
    ]);
    let one = apply_all(&[base_insert(), by_a.clone(), by_b.clone()], &column_lww());
    let two = apply_all(&[by_b, base_insert(), by_a], &column_lww());
    assert_eq!(one.state.visible(), Some(want));
    assert_eq!(one.state, two.state);
    // Only b's qty over a's insert is reported (different origins, different values): merge
    // cannot tell a concurrent write from a later one, so cross-origin overwrites are recorded.
    let columns: Vec<_> = one
        .conflicts
        .iter()
        .map(|c| (c.column.clone(), c.winner))
        .collect();
    assert_eq!(columns, vec![(Some("qty".to_owned()), Winner::Incoming)]);
}

#[test]
fn row_level_lww_takes_the_newest_row_whole() {
    let by_a = change(
        Op::Update,
        5,
        "a",
        &[
            ("name", Cell::Value(text("n1"))),
            ("qty", Cell::Kept(Value::Int(0))),
        ],
    );
    let by_b = change(
        Op::Update,
        5,
        "b",
        &[
            ("name", Cell::Kept(text("n0"))),
            ("qty", Cell::Value(Value::Int(7))),
        ],
    );
    let rows = TablePolicies::new(PolicyKind::Lww);
    let m = apply_all(&[base_insert(), by_a, by_b], &rows);
    let want = BTreeMap::from([
        ("name".to_owned(), text("n0")),
        ("qty".to_owned(), Value::Int(7)),
    ]);
    assert_eq!(
        m.state.visible(),
        Some(want),
        "b's (5, b) > (5, a): b's whole row"
    );
    assert_eq!(
        m.conflicts.len(),
        2,
        "a's name and qty, both replaced by b's"
    );
    assert!(
        m.conflicts
            .iter()
            .all(|c| c.winner == Winner::Incoming && c.policy == "lww")
    );
}

#[test]
fn counter_increments_from_three_origins_sum_exactly() {
    let policies =
        TablePolicies::new(PolicyKind::LwwColumn).with_column("hits", PolicyKind::Counter);
    // Each origin made two changes; parts carry its cumulative totals.
    let mut changes = Vec::new();
    for (origin, deltas) in [("a", [5i128, -2]), ("b", [10, 1]), ("c", [-4, -4])] {
        let mut mine = CounterParts::new();
        for (i, d) in deltas.into_iter().enumerate() {
            mine = mine.with_delta(&peer(origin), d);
            let mut c = change(
                Op::Update,
                2 + i as u64,
                origin,
                &[("hits", Cell::Value(Value::Int(0)))],
            );
            c.counters.insert("hits".into(), mine.clone());
            changes.push(c);
        }
    }
    let mut forward = RowState::default();
    let mut backward = RowState::default();
    for c in changes.iter().chain(&changes) {
        forward = merge_row(&forward, c, &policies).state;
    }
    for c in changes.iter().rev() {
        backward = merge_row(&backward, c, &policies).state;
    }
    let want = Some(Value::Int(5 - 2 + 10 + 1 - 4 - 4));
    assert_eq!(forward.cell("hits").and_then(|c| c.value.clone()), want);
    assert_eq!(forward, backward);
}

#[test]
fn counter_totals_saturate() {
    let a = CounterParts::new()
        .with_delta(&peer("a"), i128::from(u64::MAX))
        .with_delta(&peer("a"), 5);
    assert_eq!(
        a.get(&peer("a")).pos,
        u64::MAX,
        "a total saturates at u64::MAX"
    );
    let b = a.join(&CounterParts::new().with_delta(&peer("b"), i128::from(u64::MAX)));
    assert_eq!(
        b.total(),
        2 * i128::from(u64::MAX),
        "the exact total does not overflow"
    );
    assert_eq!(
        b.value(),
        Value::Int(i64::MAX),
        "the column value saturates"
    );
    let neg = CounterParts::new().with_delta(&peer("a"), i128::MIN);
    assert_eq!(neg.value(), Value::Int(i64::MIN));
}

#[test]
fn delete_beats_a_concurrent_older_update() {
    let update = change(Op::Update, 3, "b", &[("name", Cell::Value(text("late")))]);
    for order in [
        [base_insert(), delete(4, "a"), update.clone()],
        [base_insert(), update.clone(), delete(4, "a")],
    ] {
        let m = apply_all(&order, &column_lww());
        assert_eq!(m.state.visible(), None, "stays deleted");
        assert!(
            m.state.columns.is_empty(),
            "nothing below the tombstone is kept"
        );
    }
    let m = apply_all(&[base_insert(), delete(4, "a"), update], &column_lww());
    assert_eq!(m.action, RowAction::None);
    assert_eq!(m.conflicts.len(), 1, "the lost update is recorded");
    assert_eq!(
        (m.conflicts[0].column.clone(), m.conflicts[0].winner),
        (None, Winner::Local)
    );
}

#[test]
fn newer_update_after_delete_brings_the_row_back() {
    let update = change(
        Op::Update,
        6,
        "b",
        &[
            ("name", Cell::Value(text("back"))),
            ("qty", Cell::Kept(Value::Int(3))),
        ],
    );
    let m = apply_all(
        &[base_insert(), delete(4, "a"), update.clone()],
        &column_lww(),
    );
    let want = BTreeMap::from([
        ("name".to_owned(), text("back")),
        ("qty".to_owned(), Value::Int(3)),
    ]);
    assert_eq!(
        m.action,
        RowAction::Insert(want.clone()),
        "kept cells fill the revived row"
    );
    let other = apply_all(&[update, base_insert(), delete(4, "a")], &column_lww());
    assert_eq!(other.state, m.state);
    assert_eq!(other.state.visible(), Some(want));
}

#[test]
fn max_forgets_values_written_before_a_delete() {
    let policies = TablePolicies::new(PolicyKind::Max);
    let big = change(Op::Insert, 1, "a", &[("m", Cell::Value(Value::Int(10)))]);
    let small = change(Op::Insert, 6, "b", &[("m", Cell::Value(Value::Int(5)))]);
    let one = apply_all(&[big.clone(), small.clone(), delete(4, "c")], &policies);
    let two = apply_all(&[delete(4, "c"), small.clone(), big.clone()], &policies);
    assert_eq!(one.state, two.state);
    assert_eq!(
        one.state.cell("m").and_then(|c| c.value.clone()),
        Some(Value::Int(5))
    );
    let live = apply_all(&[big, small], &policies);
    assert_eq!(
        live.state.cell("m").and_then(|c| c.value.clone()),
        Some(Value::Int(10))
    );
    let mut compacted = live.state.clone();
    compacted.compact(&ver(9, "c"));
    assert_eq!(compacted.columns["m"].written.len(), 1);
    assert_eq!(compacted.visible(), live.state.visible());
}

#[test]
fn redelivery_changes_nothing() {
    let insert = base_insert();
    let first = apply_all(std::slice::from_ref(&insert), &column_lww());
    let again = merge_row(&first.state, &insert, &column_lww());
    assert_eq!(again.state, first.state);
    assert_eq!(again.action, RowAction::None);
    assert!(again.conflicts.is_empty());
}
