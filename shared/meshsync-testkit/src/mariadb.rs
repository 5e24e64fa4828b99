//! MariaDB (Debian's 10.11) with a ROW-format binlog, as a child process.

use std::{
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use sqlx::{Connection, MySqlConnection};
use tempfile::TempDir;

use crate::{
    binaries,
    process::Server,
    wait::{free_port, wait_until},
};

static SERVER_IDS: AtomicU32 = AtomicU32::new(100);

/// One MariaDB server; `root` without password on 127.0.0.1.
pub struct MariaDb {
    server: Server,
    port: u16,
    _dir: TempDir,
}

impl MariaDb {
    /// Installs a data directory and starts with the binlog settings meshsync needs.
    pub async fn start() -> Result<MariaDb> {
        Self::start_with(&[]).await
    }

    /// As [`MariaDb::start`], with extra server arguments (later ones win). Retried on
    /// failure: the free port picked may be taken by a parallel test before the server binds.
    pub async fn start_with(extra: &[&str]) -> Result<MariaDb> {
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start(extra).await {
                Ok(db) => return Ok(db),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("mariadb did not start")))
    }

    async fn try_start(extra: &[&str]) -> Result<MariaDb> {
        let dir = tempfile::Builder::new()
            .prefix("meshsync-mariadb-")
            .tempdir()?;
        let data: PathBuf = dir.path().join("data");
        let out = Command::new(binaries::mariadb("mariadb-install-db")?)
            .arg(format!("--datadir={}", data.display()))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--user=root",
            ])
            .output()
            .context("run mariadb-install-db")?;
        if !out.status.success() {
            bail!(
                "mariadb-install-db failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let port = free_port()?;
        let id = SERVER_IDS.fetch_add(1, Ordering::Relaxed) + std::process::id() % 1000 * 1000;
        let bin = binaries::mariadb("mariadbd")?;
        let base = dir.path().to_owned();
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let launcher = Box::new(move || {
            let mut c = Command::new(&bin);
            c.arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--port={port}"))
                .arg("--bind-address=127.0.0.1")
                .arg(format!("--socket={}", base.join("sock").display()))
                .arg(format!("--pid-file={}", base.join("pid").display()))
                .arg(format!("--log-bin={}", base.join("binlog").display()))
                .arg(format!("--server-id={id}"))
                .args([
                    "--binlog-format=ROW",
                    "--binlog-row-image=FULL",
                    "--binlog-row-metadata=FULL",
                ])
                .args([
                    "--innodb-buffer-pool-size=64M",
                    "--user=root",
                    "--skip-name-resolve",
                ])
                .args(&extra);
            c
        });
        let server = Server::spawn("mariadbd", &dir.path().join("mariadb.log"), launcher)?;
        let mut db = MariaDb {
            server,
            port,
            _dir: dir,
        };
        db.wait_ready().await?;
        Ok(db)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let url = self.url("mysql");
        let r = wait_until(
            "mariadb to answer SELECT 1",
            Duration::from_secs(60),
            || {
                let url = url.clone();
                async move {
                    let mut c = MySqlConnection::connect(&url).await.ok()?;
                    sqlx::query("SELECT 1")
                        .execute(&mut c)
                        .await
                        .ok()
                        .map(|_| ())
                }
            },
        )
        .await;
        if r.is_err() {
            self.server.check_alive()?;
            bail!("mariadb did not come up; log:\n{}", self.server.log_tail());
        }
        Ok(())
    }

    /// `mysql://root@127.0.0.1:PORT/db`.
    pub fn url(&self, db: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a database.
    pub async fn create_database(&self, name: &str) -> Result<()> {
        let mut c = MySqlConnection::connect(&self.url("mysql")).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE `{name}`")))
            .execute(&mut c)
            .await?;
        Ok(())
    }

    /// A new connection to `db`.
    pub async fn connect(&self, db: &str) -> Result<MySqlConnection> {
        Ok(MySqlConnection::connect(&self.url(db)).await?)
    }

    /// Graceful shutdown.
    pub fn stop(&mut self) -> Result<()> {
        self.server.stop()
    }

    /// SIGKILL: a crash; InnoDB recovers on restart.
    pub fn kill9(&mut self) -> Result<()> {
        self.server.kill9()
    }

    /// Starts again on the same port and data.
    pub async fn restart(&mut self) -> Result<()> {
        self.server.start()?;
        self.wait_ready().await
    }
}
