//! Apply: the global stream (or the site copy) -> decode and check -> one database
//! transaction per chunk of ready messages -> ack.
//!
//! Bad input never stops the mesh (I10): a malformed envelope, an unknown table or column, a
//! value the column cannot hold, or a stamp beyond the future bound (I11) is parked on the
//! dead-letter stream with its reason, before the transaction commits, and the rest applies.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Result;
use futures::StreamExt;
use meshsync_core::{ChangeBatch, PeerId};
use meshsync_hlc::{Clock, Hlc, NodeId};
use meshsync_merge::PolicySet;
use meshsync_nats::{
    dead_letter::DeadLetters,
    inbox::{Delivery, Inbox, InboxSettings},
};
use meshsync_wire::{decode, headers::MERGE_POLICIES};
use tracing::{debug, info, warn};

use crate::{
    conflict_log::ConflictLog,
    failpoint,
    metrics::Counters,
    policies::PolicyCheck,
    sink::{Sink, SinkTarget},
};

/// Most messages taken from the consumer at once.
pub const MAX_MESSAGES_PER_TXN: usize = 256;

/// Most rows merged in one database transaction: bounds apply's memory (the merge holds every
/// row's state) while keeping round trips per row low.
pub const MAX_ROWS_PER_TXN: usize = 4096;

/// Everything apply needs.
pub struct ApplyContext {
    /// This peer.
    pub peer: PeerId,
    /// The database apply writes to.
    pub target: SinkTarget,
    /// NATS, for the consumer.
    pub client: async_nats::Client,
    /// The stream apply consumes (global stream or site copy).
    pub stream: String,
    /// The durable consumer's settings.
    pub inbox: InboxSettings,
    /// The merge policies.
    pub policies: PolicySet,
    /// Compares them with the policies stamped on incoming batches.
    pub policy_check: PolicyCheck,
    /// How long tombstones are kept; older changes are parked.
    pub tombstone_retention: Duration,
    /// Where bad messages go.
    pub dead_letters: DeadLetters,
    /// Where resolved conflicts go.
    pub conflict_log: ConflictLog,
    /// The peer's clock (shared with capture).
    pub clock: Arc<Clock>,
    /// Counters.
    pub counters: Arc<Counters>,
}

/// A message to park, and why.
struct ToPark<'d> {
    delivery: &'d Delivery,
    reason: String,
}

/// Runs apply until the database or NATS fails (the caller restarts it).
pub async fn run(ctx: &ApplyContext) -> Result<()> {
    let consumer = format!("apply_{}", ctx.peer);
    let mut sink = Sink::connect(
        &ctx.target,
        ctx.policies.clone(),
        ctx.peer.clone(),
        consumer,
    )
    .await?;
    let mut checkpoint = sink.checkpoint().await?;
    // The database's checkpoint, not the consumer's ack state, says where to go on: whatever
    // a crashed run left unacked comes back first, in stream order.
    let first = Inbox::stream_first_sequence(ctx.client.clone(), &ctx.stream).await?;
    if checkpoint > 0 && first > checkpoint + 1 {
        warn!(
            checkpoint,
            first,
            "the stream no longer holds messages this peer has not applied (removed by its \
             limits while the peer was away); run `meshsync verify` and resynchronise"
        );
    }
    let inbox = Inbox::open_at(ctx.client.clone(), &ctx.stream, &ctx.inbox, checkpoint + 1).await?;
    info!(checkpoint, "apply started");
    let mut messages = inbox.messages().await?.ready_chunks(MAX_MESSAGES_PER_TXN);
    let mut collect = tokio::time::interval(collect_interval(ctx.tombstone_retention));
    loop {
        let chunk = tokio::select! {
            chunk = messages.next() => match chunk {
                Some(c) => c,
                None => break,
            },
            _ = collect.tick() => {
                let forgotten = sink.collect_tombstones(retention_cutoff(ctx)).await?;
                if forgotten > 0 {
                    info!(forgotten, "old tombstones collected");
                }
                continue;
            }
        };
        let deliveries: Vec<Delivery> = chunk.into_iter().collect::<Result<_, _>>()?;
        let decoded: Vec<Decoded<'_>> = deliveries.iter().map(|d| decode_one(ctx, d)).collect();
        for part in by_rows(decoded, MAX_ROWS_PER_TXN) {
            apply_chunk(ctx, &mut sink, &mut checkpoint, part).await?;
        }
    }
    Ok(())
}

/// A delivery, decoded and checked, or the reason to park it.
type Decoded<'d> = (&'d Delivery, Result<ChangeBatch, String>);

fn decode_one<'d>(ctx: &ApplyContext, d: &'d Delivery) -> Decoded<'d> {
    let batch = match decode(d.payload()) {
        Ok(b) => b,
        Err(e) => return (d, Err(e.to_string())),
    };
    if batch.origin != ctx.peer {
        if ctx
            .policy_check
            .differs(batch.origin.as_str(), d.header(MERGE_POLICIES))
        {
            ctx.counters.add_policy_mismatch();
        }
        if let Err(skew) = ctx.clock.observe(batch.hlc) {
            return (d, Err(skew.to_string()));
        }
        if batch.hlc < retention_cutoff(ctx) {
            return (
                d,
                Err(format!(
                    "stamped {} s ago, beyond merge.tombstone_retention_s = {}: a delete it \
                     would lose to may be forgotten here; resynchronise origin {} (raise the \
                     retention if peers are offline this long)",
                    unix_now().saturating_sub(batch.hlc.physical()).as_secs(),
                    ctx.tombstone_retention.as_secs(),
                    batch.origin
                )),
            );
        }
    }
    (d, Ok(batch))
}

