//! The workloads of [`super::workload`] against MariaDB: the same table shape, catch-up
//! inserts, row-count wait and steady writer with its lag poller, over `MySqlConnection`.
//! The figures they return are the same types, so report and plot take them unchanged.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sqlx::{Connection, MySqlConnection};
use tracing::info;

use super::workload::{POLL_EVERY, Steady, WRITE_EVERY, see_prefix};

/// Database on both servers; tables are named `database.table` in the agent config.
pub const DB: &str = "public";

/// The benchmarked table, identical on every server.
pub const TABLE_DDL: &str =
    "CREATE TABLE public.items (id BIGINT PRIMARY KEY, v VARCHAR(255), n BIGINT)";

/// Microseconds since the Unix epoch, stored in `n` so every row carries its send time.
fn unix_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Inserts ids `1..=rows` with one single-row INSERT each, `txn_size` per transaction.
/// Returns the time it took.
pub async fn insert_catch_up(
    conn: &mut MySqlConnection,
    rows: u64,
    txn_size: u64,
) -> Result<Duration> {
    let started = Instant::now();
    let payload = "catch-up row payload 0123456789abcdef";
    let mut id: i64 = 1;
    let last = rows as i64;
    while id <= last {
        let mut txn = conn.begin().await?;
        let end = (id + txn_size as i64 - 1).min(last);
        for i in id..=end {
            sqlx::query("INSERT INTO public.items (id, v, n) VALUES (?, ?, ?)")
                .bind(i)
                .bind(payload)
                .bind(unix_micros())
                .execute(&mut *txn)
                .await?;
        }
        txn.commit().await?;
        if end / 50_000 != (id - 1) / 50_000 {
            info!(rows = end, "catch-up inserts");
        }
        id = end + 1;
    }
    Ok(started.elapsed())
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

/// Waits until `public.items` holds `rows` rows on `conn` (ids `1..=rows`, committed in id
/// order), polling every 20 ms; fails after `timeout`. Returns the time it took. As for
/// PostgreSQL, the poll probes the last id and counts only once it is there.
pub async fn wait_count(
    conn: &mut MySqlConnection,
    rows: u64,
    timeout: Duration,
) -> Result<Duration> {
    let started = Instant::now();
    let mut last_log = Instant::now();
    loop {
        let (seen,): (i64,) =
            sqlx::query_as("SELECT EXISTS (SELECT 1 FROM public.items WHERE id = ?)")
                .bind(rows as i64)
                .fetch_one(&mut *conn)
                .await?;
        if seen != 0 {
            let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM public.items")
                .fetch_one(&mut *conn)
                .await?;
            if count as u64 >= rows {
                return Ok(started.elapsed());
            }
        }
        if started.elapsed() > timeout {
            bail!("receiver does not hold all {rows} rows after {timeout:?}");
        }
        if last_log.elapsed() > Duration::from_secs(5) {
            info!(rows, "receiver catching up");
            last_log = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
