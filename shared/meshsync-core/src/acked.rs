//! A proof of a JetStream acknowledgement, so that progress can only move past what NATS
//! stored (I9).

/// `T` (usually a source position) whose changes JetStream acknowledged. Capture may confirm a
/// source position to its engine only as `Acked<SourcePosition>`, and only the NATS
/// publisher makes one, after a PubAck: confirming an unpublished position fails to compile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acked<T>(T);

impl<T> Acked<T> {
    /// Wraps `value` as acknowledged. Called by `meshsync-nats` once a PubAck arrived, and
    /// nowhere else.
    #[doc(hidden)]
    pub fn after_pub_ack(value: T) -> Self {
        Acked(value)
    }

    /// The acknowledged value.
    pub fn get(&self) -> &T {
        &self.0
    }

    /// The acknowledged value, giving up the proof.
    pub fn into_inner(self) -> T {
        self.0
    }
}
