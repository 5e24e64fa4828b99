//! The configuration file's shape. Every field is documented here; `docs/configuration.md`
//! shows a complete file.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::secret::Secret;

/// One peer agent: one database in the mesh.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Who this peer is.
    pub peer: PeerConfig,
    /// Where the NATS server (hub, or this site's leaf node) is.
    pub nats: NatsConfig,
    /// The database this agent captures from and applies to.
    pub database: DatabaseConfig,
    /// Clock-sanity settings (I11).
    #[serde(default)]
    pub clock: ClockConfig,
    /// How concurrent writes merge, and which conflicts are logged with values.
    #[serde(default)]
    pub merge: MergeConfig,
}

/// `[merge]`: the merge policies. Every peer of a mesh must use the same policies, or the
/// peers merge the same changes differently and do not converge.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeConfig {
    /// Policy of every column without a more specific one: `lww-column` (default), `lww`,
    /// `max`, `min`, `counter`, `set-union`, `origin-priority:<peer>,<peer>,...` or a custom
    /// policy registered in the binary.
    #[serde(default = "default_policy")]
    pub default: String,
    /// Tables whose conflict records carry no values (keys, versions and winners only).
    #[serde(default)]
    pub sensitive: Vec<String>,
    /// Per-table policies, by `schema.table`.
    #[serde(default)]
    pub tables: std::collections::BTreeMap<String, TableMerge>,
    /// How long a deleted row's tombstone is kept, in seconds (default 7 days). Changes stamped
    /// older than this are parked rather than applied, since the delete they would lose to may
    /// be forgotten: keep it above the longest time a peer or site may be offline.
    #[serde(default = "default_tombstone_retention_s")]
    pub tombstone_retention_s: u64,
}

/// `merge.tombstone_retention_s` when the config does not set it: 7 days.
pub const DEFAULT_TOMBSTONE_RETENTION_S: u64 = 7 * 24 * 3600;

const fn default_tombstone_retention_s() -> u64 {
    DEFAULT_TOMBSTONE_RETENTION_S
}

/// `[merge.tables."schema.table"]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableMerge {
    /// The table's default policy (else `merge.default`).
    pub policy: Option<String>,
    /// Per-column policies, e.g. `{ stock = "counter", tags = "set-union" }`.
    #[serde(default)]
    pub columns: std::collections::BTreeMap<String, String>,
}

impl MergeConfig {
    /// The tombstone retention as a duration.
    pub fn tombstone_retention(&self) -> Duration {
        Duration::from_secs(self.tombstone_retention_s)
    }
}

fn default_policy() -> String {
    "lww-column".to_owned()
}

impl Default for MergeConfig {
    fn default() -> Self {
        MergeConfig {
            default: default_policy(),
            sensitive: Vec::new(),
            tables: Default::default(),
            tombstone_retention_s: default_tombstone_retention_s(),
        }
    }
}

/// `[peer]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Unique id of this peer in the mesh: 1-64 of `A-Z a-z 0-9 - _` (part of subjects).
    pub id: String,
}

/// `[nats]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated: `nats://127.0.0.1:4222`.
    pub url: Secret,
    /// JetStream domain of this site's leaf node (edge topology only). Without it the peer
    /// talks straight to the hub's global stream (direct topology).
    #[serde(default)]
    pub domain: Option<String>,
    /// Replicas of the global stream when this peer creates it: 1 on a single server, 3 on a
    /// 3-node hub cluster (survives the loss of one node). Default 1.
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// The CA that signed the servers' certificates (PEM), when it is not one the system
    /// trusts; setting it requires TLS.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for servers that verify clients (`verify: true`), with
    /// `tls_key_file`.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
}

const fn default_replicas() -> usize {
    1
}

/// Database engines meshsync knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// PostgreSQL 15 or later (logical replication, pgoutput).
    Postgres,
    /// MySQL 8 or MariaDB 10.11 (binlog, ROW format).
    Mysql,
    /// SQLite (triggers into a change-log table).
    Sqlite,
    /// MongoDB (change streams; replica set required).
    Mongodb,
    /// SQL Server (CDC change tables).
    Sqlserver,
    /// Oracle (LogMiner).
    Oracle,
}

impl Engine {
    /// Config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
            Engine::Sqlite => "sqlite",
            Engine::Mongodb => "mongodb",
            Engine::Sqlserver => "sqlserver",
            Engine::Oracle => "oracle",
        }
    }

    /// URL schemes accepted for this engine.
    pub fn url_schemes(self) -> &'static [&'static str] {
        match self {
            Engine::Postgres => &["postgres://", "postgresql://"],
            Engine::Mysql => &["mysql://", "mariadb://"],
            Engine::Sqlite => &["sqlite:"],
            Engine::Mongodb => &["mongodb://", "mongodb+srv://"],
            Engine::Sqlserver => &["sqlserver://", "mssql://", "jdbc:sqlserver://"],
            Engine::Oracle => &["oracle://"],
        }
    }
}

/// `[database]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres | mysql | sqlite | mongodb | sqlserver | oracle`.
    pub engine: Engine,
    /// Connection URL; may hold a password, so it is never logged in full.
    pub url: Secret,
    /// Replicated tables as `schema.table` (PostgreSQL schema, MariaDB database).
    pub tables: Vec<String>,
}

/// `[clock]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockConfig {
    /// How far ahead of this peer's clock a remote stamp may be before the change is parked
    /// (I11), in milliseconds. Default 500.
    #[serde(default = "default_future_bound_ms")]
    pub future_bound_ms: u64,
}

const fn default_future_bound_ms() -> u64 {
    500
}

impl Default for ClockConfig {
    fn default() -> Self {
        ClockConfig {
            future_bound_ms: default_future_bound_ms(),
        }
    }
}

impl ClockConfig {
    /// The future bound as a duration.
    pub fn future_bound(&self) -> Duration {
        Duration::from_millis(self.future_bound_ms)
    }
}
