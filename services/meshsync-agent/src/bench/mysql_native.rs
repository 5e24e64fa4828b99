//! The MariaDB baseline: MariaDB's own replication (binlog dump on the primary, IO and SQL
//! threads on the replica, GTID positions) between two servers on this machine.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use meshsync_testkit::MariaDb;
use sqlx::{MySqlConnection, Row};
use tracing::info;

use super::{
    Params,
    mesh::ProcStats,
    mysql_workload::{self as workload, DB},
    report::{CatchUp, Resources, SystemResult},
};

/// Role of the measured process: the replica's IO and SQL threads are threads of its
/// `mariadbd`, so the whole server process is measured.
pub const REPLICA_ROLE: &str = "replica mariadbd";

/// Runs both workloads with native MariaDB replication.
pub async fn run(params: &Params) -> Result<SystemResult> {
    let source = MariaDb::start().await.context("start primary MariaDB")?;
    let target = MariaDb::start().await.context("start replica MariaDB")?;
    for db in [&source, &target] {
        db.create_database(DB).await?;
        let mut c = db.connect(DB).await?;
        sqlx::raw_sql(workload::TABLE_DDL).execute(&mut c).await?;
    }
    let mut src = source.connect(DB).await?;
    let mut dst = target.connect(DB).await?;
    // The replica starts after what the primary has (its own CREATE DATABASE / TABLE, which
    // the replica already ran itself), not from the start of the primary's binlog.
    let start_pos = workload::gtid_binlog_pos(&mut src).await?;
    sqlx::query("SET GLOBAL gtid_slave_pos = ?")
        .bind(&start_pos)
        .execute(&mut dst)
        .await
        .context("set gtid_slave_pos")?;
    let change = format!(
        "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='root', \
         MASTER_USE_GTID=slave_pos",
        source.port()
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(change))
        .execute(&mut dst)
        .await
        .context("change master")?;
    sqlx::raw_sql("START SLAVE").execute(&mut dst).await?;
    wait_running(&mut dst, true).await?;

    // Catch-up: the replica is stopped while the rows are written.
    sqlx::raw_sql("STOP SLAVE").execute(&mut dst).await?;
    wait_running(&mut dst, false).await?;
    let insert = workload::insert_catch_up(&mut src, params.rows, params.txn_size).await?;
    info!(
        rows = params.rows,
        secs = insert.as_secs_f64(),
        "native: rows written, starting the replica"
    );
    let pid = target.pid().context("replica MariaDB not running")?;
    let before = ProcStats::read(pid)?;
    let started = Instant::now();
    sqlx::raw_sql("START SLAVE").execute(&mut dst).await?;
    workload::wait_count(&mut dst, params.rows, Duration::from_secs(3600)).await?;
    let elapsed = started.elapsed();
    let catch_up = CatchUp::new(params.rows, insert, None, elapsed);
    info!(rows_per_sec = catch_up.rows_per_sec, "native: caught up");
    // CPU over the catch-up only (the server's start-up and set-up are not replication);
    // the peak resident set is the whole server's, buffer pool included.
    let after = ProcStats::read(pid)?;
    let replica = ProcStats {
        cpu_secs: after.cpu_secs - before.cpu_secs,
        peak_rss_mib: after.peak_rss_mib,
    };
    let resources = Resources::new(params.rows, vec![(REPLICA_ROLE.to_owned(), replica)]);

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

/// Waits until the replica's IO and SQL threads both run (`running`) or neither does.
async fn wait_running(dst: &mut MySqlConnection, running: bool) -> Result<()> {
    let started = Instant::now();
    loop {
        let status = sqlx::raw_sql("SHOW SLAVE STATUS")
            .fetch_optional(&mut *dst)
            .await
            .context("show slave status")?;
        let (io, sql, error) = match &status {
            Some(row) => (
                row.try_get::<String, _>("Slave_IO_Running")?,
                row.try_get::<String, _>("Slave_SQL_Running")?,
                format!(
                    "{} {}",
                    row.try_get::<String, _>("Last_IO_Error")
                        .unwrap_or_default(),
                    row.try_get::<String, _>("Last_SQL_Error")
                        .unwrap_or_default()
                ),
            ),
            None => (String::new(), String::new(), String::new()),
        };
        let up = io == "Yes" && sql == "Yes";
        let down = io != "Yes" && io != "Connecting" && sql != "Yes";
        if (running && up) || (!running && down) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "replica threads IO={io} SQL={sql} after 60 s (wanted running={running}): {error}"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
