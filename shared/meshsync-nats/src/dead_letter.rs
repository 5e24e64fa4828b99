//! Parking bad messages: a copy with the reason goes to the dead-letter stream, then the
//! original is acked, so one bad message never holds up the stream (I10).

use async_nats::jetstream::{self, Context, message::PublishMessage};
use bytes::Bytes;
use meshsync_wire::headers;

use crate::{NatsError, inbox::Delivery};

/// Publishes parked messages on one dead-letter subject.
#[derive(Clone, Debug)]
pub struct DeadLetters {
    js: Context,
    subject: String,
}

impl DeadLetters {
    /// Dead letters on `subject` through `client`'s JetStream.
    pub fn new(client: async_nats::Client, subject: impl Into<String>) -> Self {
        DeadLetters {
            js: jetstream::new(client),
            subject: subject.into(),
        }
    }

    /// Stores a copy of `delivery` (body and headers, except `Nats-Msg-Id`, which would
    /// de-duplicate two parkings of different rows of one batch) with `reason`, and waits for
    /// the ack. The caller then acks the original.
    pub async fn park(&self, delivery: &Delivery, reason: &str) -> Result<(), NatsError> {
        self.park_bytes(
            delivery.headers(),
            delivery.payload(),
            delivery.sequence(),
            reason,
        )
        .await
    }

    /// As [`DeadLetters::park`], from parts.
    pub async fn park_bytes(
        &self,
        original: Option<&async_nats::HeaderMap>,
        payload: &[u8],
        sequence: u64,
        reason: &str,
    ) -> Result<(), NatsError> {
        let mut map = async_nats::HeaderMap::new();
        if let Some(original) = original {
            for (name, values) in original.iter() {
                let name: &str = name.as_ref();
                if name == headers::MSG_ID {
                    continue;
                }
                for v in values {
                    map.append(name, v.as_str());
                }
            }
        }
        // Header values are one line; keep the reason readable and short.
        let reason: String = reason
            .replace(['\r', '\n'], " ")
            .chars()
            .take(1024)
            .collect();
        map.insert(headers::PARK_REASON, reason.as_str());
        map.insert(headers::PARK_SEQUENCE, sequence.to_string().as_str());
        let msg = PublishMessage::build()
            .headers(map)
            .payload(Bytes::copy_from_slice(payload));
        let err = |e: Box<dyn std::error::Error + Send + Sync>| NatsError::Publish {
            subject: self.subject.clone(),
            source: e,
        };
        let ack = self
            .js
            .send_publish(self.subject.clone(), msg)
            .await
            .map_err(|e| err(e.into()))?;
        ack.await.map_err(|e| err(e.into()))?;
        Ok(())
    }
}
