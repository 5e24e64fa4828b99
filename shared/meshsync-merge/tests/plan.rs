//! `plan_table`: batches of one table merged into stored states, as apply sinks use it.

use std::collections::HashMap;

use meshsync_core::{
    Cell, ChangeBatch, Hlc, Op, RowChange, SchemaVersion, SourcePosition, TableName, TxnId, Value,
};
use meshsync_merge::{
    Outcome, PolicyKind, RowAction, RowInput, StoredRow, TablePlan, TablePolicies, plan_table,
};

use crate::support::peer;

fn batch(origin: &str, time: u64, rows: Vec<RowChange>) -> ChangeBatch {
    ChangeBatch {
        origin: peer(origin),
        database: "db".into(),
        table: TableName::parse("public.t").unwrap(),
        hlc: Hlc { time, node: 0 },
        position: SourcePosition(format!("{time:016x}")),
        txn: TxnId(time.to_string()),
        chunk: 0,
        schema: SchemaVersion(1),
        key_columns: vec!["id".into()],
        columns: vec!["id".into(), "v".into(), "n".into()],
        rows,
    }
}

fn row(index: u32, op: Op, id: i64, v: Option<&str>, n: Option<(i64, i64)>) -> RowChange {
    let cells = if op == Op::Delete {
        Vec::new()
    } else {
        vec![
            Cell::Value(Value::Int(id)),
            v.map_or(Cell::Unchanged, |v| Cell::Value(Value::Text(v.into()))),
            n.map_or(Cell::Unchanged, |(n, _)| Cell::Value(Value::Int(n))),
        ]
    };
    RowChange {
        index,
        op,
        key: vec![Value::Int(id)],
        cells,
        deltas: n.map(|(_, d)| vec![(2, d)]).unwrap_or_default(),
    }
}

fn key(id: i64) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

/// Plans `batches` against `stored` and stores the result back, as a sink would.
fn run<'b>(
    batches: &[&'b ChangeBatch],
    stored: &mut HashMap<Vec<u8>, StoredRow>,
    policies: &TablePolicies,
    me: &str,
) -> TablePlan<'b> {
    let inputs: Vec<RowInput<'b>> = batches
        .iter()
        .enumerate()
        .flat_map(|(i, b)| {
            b.rows.iter().map(move |r| RowInput {
                batch: i,
                row: r,
                key: key(int(&r.key[0])),
            })
        })
        .collect();
    let plan = plan_table(batches, &inputs, stored, policies, &peer(me));
    for r in &plan.rows {
        stored.insert(r.key.clone(), r.stored.clone());
    }
    plan
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        other => panic!("not an int: {other:?}"),
    }
}

fn lww_column() -> TablePolicies {
    TablePolicies::new(PolicyKind::LwwColumn)
}

#[test]
fn later_change_of_a_key_in_one_transaction_wins() {
    let b = batch(
        "a",
        10,
        vec![
            row(0, Op::Insert, 1, Some("first"), None),
            row(1, Op::Update, 1, Some("second"), None),
        ],
    );
    let mut stored = HashMap::new();
    let plan = run(&[&b], &mut stored, &lww_column(), "me");
    assert_eq!(plan.outcomes, vec![Outcome::Applied, Outcome::Applied]);
    let Some(RowAction::Insert(cols)) = &plan.rows[0].write else {
        panic!("expected an insert, got {:?}", plan.rows[0].write);
    };
    assert_eq!(cols.get("v"), Some(&Value::Text("second".into())));
}

#[test]
fn own_new_rows_are_recorded_not_written_and_redelivery_is_superseded() {
    let b = batch("me", 10, vec![row(0, Op::Insert, 1, Some("x"), None)]);
    let mut stored = HashMap::new();
    let plan = run(&[&b], &mut stored, &lww_column(), "me");
    assert!(plan.rows[0].write.is_none(), "own row is already there");
    assert!(plan.rows[0].state_changed);
    let again = run(&[&b], &mut stored, &lww_column(), "me");
    assert_eq!(again.outcomes, vec![Outcome::Superseded]);
    assert!(!again.rows[0].state_changed && again.rows[0].write.is_none());
    // The same change from another peer's point of view is written.
    let mut other = HashMap::new();
    let plan = run(&[&b], &mut other, &lww_column(), "you");
    assert!(matches!(plan.rows[0].write, Some(RowAction::Insert(_))));
}

