//! The logical replication connection: startup and authentication, `START_REPLICATION` with
//! the pgoutput options meshsync needs, then the server's frames in and standby status out.
//!
//! Written on `postgres-protocol` (message builders and SCRAM) because the client crates
//! either fix the pgoutput options (pgwire-replication 0.5 cannot pass `origin 'none'`) or
//! drop buffered data when a read is cancelled. Here no read is ever cancelled: a reader task
//! owns the socket's read half and hands frames over a channel, and a writer task owns the
//! write half and sends status updates on a timer, when a keep-alive asks, and when the
//! confirmed position moves.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::{
    authentication::{
        md5_hash,
        sasl::{self, ChannelBinding, ScramSha256},
    },
    message::frontend,
};

use super::{
    pgoutput::PG_EPOCH_OFFSET_MICROS,
    tls::{self, Negotiated, TlsOptions},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpStream, UnixStream},
    sync::{Notify, mpsc, watch},
    task::JoinHandle,
};

/// How often the writer reports the confirmed position even when nothing asks.
const STATUS_INTERVAL: Duration = Duration::from_millis(500);

/// Batches of frames the reader may hold ahead of the consumer (a batch is what one read of
/// the socket brought, at most [`READ_CHUNK`] bytes).
const BATCH_BUFFER: usize = 64;

/// Bytes the reader asks the socket for at once.
const READ_CHUNK: usize = 64 * 1024;

/// Largest backend message accepted (a row of pgoutput is one message).
const MAX_MESSAGE: usize = 1 << 30;

/// What went wrong on the replication connection.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The socket failed or closed.
    #[error("replication connection: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent an error.
    #[error("the server refused: {severity} {code}: {message}")]
    Server {
        /// ERROR, FATAL, ...
        severity: String,
        /// SQLSTATE.
        code: String,
        /// The message.
        message: String,
    },
    /// The server asked for an authentication meshsync does not speak.
    #[error(
        "the server asks for {0} authentication; meshsync speaks trust, password, md5 and \
         SCRAM-SHA-256: change pg_hba.conf for the replication connection"
    )]
    Auth(String),
    /// The server sent something the protocol does not allow here.
    #[error("replication protocol: {0}")]
    Protocol(String),
    /// The server ended the stream (CopyDone) or the connection.
    #[error("the server ended the replication stream")]
    Ended,
    /// TLS that `sslmode` asks for could not be had: refused by the server, a certificate
    /// that did not pass, or certificate files that cannot be read.
    #[error("replication connection TLS: {0}")]
    Tls(String),
}

impl ReplicationError {
    /// Whether reconnecting may cure it: everything but an authentication meshsync does not
    /// speak and TLS that cannot be had (both need a change of configuration).
    pub fn is_transient(&self) -> bool {
        !matches!(self, ReplicationError::Auth(_) | ReplicationError::Tls(_))
    }
}

/// One frame of the stream.
#[derive(Debug)]
pub enum Frame {
    /// A pgoutput message.
    XLogData {
        /// The server's WAL end when it sent the frame.
        wal_end: u64,
        /// The message.
        data: Bytes,
    },
    /// A keep-alive (the reply it may ask for is sent by the writer).
    KeepAlive {
        /// The server's WAL end.
        wal_end: u64,
    },
}

/// Where to connect and as whom.
#[derive(Clone, Debug)]
pub struct Target<'a> {
    /// Host name or address, or the directory of the server's Unix socket (starts with `/`).
    pub host: &'a str,
    /// Port.
    pub port: u16,
    /// User with REPLICATION.
    pub user: &'a str,
    /// Password, possibly empty.
    pub password: &'a str,
    /// Database.
    pub database: &'a str,
    /// `application_name` of the session.
    pub application_name: &'a str,
    /// TLS over TCP (`sslmode` and certificates).
    pub tls: &'a TlsOptions,
}

/// The read half of the connection, over TCP or a Unix socket.
type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;

