//! Messages prepared ahead of their transaction (`Preparer`): written as the planner would
//! write them, and proven by the database, so a key with a state, a row PostgreSQL refuses, or
//! two messages claiming one key still take the merge. What needs the merge is never prepared.

use meshsync_core::{BatchReport, Cell, ChangeBatch, Op, TableName, Value};
use meshsync_pg::apply::{PgSink, Prepared};
use meshsync_testkit::Postgres;
use sqlx::PgConnection;

use crate::sink::{T, counts, insert, rows, states, try_sink_of};

/// A server with tables `public.t` and `public.t2` (same shape), a connection and a sink of both.
async fn server() -> (Postgres, PgConnection, PgSink) {
    let pg = Postgres::start().await.unwrap();
    let mut c = pg.connect("postgres").await.unwrap();
    sqlx::raw_sql(T).execute(&mut c).await.unwrap();
    let t2 = T.replace("public.t ", "public.t2 ");
    sqlx::raw_sql(sqlx::AssertSqlSafe(t2))
        .execute(&mut c)
        .await
        .unwrap();
    let s = try_sink_of(&pg, &mut c, &["t", "t2"]).await.unwrap();
    (pg, c, s)
}

/// Prepares every batch (each must be preparable) and applies them in one committed
/// transaction.
async fn apply_prepared(
    sink: &mut PgSink,
    batches: &[&ChangeBatch],
    upto: u64,
) -> Vec<BatchReport> {
    let preparer = sink.preparer().expect("a sink that copies prepares");
    let prepared: Vec<Prepared> = batches
        .iter()
        .map(|b| preparer.prepare(b).expect("a plain insert is prepared"))
        .collect();
    let refs: Vec<Option<&Prepared>> = prepared.iter().map(Some).collect();
    let mut txn = sink.begin().await.unwrap();
    let reports = txn.apply_prepared(batches, &refs).await.unwrap();
    txn.commit(upto).await.unwrap();
    reports
}

/// Keys and states stored for `public.<table>`.
async fn stored(c: &mut PgConnection, table: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    sqlx::query_as("SELECT pk, state FROM meshsync.row_state WHERE tbl = $1 ORDER BY pk")
        .bind(format!("public.{table}"))
        .fetch_all(c)
        .await
        .unwrap()
}

/// `public.<table>` as text, row by row.
async fn texts(c: &mut PgConnection, table: &str) -> Vec<String> {
    sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(format!(
        "SELECT r::text FROM public.{table} r ORDER BY id"
    )))
    .fetch_all(c)
    .await
    .unwrap()
    .into_iter()
    .map(|(t,)| t)
    .collect()
}

#[tokio::test]
async fn prepared_rows_and_states_are_what_the_statements_store() {
    let (pg, mut c, mut s) = server().await;
    // COPY syntax in a value, a NULL, extreme keys.
    let mut batch = insert(
        "x",
        100,
        &[
            (i64::MIN, "tab\there\\N", 1),
            (0, "", 2),
            (i64::MAX, "x", 3),
        ],
    );
    batch.rows[1].cells[1] = Cell::Value(Value::Null);
    let reports = apply_prepared(&mut s, &[&batch], 1).await;
    assert_eq!(counts(&reports[0]), (3, 0, vec![]));
    assert_eq!((s.copied_rows(), s.prepared_rows()), (3, 3));
    drop(s);
    // The same rows into t2 by the planner and INSERT statements.
    let mut s = try_sink_of(&pg, &mut c, &["t", "t2"]).await.unwrap();
    s.set_copy(false);
    assert!(s.preparer().is_none(), "without COPY nothing is prepared");
    batch.table = TableName::new("public", "t2");
    let mut txn = s.begin().await.unwrap();
    let reports = txn.apply(&[&batch]).await.unwrap();
    txn.commit(2).await.unwrap();
    assert_eq!(counts(&reports[0]), (3, 0, vec![]));
    assert_eq!((s.copied_rows(), s.prepared_rows()), (0, 0));
    assert_eq!(texts(&mut c, "t").await, texts(&mut c, "t2").await);
    assert_eq!(texts(&mut c, "t").await[1], "(0,,2)");
    let prepared = stored(&mut c, "t").await;
    assert_eq!(prepared.len(), 3);
    assert_eq!(prepared, stored(&mut c, "t2").await);
}

