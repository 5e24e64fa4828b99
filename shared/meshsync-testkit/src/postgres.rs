//! PostgreSQL (Debian's, 15 or later) with `wal_level = logical`, as a child process.

use std::{os::unix::process::CommandExt, path::PathBuf, process::Command, time::Duration};

use anyhow::{Context, Result, bail};
use sqlx::{Connection, PgConnection};
use tempfile::TempDir;

use crate::{
    binaries,
    process::Server,
    wait::{free_port, wait_until},
};

/// One PostgreSQL server; superuser `postgres`, trust authentication on 127.0.0.1.
pub struct Postgres {
    server: Server,
    port: u16,
    _dir: TempDir,
}

/// PostgreSQL refuses to run as root: run it as the `postgres` system user then.
fn run_as() -> Option<(u32, u32)> {
    let root = Command::new("id").arg("-u").output().ok()?.stdout == b"0\n";
    if !root {
        return None;
    }
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").arg(flag).arg("postgres").output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

impl Postgres {
    /// initdb + start with logical WAL on a free port.
    pub async fn start() -> Result<Postgres> {
        let dir = tempfile::Builder::new().prefix("meshsync-pg-").tempdir()?;
        let bin = binaries::pg_bin()?;
        let user = run_as();
        let data: PathBuf = dir.path().join("data");
        if let Some((uid, gid)) = user {
            std::process::Command::new("chown")
                .arg("-R")
                .arg(format!("{uid}:{gid}"))
                .arg(dir.path())
                .status()?;
        }
        let mut init = Command::new(bin.join("initdb"));
        init.args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "-D",
        ])
        .arg(&data);
        if let Some((uid, gid)) = user {
            init.uid(uid).gid(gid);
        }
        let out = init.output().context("run initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let port = free_port()?;
        let sock = dir.path().to_owned();
        let launcher = Box::new(move || {
            let mut c = Command::new(bin.join("postgres"));
            c.arg("-D")
                .arg(&data)
                .arg("-p")
                .arg(port.to_string())
                .arg("-k")
                .arg(&sock);
            for setting in [
                "listen_addresses=127.0.0.1",
                "wal_level=logical",
                "max_replication_slots=20",
                "max_wal_senders=20",
                "max_connections=200",
                "fsync=on",
                "shared_buffers=64MB",
                "DateStyle=ISO, MDY",
                "TimeZone=UTC",
            ] {
                c.arg("-c").arg(setting);
            }
            if let Some((uid, gid)) = user {
                c.uid(uid).gid(gid);
            }
            c
        });
        let server = Server::spawn("postgres", &dir.path().join("postgres.log"), launcher)?;
        let mut pg = Postgres {
            server,
            port,
            _dir: dir,
        };
        pg.wait_ready().await?;
        Ok(pg)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let url = self.url("postgres");
        let r = wait_until(
            "postgres to answer SELECT 1",
            Duration::from_secs(60),
            || {
                let url = url.clone();
                async move {
                    let mut c = PgConnection::connect(&url).await.ok()?;
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
            bail!("postgres did not come up; log:\n{}", self.server.log_tail());
        }
        Ok(())
    }

    /// `postgres://postgres@127.0.0.1:PORT/db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a database.
    pub async fn create_database(&self, name: &str) -> Result<()> {
        let mut c = PgConnection::connect(&self.url("postgres")).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut c)
            .await?;
        Ok(())
    }

    /// A new connection to `db`.
    pub async fn connect(&self, db: &str) -> Result<PgConnection> {
        Ok(PgConnection::connect(&self.url(db)).await?)
    }

    /// Graceful (smart) shutdown.
    pub fn stop(&mut self) -> Result<()> {
        self.server.stop()
    }

    /// SIGKILL of the postmaster: a crash; recovery runs on restart.
    pub fn kill9(&mut self) -> Result<()> {
        self.server.kill9()?;
        // Orphaned backends die when they notice the postmaster is gone; wait for the port.
        std::thread::sleep(Duration::from_millis(200));
        Ok(())
    }

    /// Starts again on the same port and data.
    pub async fn restart(&mut self) -> Result<()> {
        // After a kill -9, old backends may hold shared memory for a moment; retry the start.
        for _ in 0..50 {
            self.server.start()?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            if self.server.exited().is_none() {
                break;
            }
            self.server.kill9()?;
        }
        self.wait_ready().await
    }
}
