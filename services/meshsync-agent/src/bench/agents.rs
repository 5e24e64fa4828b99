//! The agents of a meshsync bench run and the nats-server they share, whatever the engine
//! ([`super::mesh`], [`super::mysql_mesh`]): agent A always on, agent B started for each
//! catch-up round and stopped after it.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use meshsync_core::PeerId;
use meshsync_testkit::NatsServer;
use meshsync_wire::subject::{GLOBAL_STREAM, apply_consumer};
use tracing::info;

use super::{
    Params,
    mesh::{AgentProc, ProcStats},
};

/// Agents A and B of one bench run.
pub struct Agents {
    nats: NatsServer,
    a: AgentProc,
    config_b: PathBuf,
    /// Logs are `<prefix>-a.log`, `<prefix>-b-<last id>.log` and `<prefix>-b-steady.log`.
    log_prefix: PathBuf,
    /// Version the nats-server reported.
    pub nats_version: String,
}

impl Agents {
    /// Writes both agents' configs (`engine`, databases at `urls`, A's first) and starts A,
    /// logging under `<out>/<log_name>`.
    pub async fn start(
        params: &Params,
        nats: NatsServer,
        engine: &str,
        log_name: &str,
        urls: [&str; 2],
    ) -> Result<Agents> {
        let nats_version = server_version(&nats).await?;
        let config_a = write_config(params, "a", &nats, engine, urls[0])?;
        let config_b = write_config(params, "b", &nats, engine, urls[1])?;
        let log_prefix = params.out.join(log_name);
        let mut a = AgentProc::start(&config_a, &log(&log_prefix, "a"))?;
        a.wait_started().await?;
        Ok(Agents {
            nats,
            a,
            config_b,
            log_prefix,
            nats_version,
        })
    }

    /// Agent A, to watch while waiting for it.
    pub fn a(&mut self) -> &mut AgentProc {
        &mut self.a
    }

    /// Once A had a round's rows in JetStream (`insert` + `published_after` from the first
    /// insert), waits until A has also applied them (see [`wait_own_applied`]). Returns the
    /// times from the first insert: (published, settled).
    pub async fn settle(
        &mut self,
        rows: u64,
        insert: Duration,
        published_after: Duration,
    ) -> Result<(Duration, Duration)> {
        let publish = insert + published_after;
        let settled = publish + wait_own_applied(&self.nats.client_url(), &mut self.a).await?;
        info!(
            rows,
            insert_secs = insert.as_secs_f64(),
            published_secs = publish.as_secs_f64(),
            settled_secs = settled.as_secs_f64(),
            "meshsync: rows written, published and recorded by A; starting B"
        );
        Ok((publish, settled))
    }

    /// Starts agent B for the round that wrote up to id `last`.
    pub fn start_b(&self, last: i64) -> Result<AgentProc> {
        AgentProc::start(&self.config_b, &log(&self.log_prefix, &format!("b-{last}")))
    }

    /// Starts agent B for the steady workload, once it runs.
    pub async fn start_b_steady(&self) -> Result<AgentProc> {
        let mut b = AgentProc::start(&self.config_b, &log(&self.log_prefix, "b-steady"))?;
        b.wait_started().await?;
        Ok(b)
    }

    /// The agents' figures for a round: A's since `a_before` (taken before the round's
    /// inserts), B's since its start.
    pub fn processes(
        &mut self,
        a_before: ProcStats,
        b: &mut AgentProc,
    ) -> Result<Vec<(String, ProcStats)>> {
        Ok(vec![
            (
                "agent A (sender)".to_owned(),
                self.a.stats()?.since(a_before),
            ),
            ("agent B (receiver)".to_owned(), b.stats()?),
        ])
    }

    /// Fails, quoting its log, if A or `b` exited.
    pub fn check_alive(&mut self, b: &mut AgentProc) -> Result<()> {
        self.a.check_alive()?;
        b.check_alive()
    }
}

/// `<prefix>-<name>.log`.
fn log(prefix: &std::path::Path, name: &str) -> PathBuf {
    let mut file = prefix.as_os_str().to_owned();
    file.push(format!("-{name}.log"));
    PathBuf::from(file)
}

/// The version `nats` reports.
async fn server_version(nats: &NatsServer) -> Result<String> {
    let client =
        meshsync_nats::connect(&nats.client_url(), "meshsync bench", &Default::default()).await?;
    // The INFO of the server arrives with the connection; a flush waits for it.
    client.flush().await.context("reach nats-server")?;
    Ok(client.server_info().version)
}

/// Writes and checks the config of agent `id` on `engine` at `url`; returns its path.
fn write_config(
    params: &Params,
    id: &str,
    nats: &NatsServer,
    engine: &str,
    url: &str,
) -> Result<PathBuf> {
    let config = params.out.join(format!("agent-{engine}-{id}.toml"));
    let text = format!(
        "[peer]\nid = \"{id}\"\n[nats]\nurl = \"{}\"\n[database]\nengine = \"{engine}\"\nurl = \"{url}\"\ntables = [\"public.items\"]\n",
        nats.client_url(),
    );
    meshsync_config::Config::from_toml(&text, "bench").context("agent config")?;
    std::fs::write(&config, text).with_context(|| format!("write {}", config.display()))?;
    Ok(config)
}

/// Waits until agent A's apply has taken in its own published changes (it records their
/// states): until then it competes with B for the same cores, and B's catch-up time would
/// measure A's backlog too. Returns the time waited.
async fn wait_own_applied(nats_url: &str, agent: &mut AgentProc) -> Result<Duration> {
    let client = meshsync_nats::connect(nats_url, "meshsync bench", &Default::default()).await?;
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
