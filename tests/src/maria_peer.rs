//! A MariaDB peer of a test mesh: a real MariaDB (ROW binlog), database `public` with the
//! replicated table (the mesh names tables `schema.table` alike on every engine; on MariaDB
//! the database plays the schema), a config file, and its agent process. The same peer can
//! run on an external MySQL 8 server ([`MariaPeer::external`]).

use std::path::PathBuf;

use anyhow::{Context, Result};
use meshsync_testkit::MariaDb;
use sqlx::{Connection, MySqlConnection, Row};

use crate::agent::Agent;

/// The replicated table, as MariaDB spells it (same columns as the PostgreSQL peers').
pub const TABLE_DDL: &str = "CREATE TABLE public.items (id INT PRIMARY KEY, \
     v VARCHAR(255) NOT NULL, n BIGINT, doc JSON)";

/// One MariaDB peer.
pub struct MariaPeer {
    /// Peer id.
    pub id: String,
    /// Its server, when the test started it (none for an external server).
    pub db: Option<MariaDb>,
    /// URL of database `public` on the server.
    pub url: String,
    /// Its agent, once started.
    pub agent: Option<Agent>,
    /// Its config file.
    pub config: PathBuf,
}

impl MariaPeer {
    /// Starts MariaDB, creates database `public` with the table, writes the config.
    pub async fn start(id: &str, nats_url: &str, dir: &std::path::Path) -> Result<MariaPeer> {
        let db = MariaDb::start().await?;
        db.create_database("public").await?;
        let mut c = db.connect("public").await?;
        sqlx::raw_sql(TABLE_DDL).execute(&mut c).await?;
        let url = db.url("public");
        Self::configured(id, nats_url, dir, Some(db), url)
    }

    /// As [`MariaPeer::start`], on a MariaDB that takes TCP only over TLS
    /// ([`MariaDb::start_tls`]): the agent connects as the certificate user with its client
    /// certificate and checks the server's certificate and name (`VERIFY_IDENTITY`).
    pub async fn start_tls(id: &str, nats_url: &str, dir: &std::path::Path) -> Result<MariaPeer> {
        let db = MariaDb::start_tls().await?;
        db.create_database("public").await?;
        let mut c = db.connect("public").await?;
        sqlx::raw_sql(TABLE_DDL).execute(&mut c).await?;
        let url = db
            .verified_url("public")
            .context("a TLS server has certificates")?;
        Self::configured(id, nats_url, dir, Some(db), url)
    }

    /// A peer on an external, disposable MySQL or MariaDB server (`mysql://user:pw@host:port`,
    /// all privileges): its databases `public` and `meshsync` are dropped and `public` made
    /// afresh, so that nothing of an earlier run (checkpoints, resume points) is taken up.
    pub async fn external(
        id: &str,
        nats_url: &str,
        dir: &std::path::Path,
        server: &str,
    ) -> Result<MariaPeer> {
        let server = server.trim_end_matches('/');
        let mut c = MySqlConnection::connect(&format!("{server}/mysql")).await?;
        sqlx::raw_sql(
            "DROP DATABASE IF EXISTS meshsync; DROP DATABASE IF EXISTS public; \
             CREATE DATABASE public",
        )
        .execute(&mut c)
        .await?;
        sqlx::raw_sql(TABLE_DDL).execute(&mut c).await?;
        Self::configured(id, nats_url, dir, None, format!("{server}/public"))
    }

    fn configured(
        id: &str,
        nats_url: &str,
        dir: &std::path::Path,
        db: Option<MariaDb>,
        url: String,
    ) -> Result<MariaPeer> {
        let config = dir.join(format!("peer-{id}.toml"));
        std::fs::write(
            &config,
            format!(
                "[peer]\nid = \"{id}\"\n[nats]\nurl = \"{nats_url}\"\n[database]\nengine = \"mysql\"\nurl = \"{url}\"\ntables = [\"public.items\"]\n",
            ),
        )?;
        Ok(MariaPeer {
            id: id.to_owned(),
            db,
            url,
            agent: None,
            config,
        })
    }

    /// Starts the agent.
    pub fn start_agent(&mut self) -> Result<()> {
        self.start_agent_with_env(&[])
    }

    /// Starts the agent with extra environment variables (e.g. a failpoint).
    pub fn start_agent_with_env(&mut self, env: &[(&str, &str)]) -> Result<()> {
        self.agent = Some(Agent::start_with_env(&self.config, env)?);
        Ok(())
    }

    /// A connection to the peer's database.
    pub async fn connect(&self) -> Result<MySqlConnection> {
        Ok(MySqlConnection::connect(&self.url).await?)
    }

    /// The table's rows, ordered by key: (id, v, n).
    pub async fn rows(&self) -> Result<Vec<(i32, String, Option<i64>)>> {
        let mut c = self.connect().await?;
        let rows = sqlx::query("SELECT id, v, n FROM public.items ORDER BY id")
            .fetch_all(&mut c)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }
}
