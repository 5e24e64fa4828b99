//! MariaDB with a ROW-format, full-image binlog (what meshsync's capture needs), as a child
//! process.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use sqlx::{Connection, MySqlConnection};
use tempfile::TempDir;

use crate::{
    binaries,
    process::{Server, is_root},
    tls::{CERT_USER, TlsFiles},
    wait::{free_port, retry_on_port_race},
};

/// Crash recovery after a kill -9 is included in this.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Instances started by this process; with the process id it makes each `server-id` unique
/// (replication between two instances needs distinct ids).
static INSTANCES: AtomicU32 = AtomicU32::new(0);

/// One MariaDB server: `root` without password over TCP on 127.0.0.1.
pub struct MariaDb {
    // Declared before `dir`: the process dies before its folder is deleted.
    server: Server,
    port: u16,
    server_id: u32,
    tls: Option<TlsFiles>,
    dir: TempDir,
}

impl MariaDb {
    /// Installs a data directory and starts with the binlog settings meshsync needs
    /// (`ROW`, `FULL` row image, `FULL` row metadata).
    pub async fn start() -> Result<MariaDb> {
        Self::start_with(&[]).await
    }

    /// As [`MariaDb::start`], with extra `mariadbd` arguments after the defaults (the later
    /// setting wins, e.g. `--binlog-format=STATEMENT` for a test of a misconfigured server).
    pub async fn start_with(extra: &[&str]) -> Result<MariaDb> {
        Self::launch(extra, false).await
    }

