//! Errors at the MariaDB boundary, and which of them a retry can cure.

use meshsync_core::TableName;

use crate::{
    check::CheckError,
    source::gtid::{BadGtid, ShortEvent},
    types::{TypeError, UnsupportedType},
};

/// Something MariaDB refused, or a set-up meshsync cannot work with.
#[derive(Debug, thiserror::Error)]
pub enum MariaDbError {
    /// A query (sqlx) failed.
    #[error("mariadb: cannot {what}")]
    Query {
        /// What meshsync was doing.
        what: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The binlog connection (mysql_async) failed.
    #[error("mariadb: binlog stream: cannot {what}")]
    Binlog {
        /// What meshsync was doing.
        what: &'static str,
        /// The driver's error.
        #[source]
        source: mysql_async::Error,
    },
    /// The server is not set up for capture.
    #[error("mariadb: {0}")]
    Check(#[source] CheckError),
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
    /// A column type meshsync cannot carry.
    #[error("column {column:?} of {table}: {source}")]
    Unsupported {
        /// The table.
        table: TableName,
        /// The column.
        column: String,
        /// What is unsupported.
        #[source]
        source: Box<UnsupportedType>,
    },
    /// A binlog value that does not fit its column type.
    #[error("column {column:?} of {table}: {source}")]
    Type {
        /// The table.
        table: TableName,
        /// The column.
        column: String,
        /// What does not fit.
        #[source]
        source: Box<TypeError>,
    },
    /// A resume position that does not parse.
    #[error("mariadb: {0}")]
    Gtid(#[from] BadGtid),
    /// Binlog bytes that do not decode.
    #[error("mariadb: undecodable binlog event: {0}")]
    Decode(String),
    /// A MariaDB-only event too short for its type.
    #[error("mariadb: {0}")]
    ShortEvent(#[from] ShortEvent),
    /// The binlog's columns differ from the catalog's even after reloading it.
    #[error(
        "table {table} in the binlog does not match information_schema ({why}); a DDL change \
         raced capture: restart capture once the change is done"
    )]
    SchemaMismatch {
        /// The table.
        table: TableName,
        /// What differs.
        why: String,
    },
    /// A URL meshsync cannot use.
    #[error("database.url: {0}")]
    Url(String),
    /// The binlog stream ended (the server closed it).
    #[error("mariadb: the binlog stream ended")]
    StreamEnded,
    /// Another set-up held the `meshsync` set-up lock for too long.
    #[error(
        "mariadb: another meshsync set-up held the lock {lock:?} for {seconds} s; retry, or \
         find the session holding it (SELECT * FROM information_schema.METADATA_LOCK_INFO)"
    )]
    SetupLock {
        /// The `GET_LOCK` name.
        lock: &'static str,
        /// How long meshsync waited.
        seconds: u32,
    },
}

impl MariaDbError {
    /// Maps an sqlx error for `what`.
    pub fn query(what: &'static str) -> impl FnOnce(sqlx::Error) -> MariaDbError {
        move |source| MariaDbError::Query { what, source }
    }

    /// Maps a mysql_async error for `what`.
    pub fn binlog(what: &'static str) -> impl FnOnce(mysql_async::Error) -> MariaDbError {
        move |source| MariaDbError::Binlog { what, source }
    }

    /// Whether a retry (reconnect, resume from the last state) may cure it.
    pub fn is_transient(&self) -> bool {
        match self {
            MariaDbError::Query { source, .. } => matches!(
                source,
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Protocol(_)
            ),
            MariaDbError::Binlog { source, .. } => match source {
                mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => true,
                // Server shutdown, connection killed, server gone away, lost connection.
                mysql_async::Error::Server(e) => [1053, 1927, 2006, 2013].contains(&e.code),
                _ => false,
            },
            MariaDbError::StreamEnded => true,
            _ => false,
        }
    }
}
