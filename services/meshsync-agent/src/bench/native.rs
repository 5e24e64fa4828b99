//! The baseline: PostgreSQL's own logical replication (publication -> subscription) between
//! two clusters on this machine.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use meshsync_testkit::Postgres;
use sqlx::PgConnection;
use tracing::info;

use super::{
    Params,
    report::{CatchUp, Resources, SystemResult},
    workload,
};
use crate::bench::mesh::ProcStats;

/// Database used on both clusters.
const DB: &str = "bench";

/// Runs both workloads with native logical replication.
pub async fn run(params: &Params) -> Result<SystemResult> {
    let source = Postgres::start().await.context("start source PostgreSQL")?;
    let target = Postgres::start().await.context("start target PostgreSQL")?;
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
    // wal_retrieve_retry_interval (5 s by default): without this, ENABLE would wait for that
    // timer, which is start-up latency, not replication cost.
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

    // Catch-up: the subscription is off while the rows are written.
    sqlx::raw_sql("ALTER SUBSCRIPTION bench_sub DISABLE")
        .execute(&mut dst)
        .await?;
    // The old walsender must let go of the slot, or the re-enabled worker fails to take it
    // and retries only after wal_retrieve_retry_interval (5 s), which is no replication cost.
    wait_slot_inactive(&mut src).await?;
    let insert = workload::insert_catch_up(&mut src, params.rows, params.txn_size).await?;
    info!(
        rows = params.rows,
        secs = insert.as_secs_f64(),
        "native: rows written, enabling the subscription"
    );
    let wal_from = workload::current_lsn(&mut dst).await?;
    let started = Instant::now();
    sqlx::raw_sql("ALTER SUBSCRIPTION bench_sub ENABLE")
        .execute(&mut dst)
        .await?;
    workload::wait_count(&mut dst, params.rows, Duration::from_secs(3600)).await?;
    let elapsed = started.elapsed();
    let wal_to = workload::current_lsn(&mut dst).await?;
    let catch_up =
        CatchUp::new(params.rows, insert, None, elapsed).with_receiver_wal(wal_from, wal_to);
    info!(rows_per_sec = catch_up.rows_per_sec, "native: caught up");

    // The processes that did the work: the source's walsender and the target's apply worker.
    let mut processes = Vec::new();
    let walsenders: Vec<(i32,)> = sqlx::query_as("SELECT pid FROM pg_stat_replication")
        .fetch_all(&mut src)
        .await?;
    let workers: Vec<(i32,)> =
        sqlx::query_as("SELECT pid FROM pg_stat_subscription WHERE pid IS NOT NULL")
            .fetch_all(&mut dst)
            .await?;
    for (role, pids) in [("walsender", walsenders), ("apply worker", workers)] {
        for (pid,) in pids {
            if let Ok(stats) = ProcStats::read(pid as u32) {
                processes.push((role.to_owned(), stats));
            }
        }
    }
    let resources = Resources::new(params.rows, processes);

    info!(
        rate = params.rate,
        seconds = params.seconds,
        "native: steady workload"
    );
    let steady = workload::steady(
        &mut src,
        &mut dst,
        params.steady_base(),
        params.rate,
        params.seconds,
    )
    .await?;
    drop((src, dst));
    Ok(SystemResult {
        name: "native".to_owned(),
        catch_up,
        steady,
        resources,
    })
}

/// Waits until the subscription's walsender streams (its slot exists and is active).
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
