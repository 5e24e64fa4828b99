//! Connecting to NATS: TLS and client certificates, the URL's user and password, and telling
//! a refusal (which waiting cannot change) from a server that does not answer yet.

use std::{path::PathBuf, time::Duration};

use tracing::info;

use crate::NatsError;

/// How long to wait between attempts while no server answers.
const RETRY_WAIT: Duration = Duration::from_secs(1);

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
        // sent. A user without a password is a token, as in the nats CLI. The first URL's
        // credentials go to every server of the list.
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
/// A server that does not answer yet is waited for, attempt after attempt. A server that
/// refuses this client (TLS, credentials) is [`NatsError::Refused`] at once, also after
/// waiting: its answer would not change.
pub async fn connect(
    urls: &str,
    name: &str,
    tls: &NatsTls,
) -> Result<async_nats::Client, NatsError> {
    let mut said = false;
    loop {
        match connect_now(urls, name, tls).await {
            Err(NatsError::Connect(e)) => {
                if !said {
                    info!(error = %e, "NATS does not answer yet; retrying until it does");
                    said = true;
                }
                tokio::time::sleep(RETRY_WAIT).await;
            }
            other => return other,
        }
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
        .connect(without_credentials(&servers))
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

/// The servers without their user and password, which go in the options instead: async-nats
/// writes the addresses it tries into its debug log.
fn without_credentials(servers: &[&str]) -> Vec<String> {
    servers
        .iter()
        .map(|s| match url::Url::parse(s) {
            Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
                // Only fails for URLs that cannot have credentials, which these have.
                let _ = u.set_username("");
                let _ = u.set_password(None);
                u.into()
            }
            _ => (*s).to_owned(),
        })
        .collect()
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
    use super::{credentials, without_credentials};

    #[test]
    fn addresses_lose_their_credentials() {
        assert_eq!(
            without_credentials(&["tls://mesh:secret@b:4222", "nats://a:4222"]),
            ["tls://b:4222", "nats://a:4222"]
        );
    }

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
