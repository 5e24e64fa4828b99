//! `meshsync.row_state`: the merge state of every replicated row, read and written in the
//! apply transaction (I4).

use std::collections::HashMap;

use meshsync_merge::StoredRow;
use sqlx::{PgConnection, Row};

use crate::error::PgError;

/// What the read found: readable states, and keys whose stored state is unreadable.
#[derive(Default)]
pub struct States {
    /// Readable states by key.
    pub rows: HashMap<Vec<u8>, StoredRow>,
    /// Keys whose state does not decode (written by a newer meshsync, or damaged).
    pub unreadable: Vec<Vec<u8>>,
}

/// Reads and locks the states of `keys` of table `tbl`.
///
/// One index probe per key, forced by the LATERAL subquery: with `pk = ANY($2)` the planner,
/// on a table growing faster than autovacuum analyses it, scanned every state of the table
/// (the index on `tbl` alone, or a hash join), 3 ms at first and 30 ms per 4,000 keys after
/// 200,000 rows.
pub async fn read(conn: &mut PgConnection, tbl: &str, keys: &[&[u8]]) -> Result<States, PgError> {
    let rows = sqlx::query(
        "SELECT s.pk, s.state FROM unnest($2::bytea[]) AS k(pk) CROSS JOIN LATERAL \
         (SELECT pk, state FROM meshsync.row_state WHERE tbl = $1 AND pk = k.pk FOR UPDATE) s",
    )
    .bind(tbl)
    .bind(keys)
    .fetch_all(&mut *conn)
    .await
    .map_err(PgError::query("read row states"))?;
    let mut out = States::default();
    for r in rows {
        let pk: Vec<u8> = r.get("pk");
        let state: Vec<u8> = r.get("state");
        match StoredRow::decode(&state) {
            Ok(s) => {
                out.rows.insert(pk, s);
            }
            Err(_) => out.unreadable.push(pk),
        }
    }
    Ok(out)
}

/// One state to store: key, encoded state, and for a deleted row its tombstone time.
pub type StateRow<'k> = (&'k [u8], Vec<u8>, Option<i64>);

/// Stores the states of table `tbl`: `new` ones (no state was read for the key; a plain
/// insert, cheaper than an upsert) and `changed` ones.
pub async fn write(
    conn: &mut PgConnection,
    tbl: &str,
    new: &[StateRow<'_>],
    changed: &[StateRow<'_>],
) -> Result<(), PgError> {
    type Columns = (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Option<i64>>);
    let columns = |rows: &[StateRow<'_>]| -> Columns {
        let mut out: Columns = (Vec::new(), Vec::new(), Vec::new());
        for (k, s, d) in rows {
            out.0.push(k.to_vec());
            out.1.push(s.clone());
            out.2.push(*d);
        }
        out
    };
    if !new.is_empty() {
        let (pks, blobs, deleted) = columns(new);
        sqlx::query(
            "INSERT INTO meshsync.row_state (tbl, pk, state, deleted_at)
             SELECT $1, * FROM unnest($2::bytea[], $3::bytea[], $4::int8[])",
        )
        .bind(tbl)
        .bind(pks)
        .bind(blobs)
        .bind(deleted)
        .execute(&mut *conn)
        .await
        .map_err(PgError::query("insert row states"))?;
    }
    if !changed.is_empty() {
        let (pks, blobs, deleted) = columns(changed);
        sqlx::query(
            "UPDATE meshsync.row_state s SET state = u.state, deleted_at = u.deleted_at
             FROM unnest($2::bytea[], $3::bytea[], $4::int8[]) AS u(pk, state, deleted_at)
             WHERE s.tbl = $1 AND s.pk = u.pk",
        )
        .bind(tbl)
        .bind(pks)
        .bind(blobs)
        .bind(deleted)
        .execute(&mut *conn)
        .await
        .map_err(PgError::query("update row states"))?;
    }
    Ok(())
}

/// Forgets up to `limit` states of deleted rows whose tombstone is older than `before` (an
/// `hlc_column` time); returns how many. Safe because apply parks every change stamped
/// before the retention cutoff: none could lose to a forgotten tombstone.
pub async fn collect(conn: &mut PgConnection, before: i64, limit: i64) -> Result<u64, PgError> {
    let done = sqlx::query(
        "DELETE FROM meshsync.row_state WHERE ctid IN (
             SELECT ctid FROM meshsync.row_state WHERE deleted_at < $1 LIMIT $2)",
    )
    .bind(before)
    .bind(limit)
    .execute(&mut *conn)
    .await
    .map_err(PgError::query("collect old tombstones"))?;
    Ok(done.rows_affected())
}
