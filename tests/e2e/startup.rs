//! What the agent refuses and guards at start-up, and how it keeps an idle slot moving.

use std::time::Duration;

use meshsync_e2e::peer::Peer;
use meshsync_testkit::{NatsServer, wait_until};
use sqlx::Row;

use crate::support::Mesh;

#[tokio::test]
async fn a_column_type_meshsync_cannot_carry_is_refused_at_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start_single().await.unwrap();
    let peer = Peer::start("odd", &nats.client_url(), dir.path())
        .await
        .unwrap();
    let mut c = peer.connect().await.unwrap();
    sqlx::raw_sql("ALTER TABLE public.items ADD COLUMN spot point")
        .execute(&mut c)
        .await
        .unwrap();
    let out = std::process::Command::new(meshsync_e2e::agent::binary().unwrap())
        .args(["run", "--config"])
        .arg(&peer.config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the agent must refuse the table");
    assert!(
        err.contains("public.items") && err.contains("spot") && err.contains("point"),
        "{err}"
    );
}

/// `docker stop`, systemd and Kubernetes stop a process with SIGTERM: the agent stops as on
/// Ctrl-C, says so, and exits with success (not killed by the signal).
#[tokio::test]
async fn sigterm_stops_the_agent_cleanly() {
    let mut mesh = Mesh::start(&["a"]).await.unwrap();
    let agent = mesh.peers[0].agent.as_mut().unwrap();
    agent.terminate().unwrap();
    let status = agent.wait_exit(Duration::from_secs(30)).await.unwrap();
    assert!(status.success(), "{status}:\n{}", agent.log());
    assert!(
        agent.log().contains("signal=\"SIGTERM\""),
        "{}",
        agent.log()
    );
}

#[tokio::test]
async fn truncate_of_a_replicated_table_is_refused_loudly() {
    let mesh = Mesh::start(&["a"]).await.unwrap();
    let mut c = mesh.peers[0].connect().await.unwrap();
    let err = sqlx::query("TRUNCATE public.items")
        .execute(&mut c)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("TRUNCATE of replicated table public.items is not replicated; use DELETE"),
        "{err}"
    );
}

#[tokio::test]
async fn an_idle_slot_is_confirmed_past_unpublished_wal() {
    let mesh = Mesh::start(&["a"]).await.unwrap();
    let mut c = mesh.peers[0].connect().await.unwrap();
    // Writes to a table meshsync does not replicate produce WAL but no published change.
    sqlx::raw_sql("CREATE TABLE public.other (id int PRIMARY KEY); INSERT INTO public.other SELECT generate_series(1, 20000)")
        .execute(&mut c)
        .await
        .unwrap();
    let target: String = sqlx::query("SELECT pg_current_wal_lsn()::text")
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0);
    wait_until("the slot to move past unpublished WAL", Duration::from_secs(60), || {
        let pg = &mesh.peers[0].pg;
        let target = target.clone();
        async move {
            let mut c = pg.connect("app").await.ok()?;
            let row = sqlx::query("SELECT confirmed_flush_lsn >= $1::pg_lsn FROM pg_replication_slots WHERE slot_name = 'meshsync_a'")
                .bind(target)
                .fetch_one(&mut c)
                .await
                .ok()?;
            row.get::<bool, _>(0).then_some(())
        }
    })
    .await
    .unwrap();
}
