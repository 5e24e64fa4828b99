//! nats-server processes run from the configs in `nats-config/` (the files compose uses), with
//! their `$MESH_*` variables set on the child process.

use std::{path::Path, process::Command, time::Duration};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    binaries,
    process::Server,
    tls::TlsFiles,
    wait::{free_ports, retry_on_port_race, wait_until},
};

/// How long a server may take to become ready (JetStream recovery included).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// One nats-server with JetStream on a file store in its own temporary folder.
pub struct NatsServer {
    // Declared before `dir`: the process dies before its folder is deleted.
    server: Server,
    port: u16,
    http_port: u16,
    leaf_port: Option<u16>,
    tls: Option<TlsFiles>,
    dir: TempDir,
}

/// The user and password of [`NatsServer::start_secure`].
pub const NATS_USER: (&str, &str) = ("mesh", "mesh-secret");

/// The hub leaf-node URL(s) a leaf connects to: one (`&str`, `&String`) or several
/// (`&[String]`, `&Vec<String>`, e.g. [`NatsCluster::leaf_urls`]).
pub trait LeafRemotes {
    /// The URLs, `nats-leaf://host:port`.
    fn leaf_urls(&self) -> Vec<String>;
}

impl LeafRemotes for &str {
    fn leaf_urls(&self) -> Vec<String> {
        vec![(*self).to_owned()]
    }
}

impl LeafRemotes for &String {
    fn leaf_urls(&self) -> Vec<String> {
        vec![(*self).clone()]
    }
}

impl LeafRemotes for &[String] {
    fn leaf_urls(&self) -> Vec<String> {
        self.to_vec()
    }
}

impl LeafRemotes for &Vec<String> {
    fn leaf_urls(&self) -> Vec<String> {
        self.to_vec()
    }
}

