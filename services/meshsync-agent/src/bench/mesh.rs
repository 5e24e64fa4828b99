//! meshsync under test: two PostgreSQL peers, each with an agent running as a child process
//! of this executable (`meshsync run --config`), writes on peer A only.

use std::{
    ops::RangeInclusive,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use meshsync_core::PeerId;
use meshsync_pg::setup::Names;
use meshsync_testkit::{NatsServer, Postgres};
use sqlx::PgConnection;

use super::{
    Params,
    agents::Agents,
    report::CatchUp,
    rounds::{Replicator, Round},
    workload::{self, Steady},
};

/// Database used on both peers.
const DB: &str = "bench";

/// Variable whose value, if set, is the agents' `RUST_LOG` (e.g. `info,meshsync=debug` to
/// see when each transaction is published and applied).
pub const AGENT_LOG_ENV: &str = "MESHSYNC_BENCH_AGENT_LOG";

/// How long a stopping agent may take before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

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

    /// These figures with the memory left out (NaN, printed as "-"): a database server
    /// process's resident set is mostly the shared buffers it touched, not its own memory.
    pub fn cpu_only(self) -> ProcStats {
        ProcStats {
            cpu_secs: self.cpu_secs,
            peak_rss_mib: f64::NAN,
        }
    }

    /// The CPU used since `before` (a reading of the same process), with the peak so far.
    pub fn since(self, before: ProcStats) -> ProcStats {
        ProcStats {
            cpu_secs: self.cpu_secs - before.cpu_secs,
            peak_rss_mib: self.peak_rss_mib,
        }
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

    /// Stops the agent as Ctrl-C would; kills it if it has not exited after
    /// [`STOP_GRACE`].
    pub async fn stop(mut self) -> Result<()> {
        self.check_alive()?;
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::INT)
            .context("signal the agent to stop")?;
        let started = Instant::now();
        while self.child.try_wait()?.is_none() {
            if started.elapsed() > STOP_GRACE {
                tracing::warn!(log = %self.log.display(), "agent did not stop on SIGINT; killed");
                break; // Drop kills it.
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
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

/// meshsync between two PostgreSQL peers: agent A always on, agent B started for each
/// round and stopped after it.
pub struct Mesh {
    agents: Agents,
    // The servers live as long as the connections to them.
    _a: Postgres,
    _b: Postgres,
    src: PgConnection,
    dst: PgConnection,
}

impl Mesh {
    /// Starts the nats-server, both peers and agent A.
    pub async fn start(params: &Params) -> Result<Mesh> {
        let nats = NatsServer::start_single()
            .await
            .context("start nats-server")?;
        let a = Postgres::start_with(&params.pg_settings)
            .await
            .context("start peer A's PostgreSQL")?;
        let b = Postgres::start_with(&params.pg_settings)
            .await
            .context("start peer B's PostgreSQL")?;
        for pg in [&a, &b] {
            pg.create_database(DB).await?;
            let mut c = pg.connect(DB).await?;
            sqlx::raw_sql(workload::TABLE_DDL).execute(&mut c).await?;
        }
        let urls = [a.url(DB), b.url(DB)];
        let agents = Agents::start(params, nats, "postgres", "agent", [&urls[0], &urls[1]]).await?;
        Ok(Mesh {
            agents,
            src: a.connect(DB).await?,
            dst: b.connect(DB).await?,
            _a: a,
            _b: b,
        })
    }

    /// Version the nats-server reported.
    pub fn nats_version(&self) -> &str {
        &self.agents.nats_version
    }
}

impl Replicator for Mesh {
    fn name(&self) -> &'static str {
        "meshsync"
    }

    async fn catch_up(&mut self, params: &Params, ids: RangeInclusive<i64>) -> Result<Round> {
        let (src, dst) = (&mut self.src, &mut self.dst);
        let last = *ids.end();
        let a_before = self.agents.a().stats()?;
        // Agent A captures and publishes while the rows are written; B is off.
        let insert = workload::insert_catch_up(src, ids, params.txn_size).await?;
        let end_lsn = workload::current_lsn(src).await?;
        let published_after = wait_published(src, self.agents.a(), end_lsn).await?;
        let (publish, settled) = self
            .agents
            .settle(params.rows, insert, published_after)
            .await?;
        let wal_from = workload::current_lsn(dst).await?;
        let started = Instant::now();
        let mut agent_b = self.agents.start_b(last)?;
        workload::wait_count(dst, last as u64, Duration::from_secs(3600)).await?;
        let elapsed = started.elapsed();
        let wal_to = workload::current_lsn(dst).await?;
        let catch_up = CatchUp::new(params.rows, insert, Some((publish, settled)), elapsed)
            .with_receiver_wal(wal_from, wal_to);
        let mut processes = self.agents.processes(a_before, &mut agent_b)?;
        processes.extend(receiver_backends(dst).await?);
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

/// Peer B's PostgreSQL processes serving agent B, which started with it: the sessions that
/// apply (and store capture state), and the walsender that decodes B's WAL for B's capture,
/// apply's own rows included (PostgreSQL 15 cannot leave them out). Native's apply worker
/// does its database work itself, so without these the comparison would leave out half of
/// meshsync's receiving cost.
async fn receiver_backends(dst: &mut PgConnection) -> Result<Vec<(String, ProcStats)>> {
    let pids: Vec<(i32, String)> = sqlx::query_as(
        "SELECT pid, backend_type FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND backend_type IN ('client backend', 'walsender')",
    )
    .fetch_all(dst)
    .await?;
    let mut out = Vec::new();
    for (pid, kind) in pids {
        let role = if kind == "walsender" {
            "B's walsender"
        } else {
            "B's PG sessions"
        };
        if let Ok(stats) = ProcStats::read(pid as u32) {
            out.push((role.to_owned(), stats.cpu_only()));
        }
    }
    Ok(out)
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
