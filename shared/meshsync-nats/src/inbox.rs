//! The durable pull consumer apply reads from.
//!
//! Explicit acks, redelivery after `ack_wait`, no delivery limit: a message leaves only when
//! apply acked it after its database commit, or parked it (I9, I10).

use std::time::Duration;

use async_nats::jetstream::{
    self, AckKind, Message,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
};
use futures::{Stream, StreamExt};

use crate::NatsError;

/// How the durable consumer behaves.
#[derive(Clone, Debug)]
pub struct InboxSettings {
    /// Durable consumer name (one per applying peer).
    pub durable: String,
    /// Redeliver a message not acked within this time.
    pub ack_wait: Duration,
    /// Most unacked messages out at once.
    pub max_ack_pending: i64,
}

impl InboxSettings {
    /// Defaults for apply: 30 s ack wait (above the slowest batch commit), 1,024 in flight.
    pub fn for_durable(durable: impl Into<String>) -> Self {
        InboxSettings {
            durable: durable.into(),
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1024,
        }
    }
}

/// A durable pull consumer on one stream.
#[derive(Debug)]
pub struct Inbox {
    consumer: PullConsumer,
    stream: String,
    durable: String,
}

/// One delivered message.
#[derive(Debug)]
pub struct Delivery {
    msg: Message,
}

