//! Errors at the NATS boundary.

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Something NATS or JetStream refused or could not do.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// No connection to the servers.
    #[error("cannot connect to NATS; check nats.url and that the server runs")]
    Connect(#[source] async_nats::ConnectError),
    /// The server refused this client, or TLS could not be set up: a certificate that did
    /// not pass either way, credentials it does not accept, a certificate file that does not
    /// parse. Retrying cannot cure it.
    #[error(
        "NATS refused the connection, or TLS to it could not be set up: check the user, \
         password or token in nats.url and nats.tls_ca_file, nats.tls_cert_file, \
         nats.tls_key_file (a tls:// URL's host must be a name in the server's certificate)"
    )]
    Refused(#[source] async_nats::ConnectError),
    /// A certificate file named in the configuration cannot be read.
    #[error("nats.{field}: cannot read {path}: {source}")]
    TlsFile {
        /// The configuration key.
        field: &'static str,
        /// The path given.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A stream could not be created, read or updated.
    #[error("cannot provision stream {stream}")]
    Provision {
        /// The stream.
        stream: String,
        /// What JetStream said.
        #[source]
        source: BoxError,
    },
    /// A batch could not be encoded (a bug, not bad input).
    #[error("cannot encode a change batch")]
    Encode(#[source] meshsync_wire::WireError),
    /// The publish was not sent, or JetStream did not acknowledge it.
    #[error("publish to {subject} was not acknowledged")]
    Publish {
        /// Subject published to.
        subject: String,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
    /// The consumer could not be created or read.
    #[error("cannot read from consumer {consumer} on stream {stream}")]
    Consume {
        /// Stream name.
        stream: String,
        /// Durable consumer name.
        consumer: String,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
    /// An ack, nak or term did not reach the server.
    #[error("cannot acknowledge message {sequence}")]
    Ack {
        /// Stream sequence of the message.
        sequence: u64,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
}

impl NatsError {
    /// Provisioning error for `stream`.
    pub(crate) fn provision(stream: &str, source: impl Into<BoxError>) -> Self {
        NatsError::Provision {
            stream: stream.to_owned(),
            source: source.into(),
        }
    }
}
