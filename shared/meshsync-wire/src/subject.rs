//! Subjects and stream names of both topologies.
//!
//! - direct: peers publish on `mesh.changes.<origin>` into the global stream `MESH`.
//! - edge: peers at site `<d>` publish on `mesh.site.<d>.out.<origin>` into the site outbox
//!   `OUT_<d>`; the hub's `MESH` sources every outbox, and the site copy `IN_<d>` sources
//!   `MESH` back. Everything site-local lives under `mesh.site.<d>.`, a subject space no hub
//!   stream listens on: leaf nodes forward subject interest, so an overlapping hub stream
//!   would store a site's publish a second time.

use meshsync_core::PeerId;

/// The global stream on the hub.
pub const GLOBAL_STREAM: &str = "MESH";
/// Subjects the global stream listens on (direct publishers).
pub const GLOBAL_SUBJECTS: &str = "mesh.changes.>";
/// Dead-letter stream: parked messages with their reason.
pub const DEAD_LETTER_STREAM: &str = "MESH_DLQ";
/// Subjects of the dead-letter stream.
pub const DEAD_LETTER_SUBJECTS: &str = "mesh.dlq.>";

/// Durable consumer a peer's apply reads the mesh with; also the name of its checkpoint.
pub fn apply_consumer(peer: &PeerId) -> String {
    format!("apply_{peer}")
}

/// Subject a directly connected peer publishes its changes on.
pub fn direct(origin: &PeerId) -> String {
    format!("mesh.changes.{origin}")
}

/// Subject a peer at an edge site publishes on.
pub fn outbox(domain: &str, origin: &PeerId) -> String {
    format!("mesh.site.{domain}.out.{origin}")
}

/// Subjects of a site's outbox stream.
pub fn outbox_subjects(domain: &str) -> String {
    format!("mesh.site.{domain}.out.>")
}

/// Name of a site's outbox stream.
pub fn outbox_stream(domain: &str) -> String {
    format!("OUT_{}", stream_safe(domain))
}

/// Name of a site's copy of the global stream.
pub fn site_copy_stream(domain: &str) -> String {
    format!("IN_{}", stream_safe(domain))
}

/// Subject a directly connected peer parks bad messages on.
pub fn dead_letter(peer: &PeerId) -> String {
    format!("mesh.dlq.{peer}")
}

/// Subject a peer at an edge site parks bad messages on (kept at the site).
pub fn site_dead_letter(domain: &str, peer: &PeerId) -> String {
    format!("mesh.site.{domain}.dlq.{peer}")
}

/// Subjects of a site's dead-letter stream.
pub fn site_dead_letter_subjects(domain: &str) -> String {
    format!("mesh.site.{domain}.dlq.>")
}

/// Name of a site's dead-letter stream.
pub fn site_dead_letter_stream(domain: &str) -> String {
    format!("DLQ_{}", stream_safe(domain))
}

/// Stream names allow fewer characters than domains; map the rest to `_`.
pub(crate) fn stream_safe(domain: &str) -> String {
    domain
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