impl Inbox {
    /// Opens (creating if needed) the durable consumer on `stream`.
    pub async fn open(
        client: async_nats::Client,
        stream: &str,
        settings: &InboxSettings,
    ) -> Result<Inbox, NatsError> {
        let err = |e: Box<dyn std::error::Error + Send + Sync>| NatsError::Consume {
            stream: stream.to_owned(),
            consumer: settings.durable.clone(),
            source: e,
        };
        let js = jetstream::new(client);
        let s = js.get_stream(stream).await.map_err(|e| err(e.into()))?;
        let consumer: PullConsumer = s
            .get_or_create_consumer(
                &settings.durable,
                pull::Config {
                    durable_name: Some(settings.durable.clone()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: settings.ack_wait,
                    max_deliver: -1,
                    max_ack_pending: settings.max_ack_pending,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| err(e.into()))?;
        Ok(Inbox {
            consumer,
            stream: stream.to_owned(),
            durable: settings.durable.clone(),
        })
    }

    /// Opens the durable consumer on `stream` so that it delivers from `start_sequence` on,
    /// in stream order: an existing consumer is replaced. Apply calls this on every start with
    /// its committed checkpoint + 1, so messages a crashed run left unacked come back first and
    /// in order (counter deltas rely on per-origin order), not after newer ones at `ack_wait`.
    pub async fn open_at(
        client: async_nats::Client,
        stream: &str,
        settings: &InboxSettings,
        start_sequence: u64,
    ) -> Result<Inbox, NatsError> {
        let err = |e: Box<dyn std::error::Error + Send + Sync>| NatsError::Consume {
            stream: stream.to_owned(),
            consumer: settings.durable.clone(),
            source: e,
        };
        let js = jetstream::new(client);
        let s = js.get_stream(stream).await.map_err(|e| err(e.into()))?;
        if s.consumer_info(&settings.durable).await.is_ok() {
            s.delete_consumer(&settings.durable)
                .await
                .map_err(|e| err(e.into()))?;
        }
        let deliver_policy = if start_sequence <= 1 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence { start_sequence }
        };
        let consumer: PullConsumer = s
            .create_consumer(pull::Config {
                durable_name: Some(settings.durable.clone()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: settings.ack_wait,
                max_deliver: -1,
                max_ack_pending: settings.max_ack_pending,
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| err(e.into()))?;
        Ok(Inbox {
            consumer,
            stream: stream.to_owned(),
            durable: settings.durable.clone(),
        })
    }

    /// The first sequence the stream still holds (older messages were removed by its limits).
    pub async fn stream_first_sequence(
        client: async_nats::Client,
        stream: &str,
    ) -> Result<u64, NatsError> {
        let err = |e: Box<dyn std::error::Error + Send + Sync>| NatsError::Consume {
            stream: stream.to_owned(),
            consumer: String::new(),
            source: e,
        };
        let js = jetstream::new(client);
        let mut s = js.get_stream(stream).await.map_err(|e| err(e.into()))?;
        let info = s.info().await.map_err(|e| err(e.into()))?;
        Ok(info.state.first_sequence)
    }

    fn error(&self, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> NatsError {
        NatsError::Consume {
            stream: self.stream.clone(),
            consumer: self.durable.clone(),
            source: e.into(),
        }
    }

    /// Up to `max` messages, waiting at most `wait` for the first.
    pub async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, NatsError> {
        let mut batch = self
            .consumer
            .batch()
            .max_messages(max)
            .expires(wait)
            .messages()
            .await
            .map_err(|e| self.error(e))?;
        let mut out = Vec::new();
        while let Some(msg) = batch.next().await {
            out.push(Delivery {
                msg: msg.map_err(|e| self.error(e))?,
            });
        }
        Ok(out)
    }

    /// A continuous stream of messages (pull requests with heartbeats under the hood).
    pub async fn messages(
        &self,
    ) -> Result<impl Stream<Item = Result<Delivery, NatsError>> + use<>, NatsError> {
        let stream = self.stream.clone();
        let durable = self.durable.clone();
        let messages = self.consumer.messages().await.map_err(|e| self.error(e))?;
        Ok(messages.map(move |m| {
            m.map(|msg| Delivery { msg })
                .map_err(|e| NatsError::Consume {
                    stream: stream.clone(),
                    consumer: durable.clone(),
                    source: e.into(),
                })
        }))
    }
}

impl Delivery {
    /// Stream sequence (0 if the server sent no metadata).
    pub fn sequence(&self) -> u64 {
        self.msg.info().map(|i| i.stream_sequence).unwrap_or(0)
    }

    /// How often this message was delivered, 1 the first time.
    pub fn delivered(&self) -> i64 {
        self.msg.info().map(|i| i.delivered).unwrap_or(1)
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.msg.headers.as_ref()?.get(name).map(|v| v.as_str())
    }

    /// All headers.
    pub fn headers(&self) -> Option<&async_nats::HeaderMap> {
        self.msg.headers.as_ref()
    }

    /// The body.
    pub fn payload(&self) -> &[u8] {
        &self.msg.payload
    }

    /// The subject it was published on.
    pub fn subject(&self) -> &str {
        self.msg.subject.as_str()
    }

    fn ack_error(&self, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> NatsError {
        NatsError::Ack {
            sequence: self.sequence(),
            source: e.into(),
        }
    }

    /// Acknowledges and waits for the server to confirm, so a lost ack cannot cause a
    /// redelivery (one that would still be harmless: apply is idempotent).
    pub async fn double_ack(&self) -> Result<(), NatsError> {
        self.msg.double_ack().await.map_err(|e| self.ack_error(e))
    }

    /// Acknowledges without waiting for confirmation.
    pub async fn ack(&self) -> Result<(), NatsError> {
        self.msg.ack().await.map_err(|e| self.ack_error(e))
    }

    /// Asks for redelivery after `delay`.
    pub async fn nak(&self, delay: Duration) -> Result<(), NatsError> {
        self.msg
            .ack_with(AckKind::Nak(Some(delay)))
            .await
            .map_err(|e| self.ack_error(e))
    }
}

/// Whether durable `consumer` on `stream` has applied everything: nothing left to deliver and
/// nothing delivered but unacked. `false` while the stream or consumer does not exist yet.
pub async fn is_drained(client: &async_nats::Client, stream: &str, consumer: &str) -> bool {
    let js = jetstream::new(client.clone());
    let Ok(s) = js.get_stream(stream).await else {
        return false;
    };
    let Ok(mut c) = s.get_consumer::<pull::Config>(consumer).await else {
        return false;
    };
    c.info()
        .await
        .is_ok_and(|i| i.num_pending == 0 && i.num_ack_pending == 0)
}
