//! Publishing change batches: stable message ids, many acks in flight, and a proof of each ack.

use async_nats::{
    HeaderMap,
    jetstream::{self, Context, context::PublishAckFuture, message::PublishMessage},
};
use bytes::Bytes;
use meshsync_core::{Acked, ChangeBatch, SourcePosition};
use meshsync_wire::{encode, headers};

use crate::NatsError;

/// Publishes batches on one subject. `send` does not wait for the ack: keep many in flight
/// and await the [`PendingAck`]s in order.
#[derive(Clone, Debug)]
pub struct Publisher {
    js: Context,
    subject: String,
    /// Headers every batch carries besides its own (e.g. the merge policy fingerprint).
    extra: Vec<(String, String)>,
}

/// A sent batch whose PubAck has not been awaited yet.
#[derive(Debug)]
pub struct PendingAck {
    ack: PublishAckFuture,
    subject: String,
    position: SourcePosition,
}

/// A batch JetStream stored (or had already stored under the same message id).
#[derive(Debug)]
pub struct Stored {
    /// The batch's commit position, now provably stored.
    pub position: Acked<SourcePosition>,
    /// Stream sequence it was stored at.
    pub sequence: u64,
    /// The stream already had this message id: a re-capture after a crash.
    pub duplicate: bool,
}

/// The headers of a batch as a NATS header map; `Nats-Msg-Id` is set directly in the map (the
/// builder's `message_id` followed by `headers` would silently drop it, ending de-duplication).
pub fn header_map(batch: &ChangeBatch) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers::for_batch(batch) {
        map.insert(name, value.as_str());
    }
    map
}

impl Publisher {
    /// A publisher on `subject` through `client`'s JetStream.
    pub fn new(client: async_nats::Client, subject: impl Into<String>) -> Self {
        Publisher {
            js: jetstream::new(client),
            subject: subject.into(),
            extra: Vec::new(),
        }
    }

    /// Adds a header to every batch this publisher sends.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }

    /// Subject this publisher writes to.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Sends one batch; the returned future resolves on its PubAck.
    pub async fn send(&self, batch: &ChangeBatch) -> Result<PendingAck, NatsError> {
        let body = encode(batch).map_err(NatsError::Encode)?;
        let mut headers = header_map(batch);
        for (name, value) in &self.extra {
            headers.insert(name.as_str(), value.as_str());
        }
        let msg = PublishMessage::build()
            .headers(headers)
            .payload(Bytes::from(body));
        let ack = self
            .js
            .send_publish(self.subject.clone(), msg)
            .await
            .map_err(|e| NatsError::Publish {
                subject: self.subject.clone(),
                source: e.into(),
            })?;
        Ok(PendingAck {
            ack,
            subject: self.subject.clone(),
            position: batch.position.clone(),
        })
    }
}

impl PendingAck {
    /// Waits for the PubAck.
    pub async fn acked(self) -> Result<Stored, NatsError> {
        let subject = self.subject;
        let ack = self.ack.await.map_err(|e| NatsError::Publish {
            subject: subject.clone(),
            source: e.into(),
        })?;
        Ok(Stored {
            position: Acked::after_pub_ack(self.position),
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }
}
