//! NATS JetStream plumbing of meshsync. Concrete, no traits: there is one NATS.
//!
//! - [`topology`]: idempotent creation of the streams of the direct and edge topologies.
//! - [`publisher`]: publishes change batches with stable message ids, many acks in flight;
//!   only a [`PubAck`](publisher::Acked) proves a batch is stored.
//! - [`inbox`]: the durable pull consumer apply reads from (explicit ack, redelivery).
//! - [`dead_letter`]: parks a message with its reason on the dead-letter stream.

pub mod dead_letter;
pub mod error;
pub mod inbox;
pub mod publisher;
pub mod topology;

pub use error::NatsError;
pub use topology::{Topology, provision};

/// Connects to NATS (comma-separated URLs) with a name that shows in `nats server report`.
pub async fn connect(urls: &str, name: &str) -> Result<async_nats::Client, NatsError> {
    let addrs: Vec<&str> = urls
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connect(addrs)
        .await
        .map_err(NatsError::Connect)
}
