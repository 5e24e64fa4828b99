//! `MariaDbSink` merges: two origins in two delivery orders converge, concurrent column
//! updates both survive, counters sum, redeliveries are superseded.

use meshsync_core::{ChangeBatch, Op, TableName};
use meshsync_merge::PolicySet;

use crate::{
    sink_support::{
        apply, batch, change, dump, int, kept, prepared, sink, sink_with, states, tally, txt, v,
    },
    support::exec,
};

const T: &str = "CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(20), b INT, n BIGINT)";
const COLS: [&str; 4] = ["id", "a", "b", "n"];

/// Inserts, updates and deletes of origins `x` and `y`, racing on the same rows.
fn workload() -> Vec<ChangeBatch> {
    let row = |id, a: &str, b, n| vec![v(int(id)), v(txt(a)), v(int(b)), v(int(n))];
    vec![
        // x inserts three rows.
        batch(
            "x",
            100,
            "t",
            &COLS,
            vec![
                change(0, Op::Insert, 1, row(1, "a1", 1, 10)),
                change(1, Op::Insert, 2, row(2, "x", 2, 0)),
                change(2, Op::Insert, 3, row(3, "three", 3, 3)),
            ],
        ),
        // y (which had x's rows) updates row 1's b and deletes row 3.
        batch(
            "y",
            101,
            "t",
            &COLS,
            vec![
                change(
                    0,
                    Op::Update,
                    1,
                    vec![v(int(1)), kept(txt("a1")), v(int(5)), kept(int(10))],
                ),
                change(1, Op::Delete, 3, Vec::new()),
            ],
        ),
        // x updates row 2, and inserts row 4 it then deletes in the same transaction.
        batch(
            "x",
            102,
            "t",
            &COLS,
            vec![
                change(
                    0,
                    Op::Update,
                    2,
                    vec![kept(int(2)), v(txt("y")), kept(int(2)), kept(int(0))],
                ),
                change(1, Op::Insert, 4, row(4, "four", 4, 4)),
                change(2, Op::Delete, 4, Vec::new()),
            ],
        ),
        // y's stale update of row 3, older than its delete: it must stay deleted.
        batch(
            "y",
            99,
            "t",
            &COLS,
            vec![change(
                0,
                Op::Update,
                3,
                vec![kept(int(3)), v(txt("late")), kept(int(3)), kept(int(3))],
            )],
        ),
    ]
}

#[tokio::test]
async fn two_origins_in_two_orders_give_identical_tables_and_states() {
    let (m1, mut c1) = prepared(T).await;
    let (m2, mut c2) = prepared(T).await;
    let work = workload();
    // Peer 1: one transaction per batch, in stream order.
    let mut s1 = sink(&m1, &["t"]).await;
    for (i, b) in work.iter().enumerate() {
        let reports = apply(&mut s1, &[b], i as u64 + 1).await;
        assert_eq!(tally(&reports).2, 0, "{reports:?}");
    }
    // Peer 2: all in one transaction, in reverse order (updates before their inserts).
    let mut s2 = sink(&m2, &["t"]).await;
    let reversed: Vec<&ChangeBatch> = work.iter().rev().collect();
    let reports = apply(&mut s2, &reversed, 4).await;
    assert_eq!(tally(&reports).2, 0, "{reports:?}");

    let want = ["1|a1|5|10", "2|y|2|0"];
    assert_eq!(dump(&mut c1, "t", "id, a, b, n").await, want);
    assert_eq!(dump(&mut c2, "t", "id, a, b, n").await, want);
    let (st1, st2) = (states(&mut c1).await, states(&mut c2).await);
    assert_eq!(st1, st2);
    // Rows 3 and 4 keep tombstones; the visible rows have no deletion time.
    assert_eq!(st1.len(), 4, "{st1:?}");
    let deleted: Vec<bool> = st1.iter().map(|s| !s.ends_with("|NULL")).collect();
    assert_eq!(deleted, [false, false, true, true]);
}

