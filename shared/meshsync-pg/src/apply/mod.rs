//! Applying change batches to PostgreSQL: merged by the peer's merge policies (meshsync-merge:
//! per-column or row LWW, counters, ...), tombstones for deletes, data + row states +
//! checkpoint in one transaction (I4, I9).
//!
//! The session runs under a replication origin (`meshsync_apply_<peer>`), so capture on
//! this database drops what apply writes (I7), and every transaction emits the highest HLC it
//! applied as a logical message, so capture stamps later local writes above it (I8).

mod copy;
mod key;
mod plain;
mod state;
mod table;
mod write;

use std::{collections::HashMap, sync::Arc, time::Duration};

pub use meshsync_core::{BatchReport, Parked};
use meshsync_core::{ChangeBatch, Hlc, PeerId, TableName, by_table};
use meshsync_merge::{ConflictRecord, FreshGuess, PolicySet};
pub use plain::{Prepared, Preparer};
use sqlx::{Connection, PgConnection, Postgres, Transaction};
use tracing::{debug, info, warn};

use crate::{
    catalog::TableInfo,
    error::PgError,
    setup::Names,
    source::stream::{APPLIED_HLC_PREFIX, ORIGIN_FILTER_VERSION},
};

/// The apply session of one peer database.
pub struct PgSink {
    conn: PgConnection,
    tables: Arc<HashMap<TableName, TableInfo>>,
    policies: PolicySet,
    peer: PeerId,
    consumer: String,
    /// Per table: whether to take incoming keys as new (no state read).
    guesses: HashMap<TableName, FreshGuess>,
    /// Write new keys with COPY (the connection has TCP_NODELAY, or is a Unix socket).
    copy: bool,
    /// Rows written with COPY by committed transactions.
    copied: u64,
    /// Of those, rows written from prepared messages ([`Preparer`]).
    prepared: u64,
    /// This session's replication origin and how it is held.
    origin: String,
    origin_mode: OriginMode,
}

/// How the apply session carries its replication origin, which keeps apply's writes out of
/// this peer's capture (I7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OriginMode {
    /// PostgreSQL 15: set once for the session. Capture receives apply's transactions and
    /// drops them on their origin message.
    Session,
    /// PostgreSQL 16 and later, whose capture asks for `origin 'none'`: set for a
    /// transaction's writes and reset before its applied-HLC message and commit, so the server
    /// leaves the rows out but sends the message (I8). `set`: whether the session holds the
    /// origin now (setting it twice is an error).
    PerTransaction { set: bool },
}

/// One open apply transaction.
pub struct ApplyTxn<'c> {
    tx: Transaction<'c, Postgres>,
    sink_tables: &'c HashMap<TableName, TableInfo>,
    guesses: &'c mut HashMap<TableName, FreshGuess>,
    copy: bool,
    copied_total: &'c mut u64,
    copied: u64,
    prepared_total: &'c mut u64,
    prepared: u64,
    policies: &'c PolicySet,
    peer: &'c PeerId,
    consumer: &'c str,
    max_hlc: Option<Hlc>,
    conflicts: Vec<ConflictRecord>,
    origin_mode: &'c mut OriginMode,
}

