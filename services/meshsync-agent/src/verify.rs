//! `meshsync verify`: are the replicated tables identical on every peer?
//!
//! Each peer's table is hashed by normalised rows into key-hash buckets (the same values hash
//! alike whatever the engine or spelling); differing buckets are drilled down to the keys.
//! Exit status 0 only when every table is identical everywhere.

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::{Context, Result, bail};
use meshsync_config::{Config, Engine};
use meshsync_core::{
    TableName, Value,
    digest::{TableDigest, differing_buckets},
};
use meshsync_pg::{catalog, verify};
use sqlx::{Connection, PgConnection};

/// Key-hash buckets per table.
const BUCKETS: u32 = 256;
/// Differing keys printed per table and pair of peers.
const MAX_KEYS_SHOWN: usize = 20;

/// One peer's digest of one table.
struct PeerTable {
    peer: String,
    digest: TableDigest,
    engine: Engine,
    url: String,
}

/// A connection to one peer's database, whatever its engine.
enum PeerDb {
    Postgres(PgConnection),
    MariaDb(sqlx::MySqlConnection),
}

impl PeerDb {
    async fn connect(engine: Engine, url: &str) -> Result<PeerDb> {
        Ok(match engine {
            Engine::Postgres => PeerDb::Postgres(PgConnection::connect(url).await?),
            Engine::Mysql => PeerDb::MariaDb(sqlx::MySqlConnection::connect(url).await?),
            other => bail!(
                "verify supports postgres and mysql peers, not {}",
                other.as_str()
            ),
        })
    }

    /// The table's digest.
    async fn digest(&mut self, name: &TableName) -> Result<TableDigest> {
        Ok(match self {
            PeerDb::Postgres(c) => {
                let info = catalog::load(c, std::slice::from_ref(name)).await?;
                let info = info.get(name).context("table vanished")?;
                verify::digest_table(c, info, BUCKETS).await?
            }
            PeerDb::MariaDb(c) => {
                let info = meshsync_mariadb::catalog::load_one(c, name).await?;
                meshsync_mariadb::verify::digest_table(c, &info, BUCKETS).await?
            }
        })
    }

    /// Keys and row digests of the rows in `buckets`.
    async fn rows_in_buckets(
        &mut self,
        name: &TableName,
        buckets: &[u32],
    ) -> Result<Vec<(Vec<Value>, u64)>> {
        Ok(match self {
            PeerDb::Postgres(c) => {
                let info = catalog::load(c, std::slice::from_ref(name)).await?;
                let info = info.get(name).context("table vanished")?;
                verify::rows_in_buckets(c, info, BUCKETS, buckets).await?
            }
            PeerDb::MariaDb(c) => {
                let info = meshsync_mariadb::catalog::load_one(c, name).await?;
                meshsync_mariadb::verify::rows_in_buckets(c, &info, BUCKETS, buckets).await?
            }
        })
    }
}

