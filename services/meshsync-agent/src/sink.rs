//! The apply sink of this peer's engine: the same calls whatever the database.

use std::collections::HashMap;

use anyhow::Result;
use meshsync_core::{BatchReport, ChangeBatch, Hlc, PeerId, TableName};
use meshsync_merge::{ConflictRecord, PolicySet};
pub use meshsync_pg::apply::{Prepared, Preparer};
use meshsync_pg::setup::Names;

/// Where apply writes, with what it needs to connect.
#[derive(Clone)]
pub enum SinkTarget {
    /// A PostgreSQL database.
    Postgres {
        /// Database URL.
        url: String,
        /// The apply origin's name (loop prevention, I7).
        names: Names,
        /// Shapes of the replicated tables.
        tables: HashMap<TableName, meshsync_pg::catalog::TableInfo>,
    },
    /// A MariaDB server.
    MariaDb {
        /// Server URL.
        url: String,
        /// Shapes of the replicated tables.
        tables: HashMap<TableName, meshsync_mariadb::catalog::TableInfo>,
    },
}

/// An open apply session.
pub enum Sink {
    /// PostgreSQL.
    Postgres(meshsync_pg::apply::PgSink),
    /// MariaDB.
    MariaDb(meshsync_mariadb::apply::MariaDbSink),
}

/// An open apply transaction.
pub enum SinkTxn<'s> {
    /// PostgreSQL.
    Postgres(meshsync_pg::apply::ApplyTxn<'s>),
    /// MariaDB.
    MariaDb(meshsync_mariadb::apply::ApplyTxn<'s>),
}

impl Sink {
    /// Opens the apply session of `target`.
    pub async fn connect(
        target: &SinkTarget,
        policies: PolicySet,
        peer: PeerId,
        consumer: String,
    ) -> Result<Sink> {
        Ok(match target {
            SinkTarget::Postgres { url, names, tables } => Sink::Postgres(
                meshsync_pg::apply::PgSink::connect(
                    url,
                    names,
                    tables.clone(),
                    policies,
                    peer,
                    consumer,
                )
                .await?,
            ),
            SinkTarget::MariaDb { url, tables } => Sink::MariaDb(
                meshsync_mariadb::apply::MariaDbSink::connect(
                    url,
                    tables.clone(),
                    policies,
                    peer,
                    consumer,
                )
                .await?,
            ),
        })
    }

    /// The last stream sequence committed (0 if none).
    pub async fn checkpoint(&mut self) -> Result<u64> {
        Ok(match self {
            Sink::Postgres(s) => s.checkpoint().await?,
            Sink::MariaDb(s) => s.checkpoint().await?,
        })
    }

    /// Forgets tombstones older than `before`; returns how many.
    pub async fn collect_tombstones(&mut self, before: Hlc) -> Result<u64> {
        Ok(match self {
            Sink::Postgres(s) => s.collect_tombstones(before).await?,
            Sink::MariaDb(s) => s.collect_tombstones(before).await?,
        })
    }

    /// What prepares messages for this sink while they wait in the intake, if it has one.
    pub fn preparer(&self) -> Option<Preparer> {
        match self {
            Sink::Postgres(s) => s.preparer(),
            Sink::MariaDb(_) => None,
        }
    }

    /// Starts a transaction.
    pub async fn begin(&mut self) -> Result<SinkTxn<'_>> {
        Ok(match self {
            Sink::Postgres(s) => SinkTxn::Postgres(s.begin().await?),
            Sink::MariaDb(s) => SinkTxn::MariaDb(s.begin().await?),
        })
    }
}

impl SinkTxn<'_> {
    /// Merges batches (stream order), with what the [`Preparer`] made of each; one report per
    /// batch.
    pub async fn apply(
        &mut self,
        batches: &[&ChangeBatch],
        prepared: &[Option<&Prepared>],
    ) -> Result<Vec<BatchReport>> {
        Ok(match self {
            SinkTxn::Postgres(t) => t.apply_prepared(batches, prepared).await?,
            SinkTxn::MariaDb(t) => t.apply(batches).await?,
        })
    }

    /// Conflicts resolved so far.
    pub fn take_conflicts(&mut self) -> Vec<ConflictRecord> {
        match self {
            SinkTxn::Postgres(t) => t.take_conflicts(),
            SinkTxn::MariaDb(t) => t.take_conflicts(),
        }
    }

    /// Commits data, states and the checkpoint `upto` together (I9).
    pub async fn commit(self, upto: u64) -> Result<()> {
        match self {
            SinkTxn::Postgres(t) => t.commit(upto).await?,
            SinkTxn::MariaDb(t) => t.commit(upto).await?,
        }
        Ok(())
    }
}
