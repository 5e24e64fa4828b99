//! Real servers for meshsync's tests and demo, as child processes: `nats-server` (single,
//! hub, 3-node hub cluster, leaf node with its own JetStream domain), PostgreSQL and MariaDB.
//! No mocks: meshsync's guarantees are about what real servers do on a crash.
//!
//! Each server runs in its own temporary folder on free ports on 127.0.0.1, logging to a file
//! in that folder that every start failure quotes. Each handle can `stop()` (graceful),
//! `kill9()` (SIGKILL, a crash) and `start()`/`restart()` again on the same port and data;
//! dropping it kills the process (and anything it forked) and deletes the folder.
//!
//! Waits poll a real readiness check (`/healthz`, a `SELECT 1`) with a deadline and name what
//! they waited for; [`wait_until`] does the same for tests.

pub mod binaries;
mod mariadb;
mod nats;
mod postgres;
mod process;
mod tls;
mod wait;

pub use binaries::workspace_root;
pub use mariadb::MariaDb;
pub use nats::{LeafRemotes, NATS_USER, NatsCluster, NatsServer};
pub use postgres::{ALL_TYPES_DDL, Postgres, shared_memory_id};
pub use tls::{CERT_USER, TlsFiles};
pub use wait::{Check, free_port, free_ports, wait_until};
