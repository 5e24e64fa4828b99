//! Where capture may resume, stored in `meshsync.capture_state`: the GTID state after the
//! last transaction fully handled and the HLC fold's value there (I6).
//!
//! The write is kept out of the binlog (`SET STATEMENT sql_log_bin = 0`): capture would
//! otherwise read its own bookkeeping back as a new transaction after every store, and each
//! of those would move the resume point and be stored again.

use meshsync_core::Hlc;
use sqlx::MySqlConnection;

use super::gtid::GtidState;
use crate::{error::MariaDbError, hlc_column};

/// A position in the binlog and the HLC fold's value there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumePoint {
    /// The last GTID of every domain handled, as `@slave_connect_state` takes it
    /// (`0-1-42,1-2-7`; empty: the start of the oldest binlog).
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
    GtidState::parse(&gtid_state)?;
    Ok(Some(ResumePoint {
        gtid_state,
        hlc: hlc_column::from_columns(time, node),
    }))
}

/// Stores (inserts or replaces) the resume point of `source`; call once what precedes it is
/// published. Must run outside a transaction (MariaDB refuses to switch `sql_log_bin`
/// inside one) as a user with BINLOG ADMIN or SUPER. A GTID state that does not parse is
/// refused before anything is written.
pub async fn store(
    conn: &mut MySqlConnection,
    source: &str,
    point: &ResumePoint,
) -> Result<(), MariaDbError> {
    GtidState::parse(&point.gtid_state)?;
    let (time, node) = hlc_column::to_columns(point.hlc);
    sqlx::query(
        "SET STATEMENT sql_log_bin = 0 FOR
         INSERT INTO meshsync.capture_state (source, gtid_state, hlc_time, hlc_node)
         VALUES (?, ?, ?, ?)
         ON DUPLICATE KEY UPDATE gtid_state = VALUES(gtid_state), hlc_time = VALUES(hlc_time),
             hlc_node = VALUES(hlc_node)",
    )
    .bind(source)
    .bind(&point.gtid_state)
    .bind(time)
    .bind(node)
    .execute(&mut *conn)
    .await
    .map_err(MariaDbError::query("store the capture resume point"))?;
    Ok(())
}
