//! Where capture may resume, stored in `meshsync.capture_state`: the GTID state after the
//! last transaction fully handled and the HLC fold's value there (I6).
//!
//! The write is kept out of the binlog (`SET STATEMENT sql_log_bin = 0` on MariaDB, the
//! session's `sql_log_bin` switched off around it on MySQL, which has no `SET STATEMENT`):
//! capture would otherwise read its own bookkeeping back as a new transaction after every
//! store, and each of those would move the resume point and be stored again.
//!
//! The state is text: MariaDB's `domain-server-seq,...` or a MySQL GTID set
//! (`uuid:1-5,...`, always with a `:`), so the stored text tells which server wrote it.

use meshsync_core::Hlc;
use sqlx::MySqlConnection;

use super::{
    gtid::GtidState,
    gtid_set::{GtidSet, is_mysql_state},
};
use crate::{error::MariaDbError, flavour::Flavour, hlc_column};

/// A position in the binlog and the HLC fold's value there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumePoint {
    /// MariaDB: the last GTID of every domain handled, as `@slave_connect_state` takes it
    /// (`0-1-42,1-2-7`); MySQL: the GTID set handled (`uuid:1-42`); empty: the start of the
    /// oldest binlog.
    pub gtid_state: String,
    /// The fold's value after it.
    pub hlc: Hlc,
}

/// The stored resume point of `source`, if one was stored. A stored GTID state that does
/// not parse is an error, not a silent restart from the oldest binlog.
pub async fn load(
    conn: &mut MySqlConnection,
    source: &str,
) -> Result<Option<ResumePoint>, MariaDbError> {
    let row: Option<(String, i64, i64)> = sqlx::query_as(
        "SELECT gtid_state, hlc_time, hlc_node FROM meshsync.capture_state WHERE source = ?",
    )
    .bind(source)
    .fetch_optional(&mut *conn)
    .await
    .map_err(MariaDbError::query("read the capture resume point"))?;
    let Some((gtid_state, time, node)) = row else {
        return Ok(None);
    };
    check_state(&gtid_state)?;
    Ok(Some(ResumePoint {
        gtid_state,
        hlc: hlc_column::from_columns(time, node),
    }))
}

/// Refuses a state that parses as neither a MariaDB state nor a MySQL GTID set.
fn check_state(text: &str) -> Result<(), MariaDbError> {
    if is_mysql_state(text) {
        GtidSet::parse(text)?;
    } else {
        GtidState::parse(text)?;
    }
    Ok(())
}

/// The upsert of a resume point.
const UPSERT: &str = "INSERT INTO meshsync.capture_state (source, gtid_state, hlc_time, hlc_node)
     VALUES (?, ?, ?, ?)
     ON DUPLICATE KEY UPDATE gtid_state = VALUES(gtid_state), hlc_time = VALUES(hlc_time),
         hlc_node = VALUES(hlc_node)";

/// Stores (inserts or replaces) the resume point of `source`; call once what precedes it is
/// published. Must run outside a transaction (the servers refuse to switch `sql_log_bin`
/// inside one) as a user with BINLOG ADMIN or SUPER (MariaDB) or SYSTEM_VARIABLES_ADMIN
/// (MySQL). A GTID state that does not parse is refused before anything is written.
pub async fn store(
    conn: &mut MySqlConnection,
    source: &str,
    point: &ResumePoint,
) -> Result<(), MariaDbError> {
    check_state(&point.gtid_state)?;
    // An empty state does not say which server this is: ask.
    let mysql = is_mysql_state(&point.gtid_state)
        || (point.gtid_state.is_empty() && Flavour::detect(&mut *conn).await? == Flavour::MySql);
    if mysql {
        return store_mysql(conn, source, point).await;
    }
    let (time, node) = hlc_column::to_columns(point.hlc);
    let sql = format!("SET STATEMENT sql_log_bin = 0 FOR {UPSERT}");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(source)
        .bind(&point.gtid_state)
        .bind(time)
        .bind(node)
        .execute(&mut *conn)
        .await
        .map_err(MariaDbError::query("store the capture resume point"))?;
    Ok(())
}

/// [`store`] on MySQL: `sql_log_bin` off for the session around the write, and on again
/// even when the write failed (the connection is the caller's).
async fn store_mysql(
    conn: &mut MySqlConnection,
    source: &str,
    point: &ResumePoint,
) -> Result<(), MariaDbError> {
    let (time, node) = hlc_column::to_columns(point.hlc);
    sqlx::raw_sql("SET SESSION sql_log_bin = 0")
        .execute(&mut *conn)
        .await
        .map_err(MariaDbError::query("switch sql_log_bin off"))?;
    let written = sqlx::query(UPSERT)
        .bind(source)
        .bind(&point.gtid_state)
        .bind(time)
        .bind(node)
        .execute(&mut *conn)
        .await
        .map_err(MariaDbError::query("store the capture resume point"));
    let restored = sqlx::raw_sql("SET SESSION sql_log_bin = 1")
        .execute(&mut *conn)
        .await
        .map_err(MariaDbError::query("switch sql_log_bin on"));
    written?;
    restored?;
    Ok(())
}