    /// A server that takes TCP connections only over TLS (`require_secure_transport`), with
    /// certificates from a CA of its own ([`MariaDb::tls_files`]); user [`CERT_USER`] (all
    /// privileges) must present its client certificate.
    pub async fn start_tls() -> Result<MariaDb> {
        let db = Self::launch(&[], true).await?;
        let mut c = db.connect("mysql").await?;
        for sql in [
            format!("CREATE USER {CERT_USER}@'%' REQUIRE SUBJECT '/CN={CERT_USER}'"),
            format!("GRANT ALL ON *.* TO {CERT_USER}@'%' WITH GRANT OPTION"),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut c)
                .await
                .context("create the certificate user")?;
        }
        Ok(db)
    }

    async fn launch(extra: &[&str], tls: bool) -> Result<MariaDb> {
        let root = is_root();
        let dir = tempfile::Builder::new()
            .prefix("meshsync-mariadb-")
            .tempdir()
            .context("create a temporary folder for MariaDB")?;
        let data: PathBuf = dir.path().join("data");
        let mut install = Command::new(binaries::mariadb("mariadb-install-db")?);
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            // root@localhost (and @127.0.0.1) without password instead of unix_socket auth.
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            // The bootstrap server's temporary files in this server's folder (mariadbd takes
            // TMPDIR as its tmpdir): parallel installs sharing /tmp collided.
            .env("TMPDIR", dir.path());
        if root {
            install.arg("--user=root");
        }
        let out = install.output().context("run mariadb-install-db")?;
        if !out.status.success() {
            bail!(
                "mariadb-install-db failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let n = INSTANCES.fetch_add(1, Ordering::Relaxed);
        let server_id = 1 + (std::process::id() % 1_000_000) * 1000 + n % 1000;
        let bin = binaries::mariadb("mariadbd")?;
        let base = dir.path().to_owned();
        let log = base.join("mariadb.log");
        let mut extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let tls = if tls {
            let files = TlsFiles::generate(dir.path())?;
            extra.extend([
                format!("--ssl-cert={}", files.server_cert.display()),
                format!("--ssl-key={}", files.server_key.display()),
                format!("--ssl-ca={}", files.ca.display()),
                "--require-secure-transport=ON".to_owned(),
            ]);
            Some(files)
        } else {
            None
        };
        let mut dir = Some(dir);
        retry_on_port_race(async || {
            let port = free_port()?;
            let (bin, base, data, log, extra) = (
                bin.clone(),
                base.clone(),
                data.clone(),
                log.clone(),
                extra.clone(),
            );
            let log_file = log.clone();
            let launcher = Box::new(move || {
                let mut c = Command::new(&bin);
                c.arg("--no-defaults")
                    .arg(format!("--datadir={}", data.display()))
                    .arg(format!("--port={port}"))
                    .arg("--bind-address=127.0.0.1")
                    .arg(format!("--socket={}", base.join("sock").display()))
                    .arg(format!(
                        "--pid-file={}",
                        base.join("mariadbd.pid").display()
                    ))
                    .arg(format!("--log-bin={}", base.join("binlog").display()))
                    .arg(format!("--server-id={server_id}"))
                    .arg(format!("--log-error={}", log.display()))
                    // Its own folder for temporary tables: parallel servers sharing /tmp
                    // have been seen deleting each other's files.
                    .arg(format!("--tmpdir={}", base.display()))
                    .args([
                        "--binlog-format=ROW",
                        "--binlog-row-image=FULL",
                        "--binlog-row-metadata=FULL",
                        // Small and quick to start; durability settings stay the defaults.
                        "--innodb-buffer-pool-size=64M",
                        "--skip-name-resolve",
                    ]);
                if root {
                    c.arg("--user=root");
                }
                c.args(&extra);
                c
            });
            // The error log and the process output share one file.
            let mut server = Server::new("mariadbd", &log_file, "TERM", launcher);
            server.start()?;
            wait_ready(&mut server, port).await?;
            let dir = dir.take().context("MariaDB folder already used")?;
            Ok(MariaDb {
                server,
                port,
                server_id,
                tls: tls.clone(),
                dir,
            })
        })
        .await
    }

    /// `mysql://root@127.0.0.1:PORT/db`.
    pub fn url(&self, db: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{db}", self.port)
    }

    /// The certificates of a server started by [`MariaDb::start_tls`].
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// On a server started by [`MariaDb::start_tls`], [`CERT_USER`]'s URL to `db`: through
    /// `localhost` (the certificate's name), `VERIFY_IDENTITY` against the server's CA, with
    /// the client certificate. `None` for a server without TLS.
    pub fn verified_url(&self, db: &str) -> Option<String> {
        let f = self.tls.as_ref()?;
        Some(format!(
            "mysql://{CERT_USER}@localhost:{}/{db}?ssl-mode=VERIFY_IDENTITY&ssl-ca={}&ssl-cert={}&ssl-key={}",
            self.port,
            f.ca.display(),
            f.client_cert.display(),
            f.client_key.display()
        ))
    }

    /// The port (the same after every restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// This instance's `server_id` (unique per instance).
    pub fn server_id(&self) -> u32 {
        self.server_id
    }

    /// Creates database `name` (tests keep their data apart in one server).
    pub async fn create_database(&self, name: &str) -> Result<()> {
        let mut c = self.connect("mysql").await?;
        let sql = format!("CREATE DATABASE `{}`", name.replace('`', "``"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .with_context(|| format!("create database {name}"))?;
        Ok(())
    }

    /// A new connection to `db`.
    pub async fn connect(&self, db: &str) -> Result<MySqlConnection> {
        MySqlConnection::connect(&self.url(db))
            .await
            .with_context(|| format!("connect to {}", self.url(db)))
    }

    /// The server's temporary folder (data, binlog, socket, log), deleted on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log file (its error log).
    pub fn log_path(&self) -> &Path {
        self.server.log_path()
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// Graceful shutdown (SIGTERM).
    pub fn stop(&mut self) -> Result<()> {
        self.server.stop()
    }

    /// SIGKILL, a crash: InnoDB and the binlog recover on the next start.
    pub fn kill9(&mut self) -> Result<()> {
        self.server.kill9()
    }

    /// Starts the server again on the same port(s) and data after [`MariaDb::stop`] or
    /// [`MariaDb::kill9`] (stopping it gracefully first if it runs), and waits until it is
    /// ready: clients reconnect to the same address.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.server.start()?;
        wait_ready(&mut self.server, self.port).await
    }
}

/// Ready: `root` connects over TCP and `SELECT 1` answers.
async fn wait_ready(server: &mut Server, port: u16) -> Result<()> {
    let url = format!("mysql://root@127.0.0.1:{port}/mysql");
    let what = format!("MariaDB on port {port} to answer SELECT 1 as root over TCP");
    server
        .wait_ready(&what, READY_TIMEOUT, || {
            let url = url.clone();
            async move {
                let mut c = MySqlConnection::connect(&url).await?;
                sqlx::query("SELECT 1").execute(&mut c).await?;
                c.close().await?;
                Ok(())
            }
        })
        .await
}
