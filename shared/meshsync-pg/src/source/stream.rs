//! The replication stream of one database, assembled into committed transactions.

use std::collections::HashMap;

use meshsync_core::{Acked, Hlc, TableName};
use tracing::warn;

use crate::{
    catalog::TableInfo,
    error::PgError,
    setup::{APPLY_ORIGIN_PREFIX, Names},
    source::{
        pgoutput::{self, PgMessage},
        replication::{Frame, ReplicationStream, Target},
        row::{RelationCache, RowImage, RowMessage, decode_row},
        tls::TlsOptions,
    },
    types::PgType,
};

/// Prefix of the logical message each apply transaction emits with the highest HLC it
/// applied, so capture can order later local writes after it (I8) from the WAL alone.
pub const APPLIED_HLC_PREFIX: &str = "meshsync.hlc";

/// One committed transaction, in commit order.
#[derive(Debug)]
pub struct CapturedTxn {
    /// End LSN of the commit: the position to confirm once published.
    pub end_lsn: u64,
    /// Commit time, microseconds since the Unix epoch (server clock).
    pub commit_unix_micros: i64,
    /// Transaction id.
    pub xid: u32,
    /// Written by a meshsync apply session: never published again (I7).
    pub from_apply: bool,
    /// Highest HLC an apply transaction applied (its logical message).
    pub applied_hlc: Option<Hlc>,
    /// Row changes of replicated tables, in order.
    pub rows: Vec<RowImage>,
    /// Rows that could not be read (type conversion), counted and logged, never published.
    pub skipped: usize,
    /// Rows of an apply transaction that reached capture and were dropped unread: none on
    /// PostgreSQL 16 and later, which leaves them out.
    pub echoed: u64,
}

/// What the stream produced.
#[derive(Debug)]
pub enum SourceEvent {
    /// A committed transaction.
    Txn(CapturedTxn),
    /// The server's WAL end while no transaction is open: safe to confirm once everything
    /// before it is published (keeps an idle slot from holding WAL).
    Idle {
        /// Server WAL end.
        wal_end: u64,
    },
}

/// Connection parts the replication protocol needs.
#[derive(Clone, Debug)]
pub struct ConnParts {
    /// Host or socket directory.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User (needs REPLICATION).
    pub user: String,
    /// Password, possibly empty.
    pub password: String,
    /// Database.
    pub database: String,
    /// TLS: `sslmode` and certificates (boxed: rarely read, and it would double the size of
    /// everything that carries connection parts).
    pub tls: Box<TlsOptions>,
}

impl ConnParts {
    /// Parses a `postgres://user:pass@host:port/db` URL as sqlx reads it: the host may be a
    /// Unix socket directory percent-encoded (`postgres://%2Frun%2Fpostgresql/db`), and the
    /// query parameters `host` (a name or a socket directory), `port`, `user`, `password` and
    /// `dbname` override the parts before them. TLS: `sslmode`, `sslrootcert`, `sslcert`,
    /// `sslkey` (and sqlx's other spellings of them), else the `PGSSLMODE`... variables.
    pub fn from_url(text: &str) -> Result<ConnParts, PgError> {
        let url = url::Url::parse(text).map_err(|e| PgError::Url(e.to_string()))?;
        // Percent-decoding as sqlx does: a `+` is a `+`, not a space as in a query string.
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let mut parts = ConnParts {
            host: match url.host() {
                // Without its brackets, as the socket address wants it.
                Some(url::Host::Ipv6(ip)) => ip.to_string(),
                Some(host) => decode(&host.to_string()),
                None => "127.0.0.1".to_owned(),
            },
            port: url.port().unwrap_or(5432),
            user: if url.username().is_empty() {
                "postgres".into()
            } else {
                decode(url.username())
            },
            password: url.password().map(decode).unwrap_or_default(),
            database: decode(url.path().trim_start_matches('/')),
            tls: Box::new(TlsOptions::from_env()),
        };
        for (key, value) in url.query_pairs() {
            match &*key {
                "host" => parts.host = value.into_owned(),
                "port" => {
                    parts.port = value
                        .parse()
                        .map_err(|_| PgError::Url(format!("port {value:?} is not a port")))?;
                }
                "user" => parts.user = value.into_owned(),
                "password" => parts.password = value.into_owned(),
                "dbname" => parts.database = value.into_owned(),
                "sslmode" | "ssl-mode" => {
                    parts.tls.mode = value.parse().map_err(|_| {
                        PgError::Url(format!(
                            "sslmode {value:?} is not one of disable, allow, prefer, require, \
                             verify-ca, verify-full"
                        ))
                    })?;
                }
                "sslrootcert" | "ssl-root-cert" | "ssl-ca" => {
                    parts.tls.root_cert = Some(value.into_owned());
                }
                "sslcert" | "ssl-cert" => parts.tls.client_cert = Some(value.into_owned()),
                "sslkey" | "ssl-key" => parts.tls.client_key = Some(value.into_owned()),
                _ => {}
            }
        }
        if parts.database.is_empty() {
            return Err(PgError::Url("no database name in the URL path".into()));
        }
        Ok(parts)
    }

