//! NATS JetStream plumbing of meshsync. Concrete, no traits: there is one NATS.
//!
//! - [`connection`]: connecting with TLS and the URL's credentials; a refusal is told at once.
//! - [`topology`]: idempotent creation of the streams of the direct and edge topologies.
//! - [`publisher`]: publishes change batches with stable message ids, many acks in flight;
//!   only a [`PubAck`](publisher::Acked) proves a batch is stored.
//! - [`inbox`]: the durable pull consumer apply reads from (explicit ack, redelivery).
//! - [`dead_letter`]: parks a message with its reason on the dead-letter stream.

pub mod connection;
pub mod dead_letter;
pub mod error;
pub mod inbox;
pub mod publisher;
pub mod topology;

pub use connection::{ClientCertificate, NatsTls, connect, connect_now};
pub use error::NatsError;
pub use topology::{Topology, provision};
