//! The conflict log: every conflict apply resolved, published on this peer's subject of the
//! conflict stream once the apply transaction that resolved it has committed
//! (`docs/conflicts.md`). Tables in `merge.sensitive` are logged without their values.
//!
//! A failure here never stops apply: [`ConflictLog::publish`] returns the error, the caller
//! logs it and counts it ([`Counters::add_conflict_log_failure`]) and goes on.

use std::{collections::HashSet, future::IntoFuture, sync::Arc};

use anyhow::{Context, Result, anyhow};
use async_nats::{HeaderMap, HeaderValue, jetstream};
use meshsync_core::{PeerId, TableName};
use meshsync_merge::ConflictRecord;
use meshsync_nats::topology::Topology;
use meshsync_wire::conflict::{self, Values};

use crate::metrics::Counters;

/// Publishes one peer's resolved conflicts.
#[derive(Clone, Debug)]
pub struct ConflictLog {
    js: jetstream::Context,
    peer: PeerId,
    subject: String,
    sensitive: HashSet<TableName>,
    counters: Option<Arc<Counters>>,
}

impl ConflictLog {
    /// The log of `peer`, on its conflict subject in `topology`, through `js` (connected to
    /// the hub or server in the direct topology, to the site's leaf node at an edge site).
    /// Conflicts of `sensitive` tables are logged without values.
    pub fn new(
        js: jetstream::Context,
        peer: PeerId,
        topology: &Topology,
        sensitive: HashSet<TableName>,
    ) -> ConflictLog {
        let subject = topology.endpoints(&peer).conflict_subject;
        ConflictLog {
            js,
            peer,
            subject,
            sensitive,
            counters: None,
        }
    }

    /// Counts the conflicts stored ([`crate::metrics::CONFLICTS_LOGGED`]) in `counters`.
    pub fn with_counters(mut self, counters: Arc<Counters>) -> ConflictLog {
        self.counters = Some(counters);
        self
    }

