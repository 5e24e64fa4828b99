//! The workloads of [`super::workload`] against MariaDB: the same table shape, catch-up
//! inserts, row-count wait and steady writer with its lag poller, over `MySqlConnection`.
//! The figures they return are the same types, so report and plot take them unchanged.

use std::{
    ops::RangeInclusive,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use sqlx::{Connection, MySqlConnection};

use super::workload::{BenchTable, POLL_EVERY, Steady, WRITE_EVERY, see_prefix, unix_micros};

/// Database on both servers; tables are named `database.table` in the agent config.
pub const DB: &str = "public";

/// The benchmarked table, identical on every server.
pub const TABLE_DDL: &str =
    "CREATE TABLE public.items (id BIGINT PRIMARY KEY, v VARCHAR(255), n BIGINT)";

pub use super::workload::{insert_catch_up, wait_count};

impl BenchTable for MySqlConnection {
    async fn insert_txn(&mut self, ids: RangeInclusive<i64>, payload: &str) -> Result<()> {
        let mut txn = self.begin().await?;
        for i in ids {
            sqlx::query("INSERT INTO public.items (id, v, n) VALUES (?, ?, ?)")
                .bind(i)
                .bind(payload)
                .bind(unix_micros())
                .execute(&mut *txn)
                .await?;
        }
        Ok(txn.commit().await?)
    }

    async fn has_row(&mut self, id: i64) -> Result<bool> {
        let (seen,): (i64,) =
            sqlx::query_as("SELECT EXISTS (SELECT 1 FROM public.items WHERE id = ?)")
                .bind(id)
                .fetch_one(self)
                .await?;
        Ok(seen != 0)
    }

    async fn count_rows(&mut self) -> Result<i64> {
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM public.items")
            .fetch_one(self)
            .await?;
        Ok(count)
    }
}

/// The server's `@@gtid_binlog_pos`: the last GTID written to its binlog per domain.
pub async fn gtid_binlog_pos(conn: &mut MySqlConnection) -> Result<String> {
    let (pos,): (String,) = sqlx::query_as("SELECT @@GLOBAL.gtid_binlog_pos")
        .fetch_one(conn)
        .await?;
    Ok(pos)
}

/// Whether GTID state `state` (`domain-server-seq,...`) has reached `target` in every
/// domain of `target`.
pub fn gtid_reached(state: &str, target: &str) -> bool {
    let parse = |s: &str| -> Vec<(u64, u64)> {
        s.split(',')
            .filter_map(|g| {
                let mut p = g.trim().split('-');
                let domain = p.next()?.parse().ok()?;
                let _server: u64 = p.next()?.parse().ok()?;
                let seq = p.next()?.parse().ok()?;
                Some((domain, seq))
            })
            .collect()
    };
    let have = parse(state);
    parse(target)
        .iter()
        .all(|(d, seq)| have.iter().any(|(hd, hs)| hd == d && hs >= seq))
}

/// As [`super::workload::steady`]: `rate` rows/s for `seconds` to `source` (ids after
/// `base`, one multi-row INSERT per [`WRITE_EVERY`] tick, autocommit) while polling
/// `receiver` every [`POLL_EVERY`]; a row's lag runs from its commit acknowledgement on the
/// source to the first poll that returns it.
pub async fn steady(
    source: &mut MySqlConnection,
    receiver: &mut MySqlConnection,
    base: i64,
    rate: u64,
    seconds: u64,
) -> Result<Steady> {
    let total = rate * seconds;
    let started = Instant::now();
    let writer = async {
        let mut commits: Vec<Instant> = Vec::with_capacity(total as usize);
        let mut tick = tokio::time::interval(WRITE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while (commits.len() as u64) < total {
            tick.tick().await;
            let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
            let sent = commits.len() as u64;
            if due <= sent {
                continue;
            }
            // Only integers this function computed go into the text.
            let micros = unix_micros();
            let values: Vec<String> = (sent + 1..=due)
                .map(|i| format!("({}, 'steady', {micros})", base + i as i64))
                .collect();
            let sql = format!(
                "INSERT INTO public.items (id, v, n) VALUES {}",
                values.join(",")
            );
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut *source)
                .await
                .context("steady insert")?;
            let now = Instant::now();
            commits.resize(due as usize, now);
        }
        anyhow::Ok((commits, started.elapsed()))
    };
    let poller = async {
        let mut seen: Vec<Instant> = Vec::with_capacity(total as usize);
        let deadline = Duration::from_secs(seconds + 60);
        while (seen.len() as u64) < total && started.elapsed() < deadline {
            let last = base + seen.len() as i64;
            let ids: Vec<(i64,)> =
                sqlx::query_as("SELECT id FROM public.items WHERE id > ? ORDER BY id")
                    .bind(last)
                    .fetch_all(&mut *receiver)
                    .await
                    .context("poll the receiver")?;
            see_prefix(
                &mut seen,
                base,
                ids.into_iter().map(|(id,)| id),
                Instant::now(),
            );
            tokio::time::sleep(POLL_EVERY).await;
        }
        anyhow::Ok(seen)
    };
    let ((commits, write_time), seen) = tokio::try_join!(writer, poller)?;
    Ok(Steady::from_instants(started, &commits, &seen, write_time))
}

#[cfg(test)]
mod tests {
    use super::gtid_reached;

    #[test]
    fn gtid_reached_compares_per_domain() {
        assert!(gtid_reached("0-1-10", "0-1-10"));
        assert!(gtid_reached("0-1-11,1-2-3", "0-1-10"));
        assert!(!gtid_reached("0-1-9", "0-1-10"));
        assert!(!gtid_reached("1-1-99", "0-1-10"));
        assert!(gtid_reached("0-1-5", ""));
    }
}
