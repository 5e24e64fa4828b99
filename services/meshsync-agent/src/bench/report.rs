//! The figures of one run: per-system results, the stdout table and the JSON document.

use std::{fmt::Write as _, time::Duration};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::{Params, machine::Machine, mesh::ProcStats, workload};

/// Catch-up target: meshsync at least this fraction of native's rows/s.
pub const TARGET_CATCH_UP_RATIO: f64 = 0.5;
/// Steady-lag target: p99 below this many milliseconds.
pub const TARGET_P99_MS: f64 = 10.0;
/// Memory target: each agent's peak resident set below this many MiB.
pub const TARGET_AGENT_MIB: f64 = 100.0;

/// The catch-up workload's figures.
#[derive(Clone, Debug)]
pub struct CatchUp {
    /// Rows written.
    pub rows: u64,
    /// Time the source took to insert them (with the sender capturing, for meshsync).
    pub insert_secs: f64,
    /// meshsync only: from the first insert until agent A had every row in JetStream.
    pub publish_secs: Option<f64>,
    /// meshsync only: from the first insert until agent A had also applied (recorded the
    /// states of) its own changes, so that B's catch-up ran alone.
    pub settled_secs: Option<f64>,
    /// From enabling the receiver until its `count(*)` reached `rows`.
    pub catch_up_secs: f64,
    /// `rows / catch_up_secs`.
    pub rows_per_sec: f64,
    /// PostgreSQL only: WAL the receiving server wrote during the catch-up, bytes.
    pub receiver_wal_bytes: Option<u64>,
}

impl CatchUp {
    /// The figures from the measured durations.
    pub fn new(
        rows: u64,
        insert: Duration,
        publish: Option<(Duration, Duration)>,
        catch_up: Duration,
    ) -> CatchUp {
        let secs = catch_up.as_secs_f64().max(1e-9);
        CatchUp {
            rows,
            insert_secs: insert.as_secs_f64(),
            publish_secs: publish.map(|(d, _)| d.as_secs_f64()),
            settled_secs: publish.map(|(_, s)| s.as_secs_f64()),
            catch_up_secs: secs,
            rows_per_sec: rows as f64 / secs,
            receiver_wal_bytes: None,
        }
    }

    /// With the WAL the receiver wrote between the LSNs `from` and `to`.
    pub fn with_receiver_wal(mut self, from: i64, to: i64) -> CatchUp {
        self.receiver_wal_bytes = u64::try_from(to - from).ok();
        self
    }

    /// The JSON of this round.
    fn json(&self) -> Value {
        json!({
            "rows": self.rows,
            "insert_secs": self.insert_secs,
            "publish_secs": self.publish_secs,
            "settled_secs": self.settled_secs,
            "catch_up_secs": self.catch_up_secs,
            "rows_per_sec": self.rows_per_sec,
            "receiver_wal_bytes": self.receiver_wal_bytes,
        })
    }

    /// MiB of receiver WAL per 100k rows, if measured.
    pub fn wal_mib_per_100k(&self) -> Option<f64> {
        self.receiver_wal_bytes
            .map(|b| b as f64 / (1024.0 * 1024.0) * 100_000.0 / self.rows.max(1) as f64)
    }
}

/// CPU and memory of the processes that replicate, measured after the catch-up.
#[derive(Clone, Debug)]
pub struct Resources {
    /// Rows the figures cover.
    pub rows: u64,
    /// (role, figures) per process.
    pub processes: Vec<(String, ProcStats)>,
}

impl Resources {
    /// The figures of several rounds covering `rows` rows in all: per role, CPU summed and
    /// the largest peak.
    pub fn merged(rows: u64, rounds: Vec<Vec<(String, ProcStats)>>) -> Resources {
        let mut processes: Vec<(String, ProcStats)> = Vec::new();
        for (role, stats) in rounds.into_iter().flatten() {
            match processes.iter_mut().find(|(r, _)| *r == role) {
                Some((_, total)) => {
                    total.cpu_secs += stats.cpu_secs;
                    total.peak_rss_mib = total.peak_rss_mib.max(stats.peak_rss_mib);
                }
                None => processes.push((role, stats)),
            }
        }
        Resources { rows, processes }
    }

    /// CPU seconds of all processes per 100k rows.
    pub fn cpu_per_100k(&self) -> f64 {
        let cpu: f64 = self.processes.iter().map(|(_, p)| p.cpu_secs).sum();
        cpu * 100_000.0 / self.rows.max(1) as f64
    }