/// The write half of the connection.
type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// Connects to `target`: a host over TCP, with TLS as its `sslmode` asks, or, when the host
/// is a directory (it starts with `/`, as in libpq), the server's Unix socket
/// `.s.PGSQL.<port>` there, the one sqlx's sessions reach through the same URL.
async fn open(target: &Target<'_>) -> Result<(ReadHalf, WriteHalf), ReplicationError> {
    if target.host.starts_with('/') {
        let path = std::path::Path::new(target.host).join(format!(".s.PGSQL.{}", target.port));
        let (read, write) = UnixStream::connect(path).await?.into_split();
        return Ok((Box::new(read), Box::new(write)));
    }
    let socket = TcpStream::connect((target.host, target.port)).await?;
    socket.set_nodelay(true)?;
    Ok(
        match tls::negotiate(socket, target.host, target.tls).await? {
            Negotiated::Plain(socket) => {
                let (read, write) = socket.into_split();
                (Box::new(read), Box::new(write))
            }
            Negotiated::Tls(stream) => {
                let (read, write) = tokio::io::split(stream);
                (Box::new(read), Box::new(write))
            }
        },
    )
}

/// An open logical replication stream. Dropping it stops both tasks and closes the socket.
pub struct ReplicationStream {
    frames: mpsc::Receiver<Vec<Result<Frame, ReplicationError>>>,
    /// Frames of the last batch not handed out yet.
    ready: std::collections::VecDeque<Result<Frame, ReplicationError>>,
    confirmed: watch::Sender<u64>,
    server_version: u32,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for ReplicationStream {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

impl ReplicationStream {
    /// Connects, authenticates, and starts streaming from `slot` with `options` (pgoutput's
    /// `name 'value'` pairs) given by `options_for(server_version_num)`.
    pub async fn start(
        target: &Target<'_>,
        slot: &str,
        options_for: impl FnOnce(u32) -> Vec<(&'static str, String)>,
    ) -> Result<ReplicationStream, ReplicationError> {
        let (read, mut write) = open(target).await?;
        let mut read = MessageReader::new(read);
        let server_version = handshake(&mut read, &mut write, target).await?;
        let options = options_for(server_version);
        let sql = start_sql(slot, &options);
        let mut buf = BytesMut::new();
        frontend::query(&sql, &mut buf)?;
        write.write_all(&buf).await?;
        loop {
            let (tag, body) = read.next().await?;
            match tag {
                b'W' => break,
                b'E' => return Err(server_error(&body)),
                b'N' => {}
                other => {
                    return Err(ReplicationError::Protocol(format!(
                        "expected CopyBothResponse to START_REPLICATION, got message '{}'",
                        other as char
                    )));
                }
            }
        }
        let received = Arc::new(AtomicU64::new(0));
        let asked = Arc::new(Notify::new());
        let (frames_tx, frames) = mpsc::channel(BATCH_BUFFER);
        let (confirmed, confirmed_rx) = watch::channel(0u64);
        let reader = tokio::spawn(read_frames(
            read,
            frames_tx.clone(),
            Arc::clone(&received),
            Arc::clone(&asked),
        ));
        let writer = tokio::spawn(async move {
            if let Err(e) = send_status(write, received, asked, confirmed_rx).await {
                let _ = frames_tx.send(vec![Err(e)]).await;
            }
        });
        Ok(ReplicationStream {
            frames,
            ready: Default::default(),
            confirmed,
            server_version,
            reader,
            writer,
        })
    }

    /// The server's `server_version_num` (e.g. 170010).
    pub fn server_version(&self) -> u32 {
        self.server_version
    }

    /// The next frame; an error ends the stream.
    pub async fn next(&mut self) -> Result<Frame, ReplicationError> {
        loop {
            if let Some(frame) = self.ready.pop_front() {
                return frame;
            }
            match self.frames.recv().await {
                Some(batch) => self.ready.extend(batch),
                None => return Err(ReplicationError::Ended),
            }
        }
    }

    /// Reports everything up to `lsn` as flushed: the slot may release it.
    pub fn confirm(&self, lsn: u64) {
        self.confirmed.send_if_modified(|c| {
            let moved = lsn > *c;
            *c = (*c).max(lsn);
            moved
        });
    }
}

/// `START_REPLICATION` for `slot` from its confirmed position.
fn start_sql(slot: &str, options: &[(&'static str, String)]) -> String {
    let options: Vec<String> = options
        .iter()
        .map(|(k, v)| format!("{k} '{}'", v.replace('\'', "''")))
        .collect();
    format!(
        "START_REPLICATION SLOT \"{}\" LOGICAL 0/0 ({})",
        slot.replace('"', "\"\""),
        options.join(", ")
    )
}

/// Startup and authentication, up to ReadyForQuery; returns `server_version_num`.
async fn handshake(
    read: &mut MessageReader,
    write: &mut (impl AsyncWrite + Unpin),
    t: &Target<'_>,
) -> Result<u32, ReplicationError> {
    let mut buf = BytesMut::new();
    frontend::startup_message(
        [
            ("user", t.user),
            ("database", t.database),
            ("replication", "database"),
            ("application_name", t.application_name),
        ],
        &mut buf,
    )?;
    write.write_all(&buf).await?;
    let mut scram: Option<ScramSha256> = None;
    let mut version = None;
    loop {
        let (tag, mut body) = read.next().await?;
        buf.clear();
        match tag {
            b'R' => {
                let code = get_i32(&mut body)?;
                match code {
                    0 => {}
                    3 => frontend::password_message(t.password.as_bytes(), &mut buf)?,
                    5 => {
                        let mut salt = [0u8; 4];
                        if body.len() < 4 {
                            return Err(short("MD5 salt"));
                        }
                        body.copy_to_slice(&mut salt);
                        let hash = md5_hash(t.user.as_bytes(), t.password.as_bytes(), salt);
                        frontend::password_message(hash.as_bytes(), &mut buf)?;
                    }
                    10 => {
                        let offered: Vec<&[u8]> =
                            body.split(|b| *b == 0).filter(|m| !m.is_empty()).collect();
                        if !offered.contains(&sasl::SCRAM_SHA_256.as_bytes()) {
                            let names: Vec<String> = offered
                                .iter()
                                .map(|m| String::from_utf8_lossy(m).into_owned())
                                .collect();
                            return Err(ReplicationError::Auth(names.join(" or ")));
                        }
                        let s =
                            ScramSha256::new(t.password.as_bytes(), ChannelBinding::unsupported());
                        frontend::sasl_initial_response(
                            sasl::SCRAM_SHA_256,
                            s.message(),
                            &mut buf,
                        )?;
                        scram = Some(s);
                    }
                    11 => {
                        let s = scram.as_mut().ok_or_else(|| unexpected("SASL continue"))?;
                        s.update(&body)?;
                        frontend::sasl_response(s.message(), &mut buf)?;
                    }
                    12 => {
                        let s = scram.as_mut().ok_or_else(|| unexpected("SASL final"))?;
                        s.finish(&body)?;
                    }
                    other => return Err(ReplicationError::Auth(format!("method {other}"))),
                }
                if !buf.is_empty() {
                    write.write_all(&buf).await?;
                }
            }
            b'S' => {
                let mut parts = body.split(|b| *b == 0);
                if parts.next() == Some(b"server_version".as_slice()) {
                    version = parts.next().and_then(version_num);
                }
            }
            b'E' => return Err(server_error(&body)),
            b'Z' => {
                return version.ok_or_else(|| {
                    ReplicationError::Protocol("no server_version reported".into())
                });
            }
            // BackendKeyData, notices.
            _ => {}
        }
    }
}

/// `server_version` ("15.18 (Debian ...)", "17.10", "16beta2") as `server_version_num`.
fn version_num(text: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(text).ok()?;
    let digits = |s: &str| -> Option<u32> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        s[..end].parse().ok()
    };
    let major = digits(text)?;
    let minor = text
        .split_once('.')
        .and_then(|(_, rest)| digits(rest))
        .unwrap_or(0);
    Some(major * 10_000 + minor)
}

/// Reads backend messages for as long as the stream runs, handing them to `out` in batches:
/// all that one read of the socket completed. On PostgreSQL 15 a catch-up streams every row
/// apply wrote back to capture, one small message each; reading them one by one (a buffer
/// each, a channel hand-over each) was most of the agent's cost of dropping them.
async fn read_frames(
    mut read: MessageReader,
    out: mpsc::Sender<Vec<Result<Frame, ReplicationError>>>,
    received: Arc<AtomicU64>,
    asked: Arc<Notify>,
) {
    loop {
        let mut batch = Vec::new();
        let mut failed = false;
        while !failed {
            let frame = match read.split() {
                Ok(Some((b'd', body))) => copy_data(body, &received, &asked),
                Ok(Some((b'E', body))) => Err(server_error(&body)),
                Ok(Some((b'c', _))) => Err(ReplicationError::Ended),
                Ok(Some(_)) => continue, // notices, parameter changes
                Ok(None) => break,
                Err(e) => Err(e),
            };
            failed = frame.is_err();
            batch.push(frame);
        }
        if !batch.is_empty() && out.send(batch).await.is_err() {
            return;
        }
        if failed {
            return;
        }
        if let Err(e) = read.fill().await {
            let _ = out.send(vec![Err(e)]).await;
            return;
        }
    }
}

/// One CopyData of the stream: XLogData (`w`) or a keep-alive (`k`).
fn copy_data(
    mut body: Bytes,
    received: &AtomicU64,
    asked: &Notify,
) -> Result<Frame, ReplicationError> {
    let kind = if body.is_empty() {
        return Err(short("CopyData"));
    } else {
        body.get_u8()
    };
    match kind {
        b'w' => {
            if body.len() < 24 {
                return Err(short("XLogData header"));
            }
            let _start = body.get_u64();
            let wal_end = body.get_u64();
            let _sent = body.get_i64();
            received.fetch_max(wal_end, Ordering::Relaxed);
            Ok(Frame::XLogData {
                wal_end,
                data: body,
            })
        }
        b'k' => {
            if body.len() < 17 {
                return Err(short("keep-alive"));
            }
            let wal_end = body.get_u64();
            let _sent = body.get_i64();
            received.fetch_max(wal_end, Ordering::Relaxed);
            if body.get_u8() == 1 {
                asked.notify_one();
            }
            Ok(Frame::KeepAlive { wal_end })
        }
        other => Err(ReplicationError::Protocol(format!(
            "unknown CopyData kind '{}'",
            other as char
        ))),
    }
}

/// Sends standby status updates until the connection or the stream goes away.
async fn send_status(
    mut write: WriteHalf,
    received: Arc<AtomicU64>,
    asked: Arc<Notify>,
    mut confirmed: watch::Receiver<u64>,
) -> Result<(), ReplicationError> {
    let mut tick = tokio::time::interval(STATUS_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = BytesMut::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = asked.notified() => {}
            changed = confirmed.changed() => if changed.is_err() { return Ok(()) },
        }
        let flushed = *confirmed.borrow_and_update();
        let written = received.load(Ordering::Relaxed).max(flushed);
        buf.clear();
        frontend::CopyData::new(status_update(written, flushed))?.write(&mut buf);
        write.write_all(&buf).await?;
    }
}

/// A standby status update (`r`): written, flushed and applied positions, clock, no reply
/// asked. For a logical slot the flushed position is what the server may release.
fn status_update(written: u64, flushed: u64) -> Bytes {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let mut b = BytesMut::with_capacity(34);
    b.put_u8(b'r');
    b.put_u64(written);
    b.put_u64(flushed);
    b.put_u64(flushed);
    b.put_i64(now - PG_EPOCH_OFFSET_MICROS);
    b.put_u8(0);
    b.freeze()
}

/// Backend messages cut from a buffer the socket fills in large reads; a message's body is
/// a slice of that buffer, not a copy.
struct MessageReader {
    read: ReadHalf,
    buf: BytesMut,
}

impl MessageReader {
    fn new(read: ReadHalf) -> MessageReader {
        MessageReader {
            read,
            buf: BytesMut::with_capacity(READ_CHUNK),
        }
    }

    /// The next message, reading as much as it takes.
    async fn next(&mut self) -> Result<(u8, Bytes), ReplicationError> {
        loop {
            if let Some(message) = self.split()? {
                return Ok(message);
            }
            self.fill().await?;
        }
    }

    /// The first complete message in the buffer, if there is one.
    fn split(&mut self) -> Result<Option<(u8, Bytes)>, ReplicationError> {
        let Some(header) = self.buf.get(..5) else {
            return Ok(None);
        };
        let tag = header[0];
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if !(4..=MAX_MESSAGE).contains(&len) {
            return Err(ReplicationError::Protocol(format!(
                "message '{}' claims {len} bytes",
                tag as char
            )));
        }
        if self.buf.len() < 1 + len {
            // Room for the rest of a long message at once.
            self.buf.reserve(1 + len - self.buf.len());
            return Ok(None);
        }
        let mut message = self.buf.split_to(1 + len);
        message.advance(5);
        Ok(Some((tag, message.freeze())))
    }

    /// Reads what the socket has (at least one byte); the end of the connection is
    /// [`ReplicationError::Ended`].
    async fn fill(&mut self) -> Result<(), ReplicationError> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        match self.read.read_buf(&mut self.buf).await? {
            0 => Err(ReplicationError::Ended),
            _ => Ok(()),
        }
    }
}

/// An ErrorResponse's severity, code and message.
fn server_error(body: &[u8]) -> ReplicationError {
    let (mut severity, mut code, mut message) = (String::new(), String::new(), String::new());
    for field in body.split(|b| *b == 0) {
        if let Some((kind, value)) = field.split_first() {
            let value = String::from_utf8_lossy(value).into_owned();
            match kind {
                b'S' => severity = value,
                b'C' => code = value,
                b'M' => message = value,
                _ => {}
            }
        }
    }
    ReplicationError::Server {
        severity,
        code,
        message,
    }
}

fn get_i32(body: &mut Bytes) -> Result<i32, ReplicationError> {
    if body.len() < 4 {
        return Err(short("authentication request"));
    }
    Ok(body.get_i32())
}

fn short(what: &str) -> ReplicationError {
    ReplicationError::Protocol(format!("{what} is cut short"))
}

fn unexpected(what: &str) -> ReplicationError {
    ReplicationError::Protocol(format!("{what} without a SASL exchange"))
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::{MessageReader, READ_CHUNK, ReplicationError, start_sql, version_num};

    /// A backend message: tag, length, body.
    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[tokio::test]
    async fn messages_are_cut_whole_from_reads_of_any_size() {
        let long: Vec<u8> = (0..READ_CHUNK * 3 + 17).map(|i| i as u8).collect();
        let sent = [
            message(b'd', b"first"),
            message(b'd', &long),
            message(b'k', b""),
            message(b'd', b"last"),
        ];
        // A pipe of 7 bytes: every message arrives in pieces, some reads hold two.
        let (mut tx, rx) = tokio::io::duplex(7);
        let bytes = sent.concat();
        tokio::spawn(async move { tx.write_all(&bytes).await });
        let mut reader = MessageReader::new(Box::new(rx));
        for (tag, body) in [
            (b'd', &b"first"[..]),
            (b'd', &long[..]),
            (b'k', &b""[..]),
            (b'd', &b"last"[..]),
        ] {
            let (t, b) = reader.next().await.unwrap();
            assert_eq!((t, &b[..]), (tag, body));
        }
        // The writer is gone: the stream ended.
        assert!(matches!(reader.next().await, Err(ReplicationError::Ended)));
    }

    #[tokio::test]
    async fn a_length_below_its_own_size_is_a_protocol_error() {
        let bad = [b'd', 0, 0, 0, 3, b'x'];
        let mut reader = MessageReader::new(Box::new(std::io::Cursor::new(bad.to_vec())));
        assert!(matches!(
            reader.next().await,
            Err(ReplicationError::Protocol(m)) if m.contains("claims 3 bytes")
        ));
    }

    #[test]
    fn server_versions_read_as_numbers() {
        assert_eq!(
            version_num(b"15.18 (Debian 15.18-0+deb12u1)"),
            Some(150_018)
        );
        assert_eq!(version_num(b"17.10"), Some(170_010));
        assert_eq!(version_num(b"16beta2"), Some(160_000));
        assert_eq!(version_num(b"x"), None);
    }

    #[test]
    fn start_replication_quotes_names_and_values() {
        let sql = start_sql(
            "meshsync_b",
            &[
                ("publication_names", "meshsync_b".into()),
                ("origin", "none".into()),
            ],
        );
        assert_eq!(
            sql,
            "START_REPLICATION SLOT \"meshsync_b\" LOGICAL 0/0 \
             (publication_names 'meshsync_b', origin 'none')"
        );
        assert!(start_sql("a", &[("x", "it's".into())]).contains("x 'it''s'"));
    }
}
