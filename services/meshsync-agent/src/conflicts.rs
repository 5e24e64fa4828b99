//! `meshsync conflicts`: the conflicts this peer (or every peer of its stream) resolved
//! lately, read from the conflict stream through NATS (`docs/conflicts.md`).
//!
//! An ephemeral consumer without acks starts at `now - since` on this peer's conflict subject
//! (or the stream's every subject with `--all-peers`) and reads the messages that were there
//! when it started; nothing is changed in the stream.

use std::{io::Write, path::PathBuf, time::Duration};

use anyhow::{Context, Result, bail};
use async_nats::jetstream::{
    self, ErrorCode,
    consumer::{AckPolicy, DeliverPolicy, pull},
    context::GetStreamErrorKind,
};
use futures::StreamExt;
use meshsync_config::Config;
use meshsync_core::{PeerId, TableName};
use meshsync_wire::{
    conflict::{self, ConflictMessage, Values},
    headers,
};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// Messages asked for at once.
const FETCH_BATCH: usize = 500;
/// How long one fetch waits for messages the consumer said are there.
const FETCH_WAIT: Duration = Duration::from_secs(5);
/// How long to wait for NATS to answer at all.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// `meshsync conflicts`.
#[derive(clap::Args, Debug)]
pub struct ConflictsArgs {
    /// The peer's config file (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// Only the conflicts of this table (`schema.table`).
    #[arg(long)]
    pub table: Option<String>,
    /// How far back to look: a number and a unit, s, m, h, d or w (`30s`, `10m`, `2h`, `1d`).
    #[arg(long, default_value = "1h", value_parser = parse_since)]
    pub since: Duration,
    /// The conflicts of every peer in this peer's conflict stream (every direct peer, or every
    /// peer of this edge site), not only this peer's.
    #[arg(long)]
    pub all_peers: bool,
    /// One JSON object per line (the stored record plus `time`, `sequence` and `subject`).
    #[arg(long)]
    pub json: bool,
}

/// One conflict as read from the stream.
#[derive(Debug)]
pub struct Entry {
    /// Stream sequence.
    pub sequence: u64,
    /// When the stream stored it.
    pub time: OffsetDateTime,
    /// Subject it was logged on.
    pub subject: String,
    /// The record, or why its body could not be read (then `table` says which table).
    pub message: Result<ConflictMessage, String>,
    /// `Mesh-Table` header.
    pub table: Option<String>,
}

/// Where to read and what to keep.
#[derive(Debug)]
pub struct Query {
    /// The conflict stream.
    pub stream: String,
    /// Subject filter: one peer's subject, or the stream's subjects.
    pub filter: String,
    /// Oldest time to show.
    pub start: OffsetDateTime,
    /// Only this table.
    pub table: Option<TableName>,
}

/// Runs the command: prints the conflicts and returns (exit status 0), or fails with why.
pub async fn run(args: ConflictsArgs) -> Result<()> {
    let config = Config::load(&args.config)?;
    let peer = PeerId::new(&config.peer.id)?;
    let table = args
        .table
        .as_deref()
        .map(TableName::parse)
        .transpose()
        .context("--table")?;
    let endpoints = crate::peer::topology(&config).endpoints(&peer);
    let query = Query {
        filter: if args.all_peers {
            endpoints.conflict_subjects
        } else {
            endpoints.conflict_subject
        },
        stream: endpoints.conflict_stream,
        start: start_time(OffsetDateTime::now_utc(), args.since),
        table,
    };
    let client = connect(&config.nats).await?;
    let entries = read(&jetstream::new(client), &query).await?;
    print(&entries, &query, args.json)
}

/// Connects without waiting for a server that is not there.
async fn connect(config: &meshsync_config::NatsConfig) -> Result<async_nats::Client> {
    let tls = crate::peer::nats_tls(config);
    let connect = meshsync_nats::connect_now(config.url.expose(), "meshsync conflicts", &tls);
    match tokio::time::timeout(CONNECT_WAIT, connect).await {
        Ok(client) => Ok(client?),
        Err(_) => bail!(
            "cannot connect to NATS within {CONNECT_WAIT:?}; check nats.url and that the server runs"
        ),
    }
}

