//! Preparing a PostgreSQL database for meshsync, idempotently: the `meshsync` schema, replica
//! identity, the TRUNCATE guard, the publication, the slot and the apply origin.

use meshsync_core::{PeerId, TableName};
use sqlx::PgConnection;

use crate::{
    catalog::{self, ident, qualified},
    error::PgError,
};

/// Prefix of every replication origin meshsync's apply sessions use; capture drops
/// transactions that carry one (I7).
pub const APPLY_ORIGIN_PREFIX: &str = "meshsync_apply_";

/// Names of this peer's PostgreSQL objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// Logical replication slot.
    pub slot: String,
    /// Publication of the replicated tables.
    pub publication: String,
    /// Replication origin of the apply session.
    pub apply_origin: String,
}

impl Names {
    /// Names for `peer`: slot names allow only `[a-z0-9_]`, so other characters become `_`.
    pub fn for_peer(peer: &PeerId) -> Names {
        let safe: String = peer
            .as_str()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        Names {
            slot: format!("meshsync_{safe}"),
            publication: format!("meshsync_{safe}"),
            apply_origin: format!("{APPLY_ORIGIN_PREFIX}{safe}"),
        }
    }
}

/// The `meshsync` schema: per-row merge states and tombstones, the apply checkpoint, and the
/// capture's resume state. All written in the same transactions as the data they describe.
pub(crate) const SCHEMA: &str = "
CREATE SCHEMA IF NOT EXISTS meshsync;
-- Merge state of every replicated row (meshsync-merge's StoredRow, MessagePack): column
-- versions and values, counter parts, tombstones (I3). C collation: byte order, fast keys.
CREATE TABLE IF NOT EXISTS meshsync.row_state (
    tbl text COLLATE \"C\" NOT NULL,
    pk bytea NOT NULL,
    state bytea NOT NULL,
    -- For a deleted row: its tombstone's HLC time (hlc_column encoding), for retention.
    deleted_at bigint,
    PRIMARY KEY (tbl, pk)
);
-- Per table, the form its row_state keys are stored in (apply::key); none = texts.
CREATE TABLE IF NOT EXISTS meshsync.key_form (
    tbl text COLLATE \"C\" PRIMARY KEY,
    form text NOT NULL
);
-- Last stream sequence applied per consumer, committed with the data (I9).
CREATE TABLE IF NOT EXISTS meshsync.checkpoint (
    consumer text PRIMARY KEY,
    stream_seq bigint NOT NULL
);
-- Where capture may resume, and its HLC there, so a re-capture restamps identically (I6).
CREATE TABLE IF NOT EXISTS meshsync.capture_state (
    slot text PRIMARY KEY,
    lsn bigint NOT NULL,
    hlc_time bigint NOT NULL,
    hlc_node bigint NOT NULL
);
-- TRUNCATE is not replicated (it would bypass versions and tombstones); refuse it loudly.
CREATE OR REPLACE FUNCTION meshsync.refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'meshsync: TRUNCATE of replicated table %.% is not replicated; use DELETE',
        TG_TABLE_SCHEMA, TG_TABLE_NAME;
END $$;
";

/// The tombstone index of `meshsync.row_state`, created only when missing: even when it
/// exists, `CREATE INDEX IF NOT EXISTS` first takes a SHARE lock on the table, which waits
/// for (and after `deadlock_timeout` cancels) an autovacuum of it; a restart soon after a
/// large catch-up, when autovacuum is due, waited a second for it.
const TOMBSTONE_INDEX: &str = "CREATE INDEX IF NOT EXISTS row_state_deleted_at \
     ON meshsync.row_state (deleted_at) WHERE deleted_at IS NOT NULL";

/// How long set-up waits for a lock on a replicated table (its DDL runs once per table).
pub const LOCK_TIMEOUT_MS: u64 = 5_000;

/// Checks the server and creates whatever is missing. Safe on every start: a replicated
/// table is altered only when it lacks the replica identity or the TRUNCATE guard, so a
/// restart takes no lock that would queue the table's readers and writers.
pub async fn prepare(
    conn: &mut PgConnection,
    names: &Names,
    tables: &[TableName],
) -> Result<(), PgError> {
    let (wal_level,): (String,) = sqlx::query_as("SHOW wal_level")
        .fetch_one(&mut *conn)
        .await
        .map_err(PgError::query("read wal_level"))?;
    if wal_level != "logical" {
        return Err(PgError::WalLevel { found: wal_level });
    }
    // Serialise concurrent set-ups of the same database (two agents started at once).
    sqlx::query("SELECT pg_advisory_lock(7283561)")
        .execute(&mut *conn)
        .await
        .map_err(PgError::query("lock set-up"))?;
    // A DDL statement queued behind a long transaction would hold up every query on its
    // table meanwhile: give up after a while and let the caller retry. The server's notices
    // that what exists is skipped would fill the agent's log at every start.
    let result = async {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "SET lock_timeout = '{LOCK_TIMEOUT_MS}ms'; SET client_min_messages = warning"
        )))
        .execute(&mut *conn)
        .await
        .map_err(PgError::query("set the set-up's lock timeout"))?;
        prepare_locked(conn, names, tables).await
    }
    .await;
    let _ = sqlx::raw_sql(
        "RESET lock_timeout; RESET client_min_messages; SELECT pg_advisory_unlock(7283561)",
    )
    .execute(&mut *conn)
    .await;
    result
}