    /// The subject conflicts go to.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Publishes every record, then awaits every acknowledgement. An error says how many of
    /// the records are not in the stream; the others are. A record published again (apply
    /// redelivered after a crash) is stored once: its `Nats-Msg-Id` names the conflict.
    pub async fn publish(&self, records: &[ConflictRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut first_error: Option<anyhow::Error> = None;
        let mut acks = Vec::with_capacity(records.len());
        for record in records {
            match self.send(record).await {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let mut failed = records.len() - acks.len();
        let results =
            futures::future::join_all(acks.into_iter().map(IntoFuture::into_future)).await;
        let mut stored = 0;
        for result in results {
            match result {
                Ok(ack) if ack.duplicate => {}
                Ok(_) => stored += 1,
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert_with(|| anyhow!(e));
                }
            }
        }
        if let Some(counters) = &self.counters {
            counters.add_conflicts_logged(stored);
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err(e.context(format!(
                "{failed} of {} conflict(s) not logged on {}",
                records.len(),
                self.subject
            ))),
        }
    }

    /// Sends one record; the acknowledgement to await.
    async fn send(&self, record: &ConflictRecord) -> Result<jetstream::context::PublishAckFuture> {
        let values = if self.sensitive.contains(&record.table) {
            Values::Omitted
        } else {
            Values::Included
        };
        let encoded = conflict::encode(record, &self.peer, values)?;
        let mut headers = HeaderMap::new();
        for (name, value) in &encoded.headers {
            let value: HeaderValue = value
                .parse()
                .with_context(|| format!("header {name} of a conflict"))?;
            headers.insert(*name, value);
        }
        let ack = self
            .js
            .publish_with_headers(self.subject.clone(), headers, encoded.body.into())
            .await
            .with_context(|| format!("publish a conflict on {}", self.subject))?;
        Ok(ack)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod tests {
    use std::time::Duration;

    use meshsync_core::{Hlc, Value, Version};
    use meshsync_merge::{Conflict, Winner};
    use meshsync_testkit::NatsServer;

    use super::*;

    fn record(table: &str, key: i64, incoming_time: u64) -> ConflictRecord {
        ConflictRecord {
            table: TableName::parse(table).unwrap(),
            key_values: vec![Value::Int(key)],
            conflict: Conflict {
                column: Some("v".into()),
                local: Version::new(Hlc { time: 10, node: 1 }, PeerId::new("a").unwrap(), 0),
                incoming: Version::new(
                    Hlc {
                        time: incoming_time,
                        node: 2,
                    },
                    PeerId::new("b").unwrap(),
                    0,
                ),
                policy: "lww-column".into(),
                winner: Winner::Incoming,
            },
            local_value: Some(Value::Text("mine".into())),
            incoming_value: Some(Value::Text("theirs, grüße\n".into())),
        }
    }

    /// Every message on the stream: (subject, headers, body).
    async fn stored(js: &jetstream::Context, stream: &str) -> Vec<(String, HeaderMap, String)> {
        let mut s = js.get_stream(stream).await.unwrap();
        let last = s.info().await.unwrap().state.last_sequence;
        let mut out = Vec::new();
        for seq in 1..=last {
            let m = s.get_raw_message(seq).await.unwrap();
            out.push((
                m.subject.to_string(),
                m.headers,
                String::from_utf8(m.payload.to_vec()).unwrap(),
            ));
        }
        out
    }

    #[tokio::test]
    async fn publishes_every_record_once_and_leaves_sensitive_values_out() {
        let nats = NatsServer::start_single().await.unwrap();
        let client = meshsync_nats::connect(&nats.client_url(), "test", &Default::default())
            .await
            .unwrap();
        let topology = Topology::Direct { replicas: 1 };
        meshsync_nats::provision(&client, &topology).await.unwrap();
        let js = jetstream::new(client);
        let counters = Arc::new(Counters::default());
        let log = ConflictLog::new(
            js.clone(),
            PeerId::new("a").unwrap(),
            &topology,
            HashSet::from([TableName::new("public", "users")]),
        )
        .with_counters(Arc::clone(&counters));
        assert_eq!(log.subject(), "mesh.conflicts.a");

        let records = [record("public.items", 1, 20), record("public.users", 2, 30)];
        log.publish(&records).await.unwrap();
        // Apply redelivered after a crash: the same conflicts again are stored once.
        log.publish(&records).await.unwrap();
        log.publish(&[]).await.unwrap();
        assert_eq!(counters.conflicts(), (2, 0));

        let got = stored(&js, conflict::STREAM).await;
        assert_eq!(got.len(), 2);
        let (subject, items_headers, items_body) = &got[0];
        assert_eq!(subject, "mesh.conflicts.a");
        let h = |name: &str| items_headers.get(name).map(|v| v.as_str().to_owned());
        assert_eq!(h("Mesh-Table").as_deref(), Some("public.items"));
        assert_eq!(h("Mesh-Resolved-By").as_deref(), Some("a"));
        // Not ASCII, and a line break: the header carries it as JSON, on one line.
        assert_eq!(
            h("Mesh-Incoming-Value").as_deref(),
            Some("\"theirs, grüße\\n\"")
        );
        assert!(items_body.contains("\"mine\""));

        let (_, users_headers, users_body) = &got[1];
        assert_eq!(
            users_headers.get("Mesh-Table").map(|v| v.as_str()),
            Some("public.users")
        );
        assert_eq!(
            users_headers.get("Mesh-Values").map(|v| v.as_str()),
            Some("omitted")
        );
        for (name, values) in users_headers.iter() {
            for v in values {
                let v = v.as_str();
                assert!(
                    !v.contains("mine") && !v.contains("theirs"),
                    "a sensitive value in header {name}: {v}"
                );
            }
        }
        assert!(!users_body.contains("mine") && !users_body.contains("theirs"));
        let decoded = conflict::decode(users_body.as_bytes()).unwrap();
        assert_eq!(decoded.key, vec![serde_json::json!(2)]);
    }

    #[tokio::test]
    async fn without_a_conflict_stream_publish_fails_and_says_how_many() {
        let nats = NatsServer::start_single().await.unwrap();
        let client = meshsync_nats::connect(&nats.client_url(), "test", &Default::default())
            .await
            .unwrap();
        // Not provisioned: nothing listens on the conflict subject.
        let mut js = jetstream::new(client);
        js.set_timeout(Duration::from_secs(2));
        let counters = Arc::new(Counters::default());
        let log = ConflictLog::new(
            js,
            PeerId::new("a").unwrap(),
            &Topology::Direct { replicas: 1 },
            HashSet::new(),
        )
        .with_counters(Arc::clone(&counters));
        let err = log
            .publish(&[record("public.items", 1, 20), record("public.items", 2, 20)])
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("2 of 2 conflict(s) not logged on mesh.conflicts.a"),
            "{err:#}"
        );
        assert_eq!(counters.conflicts(), (0, 0));
    }
}
