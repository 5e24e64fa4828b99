//! PostgreSQL with logical WAL (what meshsync's capture needs), as a child process.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use sqlx::{Connection, PgConnection};
use tempfile::TempDir;

use crate::{
    binaries,
    process::{Server, is_root},
    tls::{CERT_USER, TlsFiles},
    wait::{free_port, retry_on_port_race},
};

/// Crash recovery after a kill -9 is included in this.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One PostgreSQL server: superuser `postgres`, trust authentication on 127.0.0.1.
pub struct Postgres {
    // Declared before `dir`: the process dies before its folder is deleted.
    server: Server,
    port: u16,
    tls: Option<TlsFiles>,
    dir: TempDir,
}

/// pg_hba.conf of a server started by [`Postgres::start_tls`]: TCP only with TLS, and
/// [`CERT_USER`] only with its client certificate. No `host` line, so a plain TCP connection
/// is refused ("no pg_hba.conf entry ... no encryption").
const TLS_HBA: &str = "\
local all all trust
local replication all trust
hostssl all cert_user 127.0.0.1/32 cert
hostssl replication cert_user 127.0.0.1/32 cert
hostssl all all 127.0.0.1/32 trust
hostssl replication all 127.0.0.1/32 trust
";

/// `(uid, gid)` of the `postgres` system user: PostgreSQL refuses to run as root.
fn postgres_user() -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").context("read /etc/passwd")?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"postgres"))
        .and_then(|f| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))
        .context("running as root, and there is no `postgres` user to run PostgreSQL as (PostgreSQL refuses root); run scripts/setup")
}

impl Postgres {
    /// initdb, then the server on a free port with `wal_level=logical`; ready once
    /// `SELECT 1` answers.
    pub async fn start() -> Result<Postgres> {
        Self::start_with(&[] as &[&str]).await
    }

    /// Like [`Postgres::start`], with `settings` (`name=value`) given after the harness's
    /// own, so they win: the benches size their servers unlike the many small test servers.
    pub async fn start_with(settings: &[impl AsRef<str>]) -> Result<Postgres> {
        let settings: Vec<String> = settings.iter().map(|s| s.as_ref().to_owned()).collect();
        Self::launch(settings, false).await
    }

    /// A server that takes TCP connections only over TLS, with certificates from a CA of its
    /// own ([`Postgres::tls_files`]); role [`CERT_USER`] (superuser) must present its client
    /// certificate. Its Unix socket stays plain and trusted.
    pub async fn start_tls() -> Result<Postgres> {
        let pg = Self::launch(Vec::new(), true).await?;
        let mut c = pg.connect("postgres").await?;
        let sql = format!("CREATE ROLE {CERT_USER} LOGIN SUPERUSER REPLICATION");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .context("create the certificate user")?;
        Ok(pg)
    }

