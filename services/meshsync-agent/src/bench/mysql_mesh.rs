//! meshsync under test with MariaDB: two servers, each with an agent running as a child
//! process of this executable (`meshsync run --config`), writes on peer A only.

use std::{
    ops::RangeInclusive,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use meshsync_testkit::{MariaDb, NatsServer};
use sqlx::MySqlConnection;

use super::{
    Params,
    agents::Agents,
    mesh::{AgentProc, ProcStats},
    mysql_workload::{self as workload, DB},
    report::CatchUp,
    rounds::{Replicator, Round},
    workload::Steady,
};

/// meshsync between two MariaDB peers: agent A always on, agent B started for each round
/// and stopped after it.
pub struct MeshMariaDb {
    agents: Agents,
    // Peer A lives as long as the connection to it.
    _a: MariaDb,
    b: MariaDb,
    src: MySqlConnection,
    dst: MySqlConnection,
}

impl MeshMariaDb {
    /// Starts the nats-server, both peers and agent A.
    pub async fn start(params: &Params) -> Result<MeshMariaDb> {
        let nats = NatsServer::start_single()
            .await
            .context("start nats-server")?;
        let a = MariaDb::start().await.context("start peer A's MariaDB")?;
        let b = MariaDb::start().await.context("start peer B's MariaDB")?;
        for db in [&a, &b] {
            db.create_database(DB).await?;
            let mut c = db.connect(DB).await?;
            sqlx::raw_sql(workload::TABLE_DDL).execute(&mut c).await?;
        }
        let urls = [a.url(DB), b.url(DB)];
        let agents =
            Agents::start(params, nats, "mysql", "agent-mysql", [&urls[0], &urls[1]]).await?;
        Ok(MeshMariaDb {
            agents,
            src: a.connect(DB).await?,
            dst: b.connect(DB).await?,
            _a: a,
            b,
        })
    }

    /// Version the nats-server reported.
    pub fn nats_version(&self) -> &str {
        &self.agents.nats_version
    }
}

impl Replicator for MeshMariaDb {
    fn name(&self) -> &'static str {
        "meshsync"
    }

    async fn catch_up(&mut self, params: &Params, ids: RangeInclusive<i64>) -> Result<Round> {
        let last = *ids.end();
        let a_before = self.agents.a().stats()?;
        let b_pid = self.b.pid().context("peer B's MariaDB not running")?;
        // Agent A captures and publishes while the rows are written; B is off.
        let insert = workload::insert_catch_up(&mut self.src, ids, params.txn_size).await?;
        let end = workload::gtid_binlog_pos(&mut self.src).await?;
        let published_after = wait_published(&mut self.src, self.agents.a(), &end).await?;
        let (publish, settled) = self
            .agents
            .settle(params.rows, insert, published_after)
            .await?;
        let b_before = ProcStats::read(b_pid)?;
        let started = Instant::now();
        let mut agent_b = self.agents.start_b(last)?;
        workload::wait_count(&mut self.dst, last as u64, Duration::from_secs(3600)).await?;
        let elapsed = started.elapsed();
        let catch_up = CatchUp::new(params.rows, insert, Some((publish, settled)), elapsed);
        let mut processes = self.agents.processes(a_before, &mut agent_b)?;
        // Its sessions applying, and its binlog dump to B's capture (apply's own rows
        // included), as native's whole replica server is measured.
        processes.push((
            "B's mariadbd".to_owned(),
            ProcStats::read(b_pid)?.since(b_before).cpu_only(),
        ));
        agent_b.stop().await?;
        Ok(Round {
            catch_up,
            processes,
        })
    }

    async fn steady(&mut self, params: &Params) -> Result<Steady> {
        let mut agent_b = self.agents.start_b_steady().await?;
        let steady = workload::steady(
            &mut self.src,
            &mut self.dst,
            params.steady_base(),
            params.rate,
            params.seconds,
        )
        .await?;
        self.agents.check_alive(&mut agent_b)?;
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
