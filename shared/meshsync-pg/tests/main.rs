//! Tests of meshsync-pg against real pgoutput bytes recorded from PostgreSQL 15
//! (`tests/fixtures`), plus property tests.

// Test helpers outside `#[test]` functions panic on broken fixtures by design.
#![allow(clippy::unwrap_used)]

mod decode_fixtures;
mod echo;
mod prepared;
mod props;
mod replication;
mod setup;
mod sink;
mod support;
mod tls;
mod verify;
