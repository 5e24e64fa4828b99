//! Three PostgreSQL peers writing the same keys at once converge to the highest-HLC write of
//! every key, with deleted keys absent, and the stream holds each write exactly once.

use std::time::Duration;

use meshsync_e2e::{checker, workload};

use crate::support::Mesh;

#[tokio::test]
async fn three_postgres_peers_converge_under_conflicting_writes() {
    let mesh = Mesh::start(&["a", "b", "c"]).await.unwrap();
    let seed = std::env::var("MESHSYNC_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    println!("workload seed {seed}");

    let mut tasks = Vec::new();
    for (i, p) in mesh.peers.iter().enumerate() {
        let mut conn = p.connect().await.unwrap();
        let id = p.id.clone();
        tasks.push(tokio::spawn(async move {
            workload::run(&mut conn, &id, seed + i as u64, 150, 20).await
        }));
    }
    let mut writes = Vec::new();
    for t in tasks {
        writes.extend(t.await.unwrap().unwrap());
    }

    checker::wait_quiet(
        &mesh.client,
        "MESH",
        writes.len(),
        &mesh.consumers(),
        Duration::from_secs(120),
    )
    .await
    .unwrap();
    let rows = checker::rows_of(&checker::read_stream(&mesh.client, "MESH").await.unwrap());
    checker::check_stream_matches_writes(&rows, &writes).unwrap();

    let expected = checker::expected(&rows);
    for p in &mesh.peers {
        let got = p.rows().await.unwrap();
        assert_eq!(
            got, expected,
            "peer {} holds something other than the winners",
            p.id
        );
    }
}
