//! `MariaDbSink` taking a batch's keys as new (no state read, `FreshGuess`): a known key
//! among new ones still merges against its state, and a new row the server refuses keeps no
//! state.

use meshsync_core::{ChangeBatch, Op};

use crate::sink_support::{apply, batch, change, count, dump, int, prepared, sink, tally, txt, v};

const T: &str =
    "CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(20), n INT NOT NULL, CHECK (n < 100))";
const COLS: [&str; 3] = ["id", "a", "n"];

/// Inserts of `(id, a, n)` by `origin` at `secs`.
fn insert(origin: &str, secs: u64, rows: &[(i64, &str, i64)]) -> ChangeBatch {
    let rows = rows
        .iter()
        .enumerate()
        .map(|(i, (id, a, n))| {
            change(
                i as u32,
                Op::Insert,
                *id,
                vec![v(int(*id)), v(txt(a)), v(int(*n))],
            )
        })
        .collect();
    batch(origin, secs, "t", &COLS, rows)
}

#[tokio::test]
async fn a_known_key_among_new_ones_merges_against_its_state() {
    let (m, mut c) = prepared(T).await;
    let mut s = sink(&m, &["t"]).await;
    // All new: taken as new, and right.
    let first = insert("x", 200, &[(1, "newer", 1)]);
    assert_eq!(tally(&apply(&mut s, &[&first], 1).await), (1, 0, 0));
    // Key 1 is known now, with a newer write than this batch's: taking the batch as new
    // must be found out, and key 1 keep its value.
    let second = insert("y", 100, &[(1, "older", 2), (2, "two", 2), (3, "three", 3)]);
    assert_eq!(tally(&apply(&mut s, &[&second], 2).await), (2, 1, 0));
    assert_eq!(
        dump(&mut c, "t", "id, a, n").await,
        ["1|newer|1", "2|two|2", "3|three|3"]
    );
    // Again right after the miss (read directly) and later: the same merge.
    let third = insert("y", 150, &[(1, "older", 4), (4, "four", 4)]);
    let fourth = insert("y", 160, &[(1, "older", 5), (5, "five", 5)]);
    for (b, upto) in [(&third, 3), (&fourth, 4)] {
        assert_eq!(tally(&apply(&mut s, &[b], upto).await), (1, 1, 0));
    }
    assert_eq!(
        dump(&mut c, "t", "id, a").await,
        ["1|newer", "2|two", "3|three", "4|four", "5|five"]
    );
    assert_eq!(
        count(&mut c, "SELECT COUNT(*) FROM meshsync.row_state").await,
        5
    );
}

#[tokio::test]
async fn a_new_row_the_server_refuses_keeps_no_state() {
    let (m, mut c) = prepared(T).await;
    let mut s = sink(&m, &["t"]).await;
    // Row 2 breaks the CHECK: parked, and no state recorded for it.
    let first = insert("x", 200, &[(1, "ok", 1), (2, "too big", 500)]);
    let reports = apply(&mut s, &[&first], 1).await;
    assert_eq!(tally(&reports), (1, 0, 1));
    assert!(
        reports[0].parked[0].reason.contains("refused"),
        "{:?}",
        reports[0].parked
    );
    assert_eq!(
        count(&mut c, "SELECT COUNT(*) FROM meshsync.row_state").await,
        1
    );
    // So an older, valid write of row 2 still applies (a stored state of the refused row
    // would make it lose).
    let second = insert("y", 100, &[(2, "fits", 2)]);
    assert_eq!(tally(&apply(&mut s, &[&second], 2).await), (1, 0, 0));
    assert_eq!(dump(&mut c, "t", "id, a, n").await, ["1|ok|1", "2|fits|2"]);
}

// Multi-threaded: the slices are decided on a second thread (`meshsync_merge::overlapped`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_key_in_a_later_chunk_undoes_the_chunks_before_it() {
    let (m, mut c) = prepared(T).await;
    let mut s = sink(&m, &["t"]).await;
    let first = insert("x", 200, &[(1_500, "newer", 1)]);
    assert_eq!(tally(&apply(&mut s, &[&first], 1).await), (1, 0, 0));
    // 2,000 keys, taken as new in chunks of 1,000: the known key 1,500 is in the second, so
    // the first chunk's writes must be undone before the states are read.
    let text: Vec<String> = (1..=2_000).map(|i| format!("r{i}")).collect();
    let big: Vec<(i64, &str, i64)> = (1..=2_000)
        .map(|i| (i, text[i as usize - 1].as_str(), i % 50))
        .collect();
    let second = insert("y", 100, &big);
    assert_eq!(tally(&apply(&mut s, &[&second], 2).await), (1_999, 1, 0));
    let got = dump(&mut c, "t", "id, a").await;
    assert_eq!(got.len(), 2_000);
    assert_eq!(got[1_499], "1500|newer");
    assert_eq!(got[0], "1|r1");
    assert_eq!(
        count(&mut c, "SELECT COUNT(*) FROM meshsync.row_state").await,
        2_000
    );
}

#[tokio::test]
async fn a_row_here_without_a_state_is_merged_not_doubled() {
    let (m, mut c) = prepared(T).await;
    let mut s = sink(&m, &["t"]).await;
    // Written here and not yet back from the stream: a row without a state.
    sqlx::raw_sql("INSERT INTO t VALUES (2, 'local', 7)")
        .execute(&mut c)
        .await
        .unwrap();
    let b = insert("x", 100, &[(1, "one", 1), (2, "two", 2), (3, "three", 3)]);
    assert_eq!(tally(&apply(&mut s, &[&b], 1).await), (3, 0, 0));
    assert_eq!(
        dump(&mut c, "t", "id, a, n").await,
        ["1|one|1", "2|two|2", "3|three|3"]
    );
    assert_eq!(
        count(&mut c, "SELECT COUNT(*) FROM meshsync.row_state").await,
        3
    );
}
