//! The meshsync binary: parses the command line, sets up logging, and hands over to the
//! module that does the work. Exit status 0 on success, 1 on error (the error is printed).

mod apply;
mod batching;
mod bench;
mod capture;
mod conflict_log;
mod conflicts;
mod demo;
mod failpoint;
mod intake;
mod metrics;
mod peer;
mod policies;
mod setup;
mod sink;
mod telemetry;
mod verify;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use meshsync_config::Config;

/// meshsync: a peer-to-peer database replication mesh over NATS JetStream.
#[derive(Parser, Debug)]
#[command(name = "meshsync", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the peer agent of one database: capture its changes and apply everyone else's.
    Run {
        /// The peer's config file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Threads of the agent's async runtime. The default, one, runs every task on the
        /// main thread and suits most peers: the agent mostly waits on its database and
        /// NATS, and more threads cost CPU handing work between them. With more, merge
        /// decisions of rows that have states also get a helper thread.
        #[arg(long, default_value_t = AGENT_WORKER_THREADS, value_parser = clap::value_parser!(u16).range(1..=256))]
        worker_threads: u16,
        /// Seconds between two progress lines (rows captured, echoed, applied, parked, ...).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
        progress_interval_s: u64,
    },
    /// Benchmark meshsync against the database's own replication, side by side in one run.
    Bench(bench::BenchArgs),
    /// Start a local mesh (nats-server + three PostgreSQL peers), write conflicting changes
    /// on all peers, show them arriving, and verify that the peers end identical.
    Demo,
    /// Show the conflicts this peer resolved lately (from the conflict stream).
    Conflicts(conflicts::ConflictsArgs),
    /// Compare the replicated tables across peers; exit status 0 only if all are identical.
    Verify {
        /// Config files of the peers to compare (two or more).
        #[arg(long = "config", required = true)]
        configs: Vec<PathBuf>,
    },
}

/// jemalloc, not glibc's malloc: apply allocates and frees a merge state per row, and glibc
/// spent ~30 % of the apply thread on it; jemalloc took agent B's CPU over the bench catch-up
/// from 1.23-1.32 to 1.03-1.11 s at 41-44 MiB peak (mimalloc: 111 MiB).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The agent's default runtime threads: one, tokio's current-thread runtime. On the bench's
/// catch-up (PostgreSQL 15, two cores, docs/benchmarks.md) one worker against tokio's default
/// of one per core took agent B from 1.98-2.03 to 1.48-1.68 CPU s; the main thread, which
/// ran capture and apply while the worker ran the replication reader and the intake, still
/// woke the other for every frame and batch handed over. One thread for all took it to
/// 1.1-1.5 s, and meshsync's catch-up rounds from 110,000-173,000 to 145,000-194,000 rows/s
/// (medians against native 0.490-0.559 instead of 0.426-0.450, 2026-11-27).
const AGENT_WORKER_THREADS: u16 = 1;

/// The runtime for `command`: `meshsync run` on [`AGENT_WORKER_THREADS`] by default (one: the
/// current-thread runtime, every task on the main thread), other commands on one worker
/// per core.
fn runtime_builder(command: &Command) -> tokio::runtime::Builder {
    match command {
        Command::Run {
            worker_threads: 1, ..
        } => tokio::runtime::Builder::new_current_thread(),
        Command::Run { worker_threads, .. } => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(usize::from(*worker_threads));
            builder
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init();
    let runtime = match runtime_builder(&cli.command).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshsync: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run {
                config,
                progress_interval_s,
                ..
            } => peer::run(
                Config::load(&config)?,
                Duration::from_secs(progress_interval_s),
            )
            .await
            .map(|()| true),
            Command::Verify { configs } => verify::run(&configs).await,
            Command::Conflicts(args) => conflicts::run(args).await.map(|()| true),
            Command::Demo => demo::run().await,
            Command::Bench(args) => bench::run(args).await.map(|()| true),
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("meshsync: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use tokio::runtime::RuntimeFlavor;

    use super::{AGENT_WORKER_THREADS, Cli, Command, runtime_builder};

    fn threads(argv: &[&str]) -> Result<u16, clap::Error> {
        match Cli::try_parse_from(argv)?.command {
            Command::Run { worker_threads, .. } => Ok(worker_threads),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn the_agent_runs_on_one_thread_unless_told_otherwise() {
        assert_eq!(AGENT_WORKER_THREADS, 1);
        let run = ["meshsync", "run", "--config", "a.toml"];
        assert_eq!(threads(&run).unwrap(), 1);
        let four = [&run[..], &["--worker-threads", "4"]].concat();
        assert_eq!(threads(&four).unwrap(), 4);
        let none = [&run[..], &["--worker-threads", "0"]].concat();
        assert!(
            threads(&none).is_err(),
            "zero threads would never run a task"
        );
    }

    #[test]
    fn one_thread_is_the_current_thread_runtime_and_more_are_workers() {
        let flavor = |argv: &[&str]| {
            let cli = Cli::try_parse_from(argv).unwrap();
            let runtime = runtime_builder(&cli.command).build().unwrap();
            runtime.handle().runtime_flavor()
        };
        let run = ["meshsync", "run", "--config", "a.toml"];
        assert_eq!(flavor(&run), RuntimeFlavor::CurrentThread);
        let two = [&run[..], &["--worker-threads", "2"]].concat();
        assert_eq!(flavor(&two), RuntimeFlavor::MultiThread);
        assert_eq!(flavor(&["meshsync", "demo"]), RuntimeFlavor::MultiThread);
    }

    #[test]
    fn progress_is_logged_every_ten_seconds_unless_told_otherwise() {
        let interval = |argv: &[&str]| match Cli::try_parse_from(argv)?.command {
            Command::Run {
                progress_interval_s,
                ..
            } => Ok::<_, clap::Error>(progress_interval_s),
            other => panic!("parsed as {other:?}"),
        };
        let run = ["meshsync", "run", "--config", "a.toml"];
        assert_eq!(interval(&run).unwrap(), 10);
        let one = [&run[..], &["--progress-interval-s", "1"]].concat();
        assert_eq!(interval(&one).unwrap(), 1);
        let zero = [&run[..], &["--progress-interval-s", "0"]].concat();
        assert!(interval(&zero).is_err(), "a zero interval would spin");
    }
}