impl PgSink {
    /// Opens the apply session under this peer's replication origin.
    pub async fn connect(
        url: &str,
        names: &Names,
        tables: HashMap<TableName, TableInfo>,
        policies: PolicySet,
        peer: PeerId,
        consumer: String,
    ) -> Result<PgSink, PgError> {
        let mut conn = PgConnection::connect(url)
            .await
            .map_err(PgError::query("connect for apply"))?;
        // A killed agent's backend may hold the origin for a moment after the crash.
        let mut tries = 0;
        loop {
            let r = sqlx::query("SELECT pg_replication_origin_session_setup($1)")
                .bind(&names.apply_origin)
                .execute(&mut conn)
                .await;
            match r {
                Ok(_) => break,
                Err(e) if tries < 60 => {
                    debug!(error = %e, "apply origin busy, retrying");
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(PgError::query("set up the apply origin")(e)),
            }
        }
        // Custom plans: a generic plan chosen while a table was still empty would scan it
        // whole for every batch once it has grown.
        // Asynchronous commit, as PostgreSQL's own subscriptions do: a crash of the database
        // loses at most its last fraction of a second of apply transactions, always a suffix
        // and with their checkpoint, and apply resumes from the checkpoint that survived, so
        // the stream (which keeps acknowledged messages) brings them back (I9).
        for (setting, what) in [
            ("SET plan_cache_mode = force_custom_plan", "plan cache mode"),
            ("SET synchronous_commit = off", "commit mode"),
        ] {
            sqlx::query(setting)
                .execute(&mut conn)
                .await
                .map_err(PgError::query(what))?;
        }
        for info in tables.values() {
            let converted = key::settle(&mut conn, info).await?;
            if converted > 0 {
                info!(table = %info.name, states = converted, "stored keys brought into the table's key form");
            }
        }
        let copy = nodelay(&mut conn, url).await?;
        // The server reports its version when the connection starts.
        let origin_mode = if conn.server_version_num().unwrap_or(0) >= ORIGIN_FILTER_VERSION {
            OriginMode::PerTransaction { set: true }
        } else {
            OriginMode::Session
        };
        Ok(PgSink {
            origin: names.apply_origin.clone(),
            origin_mode,
            conn,
            tables: Arc::new(tables),
            policies,
            peer,
            consumer,
            guesses: HashMap::new(),
            copy,
            copied: 0,
            prepared: 0,
        })
    }

    /// Whether keys taken as new are written with COPY (else INSERT statements).
    pub fn copies(&self) -> bool {
        self.copy
    }

    /// Writes keys taken as new with COPY or not; `connect` turns it on whenever the
    /// connection allows.
    pub fn set_copy(&mut self, copy: bool) {
        self.copy = copy;
    }

    /// Prepares messages ahead of their transaction ([`Preparer`]); `None` when new keys are
    /// not written with COPY.
    pub fn preparer(&self) -> Option<Preparer> {
        self.copy.then(|| {
            Preparer::new(
                Arc::clone(&self.tables),
                self.policies.clone(),
                self.peer.clone(),
            )
        })
    }

    /// Rows written with COPY by the transactions committed so far.
    pub fn copied_rows(&self) -> u64 {
        self.copied
    }

    /// Of [`PgSink::copied_rows`], those written from prepared messages.
    pub fn prepared_rows(&self) -> u64 {
        self.prepared
    }

    /// The last stream sequence committed by this consumer (0 if none).
    pub async fn checkpoint(&mut self) -> Result<u64, PgError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT stream_seq FROM meshsync.checkpoint WHERE consumer = $1")
                .bind(&self.consumer)
                .fetch_optional(&mut self.conn)
                .await
                .map_err(PgError::query("read the apply checkpoint"))?;
        Ok(row.map(|(s,)| s as u64).unwrap_or(0))
    }

    /// Forgets the states of rows deleted before `before` (tombstone retention), in rounds of
    /// at most 10,000 rows so no statement holds locks for long; returns how many.
    pub async fn collect_tombstones(&mut self, before: Hlc) -> Result<u64, PgError> {
        let cutoff = meshsync_core::hlc_column::to_columns(before).0;
        let mut total = 0;
        loop {
            let n = state::collect(&mut self.conn, cutoff, 10_000).await?;
            total += n;
            if n < 10_000 {
                return Ok(total);
            }
        }
    }

    /// Starts a transaction.
    pub async fn begin(&mut self) -> Result<ApplyTxn<'_>, PgError> {
        let mut tx = self
            .conn
            .begin()
            .await
            .map_err(PgError::query("begin an apply transaction"))?;
        if self.origin_mode == (OriginMode::PerTransaction { set: false }) {
            sqlx::query("SELECT pg_replication_origin_session_setup($1)")
                .bind(&self.origin)
                .execute(&mut *tx)
                .await
                .map_err(PgError::query("set up the apply origin"))?;
            self.origin_mode = OriginMode::PerTransaction { set: true };
        }
        Ok(ApplyTxn {
            origin_mode: &mut self.origin_mode,
            tx,
            sink_tables: &self.tables,
            guesses: &mut self.guesses,
            copy: self.copy,
            copied_total: &mut self.copied,
            copied: 0,
            prepared_total: &mut self.prepared,
            prepared: 0,
            policies: &self.policies,
            peer: &self.peer,
            consumer: &self.consumer,
            max_hlc: None,
            conflicts: Vec::new(),
        })
    }
}

/// Whether `conn` sends small writes at once: over TCP only once TCP_NODELAY is set, which
/// sqlx 0.9.0 does not do (see [`crate::nodelay`]). Without it new keys are written with
/// INSERT statements instead of COPY.
async fn nodelay(conn: &mut PgConnection, url: &str) -> Result<bool, PgError> {
    let (port,): (Option<i32>,) = sqlx::query_as("SELECT inet_server_port()")
        .fetch_one(&mut *conn)
        .await
        .map_err(PgError::query("read the server port"))?;
    let Some(port) = port.and_then(|p| u16::try_from(p).ok()) else {
        return Ok(true); // A Unix socket: no Nagle's algorithm.
    };
    // The port we connected to, which a proxy may map to another one on the server.
    let port = url
        .parse::<sqlx::postgres::PgConnectOptions>()
        .map(|o| o.get_port())
        .unwrap_or(port);
    match crate::nodelay::set_for_server_port(port) {
        Ok(n) if n > 0 => Ok(true),
        Ok(_) => {
            warn!(
                port,
                "no connection to the database's port found to set TCP_NODELAY on; new keys are written with INSERT instead of COPY"
            );
            Ok(false)
        }
        Err(e) => {
            warn!(error = %e, "cannot set TCP_NODELAY on the apply connection (a container's seccomp profile may refuse pidfd_getfd: add CAP_SYS_PTRACE); new keys are written with INSERT instead of COPY");
            Ok(false)
        }
    }
}

