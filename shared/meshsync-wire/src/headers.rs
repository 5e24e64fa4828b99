//! Header names and values: enough for a person with the NATS CLI to read the stream.

use meshsync_core::ChangeBatch;

/// JetStream's de-duplication id: origin, commit position and chunk (stable across re-capture).
pub const MSG_ID: &str = "Nats-Msg-Id";
/// Peer where the change was committed.
pub const ORIGIN: &str = "Mesh-Origin";
/// `schema.table` of every row in the message.
pub const TABLE: &str = "Mesh-Table";
/// Operations present, comma-separated (`insert,update`).
pub const OP: &str = "Mesh-Op";
/// Number of row changes in the message.
pub const COUNT: &str = "Mesh-Count";
/// HLC as RFC 3339 UTC time and counter (`2026-11-26T17:21:39.102608908Z/3`).
pub const HLC: &str = "Mesh-Hlc";
/// Schema version of the table at capture (hex).
pub const SCHEMA: &str = "Mesh-Schema";
/// Envelope version of the body.
pub const ENVELOPE: &str = "Mesh-Envelope";
/// On dead-lettered messages: why it was parked.
pub const PARK_REASON: &str = "Mesh-Park-Reason";
/// Fingerprint of the origin's merge policies (`PolicySet::fingerprint` in meshsync-merge):
/// peers whose policies differ never converge, so apply compares it with its own.
pub const MERGE_POLICIES: &str = "Mesh-Merge-Policies";
/// On dead-lettered messages: the stream sequence it came from.
pub const PARK_SEQUENCE: &str = "Mesh-Park-Sequence";

/// `Nats-Msg-Id` of a batch: `<origin>:<commit position>:<chunk>`.
pub fn msg_id(batch: &ChangeBatch) -> String {
    format!("{}:{}:{}", batch.origin, batch.position, batch.chunk)
}

/// All headers of a batch, `Nats-Msg-Id` first.
pub fn for_batch(batch: &ChangeBatch) -> Vec<(&'static str, String)> {
    let ops: Vec<&str> = batch.ops().into_iter().map(|op| op.as_str()).collect();
    vec![
        (MSG_ID, msg_id(batch)),
        (ORIGIN, batch.origin.to_string()),
        (TABLE, batch.table.to_string()),
        (OP, ops.join(",")),
        (COUNT, batch.rows.len().to_string()),
        (HLC, batch.hlc.to_header()),
        (SCHEMA, batch.schema.to_string()),
        (ENVELOPE, crate::ENVELOPE_VERSION.to_string()),
    ]
}
