//! `meshsync demo`: a whole mesh on this machine in a minute. A local nats-server and three
//! PostgreSQL peers with their agents; all three write the same keys at once; every change is
//! shown as it reaches the stream; a verify at the end shows the peers identical.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result};
use futures::StreamExt;
use meshsync_core::PeerId;
use meshsync_nats::inbox::is_drained;
use meshsync_testkit::{NatsServer, Postgres, wait_until};
use meshsync_wire::subject::{GLOBAL_STREAM, apply_consumer};
use sqlx::{PgConnection, Row};

/// Peers of the demo.
const PEERS: [&str; 3] = ["alpha", "bravo", "charlie"];
/// Writes per peer.
const OPS: usize = 60;
/// Shared keys the peers fight over.
const KEYS: i32 = 8;

/// Kills the agent processes when the demo ends, however it ends.
struct Agents(Vec<Child>);

impl Drop for Agents {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs the demo; returns whether the final verify found the peers identical.
pub async fn run() -> Result<bool> {
    println!(
        "meshsync demo: one nats-server, three PostgreSQL peers ({}), all writable.\n",
        PEERS.join(", ")
    );
    let dir = tempfile::tempdir()?;
    let nats = NatsServer::start_single()
        .await
        .context("start nats-server (run scripts/setup first)")?;
    println!(
        "  nats-server    {}  (JetStream, sync_interval: always)",
        nats.client_url()
    );
    let mut dbs = Vec::new();
    let mut configs = Vec::new();
    for peer in PEERS {
        let pg = Postgres::start()
            .await
            .context("start PostgreSQL (run scripts/setup first)")?;
        pg.create_database("app").await?;
        let mut c = pg.connect("app").await?;
        sqlx::raw_sql(
            "CREATE TABLE public.items (id int PRIMARY KEY, owner text NOT NULL, qty int NOT NULL)",
        )
        .execute(&mut c)
        .await?;
        let config = dir.path().join(format!("{peer}.toml"));
        std::fs::write(
            &config,
            format!(
                "[peer]\nid = \"{peer}\"\n[nats]\nurl = \"{}\"\n[database]\nengine = \"postgres\"\nurl = \"{}\"\ntables = [\"public.items\"]\n",
                nats.client_url(),
                pg.url("app")
            ),
        )?;
        println!("  peer {peer:<8}  {}", pg.url("app"));
        dbs.push(pg);
        configs.push(config);
    }

    let exe = std::env::current_exe()?;
    let mut agents = Agents(Vec::new());
    for config in &configs {
        agents.0.push(spawn_agent(&exe, config)?);
    }
    for config in &configs {
        let log = config.with_extension("log");
        wait_until("an agent to start", Duration::from_secs(60), || {
            let log = log.clone();
            async move {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                (text.contains("capture started") && text.contains("apply started")).then_some(())
            }
        })
        .await
        .with_context(|| format!("agent did not start; see {}", log.display()))?;
    }
    println!("\nAgents running. Writing conflicting changes on all three peers at once:\n");

    // Show every change as it reaches the global stream.
    let client = async_nats::connect(nats.client_url()).await?;
    let mut feed = client.subscribe("mesh.changes.>").await?;
    let shown = tokio::spawn(async move {
        let mut n = 0usize;
        while let Some(msg) = feed.next().await {
            let h = |k: &str| {
                msg.headers
                    .as_ref()
                    .and_then(|h| h.get(k))
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default()
            };
            n += 1;
            if n <= 25 {
                println!(
                    "  {:<8} -> {} {:<14} x{:<2} hlc {}",
                    h("Mesh-Origin"),
                    h("Mesh-Table"),
                    h("Mesh-Op"),
                    h("Mesh-Count"),
                    h("Mesh-Hlc")
                );
            } else if n == 26 {
                println!("  ... (more changes, not shown)");
            }
        }
    });

    let mut writers = Vec::new();
    for (i, pg) in dbs.iter().enumerate() {
        let mut conn = pg.connect("app").await?;
        let peer = PEERS[i];
        writers.push(tokio::spawn(async move {
            workload(&mut conn, peer, i as u64 + 1).await
        }));
    }
    let mut total = 0;
    for w in writers {
        total += w.await??;
    }
    println!("\n{total} writes committed. Waiting for every peer to apply everything...");
    for peer in PEERS {
        let name = apply_consumer(&PeerId::new(peer)?);
        wait_until("the mesh to drain", Duration::from_secs(120), || {
            let (client, name) = (client.clone(), name.clone());
            async move {
                is_drained(&client, GLOBAL_STREAM, &name)
                    .await
                    .then_some(())
            }
        })
        .await?;
    }
    shown.abort();

    println!("\nKey 1, fought over by all three peers, on each peer:");
    for (i, pg) in dbs.iter().enumerate() {
        let mut c = pg.connect("app").await?;
        let row = sqlx::query("SELECT owner, qty FROM public.items WHERE id = 1")
            .fetch_optional(&mut c)
            .await?;
        let shown = row
            .map(|r| format!("owner={} qty={}", r.get::<String, _>(0), r.get::<i32, _>(1)))
            .unwrap_or("deleted".into());
        println!("  {:<8} {shown}", PEERS[i]);
    }
    println!(
        "\nmeshsync verify --config {}:",
        configs
            .iter()
            .map(|c| c
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned())
            .collect::<Vec<_>>()
            .join(" --config ")
    );
    let same = crate::verify::run(&configs).await?;
    println!(
        "\n{}",
        if same {
            "All peers identical: every key holds its last writer's value (by HLC)."
        } else {
            "The peers differ: this is a bug; logs are in the demo folder."
        }
    );
    drop(agents);
    Ok(same)
}

fn spawn_agent(exe: &Path, config: &Path) -> Result<Child> {
    let log = std::fs::File::create(config.with_extension("log"))?;
    Ok(Command::new(exe)
        .arg("run")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info,sqlx=warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?)
}

/// Conflicting writes: inserts, updates and deletes on the shared keys.
async fn workload(conn: &mut PgConnection, peer: &str, seed: u64) -> Result<usize> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut done = 0;
    for i in 0..OPS {
        let id = 1 + next(KEYS as u64) as i32;
        let r = match next(10) {
            0..=3 => {
                sqlx::query(
                    "INSERT INTO public.items VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(peer)
                .bind(i as i32)
                .execute(&mut *conn)
                .await
            }
            4..=8 => {
                sqlx::query("UPDATE public.items SET owner = $2, qty = qty + 1 WHERE id = $1")
                    .bind(id)
                    .bind(peer)
                    .execute(&mut *conn)
                    .await
            }
            _ => {
                sqlx::query("DELETE FROM public.items WHERE id = $1")
                    .bind(id)
                    .execute(&mut *conn)
                    .await
            }
        };
        done += r.map(|r| r.rows_affected() as usize).unwrap_or(0);
    }
    // Everyone claims key 1 last, at nearly the same moment: one of them wins everywhere.
    let r = sqlx::query("INSERT INTO public.items VALUES (1, $1, 0) ON CONFLICT (id) DO UPDATE SET owner = EXCLUDED.owner")
        .bind(peer)
        .execute(&mut *conn)
        .await?;
    Ok(done + r.rows_affected() as usize)
}
