//! The workloads, the same for both systems: the table, catch-up inserts, waiting for a row
//! count, and the steady-rate writer with its lag poller.

use std::{
    ops::RangeInclusive,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use sqlx::{Connection, PgConnection};
use tracing::info;

/// The benchmarked table, identical on every cluster.
pub const TABLE_DDL: &str =
    "CREATE TABLE public.items (id int8 PRIMARY KEY, v text NOT NULL, n int8)";

/// How often the receiver is polled for new rows in the steady workload.
pub const POLL_EVERY: Duration = Duration::from_millis(2);

/// How often a steady writer commits the rows that are due.
pub const WRITE_EVERY: Duration = Duration::from_millis(5);

/// Microseconds since the Unix epoch, stored in `n` so every row carries its send time.
pub(super) fn unix_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// What the catch-up workload needs of a connection; the SQL differs per engine, the
/// workload does not.
pub(crate) trait BenchTable {
    /// Inserts `ids` into `public.items` in one transaction, one single-row INSERT each,
    /// `v` = `payload` and `n` = the send time.
    async fn insert_txn(&mut self, ids: RangeInclusive<i64>, payload: &str) -> Result<()>;
    /// Whether `public.items` holds row `id` (a primary-key lookup).
    async fn has_row(&mut self, id: i64) -> Result<bool>;
    /// The rows of `public.items`.
    async fn count_rows(&mut self) -> Result<i64>;
}

impl BenchTable for PgConnection {
    async fn insert_txn(&mut self, ids: RangeInclusive<i64>, payload: &str) -> Result<()> {
        let mut txn = self.begin().await?;
        for i in ids {
            sqlx::query("INSERT INTO public.items (id, v, n) VALUES ($1, $2, $3)")
                .bind(i)
                .bind(payload)
                .bind(unix_micros())
                .execute(&mut *txn)
                .await?;
        }
        Ok(txn.commit().await?)
    }

    async fn has_row(&mut self, id: i64) -> Result<bool> {
        let (seen,): (bool,) =
            sqlx::query_as("SELECT EXISTS (SELECT 1 FROM public.items WHERE id = $1)")
                .bind(id)
                .fetch_one(self)
                .await?;
        Ok(seen)
    }

    async fn count_rows(&mut self) -> Result<i64> {
        let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM public.items")
            .fetch_one(self)
            .await?;
        Ok(count)
    }
}

/// Inserts `ids` with one single-row INSERT each, `txn_size` per transaction. Returns the
/// time it took.
pub async fn insert_catch_up(
    conn: &mut impl BenchTable,
    ids: RangeInclusive<i64>,
    txn_size: u64,
) -> Result<Duration> {
    let started = Instant::now();
    let payload = "catch-up row payload 0123456789abcdef";
    let (mut id, last) = ids.into_inner();
    let first = id;
    while id <= last {
        let end = (id + txn_size as i64 - 1).min(last);
        conn.insert_txn(id..=end, payload).await?;
        if (end - first + 1) / 50_000 != (id - first) / 50_000 {
            info!(rows = end - first + 1, "catch-up inserts");
        }
        id = end + 1;
    }
    Ok(started.elapsed())
}

/// The current WAL position of `conn`'s server, as an LSN number.
pub async fn current_lsn(conn: &mut PgConnection) -> Result<i64> {
    let (lsn,): (i64,) = sqlx::query_as("SELECT (pg_current_wal_lsn() - '0/0')::int8")
        .fetch_one(conn)
        .await?;
    Ok(lsn)
}

/// Waits until `public.items` holds `rows` rows on `conn` (ids `1..=rows`, committed in id
/// order), polling every 20 ms; fails after `timeout`. Returns the time it took.
///
/// The poll looks up the last id through the primary key and counts only once it is there:
/// a `count(*)` every 20 ms scans the growing table and took a fifth of a core from the
/// receiver it measures.
pub async fn wait_count(
    conn: &mut impl BenchTable,
    rows: u64,
    timeout: Duration,
) -> Result<Duration> {
    let started = Instant::now();
    let mut last_log = Instant::now();
    loop {
        if conn.has_row(rows as i64).await? && conn.count_rows().await? as u64 >= rows {
            return Ok(started.elapsed());
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

/// Lag of one steady row.
#[derive(Clone, Copy, Debug)]
pub struct LagSample {
    /// When its source transaction committed, seconds since the steady workload started.
    pub at_secs: f64,
    /// Commit acknowledged on the source -> first seen on the receiver, milliseconds.
    pub lag_ms: f64,
}

/// What the steady workload measured.
#[derive(Clone, Debug, Default)]
pub struct Steady {
    /// Rows written.
    pub rows: u64,
    /// Rows the receiver showed before the deadline.
    pub seen: u64,
    /// Rows actually written per second.
    pub achieved_rate: f64,
    /// One sample per row seen, in id order.
    pub samples: Vec<LagSample>,
}

impl Steady {
    /// The figures of one steady run: row `i` committed at `commits[i]` and was first seen at
    /// `seen[i]` (rows not seen have no sample); writing took `write_time`.
    pub fn from_instants(
        started: Instant,
        commits: &[Instant],
        seen: &[Instant],
        write_time: Duration,
    ) -> Steady {
        let samples = commits
            .iter()
            .zip(seen)
            .map(|(c, s)| LagSample {
                at_secs: c.duration_since(started).as_secs_f64(),
                lag_ms: s.saturating_duration_since(*c).as_secs_f64() * 1000.0,
            })
            .collect();
        Steady {
            rows: commits.len() as u64,
            seen: seen.len() as u64,
            achieved_rate: commits.len() as f64 / write_time.as_secs_f64().max(1e-9),
            samples,
        }
    }
}

/// Records `now` as the first sighting of every polled id that extends the contiguous run
/// `base + 1 ..` already seen: rows arrive in commit order with both systems.
pub fn see_prefix(
    seen: &mut Vec<Instant>,
    base: i64,
    ids: impl Iterator<Item = i64>,
    now: Instant,
) {
    for id in ids {
        if id == base + seen.len() as i64 + 1 {
            seen.push(now);
        }
    }
}

/// Writes `rate` rows/s for `seconds` to `source` (ids after `base`, one transaction per
/// [`WRITE_EVERY`] tick holding the rows due) while polling `receiver` every [`POLL_EVERY`]
/// for them. A row's lag is the time from its commit acknowledgement on the source to the
/// first poll that returns it; both instants come from this process's monotonic clock.
pub async fn steady(
    source: &mut PgConnection,
    receiver: &mut PgConnection,
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
            sqlx::query(
                "INSERT INTO public.items (id, v, n) \
                 SELECT g, 'steady', (extract(epoch FROM clock_timestamp()) * 1000000)::int8 \
                 FROM generate_series($1::int8, $2::int8) AS g",
            )
            .bind(base + sent as i64 + 1)
            .bind(base + due as i64)
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
                sqlx::query_as("SELECT id FROM public.items WHERE id > $1 ORDER BY id")
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

/// The `q` quantile (0..=1) of `values`, nearest rank; 0 when empty.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}
