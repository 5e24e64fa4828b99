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

/// One index probe per key, forced by the LATERAL subquery: with `pk = ANY($2)` the planner,
/// on a table growing faster than autovacuum analyses it, scanned every state of the table
/// (the index on `tbl` alone, or a hash join), 3 ms at first and 30 ms per 4,000 keys after
/// 200,000 rows.
const READ: &str = "SELECT s.pk, s.state FROM unnest($2::bytea[]) AS k(pk) CROSS JOIN LATERAL \
     (SELECT pk, state FROM meshsync.row_state WHERE tbl = $1 AND pk = k.pk FOR UPDATE) s";

/// Changed states, by key through the primary key (an `UPDATE .. FROM unnest(..)` was planned
/// as a hash join over every state: 80 ms per 4,000 keys at 200,000 rows).
const UPSERT: &str = "INSERT INTO meshsync.row_state (tbl, pk, state, deleted_at)
     SELECT $1, * FROM unnest($2::bytea[], $3::bytea[], $4::int8[])
     ON CONFLICT (tbl, pk) DO UPDATE SET state = EXCLUDED.state, deleted_at = EXCLUDED.deleted_at";

/// New states: a plain insert, cheaper than the upsert. (Binary COPY took half the time per
/// 4,000 states but stalled small transactions 40 ms: sqlx sends the data and the end of a
/// COPY as two writes without TCP_NODELAY, and the second waits for a delayed ACK.)
const INSERT_NEW: &str = "INSERT INTO meshsync.row_state (tbl, pk, state, deleted_at)
     SELECT $1, * FROM unnest($2::bytea[], $3::bytea[], $4::int8[])";

/// Reads and locks the states of `keys` of table `tbl`.
pub async fn read(conn: &mut PgConnection, tbl: &str, keys: &[&[u8]]) -> Result<States, PgError> {
    let rows = sqlx::query(READ)
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

/// Marks where [`rollback_to_savepoint`] returns to: before the states and rows of a batch
/// taken as new.
pub async fn savepoint(conn: &mut PgConnection) -> Result<(), PgError> {
    sqlx::query("SAVEPOINT meshsync_fresh")
        .execute(&mut *conn)
        .await
        .map_err(PgError::query("savepoint"))?;
    Ok(())
}

/// Undoes everything since [`savepoint`] (the guess that the keys were new missed).
pub async fn rollback_to_savepoint(conn: &mut PgConnection) -> Result<(), PgError> {
    sqlx::query("ROLLBACK TO SAVEPOINT meshsync_fresh")
        .execute(&mut *conn)
        .await
        .map_err(PgError::query("rollback to savepoint"))?;
    Ok(())
}

/// Inserts `rows` as the first states of their keys; false if one of the keys has a state
/// already (the transaction must then go back to the [`savepoint`]). A plain insert that
/// fails on the key, not `ON CONFLICT DO NOTHING`: that took twice as long per 4,000 rows.
pub async fn insert_new<K: AsRef<[u8]>, S: AsRef<[u8]>>(
    conn: &mut PgConnection,
    tbl: &str,
    rows: &[(K, S, Option<i64>)],
) -> Result<bool, PgError> {
    match bind(sqlx::query(INSERT_NEW), tbl, rows)
        .execute(&mut *conn)
        .await
    {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("row_state_pkey") => Ok(false),
        Err(e) => Err(PgError::query("insert new row states")(e)),
    }
}

/// Removes the states of `keys` (new states whose rows PostgreSQL then refused).
pub async fn forget(conn: &mut PgConnection, tbl: &str, keys: &[&[u8]]) -> Result<(), PgError> {
    sqlx::query("DELETE FROM meshsync.row_state WHERE tbl = $1 AND pk = ANY($2::bytea[])")
        .bind(tbl)
        .bind(keys)
        .execute(&mut *conn)
        .await
        .map_err(PgError::query("remove refused row states"))?;
    Ok(())
}

/// Binds `tbl` and the columns of `rows` (keys and states borrowed or owned) to a statement
/// over `unnest($2, $3, $4)`.
fn bind<'q, K: AsRef<[u8]>, S: AsRef<[u8]>>(
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    tbl: &'q str,
    rows: &'q [(K, S, Option<i64>)],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let (mut pks, mut blobs, mut deleted) = (Vec::new(), Vec::new(), Vec::new());
    for (k, s, d) in rows {
        pks.push(k.as_ref());
        blobs.push(s.as_ref());
        deleted.push(*d);
    }
    q.bind(tbl).bind(pks).bind(blobs).bind(deleted)
}