/// `now - since`, not before the epoch.
fn start_time(now: OffsetDateTime, since: Duration) -> OffsetDateTime {
    time::Duration::try_from(since)
        .ok()
        .and_then(|d| now.checked_sub(d))
        .filter(|t| *t >= OffsetDateTime::UNIX_EPOCH)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The conflicts of `query` stored when the read starts, oldest first.
pub async fn read(js: &jetstream::Context, query: &Query) -> Result<Vec<Entry>> {
    let stream = match js.get_stream(&query.stream).await {
        Ok(s) => s,
        Err(e) => {
            if let GetStreamErrorKind::JetStream(j) = e.kind()
                && j.error_code() == ErrorCode::STREAM_NOT_FOUND
            {
                bail!(
                    "no conflict stream yet: has `meshsync run` started on this mesh? \
                     (stream {} not found)",
                    query.stream
                );
            }
            return Err(e).with_context(|| format!("cannot read stream {}", query.stream));
        }
    };
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::ByStartTime {
                start_time: query.start,
            },
            ack_policy: AckPolicy::None,
            filter_subject: query.filter.clone(),
            inactive_threshold: Duration::from_secs(60),
            description: Some("meshsync conflicts".to_owned()),
            ..Default::default()
        })
        .await
        .with_context(|| format!("cannot read stream {}", query.stream))?;
    let total = consumer.cached_info().num_pending;
    let name = consumer.cached_info().name.clone();
    let mut out = Vec::new();
    let mut seen: u64 = 0;
    while seen < total {
        let want = usize::try_from(total - seen)
            .unwrap_or(FETCH_BATCH)
            .min(FETCH_BATCH);
        let mut batch = consumer
            .fetch()
            .max_messages(want)
            .expires(FETCH_WAIT)
            .messages()
            .await
            .with_context(|| format!("cannot read stream {}", query.stream))?;
        let before = seen;
        while let Some(m) = batch.next().await {
            let m = m
                .map_err(|e| anyhow::anyhow!(e))
                .with_context(|| format!("cannot read stream {}", query.stream))?;
            seen += 1;
            let info = m.info().map_err(|e| anyhow::anyhow!(e.to_string()))?;
            let header = |name: &str| {
                m.headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().to_owned())
            };
            let entry = Entry {
                sequence: info.stream_sequence,
                time: info.published,
                subject: m.subject.to_string(),
                message: conflict::decode(&m.payload).map_err(|e| format!("{e:#}")),
                table: header(headers::TABLE),
            };
            if wanted(&entry, query.table.as_ref()) {
                out.push(entry);
            }
        }
        if seen == before {
            // Aged out or purged while we read: what is left is all there is.
            break;
        }
    }
    // Ephemeral: it would go by itself after the inactive threshold.
    let _ = stream.delete_consumer(&name).await;
    Ok(out)
}

/// Whether `entry` is of `table` (any table without a filter).
fn wanted(entry: &Entry, table: Option<&TableName>) -> bool {
    let Some(table) = table else { return true };
    let name = match &entry.message {
        Ok(m) => Some(m.table.as_str()),
        Err(_) => entry.table.as_deref(),
    };
    name == Some(table.to_string().as_str())
}

/// Prints the entries; a closed stdout (`| head`) ends the listing quietly.
fn print(entries: &[Entry], query: &Query, json: bool) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut text = String::new();
    for e in entries {
        if json {
            text.push_str(&json_line(e));
            text.push('\n');
        } else {
            text.push_str(&render(e));
        }
    }
    if !json {
        let start = query.start.format(&Rfc3339).unwrap_or_default();
        let table = query
            .table
            .as_ref()
            .map(|t| format!(", table {t}"))
            .unwrap_or_default();
        text.push_str(&format!(
            "{} conflict(s) since {start} on {}{table} (stream {})\n",
            entries.len(),
            query.filter,
            query.stream
        ));
    }
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("write to stdout"),
        _ => Ok(()),
    }
}

/// One conflict for people: a heading line, then one line per side.
pub fn render(e: &Entry) -> String {
    let time = e.time.format(&Rfc3339).unwrap_or_default();
    let m = match &e.message {
        Ok(m) => m,
        Err(why) => {
            return format!(
                "#{} {time} {} {}: unreadable record: {why}\n",
                e.sequence,
                e.table.as_deref().unwrap_or("?"),
                e.subject
            );
        }
    };
    let winner = m.winner.as_str();
    let mut s = format!(
        "#{} {time} {} key {} column {}  policy {}  winner {winner}  resolved by {}\n",
        e.sequence,
        m.table,
        m.key_text(),
        m.column_text(),
        m.policy,
        m.resolved_by,
    );
    for (side, version, value) in [
        ("local", &m.local, &m.local_value),
        ("incoming", &m.incoming, &m.incoming_value),
    ] {
        let value = match (m.values, value) {
            (Values::Omitted, _) => "(value omitted: sensitive table)".to_owned(),
            (Values::Included, Some(v)) => v.to_string(),
            (Values::Included, None) => String::new(),
        };
        let mark = if side == winner { "  <- winner" } else { "" };
        s.push_str(
            format!("    {side:<8} {}  {value}{mark}", version.header())
                .trim_end_matches(' ')
                .trim_end(),
        );
        s.push('\n');
    }
    s
}

/// One conflict as a JSON line: the record plus `time`, `sequence` and `subject`.
fn json_line(e: &Entry) -> String {
    let mut doc = match &e.message {
        Ok(m) => serde_json::to_value(m).unwrap_or_default(),
        Err(why) => serde_json::json!({ "table": e.table, "error": why }),
    };
    if let Some(map) = doc.as_object_mut() {
        map.insert(
            "time".to_owned(),
            e.time.format(&Rfc3339).unwrap_or_default().into(),
        );
        map.insert("sequence".to_owned(), e.sequence.into());
        map.insert("subject".to_owned(), e.subject.clone().into());
    }
    doc.to_string()
}

