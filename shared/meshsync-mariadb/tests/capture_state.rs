//! `source::resume`: the capture resume point in `meshsync.capture_state`.

use meshsync_core::Hlc;
use meshsync_mariadb::{
    MariaDbError, MariaDbSource, setup,
    source::{
        GtidState, current_gtid_state,
        resume::{self, ResumePoint},
    },
};
use sqlx::Connection;

use crate::support::{config, drain, exec, next_rows, rows, server};

#[tokio::test]
async fn store_then_load_round_trips_and_keeps_the_last() {
    let m = server("app").await;
    let mut c = m.connect("app").await.unwrap();
    setup::prepare(&mut c).await.unwrap();
    assert_eq!(resume::load(&mut c, "peer-a").await.unwrap(), None);
    let first = ResumePoint {
        gtid_state: "0-1-42,1-2-7".into(),
        hlc: Hlc { time: 5, node: 9 },
    };
    resume::store(&mut c, "peer-a", &first).await.unwrap();
    assert_eq!(resume::load(&mut c, "peer-a").await.unwrap(), Some(first));
    // Extremes of both u64s survive the BIGINT columns.
    let last = ResumePoint {
        gtid_state: "0-1-43,1-2-7,5-4294967295-18446744073709551615".into(),
        hlc: Hlc {
            time: u64::MAX,
            node: u64::MAX,
        },
    };
    resume::store(&mut c, "peer-a", &last).await.unwrap();
    assert_eq!(resume::load(&mut c, "peer-a").await.unwrap(), Some(last));
    assert_eq!(resume::load(&mut c, "peer-b").await.unwrap(), None);
    // Sources are case-sensitive ids.
    assert_eq!(resume::load(&mut c, "PEER-A").await.unwrap(), None);
}

#[tokio::test]
async fn hlc_columns_sort_in_hlc_order() {
    let m = server("app").await;
    let mut c = m.connect("app").await.unwrap();
    setup::prepare(&mut c).await.unwrap();
    let times = [u64::MAX, 1 << 63, 0, (1 << 63) - 1, 1];
    for (i, time) in times.iter().enumerate() {
        let p = ResumePoint {
            gtid_state: String::new(),
            hlc: Hlc {
                time: *time,
                node: 1,
            },
        };
        resume::store(&mut c, &format!("s{i}"), &p).await.unwrap();
    }
    let order: Vec<String> = rows(
        &mut c,
        "SELECT CAST(source AS CHAR) FROM meshsync.capture_state ORDER BY hlc_time",
    )
    .await
    .into_iter()
    .map(|r| r[0].clone().unwrap())
    .collect();
    // 0, 1, 2^63-1, 2^63, u64::MAX
    assert_eq!(order, ["s2", "s4", "s3", "s1", "s0"]);
}

#[tokio::test]
async fn store_leaves_the_binlog_alone_and_refuses_bad_states() {
    let m = server("app").await;
    let mut c = m.connect("app").await.unwrap();
    setup::prepare(&mut c).await.unwrap();
    let before = current_gtid_state(&mut c).await.unwrap();
    let p = ResumePoint {
        gtid_state: before.clone(),
        hlc: Hlc { time: 1, node: 1 },
    };
    resume::store(&mut c, "peer-a", &p).await.unwrap();
    resume::store(&mut c, "peer-a", &p).await.unwrap();
    assert_eq!(current_gtid_state(&mut c).await.unwrap(), before, "no GTID");
    // Not a GTID state: refused, nothing written.
    let bad = ResumePoint {
        gtid_state: "0-1".into(),
        hlc: Hlc::ZERO,
    };
    let err = resume::store(&mut c, "peer-x", &bad).await.unwrap_err();
    assert!(matches!(err, MariaDbError::Gtid(_)), "{err:?}");
    assert_eq!(resume::load(&mut c, "peer-x").await.unwrap(), None);
    // A corrupt stored state is an error on load, not a restart from the oldest binlog.
    exec(
        &mut c,
        "INSERT INTO meshsync.capture_state VALUES ('peer-y', 'garbage', 0, 0)",
    )
    .await;
    let err = resume::load(&mut c, "peer-y").await.unwrap_err();
    assert!(matches!(err, MariaDbError::Gtid(_)), "{err:?}");
    // Inside a transaction MariaDB cannot switch sql_log_bin: refused, not logged.
    let mut tx = c.begin().await.unwrap();
    assert!(resume::store(&mut tx, "peer-a", &p).await.is_err());
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn a_captured_gtid_state_stored_and_loaded_resumes_capture() {
    let m = server("app").await;
    let mut c = m.connect("app").await.unwrap();
    setup::prepare(&mut c).await.unwrap();
    exec(&mut c, "CREATE TABLE t (id INT PRIMARY KEY)").await;
    // A second replication domain, so the state has two entries.
    exec(&mut c, "SET SESSION gtid_domain_id = 3").await;
    exec(&mut c, "INSERT INTO t VALUES (1)").await;
    exec(&mut c, "SET SESSION gtid_domain_id = 0").await;
    exec(&mut c, "INSERT INTO t VALUES (2)").await;
    let mut src = MariaDbSource::connect(&config(&m, "app", &["t"], ""))
        .await
        .unwrap();
    next_rows(&mut src).await;
    let second = next_rows(&mut src).await;
    src.close().await.unwrap();
    let state = second.gtid_state_after.clone();
    assert!(state.contains("3-") && state.contains("0-"), "{state}");
    let point = ResumePoint {
        gtid_state: state.clone(),
        hlc: Hlc { time: 77, node: 3 },
    };
    resume::store(&mut c, "peer-a", &point).await.unwrap();
    exec(&mut c, "INSERT INTO t VALUES (3)").await;

    let loaded = resume::load(&mut c, "peer-a").await.unwrap().unwrap();
    assert_eq!(loaded, point);
    assert_eq!(
        GtidState::parse(&loaded.gtid_state).unwrap().to_string(),
        state
    );
    let mut again = MariaDbSource::connect(&config(&m, "app", &["t"], &loaded.gtid_state))
        .await
        .unwrap();
    let ids: Vec<_> = drain(&mut again)
        .await
        .iter()
        .flat_map(|t| t.rows.iter().map(|r| r.key[0].1.clone()))
        .collect();
    assert_eq!(ids, [meshsync_core::Value::Int(3)]);
}