async fn prepare_locked(
    conn: &mut PgConnection,
    names: &Names,
    tables: &[TableName],
) -> Result<(), PgError> {
    sqlx::raw_sql(SCHEMA)
        .execute(&mut *conn)
        .await
        .map_err(PgError::query("create the meshsync schema"))?;
    let (index,): (Option<String>,) =
        sqlx::query_as("SELECT to_regclass('meshsync.row_state_deleted_at')::text")
            .fetch_one(&mut *conn)
            .await
            .map_err(PgError::query("find the tombstone index"))?;
    if index.is_none() {
        sqlx::raw_sql(TOMBSTONE_INDEX)
            .execute(&mut *conn)
            .await
            .map_err(PgError::query("create the tombstone index"))?;
    }
    for t in tables {
        table(conn, t).await?;
    }
    publication(conn, &names.publication, tables).await?;

    let slot: Option<(String,)> =
        sqlx::query_as("SELECT slot_name::text FROM pg_replication_slots WHERE slot_name = $1")
            .bind(&names.slot)
            .fetch_optional(&mut *conn)
            .await
            .map_err(PgError::query("find the slot"))?;
    if slot.is_none() {
        sqlx::query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')")
            .bind(&names.slot)
            .execute(&mut *conn)
            .await
            .map_err(PgError::query("create the replication slot"))?;
    }
    let origin: Option<(i64,)> =
        sqlx::query_as("SELECT roident::int8 FROM pg_replication_origin WHERE roname = $1")
            .bind(&names.apply_origin)
            .fetch_optional(&mut *conn)
            .await
            .map_err(PgError::query("find the apply origin"))?;
    if origin.is_none() {
        sqlx::query("SELECT pg_replication_origin_create($1)")
            .bind(&names.apply_origin)
            .execute(&mut *conn)
            .await
            .map_err(PgError::query("create the apply origin"))?;
    }
    Ok(())
}

/// Sets `t`'s replica identity to FULL (full old row images: unchanged TOASTed values are
/// known, and column deltas exist) and installs the TRUNCATE guard, each only if missing:
/// both statements lock the table against every reader and writer.
async fn table(conn: &mut PgConnection, t: &TableName) -> Result<(), PgError> {
    let oid = catalog::table_oid(conn, t).await?;
    // tgtype 34: BEFORE (2) TRUNCATE (32), per statement.
    let (full, guarded): (bool, bool) = sqlx::query_as(
        "SELECT c.relreplident = 'f',
                EXISTS (SELECT 1 FROM pg_trigger g
                        WHERE g.tgrelid = c.oid AND g.tgname = 'meshsync_refuse_truncate'
                          AND g.tgfoid = 'meshsync.refuse_truncate()'::regprocedure
                          AND g.tgtype = 34 AND g.tgenabled <> 'D')
         FROM pg_class c WHERE c.oid = $1::int8::oid",
    )
    .bind(oid)
    .fetch_one(&mut *conn)
    .await
    .map_err(PgError::query(
        "read the replica identity and the truncate guard",
    ))?;
    let q = qualified(t);
    let mut ddl = String::new();
    if !full {
        ddl.push_str(&format!("ALTER TABLE {q} REPLICA IDENTITY FULL;"));
    }
    if !guarded {
        ddl.push_str(&format!(
            "DROP TRIGGER IF EXISTS meshsync_refuse_truncate ON {q};
             CREATE TRIGGER meshsync_refuse_truncate BEFORE TRUNCATE ON {q}
                 FOR EACH STATEMENT EXECUTE FUNCTION meshsync.refuse_truncate();"
        ));
    }
    if ddl.is_empty() {
        return Ok(());
    }
    // One query string: one implicit transaction, all or nothing.
    sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(|source| locked_or(source, t, "set replica identity and the truncate guard"))
}

/// Makes the publication list exactly `tables`, altering it only when it differs.
async fn publication(
    conn: &mut PgConnection,
    name: &str,
    tables: &[TableName],
) -> Result<(), PgError> {
    let listed: Option<(Vec<String>,)> = sqlx::query_as(
        "SELECT coalesce(array_agg(n.nspname || '.' || c.relname ORDER BY 1), '{}')
         FROM pg_publication p
         LEFT JOIN pg_publication_rel r ON r.prpubid = p.oid
         LEFT JOIN pg_class c ON c.oid = r.prrelid
         LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE p.pubname = $1 GROUP BY p.oid",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await
    .map_err(PgError::query("find the publication"))?;
    let mut wanted: Vec<String> = tables
        .iter()
        .map(|t| format!("{}.{}", t.schema, t.name))
        .collect();
    wanted.sort();
    wanted.dedup();
    let verb = match listed {
        Some((mut have,)) => {
            have.sort();
            if have == wanted {
                return Ok(());
            }
            "ALTER PUBLICATION {} SET TABLE"
        }
        None => "CREATE PUBLICATION {} FOR TABLE",
    };
    let list: Vec<String> = tables.iter().map(qualified).collect();
    let sql = format!("{} {}", verb.replace("{}", &ident(name)), list.join(", "));
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(PgError::query("create the publication"))
}

/// A lock timeout on `t` as [`PgError::Locked`], anything else as a failed query.
fn locked_or(source: sqlx::Error, t: &TableName, what: &'static str) -> PgError {
    let code = match &source {
        sqlx::Error::Database(db) => db.code().map(|c| c.to_string()),
        _ => None,
    };
    if code.as_deref() == Some("55P03") {
        PgError::Locked {
            table: t.clone(),
            waited_ms: LOCK_TIMEOUT_MS,
        }
    } else {
        PgError::query(what)(source)
    }
}
