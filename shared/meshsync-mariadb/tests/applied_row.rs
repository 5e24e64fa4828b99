//! Every apply transaction that writes rows also changes its row of `meshsync.applied`, even
//! when the highest HLC it applied equals the previous one: the servers log no row event for
//! an update that changes nothing, and MySQL capture knows apply transactions only by that
//! row (I7). Checked on MariaDB's binlog, which drops unchanged rows the same way.

use std::time::Duration;

use meshsync_core::{Op, TableName};
use meshsync_mariadb::{
    MariaDbSource, SourceConfig, apply::APPLIED_TABLE, source::current_gtid_state,
};

use crate::{
    sink_support::{apply, batch, change, count, int, prepared, sink, txt, v},
    support::next_rows,
};

#[tokio::test]
async fn two_apply_transactions_with_one_hlc_both_log_their_applied_row() {
    let (m, mut c) = prepared("CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(20))").await;
    let mut s = sink(&m, &["t"]).await;
    let config = SourceConfig {
        url: m.url("app"),
        server_id: 4_000_000_000 - m.server_id(),
        tables: vec![
            TableName::new("app", "t"),
            TableName::parse(APPLIED_TABLE).unwrap(),
        ],
        resume: current_gtid_state(&mut c).await.unwrap(),
        heartbeat: Duration::from_millis(300),
    };
    let mut src = MariaDbSource::connect(&config).await.unwrap();
    // Two chunks of one remote transaction: same origin, same HLC, applied apart.
    for id in [1, 2] {
        let row = change(0, Op::Insert, id, vec![v(int(id)), v(txt("r"))]);
        apply(
            &mut s,
            &[&batch("x", 300, "t", &["id", "a"], vec![row])],
            1 + id as u64,
        )
        .await;
    }
    for _ in 0..2 {
        let txn = next_rows(&mut src).await;
        assert!(
            txn.rows
                .iter()
                .any(|r| r.table.to_string() == APPLIED_TABLE),
            "every apply transaction that writes rows logs its meshsync.applied row"
        );
    }
    assert_eq!(
        count(&mut c, "SELECT applies FROM meshsync.applied").await,
        2
    );
}
