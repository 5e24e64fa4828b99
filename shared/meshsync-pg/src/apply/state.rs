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
pub async fn read(conn: &mut PgConnection, tbl: &str, keys: &[&[u8]]) -> Result<States, PgError> {
    let rows = sqlx::query(
        "SELECT pk, state FROM meshsync.row_state WHERE tbl = $1 AND pk = ANY($2) FOR UPDATE",
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

/// Stores the states of table `tbl`: `new` ones (no state was read for the key; a plain
/// insert, cheaper than an upsert) and `changed` ones.
pub async fn write(
    conn: &mut PgConnection,
    tbl: &str,
    new: &[(&[u8], Vec<u8>)],
    changed: &[(&[u8], Vec<u8>)],
) -> Result<(), PgError> {
    let columns = |rows: &[(&[u8], Vec<u8>)]| -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        rows.iter().map(|(k, s)| (k.to_vec(), s.clone())).unzip()
    };
    if !new.is_empty() {
        let (pks, blobs) = columns(new);
        sqlx::query(
            "INSERT INTO meshsync.row_state (tbl, pk, state)
             SELECT $1, * FROM unnest($2::bytea[], $3::bytea[])",
        )
        .bind(tbl)
        .bind(pks)
        .bind(blobs)
        .execute(&mut *conn)
        .await
        .map_err(PgError::query("insert row states"))?;
    }
    if !changed.is_empty() {
        let (pks, blobs) = columns(changed);
        sqlx::query(
            "UPDATE meshsync.row_state s SET state = u.state
             FROM unnest($2::bytea[], $3::bytea[]) AS u(pk, state)
             WHERE s.tbl = $1 AND s.pk = u.pk",
        )
        .bind(tbl)
        .bind(pks)
        .bind(blobs)
        .execute(&mut *conn)
        .await
        .map_err(PgError::query("update row states"))?;
    }
    Ok(())
}
