//! Writing rows into a replicated MariaDB table, the engine side of apply: batched deletes
//! and upserts inside the caller's transaction, where a row MariaDB refuses is reported by
//! its index while its neighbours are written (I10).
//!
//! - [`open_apply_session`]: the connection apply writes through. `skip_replication = 1`
//!   flags its transactions in the binlog, and capture on this server marks them
//!   [`crate::CapturedTxn::from_apply`] (loop prevention, I7).
//! - [`write_rows`]: the writes of one table; values converted with [`crate::types::to_sql`].
//!
//! - [`MariaDbSink`]: change batches merged by the merge policies (meshsync-merge) and
//!   written with [`write_rows`], row states, checkpoint and applied HLC in one transaction.
//!
//! Modules: `row` (checking and converting a write), `write` (the statements), `refusal`
//! (reasons that never carry a row's values), `sink` and `table` (merging batches), `state`
//! (`meshsync.row_state`).

mod refusal;
mod row;
mod sink;
mod state;
mod table;
mod write;

pub use meshsync_core::{BatchReport, Parked};
pub use sink::{APPLIED_TABLE, ApplyTxn, MariaDbSink, record_applied};

use std::collections::HashSet;

use meshsync_core::Value;
use sqlx::{Connection, MySqlConnection};

use crate::{
    catalog::TableInfo,
    error::{MariaDbError, is_transient_sqlx},
    flavour::Flavour,
};
use row::Bound;
use write::{Failure, Mode};

/// `sql_mode` of apply: strict (refuse, never truncate or zero), and an explicit 0 stays 0
/// in an AUTO_INCREMENT column instead of drawing a new number (values are copies).
pub const APPLY_SQL_MODE: &str = "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,\
     ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO";

/// One row to write.
#[derive(Clone, Debug, PartialEq)]
pub enum RowWrite {
    /// Insert the row, or update it if its key exists.
    Upsert {
        /// Primary-key values, in the table's key order.
        key: Vec<Value>,
        /// Only these columns are written: an existing row keeps its other columns, a new
        /// row gets their defaults (or NULL). Key columns may be listed if equal to `key`;
        /// generated columns may be listed and are skipped (MariaDB computes them).
        columns: Vec<(String, Value)>,
    },
    /// Insert the row with `columns` if its key is missing here; if it exists, overwrite only
    /// the columns named in `changed` and keep its others. What apply writes for a merged
    /// row: a row missing on this peer never appears with only some of its columns, and an
    /// existing row keeps the columns the merge did not change.
    UpsertChanged {
        /// Primary-key values, in the table's key order.
        key: Vec<Value>,
        /// The whole row (as [`RowWrite::Upsert`]'s `columns`): inserted when the key is
        /// missing.
        columns: Vec<(String, Value)>,
        /// Of `columns`, the ones to overwrite in an existing row. A name not in `columns`
        /// refuses the write; key and generated columns are skipped.
        changed: Vec<String>,
    },
    /// Delete the row if it exists.
    Delete {
        /// Primary-key values, in the table's key order.
        key: Vec<Value>,
    },
}

/// Connects for apply. The session is in UTC (TIMESTAMP values are bound as UTC text),
/// strict (the server refuses what it would truncate) and READ COMMITTED (fewer gap locks
/// against local writers). On MariaDB it is also flagged `skip_replication` (capture drops
/// its transactions as meshsync's own), which needs SUPER or BINLOG ADMIN on 10.5+. MySQL
/// has no such flag: there capture knows apply transactions by their row of
/// `meshsync.applied`, which [`MariaDbSink`] writes in every transaction that writes rows.
///
/// Native MariaDB replicas still receive these transactions unless they run with
/// `replicate_events_marked_for_skip` other than `REPLICATE`.
pub async fn open_apply_session(url: &str) -> Result<MySqlConnection, MariaDbError> {
    let mut conn = MySqlConnection::connect(url)
        .await
        .map_err(MariaDbError::query("connect for apply"))?;
    let first = match Flavour::detect(&mut conn).await? {
        Flavour::MariaDb => format!(
            "SET SESSION skip_replication = 1, time_zone = '+00:00', sql_mode = '{APPLY_SQL_MODE}'"
        ),
        Flavour::MySql => {
            format!("SET SESSION time_zone = '+00:00', sql_mode = '{APPLY_SQL_MODE}'")
        }
    };
    // MariaDB 10.11 has no `transaction_isolation` variable; this syntax works everywhere.
    for stmt in [
        first,
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED".to_owned(),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(stmt))
            .execute(&mut conn)
            .await
            .map_err(MariaDbError::query("set up the apply session"))?;
    }
    Ok(conn)
}

