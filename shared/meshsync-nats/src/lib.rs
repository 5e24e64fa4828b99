//! NATS JetStream plumbing of meshsync. Concrete, no traits: there is one NATS.
//!
//! - [`topology`]: idempotent creation of the streams of the direct and edge topologies.
//! - [`publisher`]: publishes change batches with stable message ids, many acks in flight;
//!   only a [`PubAck`](publisher::Acked) proves a batch is stored.
//! - [`inbox`]: the durable pull consumer apply reads from (explicit ack, redelivery).
//! - [`dead_letter`]: parks a message with its reason on the dead-letter stream.

pub mod dead_letter;
pub mod error;
pub mod inbox;
pub mod publisher;
pub mod topology;

use std::path::PathBuf;

pub use error::NatsError;
pub use topology::{Topology, provision};

/// TLS towards the NATS servers, beyond what a `tls://` URL asks for.
#[derive(Clone, Debug, Default)]
pub struct NatsTls {
    /// The CA that signed the servers' certificates (PEM); setting it requires TLS.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for servers that verify clients, with its key.
    pub client: Option<ClientCertificate>,
}

/// A client certificate and its key (PEM files).
#[derive(Clone, Debug)]
pub struct ClientCertificate {
    /// The certificate.
    pub cert_file: PathBuf,
    /// Its key.
    pub key_file: PathBuf,
}

impl NatsTls {
    /// The options for `name` with this TLS and the credentials of `urls`.
    fn options(&self, name: &str, urls: &[&str]) -> async_nats::ConnectOptions {
        let mut options = async_nats::ConnectOptions::new().name(name);
        // async-nats reads no credentials from a URL: a user and password there were never
        // sent. A user without a password is a token, as in the nats CLI.
        match credentials(urls) {
            Some((user, Some(password))) => options = options.user_and_password(user, password),
            Some((token, None)) => options = options.token(token),
            None => {}
        }
        if let Some(ca) = &self.ca_file {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some(c) = &self.client {
            options = options
                .add_client_certificate(c.cert_file.clone(), c.key_file.clone())
                .require_tls(true);
        }
        options
    }

    /// Every file named can be read: a typo is named as such, not as a failed handshake.
    fn check_files(&self) -> Result<(), NatsError> {
        let client = self.client.iter().flat_map(|c| {
            [
                ("tls_cert_file", &c.cert_file),
                ("tls_key_file", &c.key_file),
            ]
        });
        for (field, path) in self
            .ca_file
            .iter()
            .map(|p| ("tls_ca_file", p))
            .chain(client)
        {
            std::fs::File::open(path).map_err(|source| NatsError::TlsFile {
                field,
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// Connects to NATS (comma-separated URLs) with a name that shows in `nats server report`.
///
/// A server that is not up yet is waited for (connecting goes on in the background). A
/// server that refuses this client (TLS, credentials) is [`NatsError::Refused`] at once:
/// waiting would not change its answer.
pub async fn connect(
    urls: &str,
    name: &str,
    tls: &NatsTls,
) -> Result<async_nats::Client, NatsError> {
    match connect_now(urls, name, tls).await {
        Err(NatsError::Connect(_)) => tls
            .options(name, &servers(urls))
            .retry_on_initial_connect()
            .connect(servers(urls))
            .await
            .map_err(NatsError::Connect),
        other => other,
    }
}

/// One attempt to connect, for commands that report rather than wait: no server answering
/// is [`NatsError::Connect`], a refusal [`NatsError::Refused`].
pub async fn connect_now(
    urls: &str,
    name: &str,
    tls: &NatsTls,
) -> Result<async_nats::Client, NatsError> {
    use async_nats::ConnectErrorKind as Kind;
    tls.check_files()?;
    let servers = servers(urls);
    tls.options(name, &servers)
        .connect(servers)
        .await
        .map_err(|e| {
            let refused = matches!(
                e.kind(),
                Kind::Tls | Kind::Authentication | Kind::AuthorizationViolation
            ) || is_certificate_failure(&e);
            if refused {
                NatsError::Refused(e)
            } else {
                NatsError::Connect(e)
            }
        })
}

/// The user (percent-decoded) and password of the first of `urls` that names a user.
fn credentials(urls: &[&str]) -> Option<(String, Option<String>)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    urls.iter()
        .filter_map(|u| u.parse::<async_nats::ServerAddr>().ok())
        .find_map(|a| Some((decode(a.username()?), a.password().map(decode))))
}

/// The servers of a comma-separated list.
fn servers(urls: &str) -> Vec<&str> {
    urls.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// A handshake that failed on the certificate: async-nats reports it as an I/O error around
/// rustls's.
fn is_certificate_failure(e: &async_nats::ConnectError) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = next {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<async_nats::rustls::Error>())
        {
            return true;
        }
        next = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::credentials;

    #[test]
    fn credentials_come_from_the_first_url_that_names_a_user() {
        assert_eq!(credentials(&["nats://a:4222", "tls://b:4222"]), None);
        assert_eq!(
            credentials(&["nats://a:4222", "tls://mesh:p%40ss%2Bw@b:4222"]),
            Some(("mesh".to_owned(), Some("p@ss+w".to_owned())))
        );
        // A user alone is a token.
        assert_eq!(
            credentials(&["nats://s3cr3t@a:4222"]),
            Some(("s3cr3t".to_owned(), None))
        );
    }
}
