//! Whether a sink should guess that a table's incoming keys are all new to it.
//!
//! Catching up on inserts, almost every key of a batch has no stored state yet, and reading
//! states only to find none costs a fifth of the apply time. A sink that guesses "all new"
//! plans against no states and inserts the states first, in a statement that adds only states
//! that are missing: when it adds them all, the guess was right and the plan stands; when
//! not, the sink undoes that insert and reads the states as usual. A wrong guess costs one
//! wasted insert, so after one the sink reads directly for a while, longer after each miss in
//! a row (update-heavy workloads soon stop guessing).
//!
//! Planned against no states, the chunks of a batch are independent, so the sink can decide
//! one chunk while the database writes the one before ([`overlapped`]).

use std::collections::HashMap;

use meshsync_core::{BatchReport, Parked};

use crate::{Outcome, RowInput};

/// Most batches read directly after a run of wrong guesses.
const MAX_SKIP: u32 = 64;

/// One table's guess.
#[derive(Clone, Debug, Default)]
pub struct FreshGuess {
    /// Batches still to read directly.
    skip: u32,
    /// How many to skip after the next miss.
    penalty: u32,
}

impl FreshGuess {
    /// Whether to guess "all new" for this batch.
    pub fn try_now(&mut self) -> bool {
        if self.skip > 0 {
            self.skip -= 1;
            false
        } else {
            true
        }
    }

    /// The guess held: guess again next time.
    pub fn hit(&mut self) {
        self.penalty = 0;
    }

    /// Some key had a state: read directly for the next batches, twice as many as last time.
    pub fn missed(&mut self) {
        self.penalty = (self.penalty * 2).clamp(1, MAX_SKIP);
        self.skip = self.penalty;
    }
}

/// Decides each of `chunks` and executes it, deciding (and dropping) one chunk while the one
/// before is executed: the agent's CPU work overlaps the database's. Stops at the first
/// chunk `execute` answers `None` for (the guess missed) and returns `None`; otherwise every
/// chunk's result, in order.
///
/// On a multi-threaded tokio runtime the deciding runs on a second thread
/// ([`on_two_threads`]); elsewhere it is interleaved with the executing on this one.
pub async fn overlapped<C, D, R, E>(
    chunks: &[C],
    decide: impl Fn(&C) -> D + Sync,
    mut execute: impl AsyncFnMut(&C, &D) -> Result<Option<R>, E>,
) -> Result<Option<Vec<R>>, E>
where
    C: Sync,
    D: Send,
{
    let threads = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if threads && chunks.len() > 1 {
        return tokio::task::block_in_place(|| on_two_threads(chunks, &decide, &mut execute));
    }
    let mut out = Vec::with_capacity(chunks.len());
    let Some(first) = chunks.first() else {
        return Ok(Some(out));
    };
    let mut current = decide(first);
    let mut executing = first;
    // Freeing a decided chunk takes time too: it happens while the next one executes.
    let mut done: Option<D> = None;
    for i in 1..=chunks.len() {
        let (result, next) = futures::join!(execute(executing, &current), async {
            drop(done.take());
            chunks.get(i).map(&decide)
        });
        match result? {
            Some(r) => out.push(r),
            None => return Ok(None),
        }
        match (next, chunks.get(i)) {
            (Some(next), Some(chunk)) => {
                done = Some(std::mem::replace(&mut current, next));
                executing = chunk;
            }
            _ => break,
        }
    }
    Ok(Some(out))
}

/// [`overlapped`] with a helper thread that decides the chunks in order, at most two ahead,
/// and frees the executed ones, while this thread drives `execute` on the runtime. Interleaved
/// on one thread, a decision (a millisecond or more) held up the database's next round trip
/// while it ran: of a chunk's four round trips only the first overlapped it.
fn on_two_threads<C, D, R, E>(
    chunks: &[C],
    decide: &(impl Fn(&C) -> D + Sync),
    execute: &mut impl AsyncFnMut(&C, &D) -> Result<Option<R>, E>,
) -> Result<Option<Vec<R>>, E>
where
    C: Sync,
    D: Send,
{
    let runtime = tokio::runtime::Handle::current();
    std::thread::scope(|s| {
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<D>(1);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<D>();
        s.spawn(move || {
            for chunk in chunks {
                let decided = decide(chunk);
                // A send fails once the executing side stopped (a miss, an error).
                if ready_tx.send(decided).is_err() {
                    break;
                }
                while let Ok(old) = done_rx.try_recv() {
                    drop(old);
                }
            }
            drop(ready_tx);
            for old in done_rx {
                drop(old);
            }
        });
        let mut out = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            // Only a panic of the helper ends the channel early; the scope re-raises it.
            let Ok(decided) = ready_rx.recv() else { break };
            let result = runtime.block_on(execute(chunk, &decided));
            let _ = done_tx.send(decided);
            match result? {
                Some(r) => out.push(r),
                None => return Ok(None),
            }
        }
        Ok(Some(out))
    })
}