/// Writes `writes` to the table `info` inside the caller's open transaction (begun with
/// sqlx's `Connection::begin`, on a session from [`open_apply_session`] to a server of
/// `flavour`).
///
/// On MySQL capture tells apply transactions by their row of `meshsync.applied`
/// ([`APPLIED_TABLE`]): a caller other than [`MariaDbSink`] must write one in the same
/// transaction ([`record_applied`]), or capture publishes these rows again (I7).
///
/// Returns the indexes of the writes MariaDB refused (or that were refused before sending:
/// a value the column cannot hold, an unknown column, a key of the wrong shape), each with a
/// reason naming the error code and the column but never a value, in index order. The other
/// writes are done, in slice order for writes to the same key. `Err` means the connection,
/// server or transaction failed ([`MariaDbError::is_transient`]): roll back and retry the
/// whole transaction.
pub async fn write_rows(
    conn: &mut MySqlConnection,
    flavour: Flavour,
    info: &TableInfo,
    writes: &[RowWrite],
) -> Result<Vec<(usize, String)>, MariaDbError> {
    if writes.is_empty() {
        return Ok(Vec::new());
    }
    if !conn.is_in_transaction() {
        return Err(MariaDbError::NotInTransaction);
    }
    let mut refused = Vec::new();
    let keys = match row::key_columns(info) {
        Ok(keys) => keys,
        Err(why) => return Ok((0..writes.len()).map(|i| (i, why.clone())).collect()),
    };
    let mut bound = Vec::with_capacity(writes.len());
    for (i, w) in writes.iter().enumerate() {
        match row::bind(info, &keys, i, w) {
            Ok(b) => bound.push(b),
            Err(why) => refused.push((i, why)),
        }
    }
    let max_bytes = packet_budget(conn, &mut bound, &mut refused).await?;
    if !bound.is_empty() {
        refused.extend(write_bound(conn, flavour, info, &bound, max_bytes).await?);
    }
    refused.sort_by_key(|(i, _)| *i);
    Ok(refused)
}

/// Writes checked rows: all at once, or one by one once a statement failed on data.
async fn write_bound(
    conn: &mut MySqlConnection,
    flavour: Flavour,
    info: &TableInfo,
    bound: &[Bound],
    max_bytes: usize,
) -> Result<Vec<(usize, String)>, MariaDbError> {
    savepoint(conn, "SAVEPOINT meshsync_batch").await?;
    let mut failure = None;
    for segment in segments(bound) {
        if let Err(e) =
            write::execute(conn, flavour, info, &segment, Mode::ByColumns, max_bytes).await
        {
            failure = Some(e);
            break;
        }
    }
    match failure {
        None => Ok(Vec::new()),
        Some(Failure::Sql(e)) if is_transient_sqlx(&e) => Err(MariaDbError::query("write rows")(e)),
        Some(_) => {
            savepoint(conn, "ROLLBACK TO SAVEPOINT meshsync_batch").await?;
            one_by_one(conn, flavour, info, bound, max_bytes).await
        }
    }
}

