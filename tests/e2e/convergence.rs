//! Three PostgreSQL peers writing the same keys at once converge to the highest-HLC write of
//! every key, with deleted keys absent, and the stream holds each write exactly once.

use std::time::Duration;

use meshsync_e2e::workload;

use crate::support::{Mesh, verify};

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

    let expected = mesh
        .assert_converged(&writes, Duration::from_secs(120))
        .await;

    // `meshsync verify` agrees, and notices a row changed behind the mesh's back.
    let configs: Vec<std::path::PathBuf> = mesh.peers.iter().map(|p| p.config.clone()).collect();
    let (ok, out) = verify(&configs);
    assert!(ok, "verify should report identical peers:\n{out}");
    assert!(out.contains("public.items: identical on a, b, c"), "{out}");
    let mut mesh = mesh;
    for p in &mut mesh.peers {
        drop(p.agent.take());
    }
    let mut c = mesh.peers[2].connect().await.unwrap();
    let victim = expected.first().expect("some rows survive the workload").0;
    sqlx::query("UPDATE public.items SET v = 'tampered' WHERE id = $1")
        .bind(victim)
        .execute(&mut c)
        .await
        .unwrap();
    let (ok, out) = verify(&configs);
    assert!(!ok, "verify must fail on a diverged peer:\n{out}");
    assert!(
        out.contains("DIFFERS between a") && out.contains(&format!("key {victim}")),
        "{out}"
    );
}
