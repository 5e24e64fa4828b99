//! End-to-end scenarios: real nats-server, real PostgreSQL peers, real agent processes.

mod convergence;
mod faults;
mod support;
