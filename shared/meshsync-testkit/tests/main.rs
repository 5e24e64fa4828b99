//! The harness itself: every server starts, answers, survives kill -9 with its data, and
//! leaves nothing behind when dropped.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use meshsync_testkit::{MariaDb, NatsCluster, NatsServer, Postgres, wait_until};
use sqlx::Row;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn nats_single_keeps_its_stream_across_kill9() {
    let mut nats = NatsServer::start_single().await.unwrap();
    let port = nats.port();
    let client = async_nats::connect(nats.client_url()).await.unwrap();
    let js = jetstream::new(client);
    js.query_account().await.expect("JetStream is enabled");
    js.create_stream(stream::Config {
        name: "T".into(),
        subjects: vec!["t".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    js.publish("t", "hello".into())
        .await
        .unwrap()
        .await
        .unwrap();
    nats.kill9().unwrap();
    nats.restart().await.unwrap();
    assert_eq!(nats.port(), port, "same port after a restart");
    let client = async_nats::connect(nats.client_url()).await.unwrap();
    let js = jetstream::new(client);
    let count = wait_until("stream T after restart", WAIT, || {
        let js = js.clone();
        async move {
            Some(
                js.get_stream("T")
                    .await
                    .ok()?
                    .info()
                    .await
                    .ok()?
                    .state
                    .messages,
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(count, 1, "a fsynced, acked message survives kill -9");
}

#[tokio::test]
async fn dropping_a_server_kills_it_and_deletes_its_folder() {
    let nats = NatsServer::start_single().await.unwrap();
    let pid = nats.pid().unwrap();
    let dir = nats.dir().to_owned();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(nats);
    // Reaped by the drop, so not even a zombie is left.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(!dir.exists());
}

#[tokio::test]
async fn nats_cluster_and_leaf_with_domain() {
    let hub = NatsCluster::start(3).await.unwrap();
    assert_eq!(hub.urls().len(), 3);
    let leaf = NatsServer::start_leaf(&hub.leaf_urls(), "site-x")
        .await
        .unwrap();
    leaf.wait_leaf_connected(WAIT).await.unwrap();
    let client = async_nats::connect(leaf.client_url()).await.unwrap();
    // An R3 stream in the hub domain, created through the leaf.
    let hub_js = jetstream::with_domain(client.clone(), "hub");
    let info = wait_until("an R3 stream on the hub", WAIT, || {
        let js = hub_js.clone();
        async move {
            let mut s = js
                .get_or_create_stream(stream::Config {
                    name: "H".into(),
                    subjects: vec!["h".into()],
                    num_replicas: 3,
                    ..Default::default()
                })
                .await?;
            Ok::<_, anyhow::Error>(s.info().await?.clone())
        }
    })
    .await
    .unwrap();
    assert_eq!(info.config.num_replicas, 3);
    assert_eq!(
        info.cluster.and_then(|c| c.name).as_deref(),
        Some("mesh-hub")
    );
    // A stream in the leaf's own domain, seen from the hub through that domain.
    let site = jetstream::new(client);
    site.create_stream(stream::Config {
        name: "L".into(),
        subjects: vec!["l".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let ack = site.publish("l", "x".into()).await.unwrap().await.unwrap();
    assert_eq!(ack.domain, "site-x");
    let from_hub = jetstream::with_domain(async_nats::connect(hub.urls()).await.unwrap(), "site-x");
    let messages = wait_until("stream L through domain site-x from the hub", WAIT, || {
        let js = from_hub.clone();
        async move { Ok::<_, anyhow::Error>(js.get_stream("L").await?.info().await?.state.messages) }
    })
    .await
    .unwrap();
    assert_eq!(messages, 1);
}

/// Whether `ipcs` lists System V shared memory segment `id`.
fn segment_listed(id: &str) -> std::io::Result<bool> {
    let out = std::process::Command::new("ipcs").arg("-m").output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(id)))
}

#[tokio::test]
async fn a_dropped_postgres_leaves_no_shared_memory_behind() {
    let pg = Postgres::start().await.unwrap();
    let id = meshsync_testkit::shared_memory_id(pg.dir()).expect("a running server");
    assert!(segment_listed(&id).unwrap(), "segment {id}");
    drop(pg);
    assert!(!segment_listed(&id).unwrap(), "segment {id} left behind");
}

#[tokio::test]
async fn postgres_settings_given_at_start_win_and_outlive_a_restart() {
    let show = async |pg: &Postgres| -> String {
        let mut c = pg.connect("postgres").await.unwrap();
        sqlx::query("SHOW shared_buffers")
            .fetch_one(&mut c)
            .await
            .unwrap()
            .get(0)
    };
    // The harness's own is 64MB; a bench asks for more.
    let mut pg = Postgres::start_with(&["shared_buffers=96MB"])
        .await
        .unwrap();
    assert_eq!(show(&pg).await, "96MB");
    pg.stop().unwrap();
    pg.restart().await.unwrap();
    assert_eq!(show(&pg).await, "96MB");
}

#[tokio::test]
async fn postgres_survives_kill9_with_its_data() {
    let mut pg = Postgres::start().await.unwrap();
    pg.create_database("app").await.unwrap();
    let mut c = pg.connect("app").await.unwrap();
    let level: String = sqlx::query("SHOW wal_level")
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0);
    assert_eq!(level, "logical");
    sqlx::raw_sql("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'kept')")
        .execute(&mut c)
        .await
        .unwrap();
    pg.kill9().unwrap();
    pg.restart().await.unwrap();
    let mut c = pg.connect("app").await.unwrap();
    let v: String = sqlx::query("SELECT v FROM t WHERE id = 1")
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "kept");
    // A graceful stop does not wait for the open connection `c` to leave.
    pg.stop().unwrap();
    pg.restart().await.unwrap();
    let mut c = pg.connect("app").await.unwrap();
    let n: i64 = sqlx::query("SELECT count(*) FROM t")
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn mariadb_survives_kill9_with_its_data() {
    let mut db = MariaDb::start().await.unwrap();
    db.create_database("app").await.unwrap();
    let mut c = db.connect("app").await.unwrap();
    let r = sqlx::query("SELECT @@binlog_format, @@binlog_row_image, @@binlog_row_metadata")
        .fetch_one(&mut c)
        .await
        .unwrap();
    let got: (String, String, String) = (r.get(0), r.get(1), r.get(2));
    assert_eq!(got, ("ROW".into(), "FULL".into(), "FULL".into()));
    sqlx::raw_sql("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'kept')")
        .execute(&mut c)
        .await
        .unwrap();
    drop(c);
    db.kill9().unwrap();
    db.restart().await.unwrap();
    let mut c = db.connect("app").await.unwrap();
    let v: String = sqlx::query("SELECT v FROM t WHERE id = 1")
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "kept");
}

#[tokio::test]
async fn mariadb_takes_extra_settings() {
    let db = MariaDb::start_with(&["--binlog-format=STATEMENT"])
        .await
        .unwrap();
    let mut c = db.connect("mysql").await.unwrap();
    let f: String = sqlx::query("SELECT @@binlog_format")
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0);
    assert_eq!(f, "STATEMENT");
}
