//! Preparing a MariaDB server for meshsync, idempotently: the `meshsync` database and the
//! tables apply and capture keep their state in. Safe to run on every start, and by two
//! agents at once (a `GET_LOCK` serialises them).

use sqlx::MySqlConnection;

use crate::error::MariaDbError;

/// Name of the `GET_LOCK` that serialises concurrent set-ups of one server.
pub const SETUP_LOCK: &str = "meshsync.setup";

/// How long a set-up waits for another one to finish, in seconds.
pub const SETUP_LOCK_WAIT_SECS: u32 = 60;

/// Longest encoded key `meshsync.row_state.pk` holds (see [`SCHEMA`]); apply parks rows
/// whose key is longer.
pub const ROW_STATE_KEY_BYTES: usize = 2048;

/// The `meshsync` database. InnoDB throughout: state is written in the same transactions as
/// the data it describes. Names and ids use `utf8mb4_bin`: case-sensitive and byte-ordered,
/// as table names and peer ids are (PostgreSQL uses `COLLATE "C"`).
///
/// `row_state.pk` is `VARBINARY(2048)`, not 3072: InnoDB keys hold at most 3072 bytes, and
/// `tbl` takes up to 1020 of them (255 utf8mb4 characters). A row whose encoded key is
/// longer than 2048 bytes cannot have a merge state here.
const SCHEMA: [&str; 5] = [
    "CREATE DATABASE IF NOT EXISTS meshsync CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
    // Opaque merge state of every replicated row (versions, values, tombstones).
    "CREATE TABLE IF NOT EXISTS meshsync.row_state (
        tbl VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
        pk VARBINARY(2048) NOT NULL,
        state LONGBLOB NOT NULL,
        deleted_at BIGINT NULL,
        PRIMARY KEY (tbl, pk),
        KEY row_state_deleted_at (deleted_at)
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
    // The highest HLC each apply consumer applied from other origins, upserted in the same
    // transaction as the data. Capture sees the row in a `from_apply` transaction and folds
    // the HLC into its clock: a local write committed after an applied change is stamped
    // later (causality, I8). Capture reads the columns `hlc_time` and `hlc_node`
    // (hlc_column encoding) of its row images. `applies` counts apply transactions: every
    // one that writes rows changes this row, which is how MySQL capture tells them (I7).
    "CREATE TABLE IF NOT EXISTS meshsync.applied (
        consumer VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PRIMARY KEY,
        hlc_time BIGINT NOT NULL,
        hlc_node BIGINT NOT NULL,
        applies BIGINT NOT NULL DEFAULT 0
    ) ENGINE = InnoDB",
];

/// Columns added after the first release (table, column, the DDL that adds it to an older
/// install): a deleted row's tombstone time in `row_state` (hlc_column encoding, NULL for a
/// visible row), indexed, so tombstone retention finds old tombstones without a scan; the
/// count of apply transactions in `applied`. (The first DDL is MariaDB syntax: MySQL
/// installs are newer and always have the column.)
const UPGRADES: [(&str, &str, &str); 2] = [
    (
        "row_state",
        "deleted_at",
        "ALTER TABLE meshsync.row_state ADD COLUMN IF NOT EXISTS deleted_at BIGINT NULL,
             ADD INDEX IF NOT EXISTS row_state_deleted_at (deleted_at)",
    ),
    (
        "applied",
        "applies",
        "ALTER TABLE meshsync.applied ADD COLUMN applies BIGINT NOT NULL DEFAULT 0",
    ),
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
    // Checked first: an ALTER that has nothing to do still takes a metadata lock on a table
    // apply is writing.
    for (table, column, ddl) in UPGRADES {
        let (present,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM information_schema.COLUMNS
             WHERE TABLE_SCHEMA = 'meshsync' AND TABLE_NAME = ? AND COLUMN_NAME = ?",
        )
        .bind(table)
        .bind(column)
        .fetch_one(&mut *conn)
        .await
        .map_err(MariaDbError::query(
            "read the columns of the meshsync tables",
        ))?;
        if present == 0 {
            sqlx::raw_sql(ddl)
                .execute(&mut *conn)
                .await
                .map_err(MariaDbError::query("upgrade the meshsync tables"))?;
        }
    }
    Ok(())
}