/// Changes stamped before this are parked, and tombstones older than it forgotten.
fn retention_cutoff(ctx: &ApplyContext) -> Hlc {
    Hlc::from_unix(
        unix_now().saturating_sub(ctx.tombstone_retention),
        NodeId::new(1),
    )
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// How often old tombstones are collected: a quarter of the retention, 1 s to 1 min.
fn collect_interval(retention: Duration) -> Duration {
    (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Splits decoded messages, in order, into runs of at most `max_rows` rows (a message with
/// more rows gets a run of its own).
fn by_rows(decoded: Vec<Decoded<'_>>, max_rows: usize) -> Vec<Vec<Decoded<'_>>> {
    let mut out: Vec<Vec<Decoded<'_>>> = Vec::new();
    let mut rows = 0;
    for item in decoded {
        let n = item.1.as_ref().map_or(0, |b| b.rows.len());
        if out.is_empty() || rows + n > max_rows {
            out.push(Vec::new());
            rows = 0;
        }
        rows += n;
        if let Some(last) = out.last_mut() {
            last.push(item);
        }
    }
    out
}

/// Applies decoded messages in one database transaction, then acks them. On failure they are
/// handed back at once (not after the ack wait); apply is idempotent.
async fn apply_chunk(
    ctx: &ApplyContext,
    sink: &mut Sink,
    checkpoint: &mut u64,
    part: Vec<Decoded<'_>>,
) -> Result<()> {
    let deliveries: Vec<&Delivery> = part.iter().map(|(d, _)| *d).collect();
    let result = apply_decoded(ctx, sink, checkpoint, part).await;
    if result.is_err() {
        for d in &deliveries {
            let _ = d.nak(Duration::from_millis(500)).await;
        }
    }
    result
}

async fn apply_decoded(
    ctx: &ApplyContext,
    sink: &mut Sink,
    checkpoint: &mut u64,
    part: Vec<Decoded<'_>>,
) -> Result<()> {
    let started = std::time::Instant::now();
    let upto = part.iter().map(|(d, _)| d.sequence()).max().unwrap_or(0);
    let deliveries: Vec<&Delivery> = part.iter().map(|(d, _)| *d).collect();
    let mut parked: Vec<ToPark<'_>> = Vec::new();
    let mut decoded = Vec::new();
    for (d, batch) in part {
        match batch {
            Ok(b) => decoded.push((d, b)),
            Err(reason) => parked.push(ToPark {
                delivery: d,
                reason,
            }),
        }
    }
    let decoded_at = started.elapsed();
    let mut txn = sink.begin().await?;
    let batches: Vec<&ChangeBatch> = decoded.iter().map(|(_, b)| b).collect();
    let reports = txn.apply(&batches).await?;
    let applied_at = started.elapsed();
    for ((d, _), report) in decoded.iter().zip(reports) {
        ctx.counters.add_applied(report.applied, report.superseded);
        for p in report.parked {
            let reason = match p.row {
                Some(i) => format!("row {i}: {}", p.reason),
                None => p.reason,
            };
            parked.push(ToPark {
                delivery: d,
                reason,
            });
        }
    }
    // Parked copies are stored before the commit: a crash in between parks them twice,
    // never zero times.
    for p in &parked {
        warn!(sequence = p.delivery.sequence(), reason = %p.reason, "change parked");
        ctx.dead_letters.park(p.delivery, &p.reason).await?;
    }
    ctx.counters.add_parked(parked.len());
    // Conflicts are logged before the commit, so a crash in between cannot lose them. If
    // the commit then fails, the retry resolves the same conflicts with the same message
    // ids and JetStream keeps one copy (within its duplicate window). A failure to log is
    // counted and reported, never a reason to stop applying.
    let conflicts = txn.take_conflicts();
    if let Err(e) = ctx.conflict_log.publish(&conflicts).await {
        ctx.counters.add_conflict_log_failure();
        warn!(error = format!("{e:#}"), "conflicts not logged");
    }
    failpoint::before_apply_commit(upto).await;
    // Every message is merged again even at or below the checkpoint: redeliveries (a nak,
    // an ack lost in a crash) arrive after newer messages, and the version check makes a
    // repeat a no-op (I4). The checkpoint records progress; it is not a filter.
    txn.commit(upto.max(*checkpoint)).await?;
    failpoint::after_apply_commit(upto).await;
    let committed_at = started.elapsed();
    *checkpoint = upto.max(*checkpoint);
    for d in &deliveries {
        d.ack().await?;
    }
    debug!(
        messages = deliveries.len(),
        upto,
        decoded = ?decoded_at,
        applied = ?applied_at,
        committed = ?committed_at,
        acked = ?started.elapsed(),
        "applied"
    );
    Ok(())
}

/// Back-off between restarts of a failed task.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((200u64 << attempt.min(6)).min(10_000))
}
