//! `meshsync.row_state`: the merge state of every replicated row, read (and locked) and
//! written in the apply transaction, with the data it describes (I4).

use std::collections::HashMap;

use meshsync_merge::StoredRow;
use sqlx::{MySqlConnection, Row};

use crate::error::MariaDbError;

/// Keys per `SELECT .. IN (..)` of [`read`].
const READ_KEYS: usize = 1_000;
/// States per statement of [`write`], at most.
const WRITE_ROWS: usize = 1_000;
/// Bytes of bound states per statement of [`write`], at most (a single larger state still
/// goes alone; `max_allowed_packet` is 16 MiB by default).
const WRITE_BYTES: usize = 4 << 20;

/// What the read found: readable states, and keys whose stored state is unreadable.
#[derive(Default)]
pub struct States {
    /// Readable states by key.
    pub rows: HashMap<Vec<u8>, StoredRow>,
    /// Keys whose state does not decode (written by a newer meshsync, or damaged).
    pub unreadable: Vec<Vec<u8>>,
}

/// Reads and locks (`FOR UPDATE`) the states of `keys` of table `tbl`.
pub async fn read(
    conn: &mut MySqlConnection,
    tbl: &str,
    keys: &[&[u8]],
) -> Result<States, MariaDbError> {
    let mut out = States::default();
    for chunk in keys.chunks(READ_KEYS) {
        let sql = format!(
            "SELECT pk, state FROM meshsync.row_state WHERE tbl = ? AND pk IN ({}) FOR UPDATE",
            vec!["?"; chunk.len()].join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tbl);
        for k in chunk {
            q = q.bind(*k);
        }
        let rows = q
            .fetch_all(&mut *conn)
            .await
            .map_err(MariaDbError::query("read row states"))?;
        for r in rows {
            let pk: Vec<u8> = r
                .try_get("pk")
                .map_err(MariaDbError::query("read row states"))?;
            let state: Vec<u8> = r
                .try_get("state")
                .map_err(MariaDbError::query("read row states"))?;
            match StoredRow::decode(&state) {
                Ok(s) => {
                    out.rows.insert(pk, s);
                }
                Err(_) => out.unreadable.push(pk),
            }
        }
    }
    Ok(out)
}

/// One state to store: key, encoded state, and for a deleted row its tombstone time
/// (hlc_column encoding).
pub type StateRow<'k> = (&'k [u8], Vec<u8>, Option<i64>);

