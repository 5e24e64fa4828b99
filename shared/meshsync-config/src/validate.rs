//! Rules a parsed config must keep, checked without I/O.

use std::collections::HashSet;

use meshsync_core::{PeerId, TableName};

use crate::model::Config;

/// A field that breaks a rule: which field, what is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}; {fix}")]
pub struct Invalid {
    /// Dotted path of the field, e.g. `database.tables[1]`.
    pub field: String,
    /// What is wrong.
    pub problem: String,
    /// What to do.
    pub fix: String,
}

fn invalid(
    field: impl Into<String>,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> Invalid {
    Invalid {
        field: field.into(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

impl Config {
    /// Checks every rule that needs no I/O.
    pub fn validate(&self) -> Result<(), Invalid> {
        PeerId::new(&self.peer.id)
            .map_err(|e| invalid("peer.id", e.to_string(), "pick an id like \"site-a\""))?;

        let url = self.nats.url.expose();
        for (i, one) in url.split(',').enumerate() {
            let one = one.trim();
            if !["nats://", "tls://", "ws://", "wss://"]
                .iter()
                .any(|s| one.starts_with(s))
            {
                return Err(invalid(
                    "nats.url",
                    format!(
                        "server {} ({}) has no nats:// scheme",
                        i + 1,
                        redact_nats(one)
                    ),
                    "write it as nats://HOST:PORT, comma-separate several servers",
                ));
            }
        }
        if let Some(domain) = &self.nats.domain {
            let ok = !domain.is_empty()
                && domain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(invalid(
                    "nats.domain",
                    format!("{domain:?} is not a valid JetStream domain"),
                    "use the `domain` of this site's leaf node: letters, digits, '-' and '_'",
                ));
            }
        }

        if !matches!(self.nats.replicas, 1 | 3 | 5) {
            return Err(invalid(
                "nats.replicas",
                format!("{} replicas is not useful", self.nats.replicas),
                "use 1 (single server), 3 or 5 (hub cluster of at least that many nodes)",
            ));
        }

        if self.nats.tls_cert_file.is_some() != self.nats.tls_key_file.is_some() {
            return Err(invalid(
                if self.nats.tls_cert_file.is_some() {
                    "nats.tls_cert_file"
                } else {
                    "nats.tls_key_file"
                },
                "a client certificate needs its key and the key its certificate",
                "give both nats.tls_cert_file and nats.tls_key_file, or neither",
            ));
        }

        let engine = self.database.engine;
        let db_url = self.database.url.expose();
        if !engine.url_schemes().iter().any(|s| db_url.starts_with(s)) {
            return Err(invalid(
                "database.url",
                format!(
                    "{} does not look like a {} URL",
                    self.database.url,
                    engine.as_str()
                ),
                format!("start it with {}", engine.url_schemes().join(" or ")),
            ));
        }
        if self.database.tables.is_empty() {
            return Err(invalid(
                "database.tables",
                "no tables listed",
                "list the tables to replicate, e.g. tables = [\"public.items\"]",
            ));
        }
        let mut seen = HashSet::new();
        for (i, t) in self.database.tables.iter().enumerate() {
            let field = format!("database.tables[{i}]");
            let name =
                TableName::parse(t).map_err(|e| invalid(&field, e.to_string(), "fix the name"))?;
            if !seen.insert(name) {
                return Err(invalid(
                    field,
                    format!("{t:?} is listed twice"),
                    "list each table once",
                ));
            }
        }
        let replicated: HashSet<TableName> = seen;
        let named = self
            .merge
            .sensitive
            .iter()
            .map(|t| ("merge.sensitive", t))
            .chain(self.merge.tables.keys().map(|t| ("merge.tables", t)));
        for (field, t) in named {
            let name = TableName::parse(t)
                .map_err(|e| invalid(format!("{field}.{t}"), e.to_string(), "fix the name"))?;
            if !replicated.contains(&name) {
                return Err(invalid(
                    format!("{field}.{t}"),
                    format!("{t:?} is not a replicated table"),
                    "add it to database.tables or remove it here",
                ));
            }
        }
        if self.merge.tombstone_retention_s == 0 {
            return Err(invalid(
                "merge.tombstone_retention_s",
                "0 s would forget deletes at once",
                "use at least the longest time a peer may be offline (default 604800 = 7 days)",
            ));
        }
        if self.clock.future_bound_ms == 0 || self.clock.future_bound_ms > 3_600_000 {
            return Err(invalid(
                "clock.future_bound_ms",
                format!("{} ms is out of range", self.clock.future_bound_ms),
                "use 1 to 3600000 (default 500); keep the peers' clocks in sync with NTP",
            ));
        }
        Ok(())
    }
}

/// NATS URLs may carry `user:pass@`; keep it out of messages.
fn redact_nats(url: &str) -> String {
    crate::Secret::new(url).redacted()
}
