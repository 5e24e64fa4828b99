//! Where capture may resume, stored in `meshsync.capture_state`: the commit LSN of the last
//! transaction fully handled and the HLC fold's value after it (I6).

use meshsync_core::{Hlc, hlc_column};
use sqlx::PgConnection;

use crate::error::PgError;

/// A position and the HLC fold's value there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumePoint {
    /// Commit end LSN of the last transaction fully handled.
    pub lsn: u64,
    /// The fold's value after it.
    pub hlc: Hlc,
}

impl ResumePoint {
    /// Where a slot that never published anything starts.
    pub const START: ResumePoint = ResumePoint {
        lsn: 0,
        hlc: Hlc::ZERO,
    };
}

/// The stored resume point of `slot`, or [`ResumePoint::START`].
pub async fn load(conn: &mut PgConnection, slot: &str) -> Result<ResumePoint, PgError> {
    let row: Option<(i64, i64, i64)> = sqlx::query_as(
        "SELECT lsn, hlc_time, hlc_node FROM meshsync.capture_state WHERE slot = $1",
    )
    .bind(slot)
    .fetch_optional(&mut *conn)
    .await
    .map_err(PgError::query("read the capture resume point"))?;
    Ok(match row {
        Some((lsn, t, n)) => ResumePoint {
            lsn: lsn as u64,
            hlc: hlc_column::from_columns(t, n),
        },
        None => ResumePoint::START,
    })
}

/// Stores the resume point of `slot`; call before confirming the slot to `point.lsn`.
pub async fn store(conn: &mut PgConnection, slot: &str, point: ResumePoint) -> Result<(), PgError> {
    let (time, node) = hlc_column::to_columns(point.hlc);
    sqlx::query(
        "INSERT INTO meshsync.capture_state (slot, lsn, hlc_time, hlc_node) VALUES ($1, $2, $3, $4)
         ON CONFLICT (slot) DO UPDATE SET lsn = EXCLUDED.lsn, hlc_time = EXCLUDED.hlc_time, hlc_node = EXCLUDED.hlc_node",
    )
    .bind(slot)
    .bind(point.lsn as i64)
    .bind(time)
    .bind(node)
    .execute(&mut *conn)
    .await
    .map_err(PgError::query("store the capture resume point"))?;
    Ok(())
}