    /// Largest peak resident set of one process, MiB (processes measured for CPU only, see
    /// [`ProcStats::cpu_only`], do not count).
    pub fn max_peak_mib(&self) -> f64 {
        self.processes
            .iter()
            .map(|(_, p)| p.peak_rss_mib)
            .fold(0.0, f64::max)
    }
}

/// The median of `values`; with an even count, the lower of the middle two (the verdict
/// then leans against meshsync, never for it). `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len().saturating_sub(1) / 2).copied()
}

/// One system's results.
#[derive(Clone, Debug)]
pub struct SystemResult {
    /// `native` or `meshsync`.
    pub name: String,
    /// Catch-up figures, one per round, in order.
    pub rounds: Vec<CatchUp>,
    /// Index in `rounds` of the round with the median rows/s (see [`median`]).
    median_round: usize,
    /// Steady figures.
    pub steady: workload::Steady,
    /// Process figures over all rounds.
    pub resources: Resources,
}

impl SystemResult {
    /// The results of `name`; fails without a round.
    pub fn new(
        name: &str,
        rounds: Vec<CatchUp>,
        steady: workload::Steady,
        resources: Resources,
    ) -> Result<SystemResult> {
        let rates: Vec<f64> = rounds.iter().map(|c| c.rows_per_sec).collect();
        let median_round = median(&rates)
            .and_then(|m| rates.iter().position(|r| *r == m))
            .with_context(|| format!("{name}: no catch-up round"))?;
        Ok(SystemResult {
            name: name.to_owned(),
            rounds,
            median_round,
            steady,
            resources,
        })
    }

    /// The round with the median rows/s, shown as the system's catch-up.
    pub fn catch_up(&self) -> &CatchUp {
        &self.rounds[self.median_round]
    }

    /// Steady lag quantile `q` in ms.
    pub fn lag(&self, q: f64) -> f64 {
        let lags: Vec<f64> = self.steady.samples.iter().map(|s| s.lag_ms).collect();
        workload::quantile(&lags, q)
    }

    /// The JSON of this system.
    fn json(&self) -> Value {
        let s = &self.steady;
        json!({
            "catch_up": self.catch_up().json(),
            "catch_up_rounds": self.rounds.iter().map(CatchUp::json).collect::<Vec<_>>(),
            "steady": {
                "rows_written": s.rows,
                "rows_seen": s.seen,
                "achieved_rate": s.achieved_rate,
                "lag_ms": { "p50": self.lag(0.5), "p99": self.lag(0.99), "max": self.lag(1.0) },
            },
            "resources": {
                "rows": self.resources.rows,
                "cpu_secs_per_100k_rows": self.resources.cpu_per_100k(),
                "processes": self.resources.processes.iter().map(|(role, p)| json!({
                    "role": role,
                    "cpu_secs": p.cpu_secs,
                    "cpu_secs_per_100k_rows": p.cpu_secs * 100_000.0 / self.resources.rows.max(1) as f64,
                    "peak_rss_mib": (!p.peak_rss_mib.is_nan()).then_some(p.peak_rss_mib),
                })).collect::<Vec<_>>(),
            },
        })
    }
}

/// Everything one `meshsync bench <engine>` run measured.
pub struct Report {
    /// `postgres` or `mysql`.
    pub engine: &'static str,
    /// Lines printed under the table (how a figure was measured, where that differs).
    pub notes: Vec<String>,
    /// Parameters.
    pub params: Params,
    /// nats-server version.
    pub nats_version: String,
    /// The machine measured.
    pub machine: Machine,
    /// The engine's own replication.
    pub native: SystemResult,
    /// meshsync.
    pub meshsync: SystemResult,
}

impl Report {
    /// Per round, meshsync's catch-up rows/s over native's in the same round.
    pub fn catch_up_ratios(&self) -> Vec<f64> {
        self.native
            .rounds
            .iter()
            .zip(&self.meshsync.rounds)
            .map(|(n, m)| m.rows_per_sec / n.rows_per_sec.max(1e-9))
            .collect()
    }

    /// The verdict's ratio: the median of [`Report::catch_up_ratios`].
    pub fn catch_up_ratio(&self) -> f64 {
        median(&self.catch_up_ratios()).unwrap_or(0.0)
    }

