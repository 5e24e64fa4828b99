//! meshsync under test with MariaDB: two servers, each with an agent running as a child
//! process of this executable (`meshsync run --config`), writes on peer A only.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use meshsync_testkit::{MariaDb, NatsServer};
use sqlx::MySqlConnection;
use tracing::info;

use super::{
    Params,
    mesh::{self, AgentProc, MeshRun},
    mysql_workload::{self as workload, DB},
    report::{CatchUp, Resources, SystemResult},
};

/// Runs both workloads through meshsync.
pub async fn run(params: &Params) -> Result<MeshRun> {
    let nats = NatsServer::start_single()
        .await
        .context("start nats-server")?;
    let client = meshsync_nats::connect(&nats.client_url(), "meshsync bench").await?;
    // The INFO of the server arrives with the connection; a flush waits for it.
    client.flush().await.context("reach nats-server")?;
    let nats_version = client.server_info().version;
    drop(client);
    let a = MariaDb::start().await.context("start peer A's MariaDB")?;
    let b = MariaDb::start().await.context("start peer B's MariaDB")?;
    let mut configs = Vec::new();
    for (id, db) in [("a", &a), ("b", &b)] {
        db.create_database(DB).await?;
        let mut c = db.connect(DB).await?;
        sqlx::raw_sql(workload::TABLE_DDL).execute(&mut c).await?;
        let config = params.out.join(format!("agent-mysql-{id}.toml"));
        let text = format!(
            "[peer]\nid = \"{id}\"\n[nats]\nurl = \"{}\"\n[database]\nengine = \"mysql\"\nurl = \"{}\"\ntables = [\"public.items\"]\n",
            nats.client_url(),
            db.url(DB)
        );
        meshsync_config::Config::from_toml(&text, "bench").context("agent config")?;
        std::fs::write(&config, text)?;
        configs.push(config);
    }
    let (config_a, config_b) = (&configs[0], &configs[1]);
    let mut src = a.connect(DB).await?;
    let mut dst = b.connect(DB).await?;

    // Catch-up: agent A captures and publishes while the rows are written; B is off.
    let mut agent_a = AgentProc::start(config_a, &params.out.join("agent-mysql-a.log"))?;
    agent_a.wait_started().await?;
    let insert = workload::insert_catch_up(&mut src, params.rows, params.txn_size).await?;
    let end = workload::gtid_binlog_pos(&mut src).await?;
    let published_after = wait_published(&mut src, &mut agent_a, &end).await?;
    let publish = insert + published_after;
    let settled = publish + mesh::wait_own_applied(&nats.client_url(), &mut agent_a).await?;
    info!(
        rows = params.rows,
        insert_secs = insert.as_secs_f64(),
        published_secs = publish.as_secs_f64(),
        settled_secs = settled.as_secs_f64(),
        "meshsync: rows written, published and recorded by A; starting B"
    );
    let started = Instant::now();
    let mut agent_b = AgentProc::start(config_b, &params.out.join("agent-mysql-b.log"))?;
    workload::wait_count(&mut dst, params.rows, Duration::from_secs(3600)).await?;
    let elapsed = started.elapsed();
    let catch_up = CatchUp::new(params.rows, insert, Some((publish, settled)), elapsed);
    info!(rows_per_sec = catch_up.rows_per_sec, "meshsync: caught up");
    let resources = Resources::new(
        params.rows,
        vec![
            ("agent A (sender)".to_owned(), agent_a.stats()?),
            ("agent B (receiver)".to_owned(), agent_b.stats()?),
        ],
    );

    info!(
        rate = params.rate,
        seconds = params.seconds,
        "meshsync: steady workload"
    );
    let steady = workload::steady(
        &mut src,
        &mut dst,
        params.steady_base(),
        params.rate,
        params.seconds,
    )
    .await?;
    agent_a.check_alive()?;
    agent_b.check_alive()?;
    drop((agent_a, agent_b, src, dst));
    Ok(MeshRun {
        result: SystemResult {
            name: "meshsync".to_owned(),
            catch_up,
            steady,
            resources,
        },
        nats_version,
    })
}

/// Waits until agent A's stored capture position (`meshsync.capture_state`, written once
/// JetStream acknowledged the batches before it) has reached GTID state `end`: every row
/// written before it is stored in JetStream. Returns the time waited.
async fn wait_published(
    src: &mut MySqlConnection,
    agent: &mut AgentProc,
    end: &str,
) -> Result<Duration> {
    let started = Instant::now();
    loop {
        agent.check_alive()?;
        let states: Vec<(String,)> =
            sqlx::query_as("SELECT gtid_state FROM meshsync.capture_state")
                .fetch_all(&mut *src)
                .await?;
        if states.iter().any(|(s,)| workload::gtid_reached(s, end)) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(3600) {
            bail!("agent A did not publish everything within an hour");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
