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

#[tokio::test]
async fn the_progress_line_counts_rows_captured_echoed_and_applied() {
    let mesh = Mesh::start(&["a", "b"]).await.unwrap();
    let mut c = mesh.peers[0].connect().await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO public.items (id, v) SELECT g, 'p' FROM generate_series(1, 7) g;
         INSERT INTO public.items (id, v) VALUES (8, 'q')",
    )
    .execute(&mut c)
    .await
    .unwrap();
    mesh.wait_all("8 rows", Duration::from_secs(60), |rows| rows.len() == 8)
        .await;
    // Apply's rows come back to B's capture only where the server cannot filter them
    // (PostgreSQL 15); they are dropped there, and counted. A's apply takes its own changes
    // too (it records their versions), so both count 8 applied.
    let mut b = mesh.peers[1].connect().await.unwrap();
    let (version,): (i32,) = sqlx::query_as("SELECT current_setting('server_version_num')::int")
        .fetch_one(&mut b)
        .await
        .unwrap();
    let echoed = if version < 160_000 { 8 } else { 0 };
    for (i, want) in [
        (0, "captured=8 echoed=0 applied=8".to_owned()),
        (1, format!("captured=0 echoed={echoed} applied=8")),
    ] {
        let agent = mesh.peers[i].agent.as_ref().unwrap();
        meshsync_testkit::wait_until(
            &format!("a progress line with {want}"),
            Duration::from_secs(30),
            || async {
                agent
                    .log()
                    .lines()
                    .any(|l| l.contains("progress") && l.contains(&want))
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", agent.log()));
    }
}
