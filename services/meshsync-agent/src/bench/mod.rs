//! `meshsync bench postgres`: meshsync against PostgreSQL's own logical replication, side by
//! side, in one run on one machine; `meshsync bench mysql` likewise against MariaDB's own
//! replication ([`mysql_native`], [`mysql_mesh`], [`mysql_workload`]).
//!
//! Everything is started here through the testkit (a nats-server, PostgreSQL clusters) and
//! dropped at the end, which stops it and deletes its folders. Both systems are set up side
//! by side, each with its receiver off:
//!
//! 1. **native**: two clusters, `CREATE PUBLICATION` on the source, `CREATE SUBSCRIPTION` on
//!    the target ([`native`]).
//! 2. **meshsync**: two clusters, one agent each as a child process of this executable
//!    (`meshsync run --config`), writes on peer A only ([`mesh`]).
//!
//! Each runs the same workloads ([`workload`]): *catch-up* (rows written while the receiver is
//! off, then the time until the receiver has them all), `--rounds` times, the two systems
//! taking turns so that neither runs while the other is measured ([`rounds`]); then *steady*
//! (a fixed insert rate, per-row replication lag). The figures are printed, written as JSON
//! and plotted as SVG ([`report`], [`plot`]).

mod agents;
mod machine;
mod mesh;
mod mysql_mesh;
mod mysql_native;
mod mysql_workload;
mod native;
mod plot;
mod report;
mod rounds;
mod workload;

use std::{ops::RangeInclusive, path::PathBuf};

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
    /// Catch-up rounds per system, taken in turns; the verdict is the median.
    #[arg(long, default_value_t = 3)]
    pub rounds: u64,
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
    /// A PostgreSQL server setting for all four clusters, after the bench's own
    /// (`NAME=VALUE`; repeatable).
    #[arg(long = "pg-setting", value_name = "NAME=VALUE")]
    pub pg_settings: Vec<String>,
}

/// The effective parameters of one run (after `--quick`).
#[derive(Clone, Debug)]
pub struct Params {
    /// Catch-up rows per round.
    pub rows: u64,
    /// Catch-up rounds per system.
    pub rounds: u64,
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
    /// PostgreSQL server settings (`NAME=VALUE`) of all four clusters.
    pub pg_settings: Vec<String>,
}

impl Params {
    /// The parameters `args` ask for, checked.
    fn from_args(args: &BenchArgs) -> Result<Params> {
        let (rows, seconds) = if args.quick {
            (20_000, 5)
        } else {
            (args.rows, args.seconds)
        };
        if rows == 0 || args.rounds == 0 || args.txn_size == 0 || args.rate == 0 || seconds == 0 {
            bail!("--rows, --rounds, --txn-size, --rate and --seconds must be positive");
        }
        if let Some(bad) = args.pg_settings.iter().find(|s| {
            s.split_once('=')
                .is_none_or(|(name, _)| name.trim().is_empty())
        }) {
            bail!(
                "--pg-setting {bad:?} is not NAME=VALUE (e.g. --pg-setting shared_buffers=256MB)"
            );
        }
        Ok(Params {
            rows,
            rounds: args.rounds,
            txn_size: args.txn_size,
            rate: args.rate,
            seconds,
            out: args.out.clone(),
            quick: args.quick,
            pg_settings: args.pg_settings.clone(),
        })
    }

    /// The ids catch-up round `round` (from 0) writes: `rows` after the earlier rounds'.
    pub fn round_ids(&self, round: u64) -> RangeInclusive<i64> {
        let first = (round * self.rows) as i64;
        first + 1..=first + self.rows as i64
    }

    /// Id after which the steady workload writes: the last catch-up round's last id.
    pub fn steady_base(&self) -> i64 {
        (self.rounds * self.rows) as i64
    }
}

