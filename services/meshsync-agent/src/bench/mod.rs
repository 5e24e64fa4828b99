//! `meshsync bench postgres`: meshsync against PostgreSQL's own logical replication, side by
//! side, in one run on one machine; `meshsync bench mysql` likewise against MariaDB's own
//! replication ([`mysql_native`], [`mysql_mesh`], [`mysql_workload`]).
//!
//! Everything is started here through the testkit (a nats-server, PostgreSQL clusters) and
//! dropped at the end, which stops it and deletes its folders. The two systems run one after
//! the other, so neither competes with the other for the machine:
//!
//! 1. **native**: two clusters, `CREATE PUBLICATION` on the source, `CREATE SUBSCRIPTION` on
//!    the target ([`native`]).
//! 2. **meshsync**: two clusters, one agent each as a child process of this executable
//!    (`meshsync run --config`), writes on peer A only ([`mesh`]).
//!
//! Each runs the same workloads ([`workload`]): *catch-up* (rows written while the receiver is
//! off, then the time until the receiver has them all) and *steady* (a fixed insert rate,
//! per-row replication lag). The figures are printed, written as JSON and plotted as SVG
//! ([`report`], [`plot`]).

mod mesh;
mod mysql_mesh;
mod mysql_native;
mod mysql_workload;
mod native;
mod plot;
mod report;
mod workload;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use tracing::info;

/// Arguments of `meshsync bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// The database engine to benchmark: `postgres` or `mysql` (MariaDB).
    pub engine: String,
    /// Rows inserted for the catch-up workload.
    #[arg(long, default_value_t = 200_000)]
    pub rows: u64,
    /// Rows per source transaction in the catch-up workload.
    #[arg(long, default_value_t = 100)]
    pub txn_size: u64,
    /// Rows per second inserted in the steady workload.
    #[arg(long, default_value_t = 2_000)]
    pub rate: u64,
    /// Duration of the steady workload, in seconds.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Folder for `bench-<engine>.json`, `lag-<engine>.svg` and the agent logs.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// Small sizes for a smoke run: 20000 rows and 5 s of steady load.
    #[arg(long)]
    pub quick: bool,
}

/// The effective parameters of one run (after `--quick`).
#[derive(Clone, Debug)]
pub struct Params {
    /// Catch-up rows.
    pub rows: u64,
    /// Rows per catch-up transaction.
    pub txn_size: u64,
    /// Steady rows per second.
    pub rate: u64,
    /// Steady duration in seconds.
    pub seconds: u64,
    /// Output folder.
    pub out: PathBuf,
    /// Whether `--quick` was given.
    pub quick: bool,
}

impl Params {
    /// The parameters `args` ask for, checked.
    fn from_args(args: &BenchArgs) -> Result<Params> {
        let (rows, seconds) = if args.quick {
            (20_000, 5)
        } else {
            (args.rows, args.seconds)
        };
        if rows == 0 || args.txn_size == 0 || args.rate == 0 || seconds == 0 {
            bail!("--rows, --txn-size, --rate and --seconds must be positive");
        }
        Ok(Params {
            rows,
            txn_size: args.txn_size,
            rate: args.rate,
            seconds,
            out: args.out.clone(),
            quick: args.quick,
        })
    }

    /// First id of the steady workload (the catch-up rows use `1..=rows`).
    pub fn steady_base(&self) -> i64 {
        self.rows as i64
    }
}

/// Runs the benchmark `args` describes; Ctrl-C stops it and cleans up.
pub async fn run(args: BenchArgs) -> Result<()> {
    let engine: &'static str = match args.engine.as_str() {
        "postgres" => "postgres",
        "mysql" => "mysql",
        other => bail!("bench engine {other:?} is not supported; supported: postgres, mysql"),
    };
    let params = Params::from_args(&args)?;
    std::fs::create_dir_all(&params.out)
        .with_context(|| format!("create {}", params.out.display()))?;
    tokio::select! {
        r = run_engine(engine, &params) => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; everything started was stopped"),
    }
}

/// Both systems, one after the other, then the report.
async fn run_engine(engine: &'static str, params: &Params) -> Result<()> {
    let (native, meshsync, notes) = match engine {
        "mysql" => {
            info!(?params, "bench mysql: native MariaDB replication first");
            let native = mysql_native::run(params).await.context("native run")?;
            info!("bench mysql: meshsync next");
            let meshsync = mysql_mesh::run(params).await.context("meshsync run")?;
            let notes = vec![format!(
                "native: the replica's IO and SQL threads live inside mariadbd, so \"{}\" is the \
                 whole replica server process (CPU over the catch-up only; peak RSS includes \
                 its 64 MiB buffer pool)",
                mysql_native::REPLICA_ROLE
            )];
            (native, meshsync, notes)
        }
        _ => {
            info!(?params, "bench postgres: native logical replication first");
            let native = native::run(params).await.context("native run")?;
            info!("bench postgres: meshsync next");
            let meshsync = mesh::run(params).await.context("meshsync run")?;
            (native, meshsync, Vec::new())
        }
    };
    let report = report::Report {
        engine,
        notes,
        params: params.clone(),
        nats_version: meshsync.nats_version.clone(),
        native,
        meshsync: meshsync.result,
    };
    println!("{}", report.table());
    let json = params.out.join(format!("bench-{engine}.json"));
    std::fs::write(&json, serde_json::to_string_pretty(&report.json()?)?)
        .with_context(|| format!("write {}", json.display()))?;
    let svg = params.out.join(format!("lag-{engine}.svg"));
    std::fs::write(&svg, plot::lag_svg(&report))
        .with_context(|| format!("write {}", svg.display()))?;
    info!(json = %json.display(), svg = %svg.display(), "bench results written");
    Ok(())
}