/// Runs of writes with no key twice, in order: within a run, deletes go before upserts and
/// upserts are grouped, which only keeps slice order when no row is written twice.
fn segments(rows: &[Bound]) -> Vec<Vec<&Bound>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut seen = HashSet::new();
    for r in rows {
        let id = r.key_identity();
        if seen.contains(&id) {
            out.push(std::mem::take(&mut current));
            seen.clear();
        }
        seen.insert(id);
        current.push(r);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// After a batch failed on data: every write alone under a savepoint, so only the refused
/// ones are undone.
async fn one_by_one(
    conn: &mut MySqlConnection,
    flavour: Flavour,
    info: &TableInfo,
    rows: &[Bound],
    max_bytes: usize,
) -> Result<Vec<(usize, String)>, MariaDbError> {
    let mut refused = Vec::new();
    for r in rows {
        savepoint(conn, "SAVEPOINT meshsync_row").await?;
        let mut outcome =
            write::execute(conn, flavour, info, &[r], Mode::ByColumns, max_bytes).await;
        // The catalog's guess of the columns an insert needs was short: write it as an
        // update if the row exists.
        if r.upsert.is_some()
            && matches!(&outcome, Err(Failure::Sql(e)) if refusal::number(e) == Some(1364))
        {
            savepoint(conn, "ROLLBACK TO SAVEPOINT meshsync_row").await?;
            match write::execute(conn, flavour, info, &[r], Mode::UpdateOnly, max_bytes).await {
                Ok(()) => outcome = Ok(()),
                Err(Failure::Sql(e)) if is_transient_sqlx(&e) => outcome = Err(Failure::Sql(e)),
                // Not there either: the insert's refusal (naming the column) is the reason.
                Err(_) => {}
            }
        }
        match outcome {
            Ok(()) => {}
            Err(Failure::Sql(e)) if is_transient_sqlx(&e) => {
                return Err(MariaDbError::query("write a row")(e));
            }
            Err(e) => {
                savepoint(conn, "ROLLBACK TO SAVEPOINT meshsync_row").await?;
                refused.push((r.index, refusal::reason(info, &e)));
            }
        }
    }
    Ok(refused)
}

/// Batches with fewer bound bytes than this fit any `max_allowed_packet` in use (the
/// default is 16 MiB), so the server is not asked.
const SMALL_BATCH: usize = 512 << 10;

/// Bytes reserved in a packet for its header and the statement id.
const PACKET_OVERHEAD: usize = 1024;

/// The most bound bytes one statement may carry on this server. Rows that fit in no packet
/// are moved from `bound` to `refused`: sent, they would make the server drop the
/// connection (error 1153), and every retry would fail the same way.
async fn packet_budget(
    conn: &mut MySqlConnection,
    bound: &mut Vec<Bound>,
    refused: &mut Vec<(usize, String)>,
) -> Result<usize, MariaDbError> {
    let total: usize = bound.iter().map(Bound::wire_bytes).sum();
    if total <= SMALL_BATCH {
        return Ok(write::MAX_BYTES);
    }
    let (packet,): (i64,) = sqlx::query_as("SELECT CAST(@@max_allowed_packet AS SIGNED)")
        .fetch_one(&mut *conn)
        .await
        .map_err(MariaDbError::query("read max_allowed_packet"))?;
    let packet = usize::try_from(packet).unwrap_or(0);
    let budget = packet.saturating_sub(PACKET_OVERHEAD);
    bound.retain(|b| {
        let size = b.wire_bytes();
        if size <= budget {
            return true;
        }
        refused.push((
            b.index,
            format!(
                "the row's values take about {size} bytes, more than this server's \
                 max_allowed_packet ({packet}) carries; raise max_allowed_packet"
            ),
        ));
        false
    });
    Ok(budget.min(write::MAX_BYTES))
}

/// Sets or rolls back to a savepoint.
async fn savepoint(conn: &mut MySqlConnection, sql: &'static str) -> Result<(), MariaDbError> {
    sqlx::raw_sql(sql)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(MariaDbError::query("set or roll back to a savepoint"))
}