/// Runs the benchmark `args` describes; Ctrl-C stops it and cleans up.
pub async fn run(args: BenchArgs) -> Result<()> {
    let engine: &'static str = match args.engine.as_str() {
        "postgres" => "postgres",
        "mysql" => "mysql",
        other => bail!("bench engine {other:?} is not supported; supported: postgres, mysql"),
    };
    if engine != "postgres" && !args.pg_settings.is_empty() {
        bail!("--pg-setting sets PostgreSQL servers; the {engine} bench starts none");
    }
    let params = Params::from_args(&args)?;
    std::fs::create_dir_all(&params.out)
        .with_context(|| format!("create {}", params.out.display()))?;
    tokio::select! {
        r = run_engine(engine, &params) => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; everything started was stopped"),
    }
}

/// Both systems, catch-up rounds in turns, then the report.
async fn run_engine(engine: &'static str, params: &Params) -> Result<()> {
    info!(?params, "bench {engine}: starting both systems");
    let (native, meshsync, nats_version, notes) = match engine {
        "mysql" => {
            let mut native = mysql_native::NativeMariaDb::start()
                .await
                .context("start native replication")?;
            let mut mesh = mysql_mesh::MeshMariaDb::start(params)
                .await
                .context("start meshsync")?;
            let (n, m) = rounds::compare(&mut native, &mut mesh, params).await?;
            let notes = vec![format!(
                "native: the replica's IO and SQL threads live inside mariadbd, so \"{}\" is the \
                 whole replica server process (CPU over the catch-ups only; peak RSS includes \
                 its 64 MiB buffer pool); meshsync's \"B's mariadbd\" likewise, CPU only",
                mysql_native::REPLICA_ROLE
            )];
            (n, m, mesh.nats_version().to_owned(), notes)
        }
        _ => {
            let mut native = native::Native::start(params)
                .await
                .context("start native replication")?;
            let mut mesh = mesh::Mesh::start(params).await.context("start meshsync")?;
            let (n, m) = rounds::compare(&mut native, &mut mesh, params).await?;
            let notes = vec![
                "meshsync: \"B's PG sessions\" (apply, capture state) and \"B's walsender\" \
                 (B's capture; on PostgreSQL 15 it also decodes apply's own rows) are peer \
                 B's PostgreSQL processes serving agent B, counted in CPU: native's apply \
                 worker does that database work itself"
                    .to_owned(),
            ];
            (n, m, mesh.nats_version().to_owned(), notes)
        }
    };
    let report = report::Report {
        engine,
        notes,
        params: params.clone(),
        nats_version,
        machine: machine::Machine::this(),
        native,
        meshsync,
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

#[cfg(test)]
mod tests {
    use super::Params;

    #[test]
    fn pg_settings_must_name_a_setting_and_a_value() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            bench: super::BenchArgs,
        }
        let params = |extra: &[&str]| {
            let mut argv = vec!["meshsync", "postgres"];
            argv.extend_from_slice(extra);
            Params::from_args(&Cli::parse_from(argv).bench)
        };
        let p = params(&[
            "--pg-setting",
            "shared_buffers=256MB",
            "--pg-setting",
            "work_mem=8MB",
        ])
        .unwrap();
        assert_eq!(p.pg_settings, ["shared_buffers=256MB", "work_mem=8MB"]);
        for bad in ["shared_buffers", "=256MB", " =1"] {
            let e = params(&["--pg-setting", bad]).unwrap_err().to_string();
            assert!(e.contains("is not NAME=VALUE"), "{bad}: {e}");
        }
    }

    #[test]
    fn rounds_write_consecutive_ids_and_steady_writes_after_them() {
        let p = Params {
            rows: 1000,
            rounds: 3,
            txn_size: 100,
            rate: 10,
            seconds: 1,
            out: "x".into(),
            quick: false,
            pg_settings: Vec::new(),
        };
        assert_eq!(p.round_ids(0), 1..=1000);
        assert_eq!(p.round_ids(2), 2001..=3000);
        assert_eq!(p.steady_base(), 3000);
    }
}