#[test]
fn concurrent_updates_of_different_columns_both_survive() {
    let base = batch(
        "a",
        10,
        vec![row(0, Op::Insert, 1, Some("v0"), Some((0, 0)))],
    );
    let from_b = batch("b", 20, vec![row(0, Op::Update, 1, Some("from b"), None)]);
    let from_c = batch("c", 21, vec![row(0, Op::Update, 1, None, Some((5, 5)))]);
    let mut first = HashMap::new();
    run(&[&base, &from_b, &from_c], &mut first, &lww_column(), "x");
    let mut second = HashMap::new();
    run(&[&from_c, &base], &mut second, &lww_column(), "x");
    run(&[&from_b], &mut second, &lww_column(), "x");
    assert_eq!(first, second, "delivery order changes nothing");
    let row = first[&key(1)].state.visible().unwrap();
    assert_eq!(row.get("v"), Some(&Value::Text("from b".into())));
    assert_eq!(row.get("n"), Some(&Value::Int(5)));
}

#[test]
fn counter_deltas_add_up_once_each_in_any_order() {
    let policies = TablePolicies::new(PolicyKind::LwwColumn).with_column("n", PolicyKind::Counter);
    let base = batch(
        "a",
        10,
        vec![row(0, Op::Insert, 1, Some("c"), Some((0, 0)))],
    );
    let inc_a = batch("a", 20, vec![row(0, Op::Update, 1, None, Some((1, 1)))]);
    let inc_b = batch("b", 21, vec![row(0, Op::Update, 1, None, Some((2, 2)))]);
    let inc_c = batch("c", 22, vec![row(0, Op::Update, 1, None, Some((-3, -3)))]);
    let inc_a2 = batch("a", 30, vec![row(0, Op::Update, 1, None, Some((5, 4)))]);
    let mut one = HashMap::new();
    run(
        &[&base, &inc_a, &inc_b, &inc_c, &inc_a2],
        &mut one,
        &policies,
        "x",
    );
    let mut two = HashMap::new();
    // Other order, with every message delivered twice.
    run(&[&base, &inc_c, &inc_c], &mut two, &policies, "x");
    run(&[&inc_b, &inc_a], &mut two, &policies, "x");
    run(
        &[&inc_a, &inc_b, &inc_a2, &inc_a2],
        &mut two,
        &policies,
        "x",
    );
    assert_eq!(one, two);
    let n = one[&key(1)].state.visible().unwrap()["n"].clone();
    let (a, b, c, a2) = (1, 2, -3, 4);
    assert_eq!(n, Value::Int(a + b + c + a2), "each delta counted once");
}

#[test]
fn delete_beats_older_update_and_loses_to_newer_one() {
    let base = batch("a", 10, vec![row(0, Op::Insert, 1, Some("v"), None)]);
    let del = batch("b", 30, vec![row(0, Op::Delete, 1, None, None)]);
    let older = batch("c", 20, vec![row(0, Op::Update, 1, Some("old"), None)]);
    let mut stored = HashMap::new();
    run(&[&base, &del], &mut stored, &lww_column(), "x");
    let plan = run(&[&older], &mut stored, &lww_column(), "x");
    assert_eq!(plan.outcomes, vec![Outcome::Superseded]);
    assert!(plan.rows[0].write.is_none());
    assert!(
        plan.conflicts
            .iter()
            .any(|c| c.conflict.policy == "tombstone"),
        "the delete-vs-update conflict is reported"
    );
    let newer = batch("c", 40, vec![row(0, Op::Insert, 1, Some("back"), None)]);
    let plan = run(&[&newer], &mut stored, &lww_column(), "x");
    assert!(matches!(plan.rows[0].write, Some(RowAction::Insert(_))));
}

#[test]
fn stored_rows_round_trip_and_garbage_is_an_error() {
    let b = batch(
        "a",
        10,
        vec![row(0, Op::Insert, 1, Some("x"), Some((3, 3)))],
    );
    let policies = TablePolicies::new(PolicyKind::LwwColumn).with_column("n", PolicyKind::Counter);
    let mut stored = HashMap::new();
    run(&[&b], &mut stored, &policies, "x");
    let s = &stored[&key(1)];
    assert_eq!(&StoredRow::decode(&s.encode()).unwrap(), s);
    assert!(StoredRow::decode(b"\xc1 not msgpack").is_err());
}