/// Compares every table of the configs; returns whether all are identical.
pub async fn run(configs: &[PathBuf]) -> Result<bool> {
    if configs.len() < 2 {
        bail!("give at least two peers: meshsync verify --config a.toml --config b.toml");
    }
    let loaded: Vec<Config> = configs
        .iter()
        .map(|p| Config::load(p))
        .collect::<Result<_, _>>()?;
    let mut all_same = same_policies(&loaded)?;
    let mut tables: BTreeMap<String, Vec<PeerTable>> = BTreeMap::new();
    for c in &loaded {
        let url = c.database.url.expose().to_owned();
        let mut conn = PeerDb::connect(c.database.engine, &url)
            .await
            .with_context(|| format!("connect to peer {}", c.peer.id))?;
        for t in &c.database.tables {
            let name = TableName::parse(t)?;
            let digest = conn.digest(&name).await?;
            tables.entry(t.clone()).or_default().push(PeerTable {
                peer: c.peer.id.clone(),
                digest,
                engine: c.database.engine,
                url: url.clone(),
            });
        }
    }
    for (table, peers) in &tables {
        if peers.len() != loaded.len() {
            all_same = false;
            println!(
                "{table}: replicated by {} of {} peers",
                peers.len(),
                loaded.len()
            );
            continue;
        }
        let first = &peers[0];
        let mut same = true;
        for other in &peers[1..] {
            let buckets = differing_buckets(&first.digest, &other.digest);
            if buckets.is_empty() {
                continue;
            }
            same = false;
            let keys = differing_keys(table, first, other, &buckets).await?;
            println!(
                "{table}: DIFFERS between {} ({} rows) and {} ({} rows): {} key(s)",
                first.peer,
                first.digest.rows(),
                other.peer,
                other.digest.rows(),
                keys.len()
            );
            for k in keys.iter().take(MAX_KEYS_SHOWN) {
                println!("    key {}", show_key(k));
            }
            if keys.len() > MAX_KEYS_SHOWN {
                println!("    ... and {} more", keys.len() - MAX_KEYS_SHOWN);
            }
        }
        if same {
            let names: Vec<&str> = peers.iter().map(|p| p.peer.as_str()).collect();
            println!(
                "{table}: identical on {} ({} rows)",
                names.join(", "),
                first.digest.rows()
            );
        }
        all_same &= same;
    }
    Ok(all_same)
}

/// Whether every config merges with the same policies; prints the difference if not (such
/// peers never converge, whatever their data look like today).
fn same_policies(configs: &[Config]) -> Result<bool> {
    let mut described = Vec::new();
    for c in configs {
        let set = crate::policies::from_config(&c.merge)
            .with_context(|| format!("merge policies of peer {}", c.peer.id))?;
        let check = crate::policies::PolicyCheck::new(&set, c.merge.tombstone_retention_s);
        let (fingerprint, describe) = (check.fingerprint().to_owned(), check.describe().to_owned());
        described.push((c.peer.id.as_str(), fingerprint, describe));
    }
    if described.iter().all(|(_, f, _)| *f == described[0].1) {
        return Ok(true);
    }
    println!(
        "merge policies: DIFFER between peers (they will not converge; make [merge] the same in \
         every peer's config):"
    );
    for (peer, _, describe) in &described {
        println!("    {peer}: {describe}");
    }
    Ok(false)
}

/// Keys whose rows differ (or exist on one side only) within the differing buckets.
async fn differing_keys(
    table: &str,
    a: &PeerTable,
    b: &PeerTable,
    buckets: &[u32],
) -> Result<Vec<Vec<Value>>> {
    let name = TableName::parse(table)?;
    let mut rows = Vec::new();
    for p in [a, b] {
        let mut conn = PeerDb::connect(p.engine, &p.url).await?;
        let r: BTreeMap<Vec<u8>, (Vec<Value>, u64)> = conn
            .rows_in_buckets(&name, buckets)
            .await?
            .into_iter()
            .map(|(k, d)| (meshsync_core::digest::canonical_key(&k), (k, d)))
            .collect();
        rows.push(r);
    }
    let (ra, rb) = (&rows[0], &rows[1]);
    let mut out = Vec::new();
    for (ck, (k, d)) in ra {
        if rb.get(ck).map(|(_, d2)| d2) != Some(d) {
            out.push(k.clone());
        }
    }
    for (ck, (k, _)) in rb {
        if !ra.contains_key(ck) {
            out.push(k.clone());
        }
    }
    Ok(out)
}

/// A key for people: its values, comma-separated (keys are identifiers, not row contents).
fn show_key(key: &[Value]) -> String {
    key.iter()
        .map(|v| match v {
            Value::Int(i) => i.to_string(),
            Value::UInt(u) => u.to_string(),
            Value::Text(t) | Value::Decimal(t) => format!("{t:?}"),
            other => format!("<{}>", other.kind()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
