//! MariaDB capture: the binlog (ROW, FULL images) from the stored GTID state. Each
//! transaction's resume point (the GTID state after it, the HLC fold) is stored in
//! `meshsync.capture_state` once JetStream acknowledged its batches (I6, I9); the server keeps
//! its binlogs by time (`binlog_expire_logs_seconds`), so keep that above the longest outage.
//!
//! MariaDB's binlog stamps commits to the second: a transaction's stamp is
//! `max(start of its commit second, previous + 1)` (MySQL 8 gives microseconds). Apply
//! transactions (flagged `skip_replication` on MariaDB; on MySQL known by their
//! `meshsync.applied` row) write the highest HLC they applied to `meshsync.applied`, which
//! capture reads to keep later local writes after them (I8). The same loop serves both
//! servers: the source, the resume state text and `current_gtid_state` follow the flavour.

use std::{collections::HashMap, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use meshsync_core::{Hlc, PeerId, RowImage, TableName, TxnId, Value};
use meshsync_hlc::NodeId;
use meshsync_mariadb::{
    MariaDbSource, SourceConfig, SourceEvent,
    apply::APPLIED_TABLE,
    catalog::TableInfo,
    hlc_column,
    source::{ResumePoint, current_gtid_state, resume},
};
use meshsync_nats::publisher::Publisher;
use sqlx::{Connection, MySqlConnection};
use tracing::{debug, info};

use super::{Acker, InFlight, stamp};
use crate::{
    batching::{TxnHeader, batches},
    metrics::Counters,
};

/// Everything MariaDB capture needs.
pub struct CaptureContext {
    /// This peer.
    pub peer: PeerId,
    /// Its clock identity.
    pub node: NodeId,
    /// Database URL.
    pub url: String,
    /// Database name at the origin (the URL's), for the batches.
    pub database: String,
    /// This replica's server id on the binlog connection.
    pub server_id: u32,
    /// Shapes of the replicated tables.
    pub tables: HashMap<TableName, TableInfo>,
    /// Per table, the columns merged as counters.
    pub counters: HashMap<TableName, Vec<String>>,
    /// Where batches go.
    pub publisher: Publisher,
    /// Rows captured and echoed, for the progress line.
    pub totals: Arc<Counters>,
}

/// Runs capture until the binlog or NATS fails (the caller restarts it).
pub async fn run(ctx: &CaptureContext) -> Result<()> {
    let mut control = MySqlConnection::connect(&ctx.url)
        .await
        .context("connect for capture state")?;
    let source_name = format!("meshsync_{}", ctx.peer);
    let mut resume = match resume::load(&mut control, &source_name).await? {
        Some(r) => r,
        None => {
            // First start: capture what commits from now on (existing rows are not copied).
            let r = ResumePoint {
                gtid_state: current_gtid_state(&mut control).await?,
                hlc: Hlc::ZERO,
            };
            resume::store(&mut control, &source_name, &r).await?;
            r
        }
    };
    let applied_table = TableName::parse(APPLIED_TABLE)?;
    let mut tables: Vec<TableName> = ctx.tables.keys().cloned().collect();
    tables.push(applied_table.clone());
    let mut source = MariaDbSource::connect(&SourceConfig {
        url: ctx.url.clone(),
        server_id: ctx.server_id,
        tables,
        resume: resume.gtid_state.clone(),
        heartbeat: Duration::from_secs(1),
    })
    .await?;
    info!(gtid_state = %resume.gtid_state, "capture started");
    // The binlog is read on its own task: `next_event` awaits inside (catalog reloads), so
    // it is not cancel-safe and must not be raced in the select below, or an event is lost.
    let (events_tx, mut events) = tokio::sync::mpsc::channel(1024);
    let reader = tokio::spawn(async move {
        loop {
            let event = source.next_event().await;
            let failed = event.is_err();
            if events_tx.send(event).await.is_err() || failed {
                return;
            }
        }
    });
    let _reader = AbortOnDrop(reader);

    let mut acker = Acker::<ResumePoint>::start();
    let mut fold = resume.hlc;
    let mut stored = resume.clone();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            event = events.recv() => match event.context("binlog reader stopped")?? {
                SourceEvent::Txn(txn) => {
                    let mut acks = Vec::new();
                    if txn.from_apply {
                        if let Some(applied) = applied_hlc(&txn.rows, &applied_table) {
                            fold = fold.max(applied);
                        }
                        ctx.totals.add_echoed(txn.rows.len() as u64);
                        debug!(gtid = %txn.gtid, rows = txn.rows.len(), "apply transaction skipped");
                    } else {
                        let rows: Vec<RowImage> = txn
                            .rows
                            .into_iter()
                            .filter(|r| r.table != applied_table)
                            .collect();
                        if rows.is_empty() {
                            debug!(gtid = %txn.gtid, "transaction without replicated rows");
                        } else {
                            ctx.totals.add_captured(rows.len());
                            fold = stamp(txn.commit_unix_micros, fold, ctx.node);
                            let header = TxnHeader {
                                origin: &ctx.peer,
                                database: &ctx.database,
                                hlc: fold,
                                position: meshsync_core::SourcePosition(txn.gtid.clone()),
                                txn: TxnId(txn.gtid.clone()),
                            };
                            let shape = |t: &TableName| {
                                ctx.tables.get(t).map(|i| (i.schema, i.key.as_slice()))
                            };
                            for batch in batches(&header, rows, shape, &ctx.counters) {
                                acks.push(ctx.publisher.send(&batch).await?);
                            }
                            debug!(gtid = %txn.gtid, hlc = %fold, batches = acks.len(), "transaction published");
                        }
                    }
                    let point = ResumePoint { gtid_state: txn.gtid_state_after, hlc: fold };
                    acker.push(InFlight { point, acks }).await?;
                }
                SourceEvent::Heartbeat => {}
            },
            done = acker.next() => {
                resume = done?.get().clone();
            }
            _ = tick.tick() => {
                if resume != stored {
                    resume::store(&mut control, &source_name, &resume).await?;
                    stored = resume.clone();
                }
            }
        }
    }
}

/// Stops the binlog reader when capture returns.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The HLC an apply transaction recorded in `meshsync.applied`, if it did.
fn applied_hlc(rows: &[RowImage], applied: &TableName) -> Option<Hlc> {
    rows.iter()
        .filter(|r| r.table == *applied)
        .filter_map(|r| {
            let get = |name: &str| {
                r.columns
                    .iter()
                    .find(|(n, _)| n == name)
                    .and_then(|(_, c)| c.value())
            };
            match (get("hlc_time"), get("hlc_node")) {
                (Some(Value::Int(t)), Some(Value::Int(n))) => {
                    Some(hlc_column::from_columns(*t, *n))
                }
                _ => None,
            }
        })
        .max()
}