#[tokio::test]
async fn a_prepared_key_with_a_stored_state_is_merged_against_it() {
    let (_pg, mut c, mut s) = server().await;
    let newer = insert("x", 200, &[(1, "newer", 1)]);
    assert_eq!(
        counts(&apply_prepared(&mut s, &[&newer], 1).await[0]),
        (1, 0, vec![])
    );
    // Prepared as new, but key 1 has a newer state: the database refuses the COPY and the
    // merge keeps the newer write.
    let older = insert("y", 100, &[(1, "older", 2), (2, "two", 2)]);
    assert_eq!(
        counts(&apply_prepared(&mut s, &[&older], 2).await[0]),
        (1, 1, vec![])
    );
    assert_eq!(s.prepared_rows(), 1, "the refused COPY is not counted");
    // Prepared again after the miss, and once the guess is tried again.
    for (i, secs) in [(3, 150), (4, 160), (5, 170)] {
        let b = insert("y", secs, &[(1, "older", 9), (i, "more", i)]);
        assert_eq!(
            counts(&apply_prepared(&mut s, &[&b], i as u64).await[0]),
            (1, 1, vec![])
        );
    }
    let got = rows(&mut c).await;
    assert_eq!(got[0], (1, "newer".to_owned(), 1));
    assert_eq!(got.len(), 5);
    assert_eq!(states(&mut c).await, 5);
}

#[tokio::test]
async fn a_prepared_row_postgres_refuses_is_parked_and_keeps_no_state() {
    let (_pg, mut c, mut s) = server().await;
    // n = 500 breaks the CHECK, which only the database knows.
    let b = insert("x", 200, &[(1, "ok", 1), (2, "too big", 500)]);
    let (applied, superseded, parked) = counts(&apply_prepared(&mut s, &[&b], 1).await[0]);
    assert_eq!((applied, superseded, parked.len()), (1, 0, 1));
    assert!(parked[0].contains("23514"), "{parked:?}");
    assert_eq!(states(&mut c).await, 1);
    // An older, valid write of row 2 still applies: no state of the refused row was kept.
    let older = insert("y", 100, &[(2, "fits", 2)]);
    assert_eq!(
        counts(&apply_prepared(&mut s, &[&older], 2).await[0]),
        (1, 0, vec![])
    );
    assert_eq!(
        rows(&mut c).await,
        [(1, "ok".to_owned(), 1), (2, "fits".to_owned(), 2)]
    );
}

#[tokio::test]
async fn prepared_messages_claiming_one_key_are_merged_by_version() {
    let (_pg, mut c, mut s) = server().await;
    // Two origins insert key 5 in one transaction, the newer first, then the older.
    let newer = insert("x", 200, &[(5, "newer", 1), (6, "six", 6)]);
    let older = insert("y", 100, &[(5, "older", 2), (7, "seven", 7)]);
    let reports = apply_prepared(&mut s, &[&newer, &older], 1).await;
    assert_eq!(counts(&reports[0]), (2, 0, vec![]));
    assert_eq!(counts(&reports[1]), (1, 1, vec![]));
    assert_eq!(s.prepared_rows(), 0, "taken by the merge");
    assert_eq!(
        rows(&mut c).await,
        [
            (5, "newer".to_owned(), 1),
            (6, "six".to_owned(), 6),
            (7, "seven".to_owned(), 7)
        ]
    );
    assert_eq!(states(&mut c).await, 3);
}

#[tokio::test]
async fn what_needs_the_merge_is_not_prepared() {
    let (_pg, _c, s) = server().await;
    let p = s.preparer().unwrap();
    let plain = insert("x", 100, &[(1, "a", 1), (2, "b", 2)]);
    assert_eq!(p.prepare(&plain).map(|p| p.len()), Some(2));
    // This peer's own change: its row is in the table already.
    assert!(p.prepare(&insert("me", 100, &[(1, "a", 1)])).is_none());
    // An update, a delete, a row leaving a cell unchanged.
    for change in [
        |b: &mut ChangeBatch| b.rows[1].op = Op::Update,
        |b: &mut ChangeBatch| b.rows[1].op = Op::Delete,
        |b: &mut ChangeBatch| b.rows[1].cells[1] = Cell::Unchanged,
    ] {
        let mut b = plain.clone();
        change(&mut b);
        assert!(p.prepare(&b).is_none());
    }
    // A key twice, a value its column cannot hold, NULL in a NOT NULL column.
    assert!(
        p.prepare(&insert("x", 100, &[(1, "a", 1), (1, "b", 2)]))
            .is_none()
    );
    let mut b = plain.clone();
    b.rows[0].cells[2] = Cell::Value(Value::Text("many".into()));
    assert!(p.prepare(&b).is_none());
    let mut b = plain.clone();
    b.rows[0].cells[2] = Cell::Value(Value::Null);
    assert!(p.prepare(&b).is_none());
    // A table or a column this peer does not have.
    let mut b = plain.clone();
    b.table = TableName::new("public", "elsewhere");
    assert!(p.prepare(&b).is_none());
    let mut b = plain;
    b.columns[1] = "missing".into();
    assert!(p.prepare(&b).is_none());
}
