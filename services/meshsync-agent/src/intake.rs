//! Apply's intake: pulls messages from the consumer and decodes them on a task of its own,
//! ahead of the database transaction that will apply them.
//!
//! Pull requests go out only while the consumer's stream is polled, and decoding takes a few
//! milliseconds per transaction: done between transactions, both held up the database (gaps
//! of 7-15 ms every other 4,000-row transaction while catching up). A row budget bounds what
//! is held decoded: without it, every message the consumer may have unacked (1,024) waited
//! decoded, and the agent's memory doubled.

use std::sync::Arc;

use anyhow::Result;
use futures::{Stream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::Instrument;

/// A decoded message holding its share of the row budget until dropped (once applied).
pub struct Held<T> {
    /// The decoded message.
    pub item: T,
    _budget: OwnedSemaphorePermit,
}

/// The receiving end; dropping it stops the task.
pub struct Intake<T> {
    decoded: mpsc::UnboundedReceiver<Result<Held<T>>>,
    /// An error met while taking what was ready, handed out next time.
    failed: Option<anyhow::Error>,
    task: tokio::task::JoinHandle<()>,
}

impl<T: Send + 'static> Intake<T> {
    /// Decodes `messages` in order with `decode`, holding at most `budget` rows decoded and
    /// not yet dropped (`rows` tells a message's, at least 1 counted, at most `budget`).
    pub fn start<I, E>(
        mut messages: impl Stream<Item = Result<I, E>> + Send + Unpin + 'static,
        decode: impl Fn(I) -> T + Send + 'static,
        rows: impl Fn(&T) -> usize + Send + 'static,
        budget: usize,
    ) -> Intake<T>
    where
        I: Send,
        E: Into<anyhow::Error> + Send,
    {
        let (tx, decoded) = mpsc::unbounded_channel();
        // Permits are taken as u32: a budget beyond that (or the semaphore's limit) is capped.
        let budget = u32::try_from(budget.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        let permits = Arc::new(Semaphore::new(budget as usize));
        let task = tokio::spawn(
            async move {
                while let Some(message) = messages.next().await {
                    let held = match message {
                        Ok(m) => {
                            let item = decode(m);
                            let n = u32::try_from(rows(&item))
                                .unwrap_or(u32::MAX)
                                .clamp(1, budget);
                            let Ok(permit) = Arc::clone(&permits).acquire_many_owned(n).await
                            else {
                                return;
                            };
                            Ok(Held {
                                item,
                                _budget: permit,
                            })
                        }
                        Err(e) => Err(e.into()),
                    };
                    if tx.send(held).is_err() {
                        return;
                    }
                }
            }
            .in_current_span(),
        );
        Intake {
            decoded,
            failed: None,
            task,
        }
    }

    /// The next decoded messages: waits for one, then takes those already decoded behind it,
    /// at most `max` in all. `None` once the consumer's stream ended and all was taken.
    pub async fn next(&mut self, max: usize) -> Option<Result<Vec<Held<T>>>> {
        if let Some(e) = self.failed.take() {
            return Some(Err(e));
        }
        let mut out = vec![match self.decoded.recv().await? {
            Ok(d) => d,
            Err(e) => return Some(Err(e)),
        }];
        while out.len() < max {
            match self.decoded.try_recv() {
                Ok(Ok(d)) => out.push(d),
                Ok(Err(e)) => {
                    self.failed = Some(e);
                    break;
                }
                Err(_) => break,
            }
        }
        Some(Ok(out))
    }
}

impl<T> Drop for Intake<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Held, Intake};

    /// Messages 0..n of `rows` rows each, message `fail_at` an error.
    fn messages(
        n: usize,
        fail_at: Option<usize>,
    ) -> impl futures::Stream<Item = Result<usize, anyhow::Error>> + Send + Unpin {
        futures::stream::iter((0..n).map(move |i| {
            if Some(i) == fail_at {
                Err(anyhow::anyhow!("message {i} broken"))
            } else {
                Ok(i)
            }
        }))
    }

    /// Whatever is ready after the task had time to run, still held.
    async fn ready(intake: &mut Intake<usize>) -> Vec<Held<usize>> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        match tokio::time::timeout(Duration::from_millis(50), intake.next(1000)).await {
            Ok(Some(Ok(v))) => v,
            _ => Vec::new(),
        }
    }

    fn items(held: &[Held<usize>]) -> Vec<usize> {
        held.iter().map(|h| h.item).collect()
    }

    #[tokio::test]
    async fn holds_at_most_its_row_budget_decoded_and_keeps_order() {
        // Ten rows per message, a budget of 35 rows: three messages at a time.
        let mut intake = Intake::start(messages(10, None), |i| i, |_| 10, 35);
        let first = ready(&mut intake).await;
        assert_eq!(items(&first), vec![0, 1, 2]);
        // Still held (not applied): nothing more is decoded.
        assert!(ready(&mut intake).await.is_empty());
        drop(first);
        let mut all = Vec::new();
        loop {
            let held = ready(&mut intake).await;
            if held.is_empty() {
                break;
            }
            assert!(held.len() <= 3, "never more than the budget at once");
            all.extend(items(&held));
        }
        assert_eq!(all, (3..10).collect::<Vec<_>>(), "the rest, in order");
    }

    #[tokio::test]
    async fn a_message_over_the_budget_passes_alone_and_errors_come_in_order() {
        let mut intake = Intake::start(messages(4, Some(2)), |i| i, |i| 10 * (i + 1), 15);
        // 10 rows, then 20 (counted as the whole budget of 15): one at a time.
        let a = intake.next(10).await.unwrap().unwrap();
        assert_eq!(a.iter().map(|h| h.item).collect::<Vec<_>>(), vec![0]);
        drop(a);
        let b = intake.next(10).await.unwrap().unwrap();
        assert_eq!(b.iter().map(|h| h.item).collect::<Vec<_>>(), vec![1]);
        drop(b);
        let e = intake.next(10).await.unwrap();
        assert!(e.is_err_and(|e| e.to_string().contains("message 2 broken")));
        let c = intake.next(10).await.unwrap().unwrap();
        assert_eq!(c.iter().map(|h| h.item).collect::<Vec<_>>(), vec![3]);
        drop(c);
        assert!(intake.next(10).await.is_none(), "the stream ended");
    }
}
