//! Preparing this peer's database, per engine: checks and the `meshsync` schema, the shapes of
//! the replicated tables, and what capture and apply need to connect.

use std::{collections::HashMap, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use meshsync_core::{PeerId, TableName};
use meshsync_hlc::NodeId;
use meshsync_nats::publisher::Publisher;
use meshsync_pg::error::is_tls_failure;
use sqlx::Connection;
use tracing::info;

use crate::{capture, metrics::Counters, sink::SinkTarget};

/// A prepared database.
pub struct Prepared {
    /// Where apply writes.
    pub target: SinkTarget,
    /// Column names of every replicated table, in table order.
    pub columns: HashMap<TableName, Vec<String>>,
    /// Builds the capture of this database.
    capture: CaptureKind,
}

/// What capture needs besides the shared parts.
enum CaptureKind {
    Postgres {
        url: String,
        parts: meshsync_pg::source::stream::ConnParts,
        names: meshsync_pg::setup::Names,
        tables: HashMap<TableName, meshsync_pg::catalog::TableInfo>,
    },
    MariaDb {
        url: String,
        database: String,
        tables: HashMap<TableName, meshsync_mariadb::catalog::TableInfo>,
    },
}

/// Checks and prepares a PostgreSQL database (idempotent).
pub async fn postgres(url: &str, peer: &PeerId, tables: &[TableName]) -> Result<Prepared> {
    let names = meshsync_pg::setup::Names::for_peer(peer);
    let parts = meshsync_pg::source::stream::ConnParts::from_url(url)?;
    // Certificate files and modes are checked before connecting: sqlx reports a missing file
    // as a bare I/O error, which would be retried as an unreachable database.
    parts
        .tls
        .check()
        .map_err(|e| meshsync_pg::PgError::Url(e.to_string()))?;
    let mut conn = retry(|| sqlx::PgConnection::connect(url), PG_TLS_HINT).await?;
    meshsync_pg::setup::prepare(&mut conn, &names, tables).await?;
    let shapes = meshsync_pg::catalog::load(&mut conn, tables).await?;
    let columns = shapes
        .iter()
        .map(|(n, i)| {
            (
                n.clone(),
                i.columns.iter().map(|c| c.name.clone()).collect(),
            )
        })
        .collect();
    Ok(Prepared {
        target: SinkTarget::Postgres {
            url: url.to_owned(),
            names: names.clone(),
            tables: shapes.clone(),
        },
        columns,
        capture: CaptureKind::Postgres {
            url: url.to_owned(),
            parts,
            names,
            tables: shapes,
        },
    })
}

/// Checks (binlog settings) and prepares a MariaDB server (idempotent).
pub async fn mariadb(url: &str, tables: &[TableName]) -> Result<Prepared> {
    // The URL's TLS parameters and certificate files, as the binlog connection will read them.
    meshsync_mariadb::source::binlog_opts(url, false)?;
    let mut conn = retry(|| sqlx::MySqlConnection::connect(url), MARIADB_TLS_HINT).await?;
    meshsync_mariadb::check::check(&mut conn).await?;
    meshsync_mariadb::setup::prepare(&mut conn).await?;
    let shapes = meshsync_mariadb::catalog::load(&mut conn, tables).await?;
    let columns = shapes
        .iter()
        .map(|(n, i)| {
            (
                n.clone(),
                i.columns.iter().map(|c| c.name.clone()).collect(),
            )
        })
        .collect();
    let database = url::Url::parse(url)
        .ok()
        .map(|u| u.path().trim_start_matches('/').to_owned())
        .unwrap_or_default();
    Ok(Prepared {
        target: SinkTarget::MariaDb {
            url: url.to_owned(),
            tables: shapes.clone(),
        },
        columns,
        capture: CaptureKind::MariaDb {
            url: url.to_owned(),
            database,
            tables: shapes,
        },
    })
}

impl Prepared {
    /// The capture of this database.
    pub fn capture(
        &self,
        peer: &PeerId,
        node: NodeId,
        counters: HashMap<TableName, Vec<String>>,
        publisher: Publisher,
        totals: Arc<Counters>,
    ) -> capture::Capture {
        match &self.capture {
            CaptureKind::Postgres {
                url,
                parts,
                names,
                tables,
            } => capture::Capture::Postgres(capture::postgres::CaptureContext {
                peer: peer.clone(),
                node,
                url: url.clone(),
                parts: parts.clone(),
                names: names.clone(),
                tables: tables.clone(),
                counters,
                publisher,
                totals,
            }),
            CaptureKind::MariaDb {
                url,
                database,
                tables,
            } => capture::Capture::MariaDb(capture::mariadb::CaptureContext {
                peer: peer.clone(),
                node,
                url: url.clone(),
                database: database.clone(),
                // Unique among the server's replicas, never a real server's id (those are
                // small by convention): derived from the peer id.
                server_id: (node.get() as u32) | 0x4000_0000,
                tables: tables.clone(),
                counters,
                publisher,
                totals,
            }),
        }
    }
}

/// Whether a set-up error is a lost connection or similar, worth retrying.
pub fn is_transient(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<meshsync_pg::PgError>()
            .is_some_and(meshsync_pg::PgError::is_transient)
            || c.downcast_ref::<meshsync_mariadb::MariaDbError>()
                .is_some_and(meshsync_mariadb::MariaDbError::is_transient)
            || c.downcast_ref::<sqlx::Error>().is_some_and(|e| {
                matches!(e, sqlx::Error::Io(_) | sqlx::Error::Protocol(_)) && !is_tls_failure(e)
            })
    })
}

/// What to check when TLS to a PostgreSQL database fails.
const PG_TLS_HINT: &str = "TLS to the database failed: check sslmode, sslrootcert, sslcert and \
     sslkey in database.url (verify-full also wants the URL's host among the names in the \
     server's certificate; docs/configuration.md)";

/// What to check when TLS to a MariaDB or MySQL database fails.
pub(crate) const MARIADB_TLS_HINT: &str = "TLS to the database failed: check ssl-mode, ssl-ca, ssl-cert \
     and ssl-key in database.url (VERIFY_IDENTITY also wants the URL's host among the names in \
     the server's certificate; docs/mariadb.md)";

/// Connects, retrying for a while: the database may still be starting. TLS that cannot be
/// had is not retried (`tls_hint` says what to check): only the configuration can change that.
async fn retry<C, F, Fut>(connect: F, tls_hint: &'static str) -> Result<C>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<C, sqlx::Error>>,
{
    let mut attempt = 0;
    loop {
        match connect().await {
            Ok(c) => return Ok(c),
            Err(e) if is_tls_failure(&e) => return Err(e).context(tls_hint),
            Err(e) if attempt < 30 => {
                attempt += 1;
                info!(error = %e, "database not reachable yet, retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e).context("connect to the database"),
        }
    }
}