#[tokio::test]
async fn concurrent_updates_of_different_columns_both_survive() {
    let (m, mut c) = prepared(T).await;
    let mut s = sink(&m, &["t"]).await;
    let base = batch(
        "x",
        100,
        "t",
        &COLS,
        vec![change(
            0,
            Op::Insert,
            1,
            vec![v(int(1)), v(txt("a0")), v(int(0)), v(int(7))],
        )],
    );
    let x_a = batch(
        "x",
        110,
        "t",
        &COLS,
        vec![change(
            0,
            Op::Update,
            1,
            vec![kept(int(1)), v(txt("a1")), kept(int(0)), kept(int(7))],
        )],
    );
    let y_b = batch(
        "y",
        105,
        "t",
        &COLS,
        vec![change(
            0,
            Op::Update,
            1,
            vec![kept(int(1)), kept(txt("a0")), v(int(1)), kept(int(7))],
        )],
    );
    // y's update first, on a peer that never saw the insert: the row appears whole.
    apply(&mut s, &[&y_b], 1).await;
    assert_eq!(dump(&mut c, "t", "id, a, b, n").await, ["1|a0|1|7"]);
    apply(&mut s, &[&x_a], 2).await;
    apply(&mut s, &[&base], 3).await;
    assert_eq!(dump(&mut c, "t", "id, a, b, n").await, ["1|a1|1|7"]);

    // A local write to `a` this peer has not merged yet (capture sends it on): a remote
    // update that changes only `b` must not overwrite it with the merged `a`.
    exec(&mut c, "UPDATE t SET a = 'local' WHERE id = 1").await;
    let y_b2 = batch(
        "y",
        120,
        "t",
        &COLS,
        vec![change(
            0,
            Op::Update,
            1,
            vec![kept(int(1)), kept(txt("a1")), v(int(2)), kept(int(7))],
        )],
    );
    apply(&mut s, &[&y_b2], 4).await;
    assert_eq!(dump(&mut c, "t", "id, a, b, n").await, ["1|local|2|7"]);
}

#[tokio::test]
async fn counter_deltas_from_two_origins_sum_once_each() {
    let (m, mut c) = prepared("CREATE TABLE t (id INT PRIMARY KEY, stock INT NOT NULL)").await;
    let mut policies = PolicySet::default();
    policies
        .set_column(&TableName::new("app", "t"), "stock", "counter")
        .unwrap();
    let mut s = sink_with(&m, &["t"], policies).await;
    let cols = ["id", "stock"];
    let with_delta = |mut ch: meshsync_core::RowChange, d| {
        ch.deltas = vec![(1, d)];
        ch
    };
    let insert = batch(
        "x",
        100,
        "t",
        &cols,
        vec![with_delta(
            change(0, Op::Insert, 1, vec![v(int(1)), v(int(10))]),
            10,
        )],
    );
    // x sells 3 and y restocks 5 at the same time, each from the 10 it saw.
    let x_sells = batch(
        "x",
        110,
        "t",
        &cols,
        vec![with_delta(
            change(0, Op::Update, 1, vec![kept(int(1)), v(int(7))]),
            -3,
        )],
    );
    let y_restocks = batch(
        "y",
        110,
        "t",
        &cols,
        vec![with_delta(
            change(0, Op::Update, 1, vec![kept(int(1)), v(int(15))]),
            5,
        )],
    );
    apply(&mut s, &[&insert, &y_restocks], 1).await;
    apply(&mut s, &[&x_sells], 2).await;
    assert_eq!(dump(&mut c, "t", "id, stock").await, ["1|12"]);
    // Redelivered deltas are counted once.
    let reports = apply(&mut s, &[&x_sells, &y_restocks, &insert], 3).await;
    assert_eq!(tally(&reports), (0, 3, 0));
    assert_eq!(dump(&mut c, "t", "id, stock").await, ["1|12"]);
}

#[tokio::test]
async fn redelivered_and_stale_batches_are_superseded() {
    let (m, mut c) = prepared(T).await;
    let mut s = sink(&m, &["t"]).await;
    let work = workload();
    let refs: Vec<&ChangeBatch> = work.iter().collect();
    let first = apply(&mut s, &refs, 4).await;
    let (applied, _, parked) = tally(&first);
    assert!(applied >= 7 && parked == 0, "{first:?}");
    let before = (dump(&mut c, "t", "id, a, b, n").await, states(&mut c).await);
    // The same batches again, in another order: nothing changes, every row superseded.
    let again: Vec<&ChangeBatch> = work.iter().rev().collect();
    let reports = apply(&mut s, &again, 4).await;
    assert_eq!(tally(&reports), (0, 9, 0), "{reports:?}");
    assert_eq!(
        (dump(&mut c, "t", "id, a, b, n").await, states(&mut c).await),
        before
    );
}
