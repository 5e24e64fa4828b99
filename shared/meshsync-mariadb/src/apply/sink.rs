//! [`MariaDbSink`]: change batches merged into MariaDB by the peer's merge policies, data,
//! row states, checkpoint and applied HLC in one transaction (I4, I8, I9). The same API as
//! the PostgreSQL engine's `PgSink`, so the agent drives both alike.

use std::collections::HashMap;

use meshsync_core::{BatchReport, ChangeBatch, Hlc, PeerId, TableName, by_table};
use meshsync_merge::{ConflictRecord, FreshGuess, PolicySet};
use sqlx::{Connection, MySql, MySqlConnection, Transaction};

use super::{open_apply_session, state, table};
use crate::{catalog::TableInfo, error::MariaDbError, flavour::Flavour, hlc_column};

/// The table where every apply transaction that applied changes of other origins records
/// the highest HLC it applied, in the same transaction. Capture on this server reads the
/// row in a `from_apply` transaction and folds `hlc_time`/`hlc_node`
/// ([`hlc_column::from_columns`]) into its clock: a local write committed afterwards is
/// stamped later (causality, I8). Capture must list it among its tables to decode it.
///
/// Every apply transaction that writes a row of a replicated table writes its row here too,
/// and always changes it (`applies` counts up: MySQL logs no row event for an update that
/// changes nothing). On MySQL, which has no `skip_replication`, that row is how capture
/// tells apply transactions (I7); on MariaDB the flag does, and the row is harmless.
pub const APPLIED_TABLE: &str = "meshsync.applied";

/// Records an apply transaction in [`APPLIED_TABLE`] inside `tx`: with `hlc` the highest
/// HLC of other origins it applied, without it only the count of apply transactions moves
/// (a transaction that wrote only rows of this peer's own changes).
pub async fn record_applied(
    tx: &mut MySqlConnection,
    consumer: &str,
    hlc: Option<Hlc>,
) -> Result<(), MariaDbError> {
    let q = match hlc {
        Some(hlc) => {
            let (time, node) = hlc_column::to_columns(hlc);
            sqlx::query(
                "INSERT INTO meshsync.applied (consumer, hlc_time, hlc_node, applies)
                 VALUES (?, ?, ?, 1)
                 ON DUPLICATE KEY UPDATE hlc_time = VALUES(hlc_time),
                     hlc_node = VALUES(hlc_node), applies = applies + 1",
            )
            .bind(consumer)
            .bind(time)
            .bind(node)
        }
        None => sqlx::query(
            "INSERT INTO meshsync.applied (consumer, hlc_time, hlc_node, applies)
             VALUES (?, 0, 0, 1) ON DUPLICATE KEY UPDATE applies = applies + 1",
        )
        .bind(consumer),
    };
    q.execute(tx)
        .await
        .map_err(MariaDbError::query("record the applied HLC"))?;
    Ok(())
}

/// Tombstones forgotten per statement of [`MariaDbSink::collect_tombstones`].
const COLLECT_ROUND: u64 = 10_000;

/// The apply session of one peer database.
pub struct MariaDbSink {
    /// A session from [`open_apply_session`] (`skip_replication = 1` on MariaDB).
    conn: MySqlConnection,
    /// MariaDB or MySQL.
    flavour: Flavour,
    /// The replicated tables.
    tables: HashMap<TableName, TableInfo>,
    /// The merge policies.
    policies: PolicySet,
    /// This peer.
    peer: PeerId,
    /// The stream consumer whose checkpoint and applied HLC this sink keeps.
    consumer: String,
    /// Per table: whether to take incoming keys as new (no state read).
    guesses: HashMap<TableName, FreshGuess>,
}

/// One open apply transaction.
pub struct ApplyTxn<'c> {
    /// The transaction.
    tx: Transaction<'c, MySql>,
    /// The replicated tables.
    tables: &'c HashMap<TableName, TableInfo>,
    /// Per table: whether to take incoming keys as new.
    guesses: &'c mut HashMap<TableName, FreshGuess>,
    /// The merge policies.
    policies: &'c PolicySet,
    /// This peer.
    peer: &'c PeerId,
    /// The consumer.
    consumer: &'c str,
    /// MariaDB or MySQL.
    flavour: Flavour,
    /// Highest HLC of a batch of another origin that applied rows.
    max_hlc: Option<Hlc>,
    /// Whether a row of a replicated table was written.
    wrote_rows: bool,
    /// Conflicts resolved so far.
    conflicts: Vec<ConflictRecord>,
}

