//! End-to-end scenarios: real nats-server, real PostgreSQL peers, real agent processes.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod causality;
mod conflicts;
mod convergence;
mod dlq;
mod faults;
mod merge;
mod mixed;
mod orders;
mod retention;
mod startup;
mod support;
mod tls;
mod types;
