//! meshsync under test with MariaDB: two servers, each with an agent running as a child
//! process of this executable (`meshsync run --config`), writes on peer A only.

use std::{
    ops::RangeInclusive,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use meshsync_testkit::{MariaDb, NatsServer};
use sqlx::MySqlConnection;
use tracing::info;

use super::{
    Params,
    mesh::{self, AgentProc, ProcStats},
    mysql_workload::{self as workload, DB},
    report::CatchUp,
    rounds::{Replicator, Round},
    workload::Steady,
};

/// meshsync between two MariaDB peers: agent A always on, agent B started for each round
/// and stopped after it.
pub struct MeshMariaDb {
    nats: NatsServer,
    // The servers live as long as the connections to them.
    _a: MariaDb,
    b: MariaDb,
    src: MySqlConnection,
    dst: MySqlConnection,
    agent_a: AgentProc,
    config_b: PathBuf,
    out: PathBuf,
    /// Version the nats-server reported.
    pub nats_version: String,
}

impl MeshMariaDb {
    /// Starts the nats-server, both peers and agent A.
    pub async fn start(params: &Params) -> Result<MeshMariaDb> {
        let nats = NatsServer::start_single()
            .await
            .context("start nats-server")?;
        let nats_version = mesh::server_version(&nats).await?;
        let a = MariaDb::start().await.context("start peer A's MariaDB")?;
        let b = MariaDb::start().await.context("start peer B's MariaDB")?;
        let mut configs = Vec::new();
        for (id, db) in [("a", &a), ("b", &b)] {
            db.create_database(DB).await?;
            let mut c = db.connect(DB).await?;
            sqlx::raw_sql(workload::TABLE_DDL).execute(&mut c).await?;
            configs.push(mesh::write_config(params, id, &nats, "mysql", &db.url(DB))?);
        }
        let src = a.connect(DB).await?;
        let dst = b.connect(DB).await?;
        let mut agent_a = AgentProc::start(&configs[0], &params.out.join("agent-mysql-a.log"))?;
        agent_a.wait_started().await?;
        Ok(MeshMariaDb {
            nats,
            _a: a,
            b,
            src,
            dst,
            agent_a,
            config_b: configs[1].clone(),
            out: params.out.clone(),
            nats_version,
        })
    }
}

impl Replicator for MeshMariaDb {
    fn name(&self) -> &'static str {
        "meshsync"
    }

    async fn catch_up(&mut self, params: &Params, ids: RangeInclusive<i64>) -> Result<Round> {
        let last = *ids.end();
        let a_before = self.agent_a.stats()?;
        let b_pid = self.b.pid().context("peer B's MariaDB not running")?;
        // Agent A captures and publishes while the rows are written; B is off.
        let insert = workload::insert_catch_up(&mut self.src, ids, params.txn_size).await?;
        let end = workload::gtid_binlog_pos(&mut self.src).await?;
        let published_after = wait_published(&mut self.src, &mut self.agent_a, &end).await?;
        let publish = insert + published_after;
        let settled =
            publish + mesh::wait_own_applied(&self.nats.client_url(), &mut self.agent_a).await?;
        info!(
            rows = params.rows,
            insert_secs = insert.as_secs_f64(),
            published_secs = publish.as_secs_f64(),
            settled_secs = settled.as_secs_f64(),
            "meshsync: rows written, published and recorded by A; starting B"
        );
        let b_before = ProcStats::read(b_pid)?;
        let started = Instant::now();
        let log = self.out.join(format!("agent-mysql-b-{last}.log"));
        let mut agent_b = AgentProc::start(&self.config_b, &log)?;
        workload::wait_count(&mut self.dst, last as u64, Duration::from_secs(3600)).await?;
        let elapsed = started.elapsed();
        let catch_up = CatchUp::new(params.rows, insert, Some((publish, settled)), elapsed);
        let processes = vec![
            (
                "agent A (sender)".to_owned(),
                self.agent_a.stats()?.since(a_before),
            ),
            ("agent B (receiver)".to_owned(), agent_b.stats()?),
            // Its sessions applying, and its binlog dump to B's capture (apply's own rows
            // included), as native's whole replica server is measured.
            (
                "B's mariadbd".to_owned(),
                ProcStats::read(b_pid)?.since(b_before).cpu_only(),
            ),
        ];
        agent_b.stop().await?;
        Ok(Round {
            catch_up,
            processes,
        })
    }

    async fn steady(&mut self, params: &Params) -> Result<Steady> {
        let log = self.out.join("agent-mysql-b-steady.log");
        let mut agent_b = AgentProc::start(&self.config_b, &log)?;
        agent_b.wait_started().await?;
        let steady = workload::steady(
            &mut self.src,
            &mut self.dst,
            params.steady_base(),
            params.rate,
            params.seconds,
        )
        .await?;
        self.agent_a.check_alive()?;
        agent_b.check_alive()?;
        Ok(steady)
    }
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
