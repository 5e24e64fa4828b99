//! Against a real MySQL 8 when `MESHSYNC_TEST_MYSQL_URL` names a disposable server
//! (`mysql://root:secret@127.0.0.1:3306`, user with all privileges): capture of insert,
//! update and delete, resume from a stored GTID set, loop prevention through
//! `meshsync.applied`, and the refusal of a wrong setting. Without the variable the test says
//! it was skipped and why (no MySQL server can run on our machines), and passes.
//!
//! One test function: the refusal changes a global setting for a moment, which other tests
//! on the same server must not see.

use std::{collections::HashMap, time::Duration};

use meshsync_core::{Op, TableName, Value};
use meshsync_mariadb::{
    Flavour, MariaDbSource, SourceConfig,
    apply::{APPLIED_TABLE, MariaDbSink},
    catalog,
    check::{self, CheckError},
    setup,
    source::{ResumePoint, current_gtid_state, resume},
};
use meshsync_merge::PolicySet;
use sqlx::{Connection, MySqlConnection};

use crate::{
    sink_support::{batch, change, hlc, int, peer, txt, v},
    support::{exec, next_rows},
};

/// The server URL with database `db`.
fn with_db(base: &str, db: &str) -> String {
    let (scheme, rest) = base.split_once("://").unwrap_or(("mysql", base));
    let host = rest.split(['/', '?']).next().unwrap_or(rest);
    format!("{scheme}://{host}/{db}")
}

#[tokio::test]
async fn mysql8_capture_resume_loop_prevention_and_refusal() {
    let Ok(base) = std::env::var("MESHSYNC_TEST_MYSQL_URL") else {
        println!(
            "skipped: MESHSYNC_TEST_MYSQL_URL is not set (MySQL 8 cannot run on this machine; \
             set it to a disposable MySQL 8 server to run this test)"
        );
        return;
    };
    let db = format!(
        "meshsync_test_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let mut admin = MySqlConnection::connect(&with_db(&base, "mysql"))
        .await
        .unwrap();
    assert_eq!(Flavour::detect(&mut admin).await.unwrap(), Flavour::MySql);
    exec(&mut admin, &format!("CREATE DATABASE {db}")).await;
    let url = with_db(&base, &db);
    let mut c = MySqlConnection::connect(&url).await.unwrap();
    setup::prepare(&mut c).await.unwrap();
    exec(
        &mut c,
        "CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(20) COLLATE utf8mb4_bin, doc JSON)",
    )
    .await;
    let table = TableName::new(&db, "t");
    let applied = TableName::parse(APPLIED_TABLE).unwrap();
    let config = |resume: String| SourceConfig {
        url: url.clone(),
        server_id: 4_000_000_000 - std::process::id() % 1_000_000,
        tables: vec![table.clone(), applied.clone()],
        resume,
        heartbeat: Duration::from_millis(300),
    };

    // Capture from "now": insert, update, delete, with microsecond commit times.
    let start = current_gtid_state(&mut c).await.unwrap();
    let mut src = MariaDbSource::connect(&config(start)).await.unwrap();
    exec(
        &mut c,
        r#"INSERT INTO t VALUES (1, 'x', '{"b": [1, 2], "a": 1}')"#,
    )
    .await;
    exec(&mut c, "UPDATE t SET a = 'y' WHERE id = 1").await;
    let ins = next_rows(&mut src).await;
    assert_eq!(ins.rows[0].op, Op::Insert);
    assert!(ins.gtid.contains(':'), "{}", ins.gtid);
    assert!(ins.commit_unix_micros > 0);
    let doc = ins.rows[0]
        .columns
        .iter()
        .find(|(n, _)| n == "doc")
        .unwrap();
    assert_eq!(
        doc.1.value(),
        Some(&Value::Json(r#"{"a":1,"b":[1,2]}"#.into()))
    );
    let upd = next_rows(&mut src).await;
    assert_eq!(upd.rows[0].op, Op::Update);
    src.close().await.unwrap();

    // Resume from the stored state after the insert: the update comes again, then a delete.
    let point = ResumePoint {
        gtid_state: ins.gtid_state_after.clone(),
        hlc: hlc(1),
    };
    resume::store(&mut c, "mysql_test", &point).await.unwrap();
    let stored = resume::load(&mut c, "mysql_test").await.unwrap().unwrap();
    assert_eq!(stored, point);
    let mut src = MariaDbSource::connect(&config(stored.gtid_state))
        .await
        .unwrap();
    exec(&mut c, "DELETE FROM t WHERE id = 1").await;
    let again = next_rows(&mut src).await;
    assert_eq!(again.gtid, upd.gtid);
    let del = next_rows(&mut src).await;
    assert_eq!(del.rows[0].op, Op::Delete);
    assert!(!del.from_apply);

    // Loop prevention: an apply transaction carries its meshsync.applied row.
    let infos: HashMap<_, _> = catalog::load(&mut c, std::slice::from_ref(&table))
        .await
        .unwrap();
    let mut sink = MariaDbSink::connect(&url, infos, PolicySet::default(), peer("me"), "a".into())
        .await
        .unwrap();
    let mut remote = batch(
        "x",
        200,
        "t",
        &["id", "a"],
        vec![change(0, Op::Insert, 2, vec![v(int(2)), v(txt("r"))])],
    );
    remote.table = table.clone();
    remote.database = db.clone();
    let mut txn = sink.begin().await.unwrap();
    txn.apply(&[&remote]).await.unwrap();
    txn.commit(1).await.unwrap();
    let echo = next_rows(&mut src).await;
    assert!(echo.from_apply, "an apply transaction must be marked");
    src.close().await.unwrap();

    // A wrong setting is refused by name (binlog_row_value_options, dynamic).
    exec(
        &mut admin,
        "SET GLOBAL binlog_row_value_options = 'PARTIAL_JSON'",
    )
    .await;
    let refused = check::check(&mut MySqlConnection::connect(&url).await.unwrap()).await;
    exec(&mut admin, "SET GLOBAL binlog_row_value_options = ''").await;
    match refused {
        Err(meshsync_mariadb::MariaDbError::Check(CheckError::RowValueOptions { .. })) => {}
        other => panic!("expected a refusal naming binlog_row_value_options: {other:?}"),
    }
    exec(&mut admin, &format!("DROP DATABASE {db}")).await;
}
