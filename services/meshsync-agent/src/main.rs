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

use std::{path::PathBuf, process::ExitCode};

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshsync: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { config } => peer::run(Config::load(&config)?).await.map(|()| true),
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