/// Splits `inputs` (stream order) into chunks of at most `keys` distinct keys, every input of
/// a key in the same chunk, stream order kept within each.
pub fn chunks_by_key<'b>(inputs: &[RowInput<'b>], keys: usize) -> Vec<Vec<RowInput<'b>>> {
    let mut chunk_of: HashMap<&[u8], usize> = HashMap::new();
    let mut out: Vec<Vec<RowInput<'b>>> = Vec::new();
    for input in inputs {
        let next = chunk_of.len() / keys.max(1);
        let c = *chunk_of.entry(input.key.as_slice()).or_insert(next);
        if out.len() <= c {
            out.resize_with(c + 1, Vec::new);
        }
        out[c].push(input.clone());
    }
    out
}

/// What became of one incoming row: (batch, row index, outcome or the reason it was parked).
pub type RowResult = (usize, u32, Result<Outcome, String>);

/// Counts `results` into `reports` (one per batch).
pub fn tally(results: impl IntoIterator<Item = RowResult>, reports: &mut [BatchReport]) {
    for (batch, row, result) in results {
        let Some(report) = reports.get_mut(batch) else {
            continue;
        };
        match result {
            Ok(Outcome::Applied) => report.applied += 1,
            Ok(Outcome::Superseded) => report.superseded += 1,
            Err(reason) => report.parked.push(Parked {
                row: Some(row),
                reason,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, sync::Mutex};

    use super::{FreshGuess, overlapped};

    /// Pending once (waking itself at once), then ready.
    async fn yield_once() {
        let mut yielded = false;
        std::future::poll_fn(|cx| {
            if yielded {
                return std::task::Poll::Ready(());
            }
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        })
        .await;
    }

    #[test]
    fn chunks_are_decided_one_ahead_and_a_miss_stops_them() {
        let log = Mutex::new(Vec::new());
        let run = |miss_at: Option<u32>| {
            log.lock().unwrap().clear();
            futures::executor::block_on(overlapped(
                &[1u32, 2, 3],
                |c| {
                    log.lock().unwrap().push(format!("decide {c}"));
                    *c
                },
                async |_: &u32, d: &u32| {
                    log.lock().unwrap().push(format!("execute {d}"));
                    // Yield once, as a database round trip would.
                    yield_once().await;
                    Ok::<_, Infallible>((miss_at != Some(*d)).then_some(d * 10))
                },
            ))
        };
        assert_eq!(run(None), Ok(Some(vec![10, 20, 30])));
        // Chunk 2 is decided while chunk 1 executes.
        assert_eq!(
            *log.lock().unwrap(),
            [
                "decide 1",
                "execute 1",
                "decide 2",
                "execute 2",
                "decide 3",
                "execute 3"
            ]
        );
        assert_eq!(run(Some(2)), Ok(None));
        assert!(!log.lock().unwrap().contains(&"execute 3".to_owned()));
        assert_eq!(
            futures::executor::block_on(overlapped(
                &[] as &[u32],
                |c| *c,
                async |_: &u32, _: &u32| Ok::<_, Infallible>(Some(1))
            )),
            Ok(Some(vec![]))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_multi_threaded_runtime_chunks_are_decided_on_another_thread() {
        let here = std::thread::current().id();
        let deciders = &std::sync::Mutex::new(Vec::new());
        let executed = &std::sync::Mutex::new(Vec::new());
        let run = |miss_at: Option<u32>| {
            overlapped(
                &[1u32, 2, 3, 4],
                |c| {
                    deciders.lock().unwrap().push(std::thread::current().id());
                    *c
                },
                async move |c: &u32, d: &u32| {
                    assert_eq!(c, d, "each chunk executes with its own decision");
                    executed.lock().unwrap().push(*d);
                    tokio::task::yield_now().await;
                    Ok::<_, Infallible>((miss_at != Some(*d)).then_some(d * 10))
                },
            )
        };
        assert_eq!(run(None).await, Ok(Some(vec![10, 20, 30, 40])));
        assert_eq!(*executed.lock().unwrap(), [1, 2, 3, 4]);
        let deciders = std::mem::take(&mut *deciders.lock().unwrap());
        assert_eq!(deciders.len(), 4);
        assert!(deciders.iter().all(|t| *t != here), "decided on the helper");
        // A miss stops the executing; the helper stops at most two chunks later.
        executed.lock().unwrap().clear();
        assert_eq!(run(Some(2)).await, Ok(None));
        assert_eq!(*executed.lock().unwrap(), [1, 2]);
        // An error comes back as it is.
        let err = overlapped(
            &[1u32, 2],
            |c| *c,
            async |_: &u32, d: &u32| if *d == 2 { Err("down") } else { Ok(Some(*d)) },
        )
        .await;
        assert_eq!(err, Err("down"));
    }

    #[test]
    fn misses_in_a_row_back_off_and_a_hit_resets() {
        let mut g = FreshGuess::default();
        let tries = |g: &mut FreshGuess, n| (0..n).filter(|_| g.try_now()).count();
        assert!(g.try_now());
        g.missed();
        // One batch read directly, then a guess again.
        assert_eq!(tries(&mut g, 2), 1);
        g.missed();
        assert_eq!(tries(&mut g, 3), 1);
        g.missed();
        assert_eq!(tries(&mut g, 5), 1);
        for _ in 0..10 {
            g.missed();
        }
        assert_eq!(
            tries(&mut g, 65),
            1,
            "never more than 64 batches without a guess"
        );
        g.hit();
        assert_eq!(tries(&mut g, 3), 3);
        g.missed();
        assert_eq!(tries(&mut g, 2), 1, "a hit resets the back-off");
    }
}
