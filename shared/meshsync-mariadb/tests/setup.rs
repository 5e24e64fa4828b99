//! `setup::prepare`: the `meshsync` database, idempotent and serialised.

use std::time::Duration;

use meshsync_mariadb::setup::{self, SETUP_LOCK};

use crate::support::{exec, rows, scalar, server};

#[tokio::test]
async fn prepare_twice_creates_the_innodb_tables_once() {
    let m = server("app").await;
    let mut c = m.connect("app").await.unwrap();
    setup::prepare(&mut c).await.unwrap();
    exec(
        &mut c,
        "INSERT INTO meshsync.checkpoint VALUES ('apply_a', 42)",
    )
    .await;
    setup::prepare(&mut c).await.unwrap();
    // The second run kept what the first created, data included.
    assert_eq!(
        scalar(
            &mut c,
            "SELECT CAST(stream_seq AS CHAR) FROM meshsync.checkpoint"
        )
        .await,
        Some("42".into())
    );
    let tables = rows(
        &mut c,
        "SELECT CAST(TABLE_NAME AS CHAR), CAST(ENGINE AS CHAR) FROM information_schema.TABLES
         WHERE TABLE_SCHEMA = 'meshsync' ORDER BY TABLE_NAME",
    )
    .await;
    let want = |t: &str| vec![Some(t.to_owned()), Some("InnoDB".to_owned())];
    assert_eq!(
        tables,
        [
            want("applied"),
            want("capture_state"),
            want("checkpoint"),
            want("row_state")
        ]
    );
    let columns = rows(
        &mut c,
        "SELECT CAST(CONCAT(TABLE_NAME, '.', COLUMN_NAME, ' ', COLUMN_TYPE, ' ', IS_NULLABLE,
                            ' ', COLUMN_KEY) AS CHAR)
         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'meshsync'
         ORDER BY TABLE_NAME, ORDINAL_POSITION",
    )
    .await;
    let columns: Vec<String> = columns.into_iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(
        columns,
        [
            "applied.consumer varchar(255) NO PRI",
            "applied.hlc_time bigint(20) NO ",
            "applied.hlc_node bigint(20) NO ",
            "applied.applies bigint(20) NO ",
            "capture_state.source varchar(255) NO PRI",
            "capture_state.gtid_state text NO ",
            "capture_state.hlc_time bigint(20) NO ",
            "capture_state.hlc_node bigint(20) NO ",
            "checkpoint.consumer varchar(255) NO PRI",
            "checkpoint.stream_seq bigint(20) NO ",
            "row_state.tbl varchar(255) NO PRI",
            "row_state.pk varbinary(2048) NO PRI",
            "row_state.state longblob NO ",
            "row_state.deleted_at bigint(20) YES MUL",
        ]
    );
    // The lock is released: another session gets it at once.
    let mut other = m.connect("app").await.unwrap();
    let free = format!("SELECT CAST(IS_FREE_LOCK('{SETUP_LOCK}') AS CHAR)");
    assert_eq!(scalar(&mut other, &free).await, Some("1".into()));
}

/// An install made before `row_state.deleted_at` existed gains the column and its index,
/// keeping its states.
#[tokio::test]
async fn prepare_upgrades_an_older_row_state() {
    let m = server("app").await;
    let mut c = m.connect("app").await.unwrap();
    exec(
        &mut c,
        "CREATE DATABASE meshsync CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
         CREATE TABLE meshsync.row_state (
             tbl VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
             pk VARBINARY(2048) NOT NULL, state LONGBLOB NOT NULL, PRIMARY KEY (tbl, pk)
         ) ENGINE = InnoDB;
         INSERT INTO meshsync.row_state VALUES ('app.t', x'01', 'old')",
    )
    .await;
    setup::prepare(&mut c).await.unwrap();
    setup::prepare(&mut c).await.unwrap();
    assert_eq!(
        scalar(
            &mut c,
            "SELECT CAST(CONCAT(state, '|', IFNULL(deleted_at, 'NULL')) AS CHAR)
             FROM meshsync.row_state"
        )
        .await,
        Some("old|NULL".into())
    );
    assert_eq!(
        scalar(
            &mut c,
            "SELECT CAST(GROUP_CONCAT(DISTINCT INDEX_NAME ORDER BY INDEX_NAME) AS CHAR)
             FROM information_schema.STATISTICS
             WHERE TABLE_SCHEMA = 'meshsync' AND TABLE_NAME = 'row_state'"
        )
        .await,
        Some("PRIMARY,row_state_deleted_at".into())
    );
}

#[tokio::test]
async fn row_state_keys_are_case_sensitive_and_hold_2048_bytes() {
    let m = server("app").await;
    let mut c = m.connect("app").await.unwrap();
    setup::prepare(&mut c).await.unwrap();
    // Table names are case-sensitive on Linux: `app.T` and `app.t` are two tables.
    exec(
        &mut c,
        "INSERT INTO meshsync.row_state (tbl, pk, state)
         VALUES ('app.T', x'01', 'a'), ('app.t', x'01', 'b'), ('app.t', REPEAT(x'ff', 2048), 'c')",
    )
    .await;
    assert_eq!(
        scalar(
            &mut c,
            "SELECT CAST(COUNT(*) AS CHAR) FROM meshsync.row_state"
        )
        .await,
        Some("3".into())
    );
    let too_long =
        sqlx::raw_sql("INSERT INTO meshsync.row_state (tbl, pk, state) VALUES ('app.t', REPEAT(x'ff', 2049), 'd')")
            .execute(&mut c)
            .await;
    assert!(too_long.is_err(), "strict mode refuses a longer key");
}

#[tokio::test]
async fn concurrent_set_ups_wait_for_the_lock() {
    let m = server("app").await;
    let mut holder = m.connect("app").await.unwrap();
    let got = format!("SELECT CAST(GET_LOCK('{SETUP_LOCK}', 5) AS CHAR)");
    assert_eq!(scalar(&mut holder, &got).await, Some("1".into()));
    let mut c = m.connect("app").await.unwrap();
    let waiting = tokio::spawn(async move { setup::prepare(&mut c).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !waiting.is_finished(),
        "prepare waits while the lock is held"
    );
    let none = "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.SCHEMATA
                WHERE SCHEMA_NAME = 'meshsync'";
    assert_eq!(scalar(&mut holder, none).await, Some("0".into()));
    exec(&mut holder, &format!("DO RELEASE_LOCK('{SETUP_LOCK}')")).await;
    tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("prepare finishes once the lock is free")
        .unwrap()
        .unwrap();
    // Two more at once, on separate connections: both succeed.
    let (mut a, mut b) = (
        m.connect("app").await.unwrap(),
        m.connect("app").await.unwrap(),
    );
    let (ra, rb) = tokio::join!(setup::prepare(&mut a), setup::prepare(&mut b));
    ra.unwrap();
    rb.unwrap();
    assert_eq!(scalar(&mut holder, none).await, Some("1".into()));
}
