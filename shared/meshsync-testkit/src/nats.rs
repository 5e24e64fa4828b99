//! nats-server processes from the configs in `nats-config/`.

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::{Context, Result};
use tempfile::TempDir;

use crate::{
    binaries,
    process::Server,
    wait::{free_port, wait_until},
};

/// One nats-server with JetStream.
pub struct NatsServer {
    server: Server,
    port: u16,
    leaf_port: Option<u16>,
    _dir: TempDir,
}

struct Spec {
    name: String,
    config: &'static str,
    env: Vec<(&'static str, String)>,
}

impl NatsServer {
    fn launch(spec: Spec, port: u16, leaf_port: Option<u16>) -> Result<NatsServer> {
        let dir = tempfile::Builder::new()
            .prefix("meshsync-nats-")
            .tempdir()?;
        let bin = binaries::nats_server()?;
        let config: PathBuf = binaries::workspace_root()
            .join("nats-config")
            .join(spec.config);
        let store = dir.path().join("store");
        let mut env = spec.env;
        env.push(("MESH_NAME", spec.name.clone()));
        env.push(("MESH_PORT", port.to_string()));
        env.push(("MESH_STORE", store.display().to_string()));
        let launcher = Box::new(move || {
            let mut c = Command::new(&bin);
            c.arg("-c").arg(&config);
            for (k, v) in &env {
                c.env(k, v);
            }
            c
        });
        let server = Server::spawn(&spec.name, &dir.path().join("server.log"), launcher)?;
        Ok(NatsServer {
            server,
            port,
            leaf_port,
            _dir: dir,
        })
    }

    /// A single JetStream server (`single.conf`).
    pub async fn start_single() -> Result<NatsServer> {
        let port = free_port()?;
        let s = Self::launch(
            Spec {
                name: format!("single-{port}"),
                config: "single.conf",
                env: vec![],
            },
            port,
            None,
        )?;
        s.ready().await
    }

    /// A single hub server: domain `hub` and a leaf-node listener (`hub.conf`).
    pub async fn start_hub() -> Result<NatsServer> {
        let (port, leaf) = (free_port()?, free_port()?);
        let env = vec![("MESH_LEAF_PORT", leaf.to_string())];
        let s = Self::launch(
            Spec {
                name: format!("hub-{port}"),
                config: "hub.conf",
                env,
            },
            port,
            Some(leaf),
        )?;
        s.ready().await
    }

    /// A leaf node in JetStream domain `domain`, connected to a hub's leaf port.
    pub async fn start_leaf(hub_leaf_url: &str, domain: &str) -> Result<NatsServer> {
        let port = free_port()?;
        let env = vec![
            ("MESH_DOMAIN", domain.to_owned()),
            ("MESH_HUB_LEAF_URL", hub_leaf_url.to_owned()),
        ];
        let s = Self::launch(
            Spec {
                name: format!("leaf-{domain}-{port}"),
                config: "leaf.conf",
                env,
            },
            port,
            None,
        )?;
        s.ready().await
    }

    async fn ready(mut self) -> Result<NatsServer> {
        self.wait_ready().await?;
        Ok(self)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let port = self.port;
        let log = self.server.log_tail();
        let _ = log;
        for _ in 0..2 {
            let r = wait_until(
                "nats-server to accept clients",
                Duration::from_secs(20),
                || async move {
                    tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .ok()
                        .map(|_| ())
                },
            )
            .await;
            if r.is_ok() {
                return Ok(());
            }
            self.server.check_alive()?;
        }
        self.server.check_alive()?;
        anyhow::bail!(
            "nats-server on port {port} did not come up; log:\n{}",
            self.server.log_tail()
        )
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn client_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `nats-leaf://127.0.0.1:LEAFPORT` of a hub.
    pub fn leaf_url(&self) -> Option<String> {
        self.leaf_port.map(|p| format!("nats-leaf://127.0.0.1:{p}"))
    }

    /// Graceful stop.
    pub fn stop(&mut self) -> Result<()> {
        self.server.stop()
    }

    /// SIGKILL.
    pub fn kill9(&mut self) -> Result<()> {
        self.server.kill9()
    }

    /// Starts again on the same port and store.
    pub async fn restart(&mut self) -> Result<()> {
        self.server.start()?;
        self.wait_ready().await.context("restart nats-server")
    }
}

/// A hub cluster (`hub-cluster.conf`), JetStream domain `hub`.
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `n` routed hub nodes.
    pub async fn start(n: usize) -> Result<NatsCluster> {
        let ports: Vec<(u16, u16, u16)> = (0..n)
            .map(|_| Ok((free_port()?, free_port()?, free_port()?)))
            .collect::<Result<_>>()?;
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, _, c)| format!("nats-route://127.0.0.1:{c}"))
            .collect();
        let mut nodes = Vec::new();
        for (i, (port, leaf, cluster)) in ports.iter().enumerate() {
            let env = vec![
                ("MESH_LEAF_PORT", leaf.to_string()),
                ("MESH_CLUSTER_PORT", cluster.to_string()),
                ("MESH_ROUTES", routes.join(",")),
            ];
            nodes.push(NatsServer::launch(
                Spec {
                    name: format!("hub-{i}-{port}"),
                    config: "hub-cluster.conf",
                    env,
                },
                *port,
                Some(*leaf),
            )?);
        }
        let mut ready = Vec::new();
        for node in nodes {
            ready.push(node.ready().await?);
        }
        Ok(NatsCluster { nodes: ready })
    }

    /// Client URLs of all nodes, comma-separated.
    pub fn client_url(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::client_url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Leaf URLs of all nodes.
    pub fn leaf_urls(&self) -> Vec<String> {
        self.nodes.iter().filter_map(NatsServer::leaf_url).collect()
    }

    /// Node `i`, to stop, kill or restart it.
    pub fn node(&mut self, i: usize) -> &mut NatsServer {
        &mut self.nodes[i]
    }
}
