//! The MariaDB baseline: MariaDB's own replication (binlog dump on the primary, IO and SQL
//! threads on the replica, GTID positions) between two servers on this machine.

use std::{
    ops::RangeInclusive,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use meshsync_testkit::MariaDb;
use sqlx::{MySqlConnection, Row};
use tracing::info;

use super::{
    Params,
    mesh::ProcStats,
    mysql_workload::{self as workload, DB},
    report::CatchUp,
    rounds::{Replicator, Round},
    workload::Steady,
};

/// Role of the measured process: the replica's IO and SQL threads are threads of its
/// `mariadbd`, so the whole server process is measured.
pub const REPLICA_ROLE: &str = "replica mariadbd";

/// MariaDB's own replication between two servers, the replica stopped between rounds.
pub struct NativeMariaDb {
    // The primary lives as long as the connection to it.
    _source: MariaDb,
    target: MariaDb,
    src: MySqlConnection,
    dst: MySqlConnection,
}

impl NativeMariaDb {
    /// Starts both servers and points the replica at the primary; the replica ran once and
    /// is stopped.
    pub async fn start() -> Result<NativeMariaDb> {
        let source = MariaDb::start().await.context("start primary MariaDB")?;
        let target = MariaDb::start().await.context("start replica MariaDB")?;
        for db in [&source, &target] {
            db.create_database(DB).await?;
            let mut c = db.connect(DB).await?;
            sqlx::raw_sql(workload::TABLE_DDL).execute(&mut c).await?;
        }
        let mut src = source.connect(DB).await?;
        let mut dst = target.connect(DB).await?;
        // The replica starts after what the primary has (its own CREATE DATABASE / TABLE,
        // which the replica already ran itself), not from the start of the primary's binlog.
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
        let mut native = NativeMariaDb {
            _source: source,
            target,
            src,
            dst,
        };
        native.set_running(true).await?;
        native.set_running(false).await?;
        Ok(native)
    }

    /// Starts or stops the replica's threads and waits until they run or have stopped.
    async fn set_running(&mut self, on: bool) -> Result<()> {
        let verb = if on { "START SLAVE" } else { "STOP SLAVE" };
        sqlx::raw_sql(verb).execute(&mut self.dst).await?;
        wait_running(&mut self.dst, on).await
    }
}

impl Replicator for NativeMariaDb {
    fn name(&self) -> &'static str {
        "native"
    }

    async fn catch_up(&mut self, params: &Params, ids: RangeInclusive<i64>) -> Result<Round> {
        let last = *ids.end();
        let insert = workload::insert_catch_up(&mut self.src, ids, params.txn_size).await?;
        info!(
            rows = params.rows,
            secs = insert.as_secs_f64(),
            "native: rows written, starting the replica"
        );
        let pid = self.target.pid().context("replica MariaDB not running")?;
        let before = ProcStats::read(pid)?;
        let started = Instant::now();
        sqlx::raw_sql("START SLAVE").execute(&mut self.dst).await?;
        workload::wait_count(&mut self.dst, last as u64, Duration::from_secs(3600)).await?;
        let elapsed = started.elapsed();
        let catch_up = CatchUp::new(params.rows, insert, None, elapsed);
        // CPU over the catch-up only (the server's start-up and set-up are not
        // replication); the peak resident set is the whole server's, buffer pool included.
        let replica = ProcStats::read(pid)?.since(before);
        self.set_running(false).await?;
        Ok(Round {
            catch_up,
            processes: vec![(REPLICA_ROLE.to_owned(), replica)],
        })
    }

    async fn steady(&mut self, params: &Params) -> Result<Steady> {
        self.set_running(true).await?;
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