    async fn launch(mut settings: Vec<String>, tls: bool) -> Result<Postgres> {
        let user = if is_root() {
            Some(postgres_user()?)
        } else {
            None
        };
        // Under /tmp, not $TMPDIR: the postgres user must be able to reach it.
        let dir = tempfile::Builder::new()
            .prefix("meshsync-pg-")
            .tempdir_in(if user.is_some() {
                PathBuf::from("/tmp")
            } else {
                std::env::temp_dir()
            })
            .context("create a temporary folder for PostgreSQL")?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .with_context(|| format!("chown {} to the postgres user", dir.path().display()))?;
        }
        let bin = binaries::pg_bin()?;
        let data: PathBuf = dir.path().join("data");
        let mut init = Command::new(bin.join("initdb"));
        init.args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "-D",
        ])
        .arg(&data);
        if let Some((uid, gid)) = user {
            init.uid(uid).gid(gid);
        }
        let out = init.output().context("run initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let tls = if tls {
            let files = TlsFiles::generate(dir.path())?;
            if let Some((uid, gid)) = user {
                files.chown_server_files(uid, gid)?;
            }
            std::fs::write(data.join("pg_hba.conf"), TLS_HBA).context("write pg_hba.conf")?;
            settings.extend([
                "ssl=on".to_owned(),
                format!("ssl_cert_file={}", files.server_cert.display()),
                format!("ssl_key_file={}", files.server_key.display()),
                format!("ssl_ca_file={}", files.ca.display()),
            ]);
            Some(files)
        } else {
            None
        };
        let log = dir.path().join("postgres.log");
        let sockets = dir.path().to_owned();
        let mut dir = Some(dir);
        retry_on_port_race(async || {
            let port = free_port()?;
            let (bin, data, sockets) = (bin.clone(), data.clone(), sockets.clone());
            let settings = settings.clone();
            let launcher = Box::new(move || {
                let mut c = Command::new(bin.join("postgres"));
                c.arg("-D")
                    .arg(&data)
                    .arg("-p")
                    .arg(port.to_string())
                    .arg("-k")
                    .arg(&sockets);
                for setting in [
                    "listen_addresses=127.0.0.1",
                    "wal_level=logical",
                    "max_replication_slots=20",
                    "max_wal_senders=20",
                    "max_connections=200",
                    "fsync=on",
                    "shared_buffers=64MB",
                    "TimeZone=UTC",
                ] {
                    c.arg("-c").arg(setting);
                }
                for setting in &settings {
                    c.arg("-c").arg(setting);
                }
                if let Some((uid, gid)) = user {
                    c.uid(uid).gid(gid);
                }
                c
            });
            // SIGINT is PostgreSQL's fast shutdown (SIGTERM waits for clients to leave).
            let mut server = Server::new("postgres", &log, "INT", launcher);
            server.start()?;
            wait_ready(&mut server, port).await?;
            let dir = dir.take().context("PostgreSQL folder already used")?;
            Ok(Postgres {
                server,
                port,
                tls: tls.clone(),
                dir,
            })
        })
        .await
    }

    /// `postgres://postgres@127.0.0.1:PORT/db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The same database through the server's Unix socket, in the form sqlx and libpq read:
    /// `postgres://postgres@%2Ftmp%2F..:PORT/db` (the socket directory percent-encoded).
    pub fn socket_url(&self, db: &str) -> String {
        let dir = self.dir().to_string_lossy();
        let dir = percent_encoding::utf8_percent_encode(&dir, percent_encoding::NON_ALPHANUMERIC);
        format!("postgres://postgres@{dir}:{}/{db}", self.port)
    }

    /// The certificates of a server started by [`Postgres::start_tls`].
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// On a server started by [`Postgres::start_tls`], [`CERT_USER`]'s URL to `db`: through
    /// `localhost` (the certificate's name), `verify-full` against the server's CA, with the
    /// client certificate. `None` for a server without TLS.
    pub fn verified_url(&self, db: &str) -> Option<String> {
        let f = self.tls.as_ref()?;
        Some(format!(
            "postgres://{CERT_USER}@localhost:{}/{db}?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
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

    /// Creates database `name` (tests keep their data apart in one server).
    pub async fn create_database(&self, name: &str) -> Result<()> {
        let mut c = self.connect("postgres").await?;
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .with_context(|| format!("create database {name}"))?;
        Ok(())
    }

    /// A new connection to `db`.
    pub async fn connect(&self, db: &str) -> Result<PgConnection> {
        PgConnection::connect(&self.url(db))
            .await
            .with_context(|| format!("connect to {}", self.url(db)))
    }

    /// The server's temporary folder (data, socket, log), deleted on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        self.server.log_path()
    }

    /// The postmaster's process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// Graceful fast shutdown (SIGINT): sessions are ended, a checkpoint is written.
    pub fn stop(&mut self) -> Result<()> {
        self.server.stop()
    }

    /// SIGKILL of the postmaster and all its backends, a crash: WAL recovery runs on the
    /// next start. Returns once every process is gone, so a restart can follow at once.
    pub fn kill9(&mut self) -> Result<()> {
        self.server.kill9()
    }

    /// Starts the server again on the same port(s) and data after [`Postgres::stop`] or
    /// [`Postgres::kill9`] (stopping it gracefully first if it runs), and waits until it is
    /// ready: clients reconnect to the same address.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.server.start()?;
        wait_ready(&mut self.server, self.port).await
    }
}

/// Ready: a real connection answers `SELECT 1`.
async fn wait_ready(server: &mut Server, port: u16) -> Result<()> {
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let what = format!("PostgreSQL on port {port} to answer SELECT 1");
    server
        .wait_ready(&what, READY_TIMEOUT, || {
            let url = url.clone();
            async move {
                let mut c = PgConnection::connect(&url).await?;
                sqlx::query("SELECT 1").execute(&mut c).await?;
                c.close().await?;
                Ok(())
            }
        })
        .await
}

/// A table `public.kinds` with a column of every PostgreSQL type meshsync carries (and the enum
/// type it uses), for tests that a value of each arrives exactly.
pub const ALL_TYPES_DDL: &str = "
CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE public.kinds (
    id int8 PRIMARY KEY, s int2, i int4, n numeric(12,3), f4 float4, f8 float8, b bool,
    t text, vc varchar(20), c char(4), by bytea, u uuid, j json, jb jsonb,
    ts timestamp, tz timestamptz, d date, tm time, m public.mood, arr int4[], tarr text[]
);";

impl Drop for Postgres {
    fn drop(&mut self) {
        // Killed, PostgreSQL leaves its small System V shared memory segment behind (a clean
        // shutdown removes it, a restart on the same data reuses it). Thousands of dropped
        // test servers filled the kernel's table (SHMMNI, 4,096 here), and every later
        // server failed to start with "could not create shared memory segment".
        if self.server.kill9().is_ok()
            && let Some(id) = shared_memory_id(self.dir.path())
        {
            let _ = Command::new("ipcrm")
                .args(["-m", &id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The id of the System V segment a server running (or killed) in `dir` holds: line 7 of
/// `postmaster.pid` is its key and id. `None` once it stopped cleanly (no file).
pub fn shared_memory_id(dir: &Path) -> Option<String> {
    let pid_file = std::fs::read_to_string(dir.join("data").join("postmaster.pid")).ok()?;
    let line = pid_file.lines().nth(6)?;
    line.split_whitespace().nth(1).map(str::to_owned)
}
