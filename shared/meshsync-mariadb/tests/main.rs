//! Against a real MariaDB (testkit): capture (start-up check, type mapping, loop-prevention
//! flag, GTID resume across rotation and a crash), the `meshsync` database, and the stored
//! resume point.

#![allow(clippy::unwrap_used)]

mod support;

mod capture;
mod capture_state;
mod resume;
mod setup;