/// `--since`: a number and a unit, `s`, `m`, `h`, `d` or `w`.
pub fn parse_since(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration {text:?}: use a number and a unit s, m, h, d or w, e.g. 30s, 10m, 2h, 1d"
        )
    };
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(secs).map(Duration::from_secs).ok_or_else(bad)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod tests {
    use std::{collections::HashSet, sync::Arc};

    use meshsync_core::{Hlc, Value, Version};
    use meshsync_merge::{Conflict, ConflictRecord, Winner};
    use meshsync_nats::Topology;
    use meshsync_testkit::NatsServer;

    use super::*;
    use crate::{conflict_log::ConflictLog, metrics::Counters};

    #[test]
    fn since_takes_a_number_and_a_unit() {
        assert_eq!(parse_since("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_since("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_since("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_since("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_since("1w"), Ok(Duration::from_secs(604_800)));
        for bad in ["", "10", "m", "1.5h", "-1h", "1y", "99999999999999999999d"] {
            assert!(parse_since(bad).is_err(), "{bad:?}");
        }
        // A very long look-back reads from the start of the stream.
        let now = OffsetDateTime::now_utc();
        assert_eq!(
            start_time(now, Duration::from_secs(u64::MAX)),
            OffsetDateTime::UNIX_EPOCH
        );
        assert_eq!(
            start_time(now, Duration::from_secs(3600)),
            now - time::Duration::hours(1)
        );
    }

    fn record(table: &str, key: i64, node: u64) -> ConflictRecord {
        let v =
            |time, origin: &str| Version::new(Hlc { time, node }, PeerId::new(origin).unwrap(), 0);
        ConflictRecord {
            table: TableName::parse(table).unwrap(),
            key_values: vec![Value::Int(key)],
            conflict: Conflict {
                column: Some("v".into()),
                local: v(10, "a"),
                incoming: v(20, "b"),
                policy: "lww-column".into(),
                winner: Winner::Incoming,
            },
            local_value: Some(Value::Text("old".into())),
            incoming_value: Some(Value::Text("new".into())),
        }
    }

    fn query(filter: &str, table: Option<&str>, start: OffsetDateTime) -> Query {
        Query {
            stream: conflict::STREAM.to_owned(),
            filter: filter.to_owned(),
            start,
            table: table.map(|t| TableName::parse(t).unwrap()),
        }
    }

    #[tokio::test]
    async fn reads_this_peers_conflicts_by_time_table_and_peer() {
        let nats = NatsServer::start_single().await.unwrap();
        let client = meshsync_nats::connect(&nats.client_url(), "test", &Default::default())
            .await
            .unwrap();
        let js = jetstream::new(client.clone());
        let early = OffsetDateTime::now_utc() - time::Duration::minutes(1);
        let missing = read(&js, &query("mesh.conflicts.a", None, early))
            .await
            .unwrap_err();
        assert!(
            format!("{missing:#}").contains("no conflict stream yet"),
            "{missing:#}"
        );

        let topology = Topology::Direct { replicas: 1 };
        meshsync_nats::provision(&client, &topology).await.unwrap();
        let log = |peer: &str, sensitive: &[&str]| {
            ConflictLog::new(
                js.clone(),
                PeerId::new(peer).unwrap(),
                &topology,
                sensitive
                    .iter()
                    .map(|t| TableName::parse(t).unwrap())
                    .collect::<HashSet<_>>(),
            )
            .with_counters(Arc::new(Counters::default()))
        };
        log("a", &["public.users"])
            .publish(&[record("public.items", 1, 1), record("public.users", 2, 1)])
            .await
            .unwrap();
        log("b", &[])
            .publish(&[record("public.items", 3, 2)])
            .await
            .unwrap();

        let mine = read(&js, &query("mesh.conflicts.a", None, early))
            .await
            .unwrap();
        assert_eq!(mine.len(), 2);
        let text: String = mine.iter().map(render).collect();
        assert!(
            text.contains(
                "public.items key [1] column v  policy lww-column  winner incoming  resolved by a"
            ),
            "{text}"
        );
        assert!(text.contains("\"new\"  <- winner"), "{text}");
        assert!(text.contains("\"old\""), "{text}");
        assert!(text.contains("public.users key [2] column v"), "{text}");
        assert!(text.contains("(value omitted: sensitive table)"), "{text}");
        assert_eq!(text.matches("\"old\"").count(), 1, "{text}");

        let items = read(&js, &query("mesh.conflicts.a", Some("public.items"), early))
            .await
            .unwrap();
        assert_eq!(items.len(), 1);
        let all = read(&js, &query(conflict::SUBJECTS, None, early))
            .await
            .unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].subject, "mesh.conflicts.b");
        let json = json_line(&all[2]);
        let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(doc["resolved_by"], "b");
        assert_eq!(doc["sequence"], 3);
        assert_eq!(doc["incoming_value"], "new");
        let later = OffsetDateTime::now_utc() + time::Duration::minutes(1);
        assert!(
            read(&js, &query(conflict::SUBJECTS, None, later))
                .await
                .unwrap()
                .is_empty()
        );
    }
}
