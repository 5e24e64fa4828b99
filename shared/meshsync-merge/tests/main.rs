//! Tests of meshsync-merge: join laws and order independence for every policy, targeted row
//! merges, config parsing and a custom policy.

// Test helpers outside `#[test]` fns unwrap too (clippy.toml allows it inside tests).
#![allow(clippy::unwrap_used)]

mod config;
mod custom;
mod laws;
mod plan;
mod rows;
mod support;