impl MariaDbSink {
    /// Opens the apply session ([`open_apply_session`]: `skip_replication`, UTC, strict,
    /// READ COMMITTED). The `meshsync` database must exist (`setup::prepare`).
    pub async fn connect(
        url: &str,
        tables: HashMap<TableName, TableInfo>,
        policies: PolicySet,
        peer: PeerId,
        consumer: String,
    ) -> Result<MariaDbSink, MariaDbError> {
        let mut conn = open_apply_session(url).await?;
        let flavour = Flavour::detect(&mut conn).await?;
        Ok(MariaDbSink {
            conn,
            flavour,
            tables,
            policies,
            peer,
            consumer,
            guesses: HashMap::new(),
        })
    }

    /// The last stream sequence committed by this consumer (0 if none).
    pub async fn checkpoint(&mut self) -> Result<u64, MariaDbError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT stream_seq FROM meshsync.checkpoint WHERE consumer = ?")
                .bind(&self.consumer)
                .fetch_optional(&mut self.conn)
                .await
                .map_err(MariaDbError::query("read the apply checkpoint"))?;
        Ok(row.map_or(0, |(s,)| u64::try_from(s).unwrap_or(0)))
    }

    /// Forgets the states of rows deleted before `before` (tombstone retention), in rounds of
    /// at most 10,000 rows (each its own transaction) so no statement holds locks for long;
    /// returns how many.
    pub async fn collect_tombstones(&mut self, before: Hlc) -> Result<u64, MariaDbError> {
        let cutoff = hlc_column::to_columns(before).0;
        let mut total = 0;
        loop {
            let n = state::collect(&mut self.conn, cutoff, COLLECT_ROUND).await?;
            total += n;
            if n < COLLECT_ROUND {
                return Ok(total);
            }
        }
    }

    /// Starts a transaction.
    pub async fn begin(&mut self) -> Result<ApplyTxn<'_>, MariaDbError> {
        let tx = self
            .conn
            .begin()
            .await
            .map_err(MariaDbError::query("begin an apply transaction"))?;
        Ok(ApplyTxn {
            tx,
            tables: &self.tables,
            guesses: &mut self.guesses,
            policies: &self.policies,
            peer: &self.peer,
            consumer: &self.consumer,
            flavour: self.flavour,
            max_hlc: None,
            wrote_rows: false,
            conflicts: Vec::new(),
        })
    }
}

impl ApplyTxn<'_> {
    /// Merges batches (in stream order) into the database: per table, one state read and one
    /// set of writes for all of them. Data problems come back as parked rows in each batch's
    /// report (same order as `batches`); `Err` means the database itself failed (roll back,
    /// i.e. drop this, and retry the whole transaction).
    pub async fn apply(
        &mut self,
        batches: &[&ChangeBatch],
    ) -> Result<Vec<BatchReport>, MariaDbError> {
        let mut reports = vec![BatchReport::default(); batches.len()];
        for (name, members) in by_table(batches) {
            let Some(info) = self.tables.get(name) else {
                for i in members {
                    reports[i] = BatchReport::park_all(format!(
                        "table {name} is not replicated on this peer; add it to database.tables"
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
            if good.is_empty() {
                continue;
            }
            let group: Vec<&ChangeBatch> = good.iter().map(|i| batches[*i]).collect();
            let mut done = vec![BatchReport::default(); group.len()];
            let policies = self.policies.table(name);
            let merged = table::apply(
                &mut self.tx,
                self.flavour,
                info,
                &policies,
                &group,
                &mut done,
                self.peer,
                self.guesses.entry(name.clone()).or_default(),
            )
            .await?;
            self.wrote_rows |= merged.wrote_rows;
            self.conflicts.extend(merged.conflicts);
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

    /// Commits data, row states, the checkpoint (raised to `upto`, never lowered) and, when
    /// changes of other origins were applied or any row was written, the transaction's row
    /// of [`APPLIED_TABLE`] (with the highest HLC applied), all in one transaction (I7, I8,
    /// I9). On `Err` nothing of the transaction is kept.
    pub async fn commit(mut self, upto: u64) -> Result<(), MariaDbError> {
        sqlx::query(
            "INSERT INTO meshsync.checkpoint (consumer, stream_seq) VALUES (?, ?)
             ON DUPLICATE KEY UPDATE stream_seq = GREATEST(stream_seq, VALUES(stream_seq))",
        )
        .bind(self.consumer)
        .bind(i64::try_from(upto).unwrap_or(i64::MAX))
        .execute(&mut *self.tx)
        .await
        .map_err(MariaDbError::query("write the apply checkpoint"))?;
        if self.max_hlc.is_some() || self.wrote_rows {
            record_applied(&mut self.tx, self.consumer, self.max_hlc).await?;
        }
        self.tx
            .commit()
            .await
            .map_err(MariaDbError::query("commit an apply transaction"))
    }
}
