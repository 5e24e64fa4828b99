//! Capture against a real MariaDB (testkit): start-up check, type mapping, loop-prevention
//! flag, GTID resume across rotation and a crash.

#![allow(clippy::unwrap_used)]

mod support;

mod capture;
mod resume;
