//! End-to-end scenarios: real nats-server, real PostgreSQL peers, real agent processes.

mod convergence;
mod dlq;
mod faults;
mod support;
