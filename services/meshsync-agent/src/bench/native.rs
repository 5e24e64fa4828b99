//! The baseline: PostgreSQL's own logical replication (publication -> subscription) between
//! two clusters on this machine.

use std::{
    ops::RangeInclusive,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use meshsync_testkit::Postgres;
use sqlx::PgConnection;
use tracing::info;

use super::{
    Params,
    report::CatchUp,
    rounds::{Replicator, Round},
    workload::{self, Steady},
};
use crate::bench::mesh::ProcStats;

/// Database used on both clusters.
const DB: &str = "bench";

/// Native logical replication between two clusters, the subscription off between rounds.
pub struct Native {
    // The servers live as long as the connections to them.
    _source: Postgres,
    _target: Postgres,
    src: PgConnection,
    dst: PgConnection,
}

impl Native {
    /// Starts both clusters, publication and subscription; the subscription streamed once,
    /// so its slot exists, and is off.
    pub async fn start(params: &Params) -> Result<Native> {
        let source = Postgres::start_with(&params.pg_settings)
            .await
            .context("start source PostgreSQL")?;
        let target = Postgres::start_with(&params.pg_settings)
            .await
            .context("start target PostgreSQL")?;
        for pg in [&source, &target] {
            pg.create_database(DB).await?;
            let mut c = pg.connect(DB).await?;
            sqlx::raw_sql(workload::TABLE_DDL).execute(&mut c).await?;
        }
        let mut src = source.connect(DB).await?;
        let mut dst = target.connect(DB).await?;
        sqlx::raw_sql("CREATE PUBLICATION bench_pub FOR TABLE public.items")
            .execute(&mut src)
            .await?;
        // The launcher starts a subscription's worker at most once per
        // wal_retrieve_retry_interval (5 s by default): without this, ENABLE would wait for
        // that timer, which is start-up latency, not replication cost.
        sqlx::raw_sql("ALTER SYSTEM SET wal_retrieve_retry_interval = '100ms'")
            .execute(&mut dst)
            .await?;
        sqlx::raw_sql("SELECT pg_reload_conf()")
            .execute(&mut dst)
            .await?;
        let create = format!(
            "CREATE SUBSCRIPTION bench_sub CONNECTION 'host=127.0.0.1 port={} user=postgres dbname={DB}' \
             PUBLICATION bench_pub WITH (copy_data = false)",
            source.port()
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(create))
            .execute(&mut dst)
            .await
            .context("create subscription")?;
        wait_streaming(&mut src).await?;
        let mut native = Native {
            _source: source,
            _target: target,
            src,
            dst,
        };
        native.set_enabled(false).await?;
        Ok(native)
    }

    /// Turns the subscription on (and waits until it streams) or off (and waits until its
    /// walsender is gone).
    async fn set_enabled(&mut self, on: bool) -> Result<()> {
        let verb = if on { "ENABLE" } else { "DISABLE" };
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER SUBSCRIPTION bench_sub {verb}"
        )))
        .execute(&mut self.dst)
        .await?;
        if on {
            wait_streaming(&mut self.src).await
        } else {
            wait_slot_inactive(&mut self.src).await
        }
    }
}

impl Replicator for Native {
    fn name(&self) -> &'static str {
        "native"
    }

    async fn catch_up(&mut self, params: &Params, ids: RangeInclusive<i64>) -> Result<Round> {
        let (src, dst) = (&mut self.src, &mut self.dst);
        let last = *ids.end();
        let insert = workload::insert_catch_up(src, ids, params.txn_size).await?;
        info!(
            rows = params.rows,
            secs = insert.as_secs_f64(),
            "native: rows written, enabling the subscription"
        );
        let wal_from = workload::current_lsn(dst).await?;
        let started = Instant::now();
        sqlx::raw_sql("ALTER SUBSCRIPTION bench_sub ENABLE")
            .execute(&mut *dst)
            .await?;
        workload::wait_count(dst, last as u64, Duration::from_secs(3600)).await?;
        let elapsed = started.elapsed();
        let wal_to = workload::current_lsn(dst).await?;
        let catch_up =
            CatchUp::new(params.rows, insert, None, elapsed).with_receiver_wal(wal_from, wal_to);

        // Both processes start with ENABLE, so their figures cover this round alone.
        let mut processes = Vec::new();
        let walsenders: Vec<(i32,)> = sqlx::query_as("SELECT pid FROM pg_stat_replication")
            .fetch_all(&mut *src)
            .await?;
        let workers: Vec<(i32,)> =
            sqlx::query_as("SELECT pid FROM pg_stat_subscription WHERE pid IS NOT NULL")
                .fetch_all(&mut *dst)
                .await?;
        for (role, pids) in [("walsender", walsenders), ("apply worker", workers)] {
            for (pid,) in pids {
                if let Ok(stats) = ProcStats::read(pid as u32) {
                    processes.push((role.to_owned(), stats));
                }
            }
        }
        self.set_enabled(false).await?;
        Ok(Round {
            catch_up,
            processes,
        })
    }

    async fn steady(&mut self, params: &Params) -> Result<Steady> {
        self.set_enabled(true).await?;
        workload::steady(
            &mut self.src,
            &mut self.dst,
            params.steady_base(),
            params.rate,
            params.seconds,
        )
        .await
    }
}

async fn wait_streaming(src: &mut PgConnection) -> Result<()> {
    let started = Instant::now();
    loop {
        let (n,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
                .fetch_one(&mut *src)
                .await?;
        if n > 0 {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            anyhow::bail!("the subscription did not start streaming within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until no walsender holds the subscription's slot.
async fn wait_slot_inactive(src: &mut PgConnection) -> Result<()> {
    let started = Instant::now();
    loop {
        let (active,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM pg_replication_slots WHERE active")
                .fetch_one(&mut *src)
                .await?;
        if active == 0 {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            anyhow::bail!("the disabled subscription's slot stayed active for 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
