//! A concurrent workload of inserts, updates and deletes on overlapping keys, recording every
//! write that committed.

use anyhow::Result;
use sqlx::PgConnection;

use crate::checker::Write;

/// A small seeded generator (xorshift64*), so a failing run can be replayed by its seed.
pub struct Rng(u64);

impl Rng {
    /// From a seed (zero is replaced).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// Next number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// Runs `ops` random writes on keys `1..=keys` from `peer`, some in multi-statement
/// transactions; returns the writes that committed.
pub async fn run(
    conn: &mut PgConnection,
    peer: &str,
    seed: u64,
    ops: usize,
    keys: u64,
) -> Result<Vec<Write>> {
    let mut rng = Rng::new(seed);
    let mut done = Vec::new();
    let mut seq = 0usize;
    while seq < ops {
        match one_txn(conn, peer, seed, &mut rng, &mut seq, keys).await {
            Ok(writes) => done.extend(writes),
            // Apply holds row locks too; like any application, retry a deadlock victim.
            Err(sqlx::Error::Database(e))
                if e.code().is_some_and(|c| c == "40P01" || c == "40001") => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

/// The next write of a workload: (operation, key, the unique `v` it writes). `v` names the
/// peer, the workload's seed and the write's number, so it stays unique across several
/// workloads on one peer.
fn next_write(
    peer: &str,
    seed: u64,
    rng: &mut Rng,
    seq: &mut usize,
    keys: u64,
) -> (&'static str, i32, String) {
    *seq += 1;
    let id = 1 + rng.below(keys) as i32;
    let op = match rng.below(10) {
        0..=3 => "insert",
        4..=7 => "update",
        _ => "delete",
    };
    (op, id, format!("{peer}-{seed:x}-{seq}"))
}

/// As [`run`], on a MariaDB peer (MariaDB's SQL; same choices for the same seed).
pub async fn run_mysql(
    conn: &mut sqlx::MySqlConnection,
    peer: &str,
    seed: u64,
    ops: usize,
    keys: u64,
) -> Result<Vec<Write>> {
    let mut rng = Rng::new(seed);
    let mut done = Vec::new();
    let mut seq = 0usize;
    while seq < ops {
        let in_txn = 1 + rng.below(3) as usize;
        let mut pending = Vec::new();
        let result: Result<(), sqlx::Error> = async {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            for _ in 0..in_txn {
                let (op, id, v) = next_write(peer, seed, &mut rng, &mut seq, keys);
                let q = match op {
                    "insert" => sqlx::query(
                        "INSERT IGNORE INTO public.items (id, v, n, doc) VALUES (?, ?, 0, '{\"k\": [1, 2]}')",
                    )
                    .bind(id)
                    .bind(&v),
                    "update" => sqlx::query("UPDATE public.items SET v = ?, n = n + 1 WHERE id = ?")
                        .bind(&v)
                        .bind(id),
                    _ => sqlx::query("DELETE FROM public.items WHERE id = ?").bind(id),
                };
                if q.execute(&mut *tx).await?.rows_affected() == 1 {
                    pending.push(Write {
                        peer: peer.to_owned(),
                        id,
                        op,
                        v: (op != "delete").then_some(v),
                    });
                }
            }
            tx.commit().await
        }
        .await;
        match result {
            Ok(()) => done.extend(pending),
            // Deadlock (1213) or lock wait timeout (1205): retry like any application.
            Err(sqlx::Error::Database(e))
                if e.code().is_some_and(|c| c == "40001" || c == "HY000") => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

async fn one_txn(
    conn: &mut PgConnection,
    peer: &str,
    seed: u64,
    rng: &mut Rng,
    seq: &mut usize,
    keys: u64,
) -> Result<Vec<Write>, sqlx::Error> {
    {
        let in_txn = 1 + rng.below(3) as usize;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let mut pending = Vec::new();
        for _ in 0..in_txn {
            let (op, id, v) = next_write(peer, seed, rng, seq, keys);
            let (op, affected) = match op {
                "insert" => (
                    "insert",
                    sqlx::query("INSERT INTO public.items (id, v, n, doc) VALUES ($1, $2, 0, '{\"k\": [1, 2]}') ON CONFLICT (id) DO NOTHING")
                        .bind(id)
                        .bind(&v)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected(),
                ),
                "update" => (
                    "update",
                    sqlx::query("UPDATE public.items SET v = $2, n = n + 1 WHERE id = $1")
                        .bind(id)
                        .bind(&v)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected(),
                ),
                _ => (
                    "delete",
                    sqlx::query("DELETE FROM public.items WHERE id = $1").bind(id).execute(&mut *tx).await?.rows_affected(),
                ),
            };
            if affected == 1 {
                pending.push(Write {
                    peer: peer.to_owned(),
                    id,
                    op,
                    v: (op != "delete").then_some(v),
                });
            }
        }
        tx.commit().await?;
        Ok(pending)
    }
}
