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
    intake::{Held, Intake},
    metrics::Counters,
    policies::PolicyCheck,
    sink::{Prepared, Sink, SinkTarget},
};

/// Most messages taken from the consumer at once.
pub const MAX_MESSAGES_PER_TXN: usize = 256;

/// Most rows merged in one database transaction (rows of kilobytes count by their size, see
/// [`intake_weight`]): bounds apply's memory (the merge holds every row's state) while keeping
/// the fixed cost per transaction (begin, savepoint, checkpoint, commit, the wait between two)
/// low. Catching up, 16,384 against 4,096 measured 172,000-194,000 rows/s against
/// 159,000-166,000, for 70-80 MiB of agent memory against 42-46 (PostgreSQL, 2026-11-27, same
/// runs).
pub const MAX_ROWS_PER_TXN: usize = 16_384;

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
pub async fn run(ctx: Arc<ApplyContext>) -> Result<()> {
    let consumer = meshsync_wire::subject::apply_consumer(&ctx.peer);
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
    let messages = inbox.messages().await?;
    let decoder = Arc::clone(&ctx);
    let preparer = sink.preparer();
    let mut intake = Intake::start(
        messages,
        move |delivery: Delivery| {
            let batch = decode_one(&decoder, &delivery);
            let prepared = match (&preparer, &batch) {
                (Some(p), Ok(b)) => p.prepare(b),
                _ => None,
            };
            Decoded {
                batch,
                prepared,
                delivery,
            }
        },
        Decoded::weight,
        INTAKE_ROWS,
    );
    let mut collect = tokio::time::interval(collect_interval(ctx.tombstone_retention));
    // Decoded messages not yet applied, in stream order.
    let mut pending: Vec<Pending> = Vec::new();
    let mut starting = true;
    let mut limit = FIRST_RUN_ROWS;
    loop {
        let chunk = tokio::select! {
            chunk = intake.next(MAX_MESSAGES_PER_TXN) => match chunk {
                Some(c) => c?,
                None => break,
            },
            _ = collect.tick() => {
                let forgotten = sink.collect_tombstones(retention_cutoff(&ctx)).await?;
                if forgotten > 0 {
                    info!(forgotten, "old tombstones collected");
                }
                continue;
            }
        };
        pending.extend(chunk);
        // While catching up, a run that is not full waits briefly for the messages behind
        // it instead of becoming a small transaction of its own (a fixed cost each). The
        // first run after a start does too: a peer starts behind more often than not, and
        // its first fetch brings a few messages (then 100-1,400 rows took 30-57 ms, a
        // transaction's fixed cost, before the first full one).
        let mut backlog = std::mem::take(&mut starting);
        while let Some((len, full)) = first_run(&pending, limit) {
            if !full && backlog {
                match tokio::time::timeout(TAIL_WAIT, intake.next(MAX_MESSAGES_PER_TXN)).await {
                    Ok(Some(more)) => {
                        pending.extend(more?);
                        continue;
                    }
                    Ok(None) | Err(_) => backlog = false,
                }
            }
            let run: Vec<Pending> = pending.drain(..len).collect();
            apply_chunk(&ctx, &mut sink, &mut checkpoint, &run).await?;
            backlog |= full;
            if full {
                limit = ramp(limit);
            }
        }
    }
    Ok(())
}

/// Most rows of the first transaction after a start; each full one doubles it, up to
/// [`MAX_ROWS_PER_TXN`]. Why: nothing overlaps the first transaction's decoding, and a full
/// one took 70-90 ms to decode and prepare before the database had anything to do; a small
/// first one sets the database to work while the intake prepares the next.
const FIRST_RUN_ROWS: usize = 2_048;

/// The row limit of the transaction after a full one at `limit`.
fn ramp(limit: usize) -> usize {
    (limit * 2).min(MAX_ROWS_PER_TXN)
}

/// How long a partial run waits for more messages while apply is catching up.
const TAIL_WAIT: Duration = Duration::from_millis(5);

/// Rows the intake may hold decoded ahead of apply, by [`Decoded::weight`] (a message counts
/// at least one): the transaction being applied and half the next one. Two transactions'
/// worth was no faster within the noise and took the agent to 80-94 MiB; one and a quarter
/// measured lower.
const INTAKE_ROWS: usize = MAX_ROWS_PER_TXN + MAX_ROWS_PER_TXN / 2;

/// Payload bytes that count as one more row of the intake's budget: catch-up rows of a few
/// small columns are ~100 bytes, so the budget counts their rows, while rows of kilobytes
/// count by their size and the intake holds fewer of them (memory, not rows, is the limit).
const INTAKE_BYTES_PER_ROW: usize = 256;

/// A message's share of the intake's budget: its rows, or its size in
/// [`INTAKE_BYTES_PER_ROW`] units if more.
fn intake_weight(rows: usize, payload_bytes: usize) -> usize {
    rows.max(payload_bytes / INTAKE_BYTES_PER_ROW)
}

/// A delivery, decoded and checked (or the reason to park it), and prepared for the sink
/// when it could be.
struct Decoded {
    delivery: Delivery,
    batch: Result<ChangeBatch, String>,
    prepared: Option<Prepared>,
}

impl Decoded {
    /// Its share of the intake's budget and of a transaction ([`intake_weight`]); a parked
    /// message has no rows.
    fn weight(&self) -> usize {
        let rows = self.batch.as_ref().map_or(0, |b| b.rows.len());
        intake_weight(rows, self.delivery.payload().len())
    }
}

/// A decoded delivery waiting to be applied, holding its share of the intake's budget.
type Pending = Held<Decoded>;