#[test]
fn packed_states_are_small_and_a_newer_format_is_refused_by_name() {
    let b = batch(
        "a",
        10,
        vec![row(0, Op::Insert, 1, Some("x"), Some((3, 3)))],
    );
    let mut stored = HashMap::new();
    run(&[&b], &mut stored, &lww_column(), "x");
    let bytes = stored[&key(1)].encode();
    // One version shared by all three columns, not three copies of it.
    assert!(bytes.len() < 96, "{} bytes", bytes.len());
    let mut newer = bytes.clone();
    newer[1] = 2;
    let err = StoredRow::decode(&newer).unwrap_err().to_string();
    assert!(err.contains("format 2") && err.contains("upgrade"), "{err}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Whatever state merging produces (several versions, tombstones, kept cells, counter
    /// parts, max steps) survives the packed form unchanged.
    #[test]
    fn any_merged_state_round_trips(
        changes in proptest::collection::vec(meshsync_merge::laws::keyed_change(), 0..12)
    ) {
        let policies = TablePolicies::new(PolicyKind::LwwColumn)
            .with_column("y", PolicyKind::Counter)
            .with_column("z", PolicyKind::Max);
        let mut state = meshsync_merge::RowState::default();
        for (_, c) in &changes {
            state = meshsync_merge::merge_row(&state, c, &policies).state;
        }
        let stored = StoredRow { state, counted: Default::default() };
        proptest::prop_assert_eq!(StoredRow::decode(&stored.encode()).unwrap(), stored);
    }
}

#[test]
fn a_delete_for_a_key_without_state_still_deletes_the_row() {
    // The table may hold this peer's own row whose change has not come back yet.
    let del = batch("b", 30, vec![row(0, Op::Delete, 1, None, None)]);
    let mut stored = HashMap::new();
    let plan = run(&[&del], &mut stored, &lww_column(), "me");
    assert_eq!(plan.rows[0].write, Some(RowAction::Delete));
    // This peer's own delete is already in its table: only recorded.
    let own = batch("me", 31, vec![row(0, Op::Delete, 2, None, None)]);
    let plan = run(&[&own], &mut stored, &lww_column(), "me");
    assert_eq!(plan.rows[0].write, None);
}

#[test]
fn a_newer_write_of_the_same_value_is_still_written() {
    // The table may hold this peer's own, older, not yet recorded value of the column.
    let base = batch(
        "a",
        10,
        vec![row(0, Op::Insert, 1, Some("same"), Some((0, 0)))],
    );
    let again = batch("b", 20, vec![row(0, Op::Update, 1, Some("same"), None)]);
    let mut stored = HashMap::new();
    run(&[&base], &mut stored, &lww_column(), "me");
    let plan = run(&[&again], &mut stored, &lww_column(), "me");
    let Some(RowAction::Update(cols)) = &plan.rows[0].write else {
        panic!("expected an update, got {:?}", plan.rows[0].write);
    };
    assert!(
        cols.contains_key("v") && !cols.contains_key("n"),
        "{cols:?}"
    );
}

#[test]
fn a_newer_delete_of_an_already_deleted_row_still_deletes() {
    // Deleted here, then this peer re-inserted it locally (not recorded yet); a newer remote
    // delete must remove that row although the state was already invisible.
    let ins = batch("a", 10, vec![row(0, Op::Insert, 1, Some("x"), None)]);
    let del = batch("a", 20, vec![row(0, Op::Delete, 1, None, None)]);
    let mut stored = HashMap::new();
    run(&[&ins, &del], &mut stored, &lww_column(), "me");
    let later = batch("b", 40, vec![row(0, Op::Delete, 1, None, None)]);
    let plan = run(&[&later], &mut stored, &lww_column(), "me");
    assert_eq!(plan.rows[0].write, Some(RowAction::Delete));
    // A redelivered delete changes nothing and writes nothing.
    let again = run(&[&later], &mut stored, &lww_column(), "me");
    assert_eq!(again.rows[0].write, None);
}

#[test]
fn an_own_insert_that_lost_to_a_delete_is_deleted_again() {
    // The remote delete was applied while this peer's own older insert was being committed:
    // the apply's DELETE found no row, the insert landed, and now comes back superseded.
    let remote = batch("b", 40, vec![row(0, Op::Delete, 1, None, None)]);
    let mut stored = HashMap::new();
    let plan = run(&[&remote], &mut stored, &lww_column(), "me");
    assert_eq!(plan.rows[0].write, Some(RowAction::Delete));
    let own = batch("me", 30, vec![row(0, Op::Insert, 1, Some("late"), None)]);
    let plan = run(&[&own], &mut stored, &lww_column(), "me");
    assert_eq!(plan.outcomes, vec![Outcome::Superseded]);
    assert_eq!(plan.rows[0].write, Some(RowAction::Delete));
    assert!(
        !plan.rows[0].state_changed,
        "the state already says deleted"
    );
    // An own change that lost to a live row leaves the row to the upsert that beat it.
    let live = batch(
        "b",
        50,
        vec![row(0, Op::Insert, 1, Some("b"), Some((1, 0)))],
    );
    run(&[&live], &mut stored, &lww_column(), "me");
    let own = batch("me", 45, vec![row(0, Op::Update, 1, Some("old"), None)]);
    let plan = run(&[&own], &mut stored, &lww_column(), "me");
    assert_eq!(plan.rows[0].write, None);
}
