//! PostgreSQL capture: pgoutput over a logical slot. The slot is confirmed only past
//! transactions whose batches JetStream acknowledged and whose resume point (commit LSN, HLC
//! fold) is stored in `meshsync.capture_state` (I6, I9); with nothing in flight, an idle
//! keep-alive's WAL end is confirmed too, so an idle slot does not hold WAL.

use std::{collections::HashMap, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use meshsync_core::{Acked, Hlc, PeerId, TableName, TxnId};
use meshsync_hlc::NodeId;
use meshsync_nats::publisher::Publisher;
use meshsync_pg::{
    catalog::TableInfo,
    setup::Names,
    source::{
        resume::{self, ResumePoint},
        stream::{ConnParts, PgSource, SourceEvent},
    },
};
use sqlx::{Connection, PgConnection};
use tracing::{debug, info};

use super::{Acker, InFlight, stamp};
use crate::{
    batching::{TxnHeader, batches, position_of},
    failpoint,
    metrics::Counters,
};

/// Everything capture needs.
pub struct CaptureContext {
    /// This peer.
    pub peer: PeerId,
    /// Its clock identity.
    pub node: NodeId,
    /// Database URL (control connection).
    pub url: String,
    /// Replication connection parts.
    pub parts: ConnParts,
    /// Slot, publication and origin names.
    pub names: Names,
    /// Shapes of the replicated tables.
    pub tables: HashMap<TableName, TableInfo>,
    /// Per table, the columns merged as counters (their deltas are captured).
    pub counters: HashMap<TableName, Vec<String>>,
    /// Where batches go.
    pub publisher: Publisher,
    /// Rows captured and echoed, for the progress line.
    pub totals: Arc<Counters>,
}

/// Runs capture until the stream or NATS fails (the caller restarts it).
pub async fn run(ctx: &CaptureContext) -> Result<()> {
    let mut control = PgConnection::connect(&ctx.url)
        .await
        .context("connect for capture state")?;
    let mut resume = resume::load(&mut control, &ctx.names.slot).await?;
    let mut source = PgSource::connect(&ctx.parts, &ctx.names, ctx.tables.clone()).await?;
    info!(slot = %ctx.names.slot, lsn = resume.lsn, "capture started");

    let mut acker = Acker::<ResumePoint>::start();

    let mut fold = resume.hlc;
    let mut last_seen = resume.lsn;
    let mut outstanding = 0usize;
    let mut idle_end: Option<u64> = None;
    let mut stored = resume;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            event = source.next() => match event? {
                SourceEvent::Txn(txn) => {
                    idle_end = None;
                    if txn.end_lsn <= resume.lsn {
                        continue; // published before a restart
                    }
                    last_seen = txn.end_lsn;
                    let mut acks = Vec::new();
                    // Apply's transactions carry the highest HLC they applied; on PostgreSQL 16
                    // and later they arrive without their rows and without an origin message.
                    fold = fold.max(txn.applied_hlc.unwrap_or(Hlc::ZERO));
                    ctx.totals.add_echoed(txn.echoed);
                    if !txn.from_apply && !txn.rows.is_empty() {
                        ctx.totals.add_captured(txn.rows.len());
                        fold = stamp(txn.commit_unix_micros, fold, ctx.node);
                        let header = TxnHeader {
                            origin: &ctx.peer,
                            database: &ctx.parts.database,
                            hlc: fold,
                            position: position_of(txn.end_lsn),
                            txn: TxnId(txn.xid.to_string()),
                        };
                        for batch in batches(&header, txn.rows, |t| ctx.tables.get(t).map(|i| (i.schema, i.key.as_slice())), &ctx.counters) {
                            acks.push(ctx.publisher.send(&batch).await?);
                        }
                        debug!(lsn = txn.end_lsn, hlc = %fold, batches = acks.len(), "transaction published");
                    }
                    outstanding += 1;
                    acker.push(InFlight { point: ResumePoint { lsn: txn.end_lsn, hlc: fold }, acks }).await?;
                }
                SourceEvent::Idle { wal_end } => idle_end = Some(wal_end),
            },
            done = acker.next() => {
                let point = done?;
                outstanding -= 1;
                resume = *point.get();
                failpoint::after_ack();
            }
            _ = tick.tick() => {
                if resume != stored {
                    resume::store(&mut control, &ctx.names.slot, resume).await?;
                    stored = resume;
                    source.confirm(Acked::after_pub_ack(resume.lsn));
                } else if let Some(end) = idle_end.filter(|e| outstanding == 0 && *e > resume.lsn && *e >= last_seen) {
                    // Nothing in flight and nothing new to stamp: WAL up to here holds no
                    // published change, so the slot may release it (the fold is unchanged).
                    source.confirm(Acked::after_pub_ack(end));
                }
            }
        }
    }
}
