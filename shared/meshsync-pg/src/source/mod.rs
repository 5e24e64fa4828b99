//! Capture side: what PostgreSQL logical replication sends, decoded and turned into row images.

pub mod pgoutput;
mod reader;
pub mod replication;
pub mod resume;
pub mod row;
pub mod stream;
pub mod tls;