/// Runs of `rows` that fit one statement each.
fn chunks<K: AsRef<[u8]>, S: AsRef<[u8]>>(
    rows: &[(K, S, Option<i64>)],
) -> Vec<&[(K, S, Option<i64>)]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, (k, s, _)) in rows.iter().enumerate() {
        let b = k.as_ref().len() + s.as_ref().len() + 32;
        if i > start && (i - start >= WRITE_ROWS || bytes + b > WRITE_BYTES) {
            out.push(&rows[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += b;
    }
    if start < rows.len() {
        out.push(&rows[start..]);
    }
    out
}

/// Stores the states of table `tbl`: `new` ones (no state was read for the key: a plain
/// insert, which also fails loudly should a state have appeared meanwhile) and `changed`
/// ones (an update of the rows read and locked).
pub async fn write(
    conn: &mut MySqlConnection,
    tbl: &str,
    new: &[StateRow<'_>],
    changed: &[StateRow<'_>],
) -> Result<(), MariaDbError> {
    for chunk in chunks(new) {
        let sql = format!(
            "INSERT INTO meshsync.row_state (tbl, pk, state, deleted_at) VALUES {}",
            vec!["(?, ?, ?, ?)"; chunk.len()].join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (k, s, d) in chunk {
            q = q.bind(tbl).bind(*k).bind(s.as_slice()).bind(*d);
        }
        q.execute(&mut *conn)
            .await
            .map_err(MariaDbError::query("insert row states"))?;
    }
    for chunk in chunks(changed) {
        // One UPDATE joined to the new values: MariaDB has no `UPDATE .. FROM unnest(..)`.
        let mut values = vec!["SELECT ? AS pk, ? AS state, ? AS deleted_at"];
        values.extend(std::iter::repeat_n("SELECT ?, ?, ?", chunk.len() - 1));
        let sql = format!(
            "UPDATE meshsync.row_state s JOIN ({}) u ON s.tbl = ? AND s.pk = u.pk
             SET s.state = u.state, s.deleted_at = u.deleted_at",
            values.join(" UNION ALL ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (k, s, d) in chunk {
            q = q.bind(*k).bind(s.as_slice()).bind(*d);
        }
        q.bind(tbl)
            .execute(&mut *conn)
            .await
            .map_err(MariaDbError::query("update row states"))?;
    }
    Ok(())
}

/// Marks where [`rollback_to_savepoint`] returns to: before the states and rows of a batch
/// taken as new.
pub async fn savepoint(conn: &mut MySqlConnection) -> Result<(), MariaDbError> {
    sqlx::query("SAVEPOINT meshsync_fresh")
        .execute(&mut *conn)
        .await
        .map_err(MariaDbError::query("savepoint"))?;
    Ok(())
}

/// Undoes everything since [`savepoint`] (the guess that the keys were new missed).
pub async fn rollback_to_savepoint(conn: &mut MySqlConnection) -> Result<(), MariaDbError> {
    sqlx::query("ROLLBACK TO SAVEPOINT meshsync_fresh")
        .execute(&mut *conn)
        .await
        .map_err(MariaDbError::query("rollback to savepoint"))?;
    Ok(())
}

/// Inserts `rows` as the first states of their keys, skipping keys that have one; false if
/// any had (the transaction must then go back to the [`savepoint`]).
pub async fn insert_new<K: AsRef<[u8]>, S: AsRef<[u8]>>(
    conn: &mut MySqlConnection,
    tbl: &str,
    rows: &[(K, S, Option<i64>)],
) -> Result<bool, MariaDbError> {
    let mut added = 0;
    for chunk in chunks(rows) {
        // IGNORE skips only keys that have a state (keys are checked against the column's
        // size before, and the other columns take any value).
        let sql = format!(
            "INSERT IGNORE INTO meshsync.row_state (tbl, pk, state, deleted_at) VALUES {}",
            vec!["(?, ?, ?, ?)"; chunk.len()].join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (k, s, d) in chunk {
            q = q.bind(tbl).bind(k.as_ref()).bind(s.as_ref()).bind(*d);
        }
        added += q
            .execute(&mut *conn)
            .await
            .map_err(MariaDbError::query("insert new row states"))?
            .rows_affected();
    }
    Ok(added == rows.len() as u64)
}

/// Removes the states of `keys` (new states whose rows the server then refused).
pub async fn forget(
    conn: &mut MySqlConnection,
    tbl: &str,
    keys: &[&[u8]],
) -> Result<(), MariaDbError> {
    for chunk in keys.chunks(READ_KEYS) {
        let sql = format!(
            "DELETE FROM meshsync.row_state WHERE tbl = ? AND pk IN ({})",
            vec!["?"; chunk.len()].join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tbl);
        for k in chunk {
            q = q.bind(*k);
        }
        q.execute(&mut *conn)
            .await
            .map_err(MariaDbError::query("remove refused row states"))?;
    }
    Ok(())
}

/// Forgets up to `limit` states of deleted rows whose tombstone is older than `before` (an
/// `hlc_column` time); returns how many. Safe because apply parks every change stamped
/// before the retention cutoff: none could lose to a forgotten tombstone.
pub async fn collect(
    conn: &mut MySqlConnection,
    before: i64,
    limit: u64,
) -> Result<u64, MariaDbError> {
    let done = sqlx::query("DELETE FROM meshsync.row_state WHERE deleted_at < ? LIMIT ?")
        .bind(before)
        .bind(limit)
        .execute(&mut *conn)
        .await
        .map_err(MariaDbError::query("collect old tombstones"))?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_rows_and_bytes() {
        let key = [1u8];
        let small: Vec<StateRow<'_>> = (0..2_500).map(|_| (&key[..], vec![0; 10], None)).collect();
        let sizes: Vec<usize> = chunks(&small).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [1_000, 1_000, 500]);
        let big: Vec<StateRow<'_>> = (0..3).map(|_| (&key[..], vec![0; 3 << 20], None)).collect();
        assert_eq!(chunks(&big).len(), 3);
        assert!(chunks::<&[u8], Vec<u8>>(&[]).is_empty());
    }
}