/// What to launch: a config file and the variables it needs besides the common ones.
struct Launch {
    config: &'static str,
    role: String,
    port: u16,
    http_port: u16,
    leaf_port: Option<u16>,
    env: Vec<(&'static str, String)>,
    /// TLS with certificates of a CA of its own, in the server's folder.
    tls: bool,
}

/// `[a, b]`: nats-server parses a variable's value as a config value, so a list must be
/// bracketed (a bare `a,b` keeps only `a`).
fn config_list(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

impl NatsServer {
    /// A single JetStream server (`single.conf`): the direct topology.
    pub async fn start_single() -> Result<NatsServer> {
        retry_on_port_race(async || {
            let p = free_ports(2)?;
            Self::spawn_ready(Launch {
                config: "single.conf",
                role: "single".into(),
                port: p[0],
                http_port: p[1],
                leaf_port: None,
                env: vec![],
                tls: false,
            })
            .await
        })
        .await
    }

    /// A single JetStream server that takes clients only over TLS, with a client
    /// certificate and as [`NATS_USER`] (`single-secure.conf`); certificates from a CA of its
    /// own ([`NatsServer::tls_files`]), the server's for the name `localhost`.
    pub async fn start_secure() -> Result<NatsServer> {
        retry_on_port_race(async || {
            let p = free_ports(2)?;
            Self::spawn_ready(Launch {
                config: "single-secure.conf",
                role: "secure".into(),
                port: p[0],
                http_port: p[1],
                leaf_port: None,
                env: vec![
                    ("MESH_USER", NATS_USER.0.to_owned()),
                    ("MESH_PASSWORD", NATS_USER.1.to_owned()),
                ],
                tls: true,
            })
            .await
        })
        .await
    }

    /// A single hub server (`hub.conf`): JetStream domain `hub` and a leaf-node listener
    /// ([`NatsServer::leaf_url`]) for edge sites.
    pub async fn start_hub() -> Result<NatsServer> {
        retry_on_port_race(async || {
            let p = free_ports(3)?;
            Self::spawn_ready(Launch {
                config: "hub.conf",
                role: "hub".into(),
                port: p[0],
                http_port: p[1],
                leaf_port: Some(p[2]),
                env: vec![("MESH_LEAF_PORT", p[2].to_string())],
                tls: false,
            })
            .await
        })
        .await
    }

    /// A leaf node (`leaf.conf`) with its own JetStream in domain `domain`, connecting to the
    /// hub's leaf port(s). Ready means its own JetStream is up; the hub may be down on
    /// purpose, so it does not wait for the leaf connection ([`NatsServer::wait_leaf_connected`]).
    pub async fn start_leaf(hub_leaf_urls: impl LeafRemotes, domain: &str) -> Result<NatsServer> {
        let urls = hub_leaf_urls.leaf_urls();
        if urls.is_empty() {
            bail!("a leaf node needs at least one hub leaf URL");
        }
        retry_on_port_race(async || {
            let p = free_ports(2)?;
            Self::spawn_ready(Launch {
                config: "leaf.conf",
                role: format!("leaf-{domain}"),
                port: p[0],
                http_port: p[1],
                leaf_port: None,
                env: vec![
                    ("MESH_DOMAIN", domain.to_owned()),
                    ("MESH_HUB_LEAF_URLS", config_list(&urls)),
                ],
                tls: false,
            })
            .await
        })
        .await
    }

    async fn spawn_ready(launch: Launch) -> Result<NatsServer> {
        let mut server = Self::spawn(launch)?;
        server.wait_ready().await?;
        Ok(server)
    }

    /// Starts the process without waiting for it (a cluster starts all nodes, then waits).
    fn spawn(launch: Launch) -> Result<NatsServer> {
        let dir = tempfile::Builder::new()
            .prefix("meshsync-nats-")
            .tempdir()
            .context("create a temporary folder for nats-server")?;
        let bin = binaries::nats_server()?;
        let config = binaries::nats_config(launch.config)?;
        let name = format!("{}-{}", launch.role, launch.port);
        let mut env = launch.env;
        let tls = if launch.tls {
            let files = TlsFiles::generate(dir.path())?;
            env.extend([
                ("MESH_TLS_CERT", files.server_cert.display().to_string()),
                ("MESH_TLS_KEY", files.server_key.display().to_string()),
                ("MESH_TLS_CA", files.ca.display().to_string()),
            ]);
            Some(files)
        } else {
            None
        };
        env.extend([
            ("MESH_NAME", name.clone()),
            ("MESH_HOST", "127.0.0.1".to_owned()),
            ("MESH_PORT", launch.port.to_string()),
            ("MESH_HTTP_PORT", launch.http_port.to_string()),
            ("MESH_STORE", dir.path().join("store").display().to_string()),
        ]);
        let launcher = Box::new(move || {
            let mut c = Command::new(&bin);
            c.arg("-c")
                .arg(&config)
                .envs(env.iter().map(|(k, v)| (k, v)));
            c
        });
        let log = dir.path().join("nats-server.log");
        let mut server = Server::new(&format!("nats-server {name}"), &log, "TERM", launcher);
        server.start()?;
        Ok(NatsServer {
            server,
            port: launch.port,
            http_port: launch.http_port,
            leaf_port: launch.leaf_port,
            tls,
            dir,
        })
    }

    /// Ready: JetStream enabled, per the monitoring endpoint (a bare TCP accept comes earlier).
    async fn wait_ready(&mut self) -> Result<()> {
        self.wait_healthz("/healthz?js-enabled-only=true").await
    }

    async fn wait_healthz(&mut self, path: &str) -> Result<()> {
        let port = self.http_port;
        let what = format!("{} to answer 200 on {path}", self.client_url());
        self.server
            .wait_ready(&what, READY_TIMEOUT, || healthz(port, path))
            .await
    }

    /// Waits for the full `/healthz`: JetStream, its streams and consumers current (after a
    /// cluster node restarts, until it has caught up).
    pub async fn wait_healthy(&mut self) -> Result<()> {
        self.wait_healthz("/healthz").await
    }

    /// Waits until this server has at least one leaf-node connection (`/leafz`).
    pub async fn wait_leaf_connected(&self, timeout: Duration) -> Result<()> {
        let port = self.http_port;
        let what = format!("a leaf-node connection on {}", self.client_url());
        wait_until(&what, timeout, || async move {
            let (status, body) = http_get(port, "/leafz").await?;
            let json: serde_json::Value = serde_json::from_str(&body)
                .with_context(|| format!("/leafz answered {status}: {body}"))?;
            match json["leafnodes"].as_u64() {
                Some(n) if n > 0 => Ok(()),
                _ => bail!("/leafz: no leaf connection yet"),
            }
        })
        .await
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn client_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `tls://mesh:mesh-secret@localhost:PORT` of a [`NatsServer::start_secure`] server (the
    /// name its certificate holds).
    pub fn secure_url(&self) -> String {
        let (user, password) = NATS_USER;
        format!("tls://{user}:{password}@localhost:{}", self.port)
    }

    /// The certificates of a [`NatsServer::start_secure`] server: its CA, and a client
    /// certificate it accepts.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// The client port (the same after every restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `nats-leaf://127.0.0.1:PORT` of a hub's leaf-node listener; `None` for other servers.
    pub fn leaf_url(&self) -> Option<String> {
        self.leaf_port.map(|p| format!("nats-leaf://127.0.0.1:{p}"))
    }

    /// The server's temporary folder (store and log), deleted on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log file, for a test that wants to show or inspect it.
    pub fn log_path(&self) -> &Path {
        self.server.log_path()
    }

    /// The process id while running, e.g. to check that nothing leaks.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// Graceful stop (SIGTERM): clients see the server go away cleanly.
    pub fn stop(&mut self) -> Result<()> {
        self.server.stop()
    }

    /// SIGKILL: a crash; only what was fsynced survives.
    pub fn kill9(&mut self) -> Result<()> {
        self.server.kill9()
    }

    /// Starts the server again on the same port(s) and data after [`NatsServer::stop`] or
    /// [`NatsServer::kill9`] (stopping it gracefully first if it runs), and waits until it is
    /// ready: clients reconnect to the same address.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.server.start()?;
        self.wait_ready().await.context("start nats-server again")
    }
}

/// A JetStream hub cluster (`hub-cluster.conf`): routed nodes in JetStream domain `hub`, each
/// with its own store and a leaf-node listener.
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `n` routed hub nodes (3 for an R3 stream) and waits until each is ready and
    /// knows the JetStream meta leader, so streams can be created right away.
    pub async fn start(n: usize) -> Result<NatsCluster> {
        if n == 0 {
            bail!("a cluster needs at least one node");
        }
        retry_on_port_race(async || Self::try_start(n).await).await
    }

    async fn try_start(n: usize) -> Result<NatsCluster> {
        let ports = free_ports(4 * n)?;
        let ports: Vec<&[u16]> = ports.chunks(4).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{}", p[3]))
            .collect();
        let mut nodes = Vec::with_capacity(n);
        for (i, p) in ports.iter().enumerate() {
            nodes.push(NatsServer::spawn(Launch {
                config: "hub-cluster.conf",
                role: format!("hub{i}"),
                port: p[0],
                http_port: p[1],
                leaf_port: Some(p[2]),
                env: vec![
                    ("MESH_LEAF_PORT", p[2].to_string()),
                    ("MESH_CLUSTER_PORT", p[3].to_string()),
                    ("MESH_ROUTES", config_list(&routes)),
                ],
                tls: false,
            })?);
        }
        for node in &mut nodes {
            node.wait_ready().await?;
        }
        for node in &mut nodes {
            // The full check: the JetStream meta group has a leader this node follows
            // (`js-server-only` passes before that, and a stream create would then time out).
            node.wait_healthy().await?;
        }
        Ok(NatsCluster { nodes })
    }

    /// Client URLs of all nodes.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::client_url).collect()
    }

    /// All client URLs comma-separated, the form meshsync's config and `meshsync_nats::connect`
    /// take, so a client fails over when a node goes down (`async_nats::connect` itself wants
    /// [`NatsCluster::urls`]: it does not split commas).
    pub fn client_url(&self) -> String {
        self.urls().join(",")
    }

    /// Leaf-node URLs of all nodes, for [`NatsServer::start_leaf`].
    pub fn leaf_urls(&self) -> Vec<String> {
        self.nodes.iter().filter_map(NatsServer::leaf_url).collect()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a cluster has at least one node (for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`, to stop, kill or restart it. Panics if `i >= len()` (a test bug).
    pub fn node(&mut self, i: usize) -> &mut NatsServer {
        &mut self.nodes[i]
    }
}

/// `GET path` on the monitoring port: (status, body). HTTP/1.0, so the server closes.
async fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .with_context(|| format!("connect to monitoring port {port}"))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

async fn healthz(port: u16, path: &str) -> Result<()> {
    let (status, body) = http_get(port, path).await?;
    if status != 200 {
        bail!("{path} answered {status}: {}", body.trim());
    }
    Ok(())
}