/// Stores the states of table `tbl`: `new` ones (no state was read for the key) and
/// `changed` ones.
pub async fn write(
    conn: &mut PgConnection,
    tbl: &str,
    new: &[StateRow<'_>],
    changed: &[StateRow<'_>],
) -> Result<(), PgError> {
    for (rows, sql, what) in [
        (new, INSERT_NEW, "insert row states"),
        (changed, UPSERT, "update row states"),
    ] {
        if rows.is_empty() {
            continue;
        }
        bind(sqlx::query(sql), tbl, rows)
            .execute(&mut *conn)
            .await
            .map_err(PgError::query(what))?;
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

#[cfg(test)]
mod tests {
    use meshsync_merge::StoredRow;
    use meshsync_testkit::Postgres;
    use sqlx::{AssertSqlSafe, PgConnection};

    use super::{READ, UPSERT, read, write};

    const TBL: &str = "public.items";

    /// A database with the meshsync schema and `n` states of [`TBL`] that autovacuum never
    /// analysed (as while a table fills faster than it runs).
    async fn with_states(pg: &Postgres, n: i64) -> PgConnection {
        let mut c = pg.connect("postgres").await.unwrap();
        sqlx::raw_sql(crate::setup::SCHEMA)
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!(
            "ALTER TABLE meshsync.row_state SET (autovacuum_enabled = off);
             INSERT INTO meshsync.row_state SELECT '{TBL}', int8send(g), '\\x00', NULL
             FROM generate_series(1, {n}) g"
        )))
        .execute(&mut c)
        .await
        .unwrap();
        c
    }

    #[tokio::test]
    async fn states_are_found_key_by_key_whatever_the_statistics() {
        let pg = Postgres::start().await.unwrap();
        let mut c = with_states(&pg, 50_000).await;
        let keys: Vec<Vec<u8>> = (40_001..44_001i64)
            .map(|i| i.to_be_bytes().to_vec())
            .collect();
        let states = vec![vec![0u8]; keys.len()];
        let deleted: Vec<Option<i64>> = vec![None; keys.len()];
        for (what, sql) in [("read", READ), ("update", UPSERT)] {
            let mut q = sqlx::query_as::<_, (String,)>(AssertSqlSafe(format!("EXPLAIN {sql}")))
                .bind(TBL)
                .bind(&keys);
            if what == "update" {
                q = q.bind(&states).bind(&deleted);
            }
            let plan: Vec<String> = q
                .fetch_all(&mut c)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.0)
                .collect();
            let plan = plan.join("\n");
            assert!(
                !plan.contains("Seq Scan") && !plan.contains("Hash Join"),
                "{what} must not scan the states:\n{plan}"
            );
            for cond in plan.lines().filter(|l| l.contains("Index Cond")) {
                assert!(cond.contains("pk ="), "{what} probes by key:\n{plan}");
            }
        }
    }

    #[tokio::test]
    async fn inserted_and_upserted_states_read_back() {
        let pg = Postgres::start().await.unwrap();
        let mut c = with_states(&pg, 10).await;
        let state = |n: u8| {
            StoredRow::default()
                .encode()
                .into_iter()
                .chain([n])
                .collect()
        };
        let (k1, k2, k3) = (
            vec![0xffu8, 1],
            vec![0xffu8, 2],
            3i64.to_be_bytes().to_vec(),
        );
        let mut tx = sqlx::Connection::begin(&mut c).await.unwrap();
        // New states (a deleted one among them), and one existing key changed.
        write(
            &mut tx,
            TBL,
            &[(&k1, state(1), None), (&k2, state(2), Some(-42))],
            &[(&k3, state(3), Some(7))],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let rows: Vec<(Vec<u8>, Vec<u8>, Option<i64>)> = sqlx::query_as(
            "SELECT pk, state, deleted_at FROM meshsync.row_state WHERE pk IN ($1, $2, $3)
             ORDER BY pk",
        )
        .bind(&k1)
        .bind(&k2)
        .bind(&k3)
        .fetch_all(&mut c)
        .await
        .unwrap();
        assert_eq!(
            rows,
            vec![
                (k3.clone(), state(3), Some(7)),
                (k1.clone(), state(1), None),
                (k2.clone(), state(2), Some(-42)),
            ]
        );
        // The read finds exactly the stored keys among those asked for.
        let found = read(&mut c, TBL, &[&k1, &k3, &[9u8][..]]).await.unwrap();
        let mut keys: Vec<Vec<u8>> = found.rows.into_keys().chain(found.unreadable).collect();
        keys.sort();
        assert_eq!(keys, vec![k3, k1]);
    }
}