    /// Where the replication connection goes, as session `application_name`.
    pub fn target<'a>(&'a self, application_name: &'a str) -> Target<'a> {
        Target {
            host: &self.host,
            port: self.port,
            user: &self.user,
            password: &self.password,
            database: &self.database,
            application_name,
            tls: &self.tls,
        }
    }
}

/// First `server_version_num` whose pgoutput takes `origin 'none'`.
pub const ORIGIN_FILTER_VERSION: u32 = 160_000;

/// The open replication stream.
pub struct PgSource {
    stream: ReplicationStream,
    cache: RelationCache,
    tables: HashMap<TableName, TableInfo>,
    open: Option<CapturedTxn>,
}

impl PgSource {
    /// Starts streaming from the slot's confirmed position. On PostgreSQL 16 and later the
    /// server leaves out every replayed change (`origin 'none'`): apply's own rows are never
    /// decoded for this capture, only its applied-HLC message, which apply writes without its
    /// origin (I7, I8).
    pub async fn connect(
        parts: &ConnParts,
        names: &Names,
        tables: HashMap<TableName, TableInfo>,
    ) -> Result<PgSource, PgError> {
        let application_name = format!("meshsync capture {}", names.slot);
        let target = parts.target(&application_name);
        let stream = ReplicationStream::start(&target, &names.slot, |version| {
            let mut options = vec![
                ("proto_version", "1".to_owned()),
                ("publication_names", names.publication.clone()),
                ("messages", "true".to_owned()),
            ];
            if version >= ORIGIN_FILTER_VERSION {
                options.push(("origin", "none".to_owned()));
            }
            options
        })
        .await
        .map_err(PgError::Replication)?;
        Ok(PgSource {
            stream,
            cache: RelationCache::new(),
            tables,
            open: None,
        })
    }

    /// The server's `server_version_num`.
    pub fn server_version(&self) -> u32 {
        self.stream.server_version()
    }

    /// Tells the server everything up to `lsn` is published (I9): the slot may release it.
    pub fn confirm(&self, lsn: Acked<u64>) {
        self.stream.confirm(lsn.into_inner());
    }

    /// The next committed transaction or idle position.
    pub async fn next(&mut self) -> Result<SourceEvent, PgError> {
        loop {
            match self.stream.next().await.map_err(PgError::Replication)? {
                Frame::KeepAlive { wal_end } => {
                    if self.open.is_none() {
                        return Ok(SourceEvent::Idle { wal_end });
                    }
                }
                Frame::XLogData { data, .. } => {
                    if let Some(txn) = self.on_data(&data)? {
                        return Ok(SourceEvent::Txn(txn));
                    }
                }
            }
        }
    }