    /// The JSON document of `bench-<engine>.json`.
    pub fn json(&self) -> Result<Value> {
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)?;
        let p = &self.params;
        Ok(json!({
            "engine": self.engine,
            "notes": self.notes,
            "timestamp": now,
            "nats_server_version": self.nats_version,
            "cpus": self.machine.cpus,
            "cpu_model": self.machine.cpu_model,
            "params": {
                "rows": p.rows, "rounds": p.rounds, "txn_size": p.txn_size, "rate": p.rate,
                "seconds": p.seconds, "quick": p.quick, "pg_settings": p.pg_settings,
                "poll_every_ms": workload::POLL_EVERY.as_secs_f64() * 1000.0,
                "write_every_ms": workload::WRITE_EVERY.as_secs_f64() * 1000.0,
            },
            "native": self.native.json(),
            "meshsync": self.meshsync.json(),
            "comparison": {
                "catch_up_ratio_meshsync_over_native": self.catch_up_ratio(),
                "catch_up_ratios_per_round": self.catch_up_ratios(),
                "targets": {
                    "catch_up_ratio_min": TARGET_CATCH_UP_RATIO,
                    "steady_p99_ms_max": TARGET_P99_MS,
                    "agent_peak_mib_max": TARGET_AGENT_MIB,
                },
            },
        }))
    }

    /// The table printed to stdout.
    pub fn table(&self) -> String {
        let (n, m) = (&self.native, &self.meshsync);
        let (nc, mc) = (n.catch_up(), m.catch_up());
        let p = &self.params;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "\nmeshsync bench {}: {} rounds of {} rows in txns of {}, steady {} rows/s for {} s, nats-server {}",
            self.engine, p.rounds, p.rows, p.txn_size, p.rate, p.seconds, self.nats_version
        );
        let _ = writeln!(
            t,
            "machine: {} x {} (compare figures between runs on the same CPU only)",
            self.machine.cpus, self.machine.cpu_model
        );
        if !p.pg_settings.is_empty() {
            let _ = writeln!(t, "PostgreSQL settings: {}", p.pg_settings.join(" "));
        }
        let _ = writeln!(
            t,
            "catch-up figures: the round with the median rows/s; ratio: the median of the rounds' ratios\n"
        );
        let _ = writeln!(t, "{:<40} {:>12} {:>12}   target", "", "native", "meshsync");
        let row = |t: &mut String, what: &str, a: String, b: String, target: &str| {
            let _ = writeln!(t, "{what:<40} {a:>12} {b:>12}   {target}");
        };
        row(
            &mut t,
            "source insert time (s)",
            f2(nc.insert_secs),
            f2(mc.insert_secs),
            "",
        );
        row(
            &mut t,
            "published to JetStream after (s)",
            "-".into(),
            mc.publish_secs.map(f2).unwrap_or_else(|| "-".into()),
            "",
        );
        row(
            &mut t,
            "own changes applied by A after (s)",
            "-".into(),
            mc.settled_secs.map(f2).unwrap_or_else(|| "-".into()),
            "",
        );
        row(
            &mut t,
            "catch-up time (s)",
            f2(nc.catch_up_secs),
            f2(mc.catch_up_secs),
            "",
        );
        row(
            &mut t,
            "catch-up rows/s",
            f0(nc.rows_per_sec),
            f0(mc.rows_per_sec),
            "",
        );
        let ratio = self.catch_up_ratio();
        row(
            &mut t,
            "catch-up ratio meshsync/native (median)",
            "".into(),
            f3(ratio),
            &format!(
                ">= {TARGET_CATCH_UP_RATIO} {}",
                verdict(ratio >= TARGET_CATCH_UP_RATIO)
            ),
        );
        if nc.receiver_wal_bytes.is_some() || mc.receiver_wal_bytes.is_some() {
            let wal = |c: &CatchUp| c.wal_mib_per_100k().map(f1).unwrap_or_else(|| "-".into());
            row(
                &mut t,
                "receiver WAL per 100k rows (MiB)",
                wal(nc),
                wal(mc),
                "",
            );
        }
        row(
            &mut t,
            "steady rows written / seen",
            format!("{}/{}", n.steady.rows, n.steady.seen),
            format!("{}/{}", m.steady.rows, m.steady.seen),
            "",
        );
        row(
            &mut t,
            "steady achieved rows/s",
            f0(n.steady.achieved_rate),
            f0(m.steady.achieved_rate),
            "",
        );
        row(
            &mut t,
            "steady lag p50 (ms)",
            f2(n.lag(0.5)),
            f2(m.lag(0.5)),
            "",
        );
        let p99 = m.lag(0.99);
        row(
            &mut t,
            "steady lag p99 (ms)",
            f2(n.lag(0.99)),
            f2(p99),
            &format!("< {TARGET_P99_MS} {}", verdict(p99 < TARGET_P99_MS)),
        );
        row(
            &mut t,
            "steady lag max (ms)",
            f2(n.lag(1.0)),
            f2(m.lag(1.0)),
            "",
        );
        row(
            &mut t,
            "CPU s per 100k rows (catch-ups)",
            f2(n.resources.cpu_per_100k()),
            f2(m.resources.cpu_per_100k()),
            "",
        );
        let mib = m.resources.max_peak_mib();
        row(
            &mut t,
            "peak RSS of one process (MiB)",
            f1(n.resources.max_peak_mib()),
            f1(mib),
            &format!("< {TARGET_AGENT_MIB} {}", verdict(mib < TARGET_AGENT_MIB)),
        );
        let _ = writeln!(
            t,
            "\ncatch-up rounds (rows/s), in the order run:\n  {:<7} {:>12} {:>12} {:>8}",
            "round", "native", "meshsync", "ratio"
        );
        for (i, ((nr, mr), ratio)) in n
            .rounds
            .iter()
            .zip(&m.rounds)
            .zip(self.catch_up_ratios())
            .enumerate()
        {
            let _ = writeln!(
                t,
                "  {:<7} {:>12} {:>12} {:>8}",
                i + 1,
                f0(nr.rows_per_sec),
                f0(mr.rows_per_sec),
                f3(ratio)
            );
        }
        let _ = writeln!(t, "\nprocesses measured over all rounds (CPU s, peak MiB):");
        for r in [n, m] {
            for (role, s) in &r.resources.processes {
                let mib = if s.peak_rss_mib.is_nan() {
                    "-".to_owned()
                } else {
                    f1(s.peak_rss_mib)
                };
                let _ = writeln!(
                    t,
                    "  {:<9} {role:<20} {:>8.2} s {mib:>8} MiB",
                    r.name, s.cpu_secs
                );
            }
        }
        for note in &self.notes {
            let _ = writeln!(t, "note: {note}");
        }
        t
    }
}

