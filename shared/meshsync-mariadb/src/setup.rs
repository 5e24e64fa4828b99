//! Preparing a MariaDB server for meshsync, idempotently: the `meshsync` database and the
//! tables apply and capture keep their state in. Safe to run on every start, and by two
//! agents at once (a `GET_LOCK` serialises them).

use sqlx::MySqlConnection;

use crate::error::MariaDbError;

/// Name of the `GET_LOCK` that serialises concurrent set-ups of one server.
pub const SETUP_LOCK: &str = "meshsync.setup";

/// How long a set-up waits for another one to finish, in seconds.
pub const SETUP_LOCK_WAIT_SECS: u32 = 60;

/// The `meshsync` database. InnoDB throughout: state is written in the same transactions as
/// the data it describes. Names and ids use `utf8mb4_bin`: case-sensitive and byte-ordered,
/// as table names and peer ids are (PostgreSQL uses `COLLATE "C"`).
///
/// `row_state.pk` is `VARBINARY(2048)`, not 3072: InnoDB keys hold at most 3072 bytes, and
/// `tbl` takes up to 1020 of them (255 utf8mb4 characters). A row whose encoded key is
/// longer than 2048 bytes cannot have a merge state here.
const SCHEMA: [&str; 4] = [
    "CREATE DATABASE IF NOT EXISTS meshsync CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
    // Opaque merge state of every replicated row (versions, values, tombstones).
    "CREATE TABLE IF NOT EXISTS meshsync.row_state (
        tbl VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
        pk VARBINARY(2048) NOT NULL,
        state LONGBLOB NOT NULL,
        PRIMARY KEY (tbl, pk)
    ) ENGINE = InnoDB",
    // Last stream sequence applied per consumer, committed with the data (I9).
    "CREATE TABLE IF NOT EXISTS meshsync.checkpoint (
        consumer VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PRIMARY KEY,
        stream_seq BIGINT NOT NULL
    ) ENGINE = InnoDB",
    // Where capture may resume (a GTID state) and its HLC there, so a re-capture restamps
    // identically (I6).
    "CREATE TABLE IF NOT EXISTS meshsync.capture_state (
        source VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PRIMARY KEY,
        gtid_state TEXT CHARACTER SET ascii NOT NULL,
        hlc_time BIGINT NOT NULL,
        hlc_node BIGINT NOT NULL
    ) ENGINE = InnoDB",
];

/// Creates whatever of the `meshsync` database is missing. The user needs CREATE on
/// `meshsync.*`.
pub async fn prepare(conn: &mut MySqlConnection) -> Result<(), MariaDbError> {
    let (got,): (Option<i64>,) = sqlx::query_as("SELECT GET_LOCK(?, ?)")
        .bind(SETUP_LOCK)
        .bind(SETUP_LOCK_WAIT_SECS)
        .fetch_one(&mut *conn)
        .await
        .map_err(MariaDbError::query("lock the meshsync set-up"))?;
    if got != Some(1) {
        return Err(MariaDbError::SetupLock {
            lock: SETUP_LOCK,
            seconds: SETUP_LOCK_WAIT_SECS,
        });
    }
    let result = prepare_locked(conn).await;
    // Released also when a statement failed; a lost connection releases it by itself.
    let unlock = sqlx::query("SELECT RELEASE_LOCK(?)")
        .bind(SETUP_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(MariaDbError::query("unlock the meshsync set-up"));
    result.and(unlock.map(|_| ()))
}

async fn prepare_locked(conn: &mut MySqlConnection) -> Result<(), MariaDbError> {
    for stmt in SCHEMA {
        sqlx::raw_sql(stmt)
            .execute(&mut *conn)
            .await
            .map_err(MariaDbError::query("create the meshsync database"))?;
    }
    Ok(())
}
