//! Errors at the MariaDB boundary, and which of them a retry can cure.

use meshsync_core::TableName;

use crate::{
    check::CheckError,
    source::{
        gtid::{BadGtid, ShortEvent},
        gtid_set::BadGtidSet,
    },
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
    /// A MySQL resume position (GTID set) that does not parse.
    #[error("mysql: {0}")]
    GtidSet(#[from] BadGtidSet),
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
    /// `verify` cannot read a table (a key column missing from its columns, no columns).
    #[error("mariadb: verify: {0}")]
    Verify(String),
    /// Row writes need an open transaction: their savepoints undo only the refused rows.
    #[error(
        "mariadb: apply writes need an open transaction (begin one with sqlx's \
         Connection::begin); without one a refused row could not be undone alone"
    )]
    NotInTransaction,
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

    /// Whether the binlog connection could not have the TLS `ssl-mode` asks for: only a
    /// change of configuration cures it.
    pub fn is_tls_failure(&self) -> bool {
        matches!(self, MariaDbError::Binlog { source, .. } if crate::source::is_binlog_tls_failure(source))
    }

    /// Whether a retry (reconnect, resume from the last state) may cure it.
    pub fn is_transient(&self) -> bool {
        match self {
            MariaDbError::Query { source, .. } => is_transient_sqlx(source),
            MariaDbError::Binlog { source, .. } => match source {
                e if crate::source::is_binlog_tls_failure(e) => false,
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

/// Server error numbers a retry of the whole transaction can cure: the server or connection
/// went away, the transaction lost a lock race, resources ran out for a moment, or the
/// server is read-only during a fail-over.
const TRANSIENT_SERVER_ERRORS: [u16; 15] = [
    1020, // ER_CHECKREAD: record changed since last read
    1021, // ER_DISK_FULL
    1037, // ER_OUTOFMEMORY
    1038, // ER_OUT_OF_SORTMEMORY
    1040, // ER_CON_COUNT_ERROR: too many connections
    1041, // ER_OUT_OF_RESOURCES
    1053, // ER_SERVER_SHUTDOWN
    1114, // ER_RECORD_FILE_FULL: the table is full
    1180, // ER_ERROR_DURING_COMMIT
    1205, // ER_LOCK_WAIT_TIMEOUT
    1213, // ER_LOCK_DEADLOCK: InnoDB rolled the whole transaction back
    1290, // ER_OPTION_PREVENTS_STATEMENT: --read-only (fail-over in progress)
    1317, // ER_QUERY_INTERRUPTED
    1615, // ER_NEED_REPREPARE: a cached statement went stale after DDL
    1927, // ER_CONNECTION_KILLED
];

/// Whether an sqlx error is about the connection, the server or the transaction rather than
/// the data of the statement: retrying the whole transaction may cure it.
pub fn is_transient_sqlx(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() else {
                return false;
            };
            // SQLSTATE class 08: connection exception; 40: transaction rollback.
            TRANSIENT_SERVER_ERRORS.contains(&my.number())
                || my
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("40"))
        }
        _ => false,
    }
}
