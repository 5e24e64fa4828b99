//! Starting a mesh of PostgreSQL peers for a scenario.

use std::time::Duration;

use anyhow::{Context, Result};
use meshsync_e2e::peer::Peer;
use meshsync_testkit::{NatsServer, wait_until};

/// A running mesh: one nats-server, peers with agents.
/// The server and folder are held for their `Drop` (kill and delete at the end of a test).
#[allow(dead_code)]
pub struct Mesh {
    pub nats: NatsServer,
    pub peers: Vec<Peer>,
    pub client: async_nats::Client,
    pub dir: tempfile::TempDir,
}

impl Mesh {
    /// Starts nats and `ids.len()` PostgreSQL peers with their agents, and waits until every
    /// agent captures and applies.
    pub async fn start(ids: &[&str]) -> Result<Mesh> {
        Self::start_with(ids, "", &[]).await
    }

    /// As [`Mesh::start`], with extra DDL on every peer and extra replicated tables.
    pub async fn start_with(ids: &[&str], extra_ddl: &str, extra_tables: &[&str]) -> Result<Mesh> {
        Self::start_configured(ids, extra_ddl, extra_tables, "").await
    }

    /// As [`Mesh::start_with`], with `extra_config` (TOML, e.g. a `[merge]` section) appended
    /// to every peer's config.
    pub async fn start_configured(
        ids: &[&str],
        extra_ddl: &str,
        extra_tables: &[&str],
        extra_config: &str,
    ) -> Result<Mesh> {
        let dir = tempfile::tempdir()?;
        let nats = NatsServer::start_single().await?;
        let mut peers = Vec::new();
        for id in ids {
            let mut p =
                Peer::start_with(id, &nats.client_url(), dir.path(), extra_ddl, extra_tables)
                    .await?;
            if !extra_config.is_empty() {
                let mut text = std::fs::read_to_string(&p.config)?;
                text.push_str(extra_config);
                std::fs::write(&p.config, text)?;
            }
            p.start_agent()?;
            peers.push(p);
        }
        let client = async_nats::connect(nats.client_url()).await?;
        let mesh = Mesh {
            nats,
            peers,
            client,
            dir,
        };
        for i in 0..mesh.peers.len() {
            mesh.wait_started(i).await?;
        }
        Ok(mesh)
    }

    /// Waits until peer `i`'s agent logs that capture and apply run.
    pub async fn wait_started(&self, i: usize) -> Result<()> {
        let peer = &self.peers[i];
        let agent = peer
            .agent
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("peer {} has no agent", peer.id))?;
        wait_agent_started(agent)
            .await
            .with_context(|| format!("peer {}", peer.id))
    }

    /// Waits until every peer's consumer has applied everything on the stream.
    pub async fn wait_drained(&self, timeout: Duration) {
        meshsync_e2e::checker::wait_drained(&self.client, "MESH", &self.consumers(), timeout)
            .await
            .unwrap();
    }

    /// Waits until `check` holds on every peer's rows (id, v, n).
    pub async fn wait_all(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&[(i32, String, Option<i64>)]) -> bool,
    ) {
        for p in &self.peers {
            let check = &check;
            let waited = wait_until(&format!("{what} on {}", p.id), timeout, || async move {
                check(&p.rows().await.ok()?).then_some(())
            })
            .await;
            if let Err(e) = waited {
                let rows = p.rows().await.unwrap_or_default();
                panic!("{e}; {} holds {rows:?}", p.id);
            }
        }
    }

    /// Everything parked on the dead-letter stream: (subject, `Mesh-Park-Reason`).
    pub async fn parked(&self) -> Vec<(String, String)> {
        use async_nats::jetstream::{
            self,
            consumer::{AckPolicy, pull},
        };
        use futures::StreamExt;
        let js = jetstream::new(self.client.clone());
        let dlq = js.get_stream("MESH_DLQ").await.unwrap();
        let consumer = dlq
            .create_consumer(pull::Config {
                ack_policy: AckPolicy::None,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut msgs = consumer
            .fetch()
            .max_messages(1000)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .unwrap();
        let mut out = Vec::new();
        while let Some(m) = msgs.next().await {
            let m = m.unwrap();
            let h = m.headers.clone().unwrap_or_default();
            out.push((
                m.subject.to_string(),
                h.get("Mesh-Park-Reason")
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default(),
            ));
        }
        out
    }

    /// Durable consumer names of all peers.
    pub fn consumers(&self) -> Vec<String> {
        self.peers
            .iter()
            .map(|p| format!("apply_{}", p.id))
            .collect()
    }

    /// Waits until the mesh is quiet after `writes`, then checks that the stream holds each
    /// committed write exactly once (I7) and that every peer holds, per key, the write with the
    /// highest (HLC, origin, index), deleted keys absent (I1, I2, I3). Returns what they hold.
    pub async fn assert_converged(
        &self,
        writes: &[meshsync_e2e::checker::Write],
        timeout: Duration,
    ) -> Vec<(i32, String, Option<i64>)> {
        use meshsync_e2e::checker;
        checker::wait_quiet(
            &self.client,
            "MESH",
            writes.len(),
            &self.consumers(),
            timeout,
        )
        .await
        .unwrap();
        let rows = checker::rows_of(&checker::read_stream(&self.client, "MESH").await.unwrap());
        checker::check_stream_matches_writes(&rows, writes).unwrap();
        let expected = checker::expected(&rows);
        for p in &self.peers {
            assert_eq!(
                p.rows().await.unwrap(),
                expected,
                "peer {} holds something other than the winners",
                p.id
            );
        }
        expected
    }
}

/// Waits until `agent` logs that capture and apply run (its log is in the error otherwise).
pub async fn wait_agent_started(agent: &meshsync_e2e::agent::Agent) -> Result<()> {
    wait_until("agent to start", Duration::from_secs(60), || async {
        let log = agent.log();
        (log.contains("capture started") && log.contains("apply started")).then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}; log:\n{}", agent.log()))
}

/// Runs `meshsync verify` on the configs: (exit status 0, stdout).
pub fn verify(configs: &[std::path::PathBuf]) -> (bool, String) {
    let mut cmd = std::process::Command::new(meshsync_e2e::agent::binary().unwrap());
    cmd.arg("verify");
    for c in configs {
        cmd.arg("--config").arg(c);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The value of field `name` in a log line (`... name=value ...`), as written.
pub fn log_field<'l>(line: &'l str, name: &str) -> Option<&'l str> {
    line.split(&format!(" {name}="))
        .nth(1)?
        .split_whitespace()
        .next()
}
