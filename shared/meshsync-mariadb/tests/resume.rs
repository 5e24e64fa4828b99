//! GTID resume after a binlog rotation and after a kill -9 of the server.

use meshsync_core::Value;
use meshsync_mariadb::{MariaDbSource, source::current_gtid_state};

use crate::support::{config, drain, exec, next_rows, server};

/// The `id` key of every row of the transactions.
fn ids(txns: &[meshsync_mariadb::CapturedTxn]) -> Vec<i64> {
    txns.iter()
        .flat_map(|t| &t.rows)
        .map(|r| match r.key[0].1 {
            Value::Int(i) => i,
            ref v => panic!("{v:?}"),
        })
        .collect()
}

#[tokio::test]
async fn resume_after_rotation_yields_only_later_transactions() {
    let m = server("db").await;
    let mut c = m.connect("db").await.unwrap();
    exec(&mut c, "CREATE TABLE t (id INT PRIMARY KEY)").await;
    exec(&mut c, "INSERT INTO t VALUES (1)").await;
    let mut src = MariaDbSource::connect(&config(&m, "db", &["t"], ""))
        .await
        .unwrap();
    exec(&mut c, "INSERT INTO t VALUES (2)").await;
    let first = next_rows(&mut src).await;
    assert_eq!(ids(std::slice::from_ref(&first)), [1]);
    let second = next_rows(&mut src).await;
    assert_eq!(ids(std::slice::from_ref(&second)), [2]);
    let file_before = src.binlog_position().0.to_owned();
    assert!(file_before.starts_with("binlog."), "{file_before:?}");
    exec(&mut c, "FLUSH BINARY LOGS").await;
    exec(&mut c, "INSERT INTO t VALUES (3)").await;
    let third = next_rows(&mut src).await;
    assert_eq!(ids(std::slice::from_ref(&third)), [3]);
    assert_ne!(
        src.binlog_position().0,
        file_before,
        "followed the rotation"
    );
    src.close().await.unwrap();

    exec(&mut c, "FLUSH BINARY LOGS").await;
    exec(&mut c, "INSERT INTO t VALUES (4); INSERT INTO t VALUES (5)").await;
    let mut again = MariaDbSource::connect(&config(&m, "db", &["t"], &second.gtid_state_after))
        .await
        .unwrap();
    assert_eq!(ids(&drain(&mut again).await), [3, 4, 5]);
}

#[tokio::test]
async fn resume_after_kill9_and_restart() {
    let mut m = server("db").await;
    let mut c = m.connect("db").await.unwrap();
    exec(&mut c, "CREATE TABLE t (id INT PRIMARY KEY)").await;
    let start = current_gtid_state(&mut c).await.unwrap();
    let mut src = MariaDbSource::connect(&config(&m, "db", &["t"], &start))
        .await
        .unwrap();
    exec(&mut c, "INSERT INTO t VALUES (1)").await;
    let one = next_rows(&mut src).await;
    exec(&mut c, "INSERT INTO t VALUES (2)").await;
    drop(c);
    m.kill9().unwrap();
    // The old stream fails with an error a retry can cure.
    let err = loop {
        if let Err(e) = src.next_event().await {
            break e;
        }
    };
    assert!(err.is_transient(), "{err:?}");
    m.restart().await.unwrap();
    let mut c = m.connect("db").await.unwrap();
    exec(&mut c, "INSERT INTO t VALUES (3)").await;
    let mut again = MariaDbSource::connect(&config(&m, "db", &["t"], &one.gtid_state_after))
        .await
        .unwrap();
    // Row 2 was committed before the crash (InnoDB + binlog are crash safe): it comes, once.
    assert_eq!(ids(&drain(&mut again).await), [2, 3]);
}