/// `met` or `MISSED`.
fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// Three decimals: a ratio of 0.498 is not "0.50".
fn f3(v: f64) -> String {
    format!("{v:.3}")
}

/// Two decimals.
fn f2(v: f64) -> String {
    format!("{v:.2}")
}

/// One decimal.
fn f1(v: f64) -> String {
    format!("{v:.1}")
}

/// No decimals.
fn f0(v: f64) -> String {
    format!("{v:.0}")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{CatchUp, Resources, median};
    use crate::bench::mesh::ProcStats;

    #[test]
    fn the_median_of_an_even_count_is_the_lower_middle() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[0.7]), Some(0.7));
        assert_eq!(median(&[0.9, 0.4, 0.6]), Some(0.6));
        // Never the higher middle, which would flatter meshsync's ratio.
        assert_eq!(median(&[0.9, 0.4, 0.6, 0.5]), Some(0.5));
    }

    #[test]
    fn rounds_merge_by_role_summing_cpu_and_keeping_the_peak() {
        let p = |cpu_secs, peak_rss_mib| ProcStats {
            cpu_secs,
            peak_rss_mib,
        };
        let r = Resources::merged(
            400_000,
            vec![
                vec![("a".into(), p(1.0, 10.0)), ("b".into(), p(0.5, 70.0))],
                vec![("a".into(), p(2.0, 12.0)), ("b".into(), p(0.25, 60.0))],
            ],
        );
        assert_eq!(r.processes.len(), 2);
        assert_eq!(r.processes[0].0, "a");
        assert_eq!(
            (r.processes[0].1.cpu_secs, r.processes[0].1.peak_rss_mib),
            (3.0, 12.0)
        );
        assert_eq!(
            (r.processes[1].1.cpu_secs, r.processes[1].1.peak_rss_mib),
            (0.75, 70.0)
        );
        assert_eq!(r.cpu_per_100k(), 3.75 / 4.0);
        assert_eq!(r.max_peak_mib(), 70.0);
        // A server process measured for CPU only counts in CPU, not in the peak.
        let r = Resources::merged(
            100_000,
            vec![vec![
                ("a".into(), p(1.0, 10.0)),
                ("db".into(), p(2.0, 900.0).cpu_only()),
            ]],
        );
        assert_eq!(r.cpu_per_100k(), 3.0);
        assert_eq!(r.max_peak_mib(), 10.0);
    }

    #[test]
    fn receiver_wal_is_reported_per_100k_rows() {
        let c = CatchUp::new(
            200_000,
            Duration::from_secs(10),
            None,
            Duration::from_secs(1),
        );
        assert_eq!(c.wal_mib_per_100k(), None);
        let c = c.with_receiver_wal(1 << 20, 17 << 20);
        assert_eq!(c.receiver_wal_bytes, Some(16 << 20));
        assert_eq!(c.wal_mib_per_100k(), Some(8.0));
        // An LSN that went backwards (a different server) is no figure.
        let c = c.with_receiver_wal(5, 4);
        assert_eq!(c.wal_mib_per_100k(), None);
    }
}