impl ApplyTxn<'_> {
    /// Merges batches (in stream order) into the database: per table, one state read and one
    /// set of writes for all of them. Data problems come back as [`Parked`] rows in each
    /// batch's report (same order as `batches`); `Err` means the database itself failed (retry
    /// the whole transaction).
    pub async fn apply(&mut self, batches: &[&ChangeBatch]) -> Result<Vec<BatchReport>, PgError> {
        self.apply_prepared(batches, &[]).await
    }

    /// [`ApplyTxn::apply`] with what a [`Preparer`] made of the batches (by position; missing
    /// or `None` = not prepared). A table whose batches were all prepared is written straight
    /// from them.
    pub async fn apply_prepared(
        &mut self,
        batches: &[&ChangeBatch],
        prepared: &[Option<&Prepared>],
    ) -> Result<Vec<BatchReport>, PgError> {
        let mut reports = vec![BatchReport::default(); batches.len()];
        for (table, members) in by_table(batches) {
            let Some(info) = self.sink_tables.get(table) else {
                for i in members {
                    reports[i] = BatchReport::park_all(format!(
                        "table {table} is not replicated on this peer; add it to database.tables"
                    ));
                }
                continue;
            };
            let mut good = Vec::new();
            for i in members {
                match batches[i].check_shape(&info.key, |c| info.column(c).is_some()) {
                    Ok(()) => good.push(i),
                    Err(reason) => reports[i] = BatchReport::park_all(reason),
                }
            }
            let group: Vec<&ChangeBatch> = good.iter().map(|i| batches[*i]).collect();
            let ready: Option<Vec<&Prepared>> = good
                .iter()
                .map(|i| prepared.get(*i).copied().flatten())
                .collect();
            let mut done = vec![BatchReport::default(); group.len()];
            let policies = self.policies.table(table);
            let new_keys = table::NewKeys {
                guess: self.guesses.entry(table.clone()).or_default(),
                copy: self.copy,
                prepared: ready,
            };
            let outcome = table::apply(
                &mut self.tx,
                info,
                &policies,
                &group,
                &mut done,
                self.peer,
                new_keys,
            )
            .await?;
            self.conflicts.extend(outcome.conflicts);
            self.copied += outcome.copied;
            self.prepared += outcome.prepared;
            for (i, report) in good.into_iter().zip(done) {
                if report.applied > 0 && batches[i].origin != *self.peer {
                    self.max_hlc = self.max_hlc.max(Some(batches[i].hlc));
                }
                reports[i] = report;
            }
        }
        Ok(reports)
    }

    /// The conflicts resolved so far in this transaction (for the conflict log, once
    /// committed).
    pub fn take_conflicts(&mut self) -> Vec<ConflictRecord> {
        std::mem::take(&mut self.conflicts)
    }

    /// Commits data, row states and the checkpoint `upto` together (I9).
    pub async fn commit(mut self, upto: u64) -> Result<(), PgError> {
        sqlx::query(
            "INSERT INTO meshsync.checkpoint (consumer, stream_seq) VALUES ($1, $2)
             ON CONFLICT (consumer) DO UPDATE SET stream_seq = GREATEST(meshsync.checkpoint.stream_seq, EXCLUDED.stream_seq)",
        )
        .bind(self.consumer)
        .bind(upto as i64)
        .execute(&mut *self.tx)
        .await
        .map_err(PgError::query("write the apply checkpoint"))?;
        if let OriginMode::PerTransaction { set } = self.origin_mode {
            sqlx::query("SELECT pg_replication_origin_session_reset()")
                .execute(&mut *self.tx)
                .await
                .map_err(PgError::query("reset the apply origin"))?;
            *set = false;
        }
        if let Some(hlc) = self.max_hlc {
            // As text: sqlx looks up a result type it does not know (pg_lsn) in the catalog,
            // a query of 5 ms in every new session's first transaction.
            sqlx::query("SELECT pg_logical_emit_message(true, $1, $2)::text")
                .bind(APPLIED_HLC_PREFIX)
                .bind(hlc.to_string())
                .execute(&mut *self.tx)
                .await
                .map_err(PgError::query("record the applied HLC"))?;
        }
        self.tx
            .commit()
            .await
            .map_err(PgError::query("commit an apply transaction"))?;
        *self.copied_total += self.copied;
        *self.prepared_total += self.prepared;
        Ok(())
    }
}
