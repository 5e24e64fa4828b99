//! A peer of a test mesh: a real PostgreSQL, a database with the replicated table, a config
//! file, and its agent process.

use std::path::PathBuf;

use anyhow::Result;
use meshsync_testkit::Postgres;
use sqlx::{PgConnection, Row};

use crate::agent::Agent;

/// The replicated table of the scenarios.
pub const TABLE_DDL: &str =
    "CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL, n int8, doc jsonb)";

/// One peer.
pub struct Peer {
    /// Peer id.
    pub id: String,
    /// Its PostgreSQL.
    pub pg: Postgres,
    /// Its agent, once started.
    pub agent: Option<Agent>,
    /// Its config file.
    pub config: PathBuf,
}

impl Peer {
    /// Starts PostgreSQL, creates database `app` with the table, writes the config.
    pub async fn start(id: &str, nats_url: &str, dir: &std::path::Path) -> Result<Peer> {
        Self::start_with(id, nats_url, dir, "", &[]).await
    }

    /// As [`Peer::start`], plus `extra_ddl` run on the database and `extra_tables` replicated.
    pub async fn start_with(
        id: &str,
        nats_url: &str,
        dir: &std::path::Path,
        extra_ddl: &str,
        extra_tables: &[&str],
    ) -> Result<Peer> {
        Self::start_on(
            Postgres::start().await?,
            id,
            nats_url,
            dir,
            extra_ddl,
            extra_tables,
        )
        .await
    }

    /// As [`Peer::start`], on a PostgreSQL that takes TCP only over TLS
    /// ([`Postgres::start_tls`]): the agent connects as the certificate user, with its client
    /// certificate, and checks the server's certificate and name (`verify-full`).
    pub async fn start_tls(id: &str, nats_url: &str, dir: &std::path::Path) -> Result<Peer> {
        Self::start_on(Postgres::start_tls().await?, id, nats_url, dir, "", &[]).await
    }

    async fn start_on(
        pg: Postgres,
        id: &str,
        nats_url: &str,
        dir: &std::path::Path,
        extra_ddl: &str,
        extra_tables: &[&str],
    ) -> Result<Peer> {
        pg.create_database("app").await?;
        let mut c = pg.connect("app").await?;
        sqlx::raw_sql(TABLE_DDL).execute(&mut c).await?;
        if !extra_ddl.is_empty() {
            sqlx::raw_sql(sqlx::AssertSqlSafe(extra_ddl.to_owned()))
                .execute(&mut c)
                .await?;
        }
        let tables: Vec<String> = std::iter::once("public.items")
            .chain(extra_tables.iter().copied())
            .map(|t| format!("\"{t}\""))
            .collect();
        // Peer c reaches its database through the Unix socket (a socket URL), so the
        // scenarios with three peers run setup, capture and apply over a socket too.
        let url = if let Some(url) = pg.verified_url("app") {
            url
        } else if id == "c" {
            pg.socket_url("app")
        } else {
            pg.url("app")
        };
        let config = dir.join(format!("peer-{id}.toml"));
        std::fs::write(
            &config,
            format!(
                "[peer]\nid = \"{id}\"\n[nats]\nurl = \"{nats_url}\"\n[database]\nengine = \"postgres\"\nurl = \"{}\"\ntables = [{}]\n",
                url,
                tables.join(", ")
            ),
        )?;
        Ok(Peer {
            id: id.to_owned(),
            pg,
            agent: None,
            config,
        })
    }

    /// Starts the agent.
    pub fn start_agent(&mut self) -> Result<()> {
        self.agent = Some(Agent::start(&self.config)?);
        Ok(())
    }

    /// A connection to the peer's database.
    pub async fn connect(&self) -> Result<PgConnection> {
        self.pg.connect("app").await
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