fn decode_one(ctx: &ApplyContext, d: &Delivery) -> Result<ChangeBatch, String> {
    let batch = decode(d.payload()).map_err(|e| e.to_string())?;
    if batch.origin != ctx.peer {
        if ctx
            .policy_check
            .differs(batch.origin.as_str(), d.header(MERGE_POLICIES))
        {
            ctx.counters.add_policy_mismatch();
        }
        if let Err(skew) = ctx.clock.observe(batch.hlc) {
            return Err(skew.to_string());
        }
        if batch.hlc < retention_cutoff(ctx) {
            return Err(format!(
                "stamped {} s ago, beyond merge.tombstone_retention_s = {}: a delete it \
                     would lose to may be forgotten here; resynchronise origin {} (raise the \
                     retention if peers are offline this long)",
                unix_now().saturating_sub(batch.hlc.physical()).as_secs(),
                ctx.tombstone_retention.as_secs(),
                batch.origin
            ));
        }
    }
    Ok(batch)
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

/// The first run of `pending` to apply in one transaction: how many messages, and whether it
/// is full (at `max_rows` by [`Decoded::weight`], or the next message would not fit). A
/// message weighing more than `max_rows` is a full run of its own.
fn first_run(pending: &[Pending], max_rows: usize) -> Option<(usize, bool)> {
    run_of(pending.iter().map(|m| m.item.weight()), max_rows)
}

/// [`first_run`] over the messages' row counts.
fn run_of(rows: impl ExactSizeIterator<Item = usize>, max_rows: usize) -> Option<(usize, bool)> {
    let len = rows.len();
    if len == 0 {
        return None;
    }
    let mut total = 0;
    for (i, n) in rows.enumerate() {
        if i > 0 && total + n > max_rows {
            return Some((i, true));
        }
        total += n;
    }
    Some((len, total >= max_rows))
}

/// Applies decoded messages in one database transaction, then acks them. On failure they are
/// handed back at once (not after the ack wait); apply is idempotent.
async fn apply_chunk(
    ctx: &ApplyContext,
    sink: &mut Sink,
    checkpoint: &mut u64,
    part: &[Pending],
) -> Result<()> {
    let result = apply_decoded(ctx, sink, checkpoint, part).await;
    if result.is_err() {
        for m in part {
            let _ = m.item.delivery.nak(Duration::from_millis(500)).await;
        }
    }
    result
}

async fn apply_decoded(
    ctx: &ApplyContext,
    sink: &mut Sink,
    checkpoint: &mut u64,
    part: &[Pending],
) -> Result<()> {
    let started = std::time::Instant::now();
    let upto = part
        .iter()
        .map(|m| m.item.delivery.sequence())
        .max()
        .unwrap_or(0);
    let mut parked: Vec<ToPark<'_>> = Vec::new();
    let mut decoded = Vec::new();
    let mut prepared = Vec::new();
    for m in part {
        let d = &m.item.delivery;
        match &m.item.batch {
            Ok(b) => {
                decoded.push((d, b));
                prepared.push(m.item.prepared.as_ref());
            }
            Err(reason) => parked.push(ToPark {
                delivery: d,
                reason: reason.clone(),
            }),
        }
    }
    let decoded_at = started.elapsed();
    let mut txn = sink.begin().await?;
    let batches: Vec<&ChangeBatch> = decoded.iter().map(|(_, b)| *b).collect();
    let reports = txn.apply(&batches, &prepared).await?;
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
    for m in part {
        m.item.delivery.ack().await?;
    }
    debug!(
        messages = part.len(),
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

#[cfg(test)]
mod tests {
    use super::{FIRST_RUN_ROWS, INTAKE_ROWS, MAX_ROWS_PER_TXN, intake_weight, ramp, run_of};

    #[test]
    fn wide_rows_weigh_by_their_size() {
        // 100 rows of ~60 bytes: their rows.
        assert_eq!(intake_weight(100, 6_000), 100);
        // 10 rows of 10 kB: 390 units, so the intake holds ~630 such rows, ~6 MB of payload.
        assert_eq!(intake_weight(10, 100_000), 390);
        assert!(INTAKE_ROWS / (intake_weight(10, 100_000) / 10) < 700);
        // A parked message (no batch) counts at least one.
        assert_eq!(intake_weight(1, 10), 1);
    }

    #[test]
    fn transactions_after_a_start_double_up_to_the_most_rows() {
        let mut limit = FIRST_RUN_ROWS;
        let mut seen = vec![limit];
        while limit < MAX_ROWS_PER_TXN {
            limit = ramp(limit);
            seen.push(limit);
        }
        assert_eq!(seen, [2_048, 4_096, 8_192, 16_384]);
        assert_eq!(ramp(MAX_ROWS_PER_TXN), MAX_ROWS_PER_TXN);
    }

    #[test]
    fn runs_are_full_only_when_the_next_message_would_not_fit() {
        let run = |rows: &[usize]| run_of(rows.iter().copied(), 10);
        assert_eq!(run(&[]), None);
        // Room left and nothing behind: a partial run (it may wait for more).
        assert_eq!(run(&[3, 3]), Some((2, false)));
        // Exactly at the bound, or the next message would overflow it: full.
        assert_eq!(run(&[5, 5]), Some((2, true)));
        assert_eq!(run(&[4, 4, 4]), Some((2, true)));
        // A message larger than the bound is a full run of its own.
        assert_eq!(run(&[12, 1]), Some((1, true)));
        assert_eq!(run(&[1, 12]), Some((1, true)));
        // Parked messages (no rows) ride along.
        assert_eq!(run(&[0, 0, 10, 0]), Some((4, true)));
    }
}
