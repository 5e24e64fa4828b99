//! Errors at the PostgreSQL boundary, and which of them a retry can cure.

use meshsync_core::TableName;

use crate::{source::pgoutput::DecodeError, source::row::RowError, types::UnsupportedType};

/// Something PostgreSQL refused, or a set-up meshsync cannot work with.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// A query failed.
    #[error("postgres: cannot {what}")]
    Query {
        /// What meshsync was doing.
        what: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The replication connection failed.
    #[error("postgres: replication stream failed")]
    Replication(#[source] crate::source::replication::ReplicationError),
    /// A configured table does not exist.
    #[error(
        "table {table} does not exist; create it on this peer or remove it from database.tables"
    )]
    MissingTable {
        /// The table.
        table: TableName,
    },
    /// A configured table has no primary key.
    #[error("table {table} has no primary key; meshsync needs one to identify rows: add one")]
    NoPrimaryKey {
        /// The table.
        table: TableName,
    },
    /// Set-up waited in vain for a lock on a replicated table (another transaction holds
    /// it); retried.
    #[error(
        "table {table} stayed locked by another transaction for {waited_ms} ms; meshsync needs \
         a brief lock once, to set REPLICA IDENTITY FULL and its TRUNCATE guard: end or wait out \
         that transaction (see pg_locks); the agent retries"
    )]
    Locked {
        /// The table.
        table: TableName,
        /// How long set-up waited.
        waited_ms: u64,
    },
    /// A column type meshsync cannot carry.
    #[error(transparent)]
    Unsupported(Box<UnsupportedType>),
    /// The server is not set up for logical replication.
    #[error(
        "postgres: wal_level is {found}, logical replication needs `wal_level = logical` (set it in postgresql.conf and restart)"
    )]
    WalLevel {
        /// What the server has.
        found: String,
    },
    /// pgoutput bytes that do not decode.
    #[error("postgres: undecodable replication message")]
    Decode(#[source] DecodeError),
    /// A row message that does not fit its relation.
    #[error("postgres: bad row change")]
    Row(#[source] RowError),
    /// A URL meshsync cannot use.
    #[error("database.url: {0}")]
    Url(String),
    /// The stored keys of a table are in a form this meshsync does not know.
    #[error(
        "meshsync.key_form says the merge states of {table} are stored in form {form:?}, which \
         this meshsync does not know (written by a newer one?): upgrade this peer's agent"
    )]
    KeyForm {
        /// The table.
        table: String,
        /// The recorded form.
        form: String,
    },
    /// A table meshsync cannot digest for `verify`; names table and column, never a value.
    #[error("verify: {0}")]
    Verify(String),
}

impl PgError {
    /// Maps a driver error for `what`.
    pub fn query(what: &'static str) -> impl FnOnce(sqlx::Error) -> PgError {
        move |source| PgError::Query { what, source }
    }

    /// Whether a retry (reconnect) may cure it: connection and server-availability errors.
    pub fn is_transient(&self) -> bool {
        match self {
            PgError::Query { source, .. } => is_transient_sqlx(source),
            PgError::Replication(e) => e.is_transient(),
            PgError::Locked { .. } => true,
            _ => false,
        }
    }
}

/// Whether a driver error (of any engine: sqlx's error is shared) is TLS that could not be
/// had: a certificate that did not pass (sqlx reports a failed handshake as an I/O error
/// around rustls's) or a server without TLS where `sslmode` requires it. Set-up stops on it
/// (only a change of configuration cures it); a running agent retries it like any lost
/// connection (a renewed certificate mends it).
pub fn is_tls_failure(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Tls(_) => true,
        sqlx::Error::Io(io) => crate::source::tls::wraps_rustls(io),
        _ => false,
    }
}

/// Connection loss, shutdown, resource exhaustion, serialization failures, deadlocks.
pub fn is_transient_sqlx(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            // 08 connection, 40 serialization/deadlock, 53 resources, 57 operator intervention,
            // and 55P03: a lock not granted within lock_timeout (set-up sets one).
            ["08", "40", "53", "57"]
                .iter()
                .any(|class| code.starts_with(class))
                || code == "55P03"
        }
        _ => false,
    }
}
