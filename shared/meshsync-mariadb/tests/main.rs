//! Against a real MariaDB (testkit): capture (start-up check, type mapping, loop-prevention
//! flag, GTID resume across rotation and a crash, before-images), the `meshsync` database,
//! the stored resume point, apply's row writes, the merging `MariaDbSink`, and verify
//! digests (compared with a real PostgreSQL's).

#![allow(clippy::unwrap_used)]

mod sink_support;
mod support;

mod applied_row;
mod apply;
mod apply_refusal;
mod apply_types;
mod capture;
mod capture_state;
mod mysql;
mod resume;
mod setup;
mod sink;
mod sink_fresh;
mod sink_txn;
mod tls;
mod verify;
