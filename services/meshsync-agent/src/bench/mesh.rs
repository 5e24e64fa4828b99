//! meshsync under test: two PostgreSQL peers, each with an agent running as a child process
//! of this executable (`meshsync run --config`), writes on peer A only.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use meshsync_core::PeerId;
use meshsync_pg::setup::Names;
use meshsync_testkit::{NatsServer, Postgres};
use meshsync_wire::subject::{GLOBAL_STREAM, apply_consumer};
use sqlx::PgConnection;
use tracing::info;

use super::{
    Params,
    report::{CatchUp, Resources, SystemResult},
    workload,
};

/// Database used on both peers.
const DB: &str = "bench";

/// Variable whose value, if set, is the agents' `RUST_LOG` (e.g. `info,meshsync=debug` to
/// see when each transaction is published and applied).
pub const AGENT_LOG_ENV: &str = "MESHSYNC_BENCH_AGENT_LOG";

/// Linux reports `/proc/<pid>/stat` times in USER_HZ ticks, 100 per second.
const TICKS_PER_SEC: f64 = 100.0;

/// CPU time and peak resident memory of one process, from `/proc`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcStats {
    /// User + system CPU seconds so far.
    pub cpu_secs: f64,
    /// Peak resident set (VmHWM), MiB.
    pub peak_rss_mib: f64,
}

impl ProcStats {
    /// Reads the figures of process `pid`.
    pub fn read(pid: u32) -> Result<ProcStats> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("read /proc/{pid}/stat"))?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .context("malformed /proc/pid/stat")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here (0-based 11, 12).
        let tick = |i: usize| -> Result<f64> {
            Ok(fields
                .get(i)
                .context("short /proc/pid/stat")?
                .parse::<u64>()? as f64)
        };
        let cpu_secs = (tick(11)? + tick(12)?) / TICKS_PER_SEC;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("read /proc/{pid}/status"))?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        Ok(ProcStats {
            cpu_secs,
            peak_rss_mib: kib / 1024.0,
        })
    }
}

/// An agent child process; dropping it kills it.
pub struct AgentProc {
    child: Child,
    log: PathBuf,
}

impl AgentProc {
    /// Starts `<this executable> run --config <config>`, logging to `log`.
    pub fn start(config: &Path, log: &Path) -> Result<AgentProc> {
        let exe = std::env::current_exe().context("find this executable")?;
        let file =
            std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        let child = Command::new(exe)
            .arg("run")
            .arg("--config")
            .arg(config)
            .env(
                "RUST_LOG",
                std::env::var(AGENT_LOG_ENV)
                    .unwrap_or_else(|_| "info,sqlx=warn,async_nats=warn".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("start a meshsync agent")?;
        Ok(AgentProc {
            child,
            log: log.to_owned(),
        })
    }

    /// CPU and memory figures so far; fails if the agent exited.
    pub fn stats(&mut self) -> Result<ProcStats> {
        self.check_alive()?;
        ProcStats::read(self.child.id())
    }

    /// Fails, quoting the log's tail, if the agent exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: String = log
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            bail!("agent exited ({status}); log tail:\n{tail}");
        }
        Ok(())
    }

    /// Waits until the log shows that capture and apply run.
    pub async fn wait_started(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            self.check_alive()?;
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.contains("capture started") && log.contains("apply started") {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "agent did not start within 60 s; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the meshsync run measured, plus the nats-server version it ran against.
pub struct MeshRun {
    /// The figures.
    pub result: SystemResult,
    /// Version the nats-server reported.
    pub nats_version: String,
}

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
    let a = Postgres::start()
        .await
        .context("start peer A's PostgreSQL")?;
    let b = Postgres::start()
        .await
        .context("start peer B's PostgreSQL")?;
    let mut configs = Vec::new();
    for (id, pg) in [("a", &a), ("b", &b)] {
        pg.create_database(DB).await?;
        let mut c = pg.connect(DB).await?;
        sqlx::raw_sql(workload::TABLE_DDL).execute(&mut c).await?;
        let config = params.out.join(format!("agent-{id}.toml"));
        let text = format!(
            "[peer]\nid = \"{id}\"\n[nats]\nurl = \"{}\"\n[database]\nengine = \"postgres\"\nurl = \"{}\"\ntables = [\"public.items\"]\n",
            nats.client_url(),
            pg.url(DB)
        );
        meshsync_config::Config::from_toml(&text, "bench").context("agent config")?;
        std::fs::write(&config, text)?;
        configs.push(config);
    }
    let (config_a, config_b) = (&configs[0], &configs[1]);
    let mut src = a.connect(DB).await?;
    let mut dst = b.connect(DB).await?;

    // Catch-up: agent A captures and publishes while the rows are written; B is off.
    let mut agent_a = AgentProc::start(config_a, &params.out.join("agent-a.log"))?;
    agent_a.wait_started().await?;
    let insert = workload::insert_catch_up(&mut src, params.rows, params.txn_size).await?;
    let end_lsn = workload::current_lsn(&mut src).await?;
    let published_after = wait_published(&mut src, &mut agent_a, end_lsn).await?;
    let publish = insert + published_after;
    let settled = publish + wait_own_applied(&nats.client_url(), &mut agent_a).await?;
    info!(
        rows = params.rows,
        insert_secs = insert.as_secs_f64(),
        published_secs = publish.as_secs_f64(),
        settled_secs = settled.as_secs_f64(),
        "meshsync: rows written, published and recorded by A; starting B"
    );
    let wal_from = workload::current_lsn(&mut dst).await?;
    let started = Instant::now();
    let mut agent_b = AgentProc::start(config_b, &params.out.join("agent-b.log"))?;
    workload::wait_count(&mut dst, params.rows, Duration::from_secs(3600)).await?;
    let elapsed = started.elapsed();
    let wal_to = workload::current_lsn(&mut dst).await?;
    let catch_up = CatchUp::new(params.rows, insert, Some((publish, settled)), elapsed)
        .with_receiver_wal(wal_from, wal_to);
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

/// Waits until agent A's apply has taken in its own published changes (it records their
/// states): until then it competes with B for the same cores, and B's catch-up time would
/// measure A's backlog too. Returns the time waited.
pub async fn wait_own_applied(nats_url: &str, agent: &mut AgentProc) -> Result<Duration> {
    let client = meshsync_nats::connect(nats_url, "meshsync bench").await?;
    let consumer = apply_consumer(&PeerId::new("a")?);
    let started = Instant::now();
    loop {
        agent.check_alive()?;
        if meshsync_nats::inbox::is_drained(&client, GLOBAL_STREAM, &consumer).await {
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(3600) {
            bail!("agent A did not apply its own changes within an hour");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until agent A's slot is confirmed up to `lsn`: every row written before it is
/// stored in JetStream. Returns the time waited.
async fn wait_published(
    src: &mut PgConnection,
    agent: &mut AgentProc,
    lsn: i64,
) -> Result<Duration> {
    let slot = Names::for_peer(&PeerId::new("a")?).slot;
    let started = Instant::now();
    loop {
        agent.check_alive()?;
        let (confirmed,): (Option<i64>,) = sqlx::query_as(
            "SELECT max((confirmed_flush_lsn - '0/0')::int8) FROM pg_replication_slots WHERE slot_name = $1",
        )
        .bind(&slot)
        .fetch_one(&mut *src)
        .await?;
        if confirmed.is_some_and(|c| c >= lsn) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(3600) {
            bail!("agent A did not publish everything within an hour");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
