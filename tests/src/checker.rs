//! The checker: every committed write, every change on the stream, and what each key must
//! hold once the mesh is quiet (I1, I2, I3, I7).

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context, Result, bail};
use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
};
use futures::StreamExt;
use meshsync_core::{Cell, ChangeBatch, Hlc, Op, Value};
use meshsync_nats::inbox::is_drained;
use meshsync_testkit::wait_until;

/// A write a test client committed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Write {
    /// Peer it was committed on.
    pub peer: String,
    /// Key.
    pub id: i32,
    /// What it did.
    pub op: &'static str,
    /// Value of `v` written (unique per write), none for deletes.
    pub v: Option<String>,
}

/// One row change as the stream holds it.
#[derive(Clone, Debug)]
pub struct StreamRow {
    /// Origin peer.
    pub origin: String,
    /// Its transaction's stamp.
    pub hlc: Hlc,
    /// Index in the transaction.
    pub index: u32,
    /// Operation.
    pub op: Op,
    /// Key.
    pub id: i32,
    /// `v` after the change.
    pub v: Option<String>,
    /// `n` after the change.
    pub n: Option<i64>,
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

/// Every batch in `stream`, in stream order.
pub async fn read_stream(client: &async_nats::Client, stream: &str) -> Result<Vec<ChangeBatch>> {
    let js = jetstream::new(client.clone());
    let mut s = js.get_stream(stream).await?;
    let total = s.info().await?.state.messages;
    let consumer = s
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await?;
    let mut out = Vec::new();
    let mut messages = consumer.messages().await?;
    while (out.len() as u64) < total {
        let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .context("reading the stream timed out")?
            .context("stream ended")??;
        out.push(meshsync_wire::decode(&msg.payload)?);
    }
    Ok(out)
}

/// The row changes of `items` in the batches.
pub fn rows_of(batches: &[ChangeBatch]) -> Vec<StreamRow> {
    let mut out = Vec::new();
    for b in batches {
        let col = |name: &str| b.columns.iter().position(|c| c == name);
        for r in &b.rows {
            let cell = |name: &str| {
                col(name)
                    .and_then(|i| r.cells.get(i))
                    .and_then(Cell::value)
                    .cloned()
            };
            out.push(StreamRow {
                origin: b.origin.to_string(),
                hlc: b.hlc,
                index: r.index,
                op: r.op,
                id: r.key.first().and_then(int).unwrap_or(-1) as i32,
                v: cell("v").and_then(|v| {
                    if let Value::Text(t) = v {
                        Some(t)
                    } else {
                        None
                    }
                }),
                n: cell("n").and_then(|v| int(&v)),
            });
        }
    }
    out
}

/// What the table must hold: per key, the change with the highest (HLC, origin, index); a
/// key whose winner is a delete is absent (I2, I3).
pub fn expected(rows: &[StreamRow]) -> Vec<(i32, String, Option<i64>)> {
    let mut winners: BTreeMap<i32, &StreamRow> = BTreeMap::new();
    for r in rows {
        let better = winners
            .get(&r.id)
            .is_none_or(|w| (r.hlc, &r.origin, r.index) > (w.hlc, &w.origin, w.index));
        if better {
            winners.insert(r.id, r);
        }
    }
    winners
        .into_values()
        .filter(|w| w.op != Op::Delete)
        .map(|w| (w.id, w.v.clone().unwrap_or_default(), w.n))
        .collect()
}

/// Checks that the stream holds exactly the committed writes, once each (I7: nothing
/// echoed, nothing lost).
pub fn check_stream_matches_writes(rows: &[StreamRow], writes: &[Write]) -> Result<()> {
    let mut from_stream: Vec<Write> = rows
        .iter()
        .map(|r| Write {
            peer: r.origin.clone(),
            id: r.id,
            op: match r.op {
                Op::Insert => "insert",
                Op::Update => "update",
                Op::Delete => "delete",
            },
            v: if r.op == Op::Delete {
                None
            } else {
                r.v.clone()
            },
        })
        .collect();
    let mut committed = writes.to_vec();
    from_stream.sort();
    committed.sort();
    if from_stream.len() != committed.len() {
        bail!(
            "the stream holds {} changes, users committed {} writes",
            from_stream.len(),
            committed.len()
        );
    }
    if from_stream != committed {
        bail!("the stream's changes differ from the committed writes");
    }
    Ok(())
}

/// Waits until the stream holds `n` row changes and every consumer has applied everything.
pub async fn wait_quiet(
    client: &async_nats::Client,
    stream: &str,
    n: usize,
    consumers: &[String],
    timeout: Duration,
) -> Result<()> {
    wait_until("every write on the stream", timeout, || {
        let client = client.clone();
        async move {
            let batches = read_stream(&client, stream).await.ok()?;
            (rows_of(&batches).len() >= n).then_some(())
        }
    })
    .await?;
    wait_drained(client, stream, consumers, timeout).await
}

/// Waits until every consumer has no pending and no unacknowledged message.
pub async fn wait_drained(
    client: &async_nats::Client,
    stream: &str,
    consumers: &[String],
    timeout: Duration,
) -> Result<()> {
    for name in consumers {
        wait_until(
            &format!("consumer {name} drained"),
            timeout,
            || async move { is_drained(client, stream, name).await.then_some(()) },
        )
        .await?;
    }
    Ok(())
}
