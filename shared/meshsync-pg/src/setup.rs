//! Preparing a PostgreSQL database for meshsync, idempotently: the `meshsync` schema, replica
//! identity, the TRUNCATE guard, the publication, the slot and the apply origin.

use meshsync_core::{PeerId, TableName};
use sqlx::PgConnection;

use crate::{
    catalog::{ident, qualified},
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
CREATE INDEX IF NOT EXISTS row_state_deleted_at ON meshsync.row_state (deleted_at)
    WHERE deleted_at IS NOT NULL;
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

/// Checks the server and creates whatever is missing. Safe on every start.
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
    let result = prepare_locked(conn, names, tables).await;
    let _ = sqlx::query("SELECT pg_advisory_unlock(7283561)")
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
    let list: Vec<String> = tables.iter().map(qualified).collect();
    for t in tables {
        let q = qualified(t);
        // Full old row images: unchanged TOASTed values are known, and column deltas exist.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE {q} REPLICA IDENTITY FULL;
             DROP TRIGGER IF EXISTS meshsync_refuse_truncate ON {q};
             CREATE TRIGGER meshsync_refuse_truncate BEFORE TRUNCATE ON {q}
                 FOR EACH STATEMENT EXECUTE FUNCTION meshsync.refuse_truncate();"
        )))
        .execute(&mut *conn)
        .await
        .map_err(PgError::query(
            "set replica identity and the truncate guard",
        ))?;
    }
    let exists: Option<(String,)> =
        sqlx::query_as("SELECT pubname::text FROM pg_publication WHERE pubname = $1")
            .bind(&names.publication)
            .fetch_optional(&mut *conn)
            .await
            .map_err(PgError::query("find the publication"))?;
    let verb = if exists.is_some() {
        "ALTER PUBLICATION {} SET TABLE"
    } else {
        "CREATE PUBLICATION {} FOR TABLE"
    };
    let sql = format!(
        "{} {}",
        verb.replace("{}", &ident(&names.publication)),
        list.join(", ")
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .map_err(PgError::query("create the publication"))?;

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
