//! Real servers for meshsync's tests and demo, as child processes in temporary folders on free
//! ports: `nats-server` (single, hub cluster, leaf with a JetStream domain), PostgreSQL and
//! MariaDB. Each handle can stop, `kill -9` and restart on the same port and data; dropping it
//! kills the process and deletes the folder. No mocks: these are the real binaries.

mod binaries;
mod mariadb;
mod nats;
mod postgres;
mod process;
mod wait;

pub use binaries::workspace_root;
pub use mariadb::MariaDb;
pub use nats::{NatsCluster, NatsServer};
pub use postgres::Postgres;
pub use process::Server;
pub use wait::{free_port, wait_until};