    /// Takes in one pgoutput message; a commit completes the open transaction.
    fn on_data(&mut self, data: &[u8]) -> Result<Option<CapturedTxn>, PgError> {
        // Apply's own rows (the origin message comes first) are dropped: not even parsed.
        if let Some(txn) = self.open.as_mut().filter(|t| t.from_apply)
            && matches!(data.first(), Some(b'I' | b'U' | b'D'))
        {
            txn.echoed += 1;
            return Ok(None);
        }
        let msg = pgoutput::decode(data).map_err(PgError::Decode)?;
        match &msg {
            PgMessage::Begin(b) => {
                self.open = Some(CapturedTxn {
                    end_lsn: 0,
                    commit_unix_micros: pgoutput::pg_time_to_unix_micros(b.commit_time),
                    xid: b.xid,
                    from_apply: false,
                    applied_hlc: None,
                    rows: Vec::new(),
                    skipped: 0,
                    echoed: 0,
                });
            }
            PgMessage::Commit(c) => {
                if let Some(mut txn) = self.open.take() {
                    txn.end_lsn = c.end_lsn;
                    txn.commit_unix_micros = pgoutput::pg_time_to_unix_micros(c.commit_time);
                    return Ok(Some(txn));
                }
            }
            PgMessage::Message(m) => {
                if m.transactional() && m.prefix == APPLIED_HLC_PREFIX {
                    let hlc = std::str::from_utf8(&m.content)
                        .ok()
                        .and_then(|s| s.parse::<Hlc>().ok());
                    if let (Some(txn), Some(hlc)) = (self.open.as_mut(), hlc) {
                        txn.applied_hlc = txn.applied_hlc.max(Some(hlc));
                    }
                }
            }
            PgMessage::Relation(rel) => {
                let table = TableName::new(rel.namespace.clone(), rel.name.clone());
                if let Some(info) = self.tables.get(&table) {
                    for col in &rel.columns {
                        if PgType::from_oid(col.type_oid).is_none()
                            && let Some(c) = info.column(&col.name)
                        {
                            self.cache.register_type(col.type_oid, c.ty.clone());
                        }
                    }
                }
                self.cache.update(rel.clone());
            }
            PgMessage::Origin(origin) => {
                if let Some(txn) = self.open.as_mut() {
                    txn.from_apply |= origin.name.starts_with(APPLY_ORIGIN_PREFIX);
                }
            }
            PgMessage::Truncate(_) => {
                // The trigger meshsync installs refuses TRUNCATE on replicated tables; one that
                // got through (trigger dropped by hand) is not replicated.
                warn!("truncate of a replicated table seen in the WAL; it is not replicated");
            }
            _ => {
                let Some(row) = RowMessage::from_message(&msg) else {
                    return Ok(None);
                };
                let Some(txn) = self.open.as_mut() else {
                    return Ok(None);
                };
                if txn.from_apply {
                    return Ok(None);
                }
                let Some(rel) = self.cache.get(row.relation()) else {
                    return Err(PgError::Row(
                        crate::source::row::RowError::UnknownRelation {
                            oid: row.relation(),
                        },
                    ));
                };
                let table = TableName::new(rel.namespace.clone(), rel.name.clone());
                let Some(info) = self.tables.get(&table) else {
                    return Ok(None);
                };
                match decode_row(&self.cache, &info.key, row) {
                    Ok(image) => txn.rows.push(image),
                    Err(e) => {
                        txn.skipped += 1;
                        warn!(table = %table, error = %e, "row change skipped: it cannot be carried");
                    }
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::ConnParts;

    #[test]
    fn urls_name_hosts_or_socket_directories_as_sqlx_reads_them() {
        let tcp = ConnParts::from_url("postgres://u:p%40s+s@db.example:5433/app").unwrap();
        assert_eq!(
            (tcp.host.as_str(), tcp.port, tcp.user.as_str()),
            ("db.example", 5433, "u")
        );
        assert_eq!(
            (tcp.password.as_str(), tcp.database.as_str()),
            ("p@s+s", "app")
        );
        let encoded = ConnParts::from_url("postgres://postgres@%2Frun%2Fpostgresql:5434/app");
        let encoded = encoded.unwrap();
        assert_eq!(
            (encoded.host.as_str(), encoded.port),
            ("/run/postgresql", 5434)
        );
        let query = ConnParts::from_url(
            "postgres://x@ignored/ignored?host=/tmp/pg&port=6000&user=me&dbname=other",
        )
        .unwrap();
        assert_eq!(
            (query.host.as_str(), query.port, query.user.as_str()),
            ("/tmp/pg", 6000, "me")
        );
        assert_eq!(query.database, "other");
        let v6 = ConnParts::from_url("postgres://[::1]:5435/app").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 5435));
        assert!(ConnParts::from_url("postgres://h/db?port=x").is_err());
        assert!(ConnParts::from_url("postgres://h/").is_err());
    }

    #[test]
    fn tls_parameters_are_read_in_sqlx_spellings() {
        use sqlx::postgres::PgSslMode;
        let libpq = ConnParts::from_url(
            "postgres://h/db?sslmode=verify-full&sslrootcert=/ca.pem&sslcert=/c.pem&sslkey=/k.pem",
        )
        .unwrap();
        assert!(matches!(libpq.tls.mode, PgSslMode::VerifyFull));
        assert_eq!(libpq.tls.root_cert.as_deref(), Some("/ca.pem"));
        assert_eq!(libpq.tls.client_cert.as_deref(), Some("/c.pem"));
        assert_eq!(libpq.tls.client_key.as_deref(), Some("/k.pem"));
        let dashed = ConnParts::from_url("postgres://h/db?ssl-mode=require&ssl-ca=/x.pem").unwrap();
        assert!(matches!(dashed.tls.mode, PgSslMode::Require));
        assert_eq!(dashed.tls.root_cert.as_deref(), Some("/x.pem"));
        let e = ConnParts::from_url("postgres://h/db?sslmode=always").unwrap_err();
        assert!(e.to_string().contains("verify-full"), "{e}");
    }
}
