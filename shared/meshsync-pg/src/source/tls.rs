//! TLS of the replication connection.
//!
//! The URL's `sslmode`, `sslrootcert`, `sslcert` and `sslkey` mean here what they mean to
//! sqlx, which opens the agent's other sessions from the same URL, so one URL behaves one way:
//! - `disable`, `allow`: no TLS;
//! - `prefer` (the default): TLS when the server offers it, the certificate not checked;
//! - `require`: TLS or no connection, the certificate not checked;
//! - `verify-ca`: the certificate must chain to `sslrootcert` (required: without it any
//!   certificate from a CA the system trusts would pass, for any host);
//! - `verify-full`: the certificate must chain to `sslrootcert` (the system's CAs without
//!   it), and the URL's host must be a name in it.
//!
//! Over a Unix socket there is no TLS, as in libpq.

use std::sync::Arc;

use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
};
use sqlx::postgres::PgSslMode;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::replication::ReplicationError;

/// TLS settings of one database URL. The default is `prefer` with no certificates.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// `sslmode`.
    pub mode: PgSslMode,
    /// `sslrootcert`: a PEM file.
    pub root_cert: Option<String>,
    /// `sslcert`: the client's certificate (PEM file), for `cert` authentication.
    pub client_cert: Option<String>,
    /// `sslkey`: the client certificate's key (PEM file).
    pub client_key: Option<String>,
}

impl TlsOptions {
    /// What sqlx starts from before a URL's parameters: `PGSSLMODE`, `PGSSLROOTCERT`,
    /// `PGSSLCERT`, `PGSSLKEY` from the environment, else `prefer`.
    pub fn from_env() -> TlsOptions {
        TlsOptions::from_vars(|name| std::env::var(name).ok())
    }

    /// [`TlsOptions::from_env`] over any source of variables. An unknown `PGSSLMODE` counts
    /// as unset, as in sqlx, so both kinds of connection agree on it.
    fn from_vars(var: impl Fn(&str) -> Option<String>) -> TlsOptions {
        TlsOptions {
            mode: var("PGSSLMODE")
                .and_then(|m| m.parse().ok())
                .unwrap_or_default(),
            root_cert: var("PGSSLROOTCERT"),
            client_cert: var("PGSSLCERT"),
            client_key: var("PGSSLKEY"),
        }
    }

    /// Checks the settings and reads the certificate files, as a connection would: a set-up
    /// calls it before connecting, so that a typo is named at once rather than retried as an
    /// unreachable database (sqlx reports a missing file as a bare I/O error).
    pub fn check(&self) -> Result<(), ReplicationError> {
        match self.mode {
            PgSslMode::Disable | PgSslMode::Allow => Ok(()),
            _ => client_config(self).map(drop),
        }
    }
}

/// The connection after negotiation: TLS, or the plain socket when none was agreed.
pub(crate) enum Negotiated {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Asks the server for TLS as `options.mode` wants (an `SSLRequest`, answered by one byte),
/// and shakes hands when it agrees.
pub(crate) async fn negotiate(
    mut socket: TcpStream,
    host: &str,
    options: &TlsOptions,
) -> Result<Negotiated, ReplicationError> {
    let required = match options.mode {
        PgSslMode::Disable | PgSslMode::Allow => return Ok(Negotiated::Plain(socket)),
        PgSslMode::Prefer => false,
        PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull => true,
    };
    // Built before asking, so a bad certificate file is reported as such, not as a failed
    // handshake.
    let config = client_config(options)?;
    let mut request = bytes::BytesMut::new();
    postgres_protocol::message::frontend::ssl_request(&mut request);
    socket.write_all(&request).await?;
    // Exactly one byte: anything read beyond it before the handshake could have been
    // injected by a man in the middle (CVE-2021-23222).
    match socket.read_u8().await? {
        b'S' => {}
        b'N' if !required => return Ok(Negotiated::Plain(socket)),
        b'N' => {
            return Err(ReplicationError::Tls(format!(
                "the server does not offer TLS, and sslmode={} requires it: set `ssl = on` \
                 in postgresql.conf, or lower sslmode in database.url",
                mode_name(options.mode)
            )));
        }
        other => {
            return Err(ReplicationError::Protocol(format!(
                "unexpected answer 0x{other:02x} to SSLRequest"
            )));
        }
    }
    let name = server_name(host, options.mode)?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    match connector.connect(name, socket).await {
        Ok(stream) => Ok(Negotiated::Tls(Box::new(stream))),
        Err(e) => Err(handshake_error(e, host, options.mode)),
    }
}

/// libpq's name of a mode.
fn mode_name(mode: PgSslMode) -> &'static str {
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

/// The name the certificate is checked against. A host that is not a valid DNS name or IP
/// address is fine when no name is checked.
fn server_name(host: &str, mode: PgSslMode) -> Result<ServerName<'static>, ReplicationError> {
    match ServerName::try_from(host.to_owned()) {
        Ok(name) => Ok(name),
        Err(_) if !matches!(mode, PgSslMode::VerifyFull) => Ok(ServerName::from(
            std::net::IpAddr::from(std::net::Ipv4Addr::UNSPECIFIED),
        )),
        Err(_) => Err(ReplicationError::Tls(format!(
            "sslmode=verify-full checks the host against the server's certificate, and \
             {host:?} is neither a DNS name nor an IP address"
        ))),
    }
}

/// A failed handshake: a certificate or protocol problem is [`ReplicationError::Tls`] (a
/// reconnect will not cure it), a broken connection stays an I/O error.
fn handshake_error(e: std::io::Error, host: &str, mode: PgSslMode) -> ReplicationError {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return ReplicationError::Io(e);
    };
    let hint = match (tls, mode) {
        (rustls::Error::InvalidCertificate(_), PgSslMode::VerifyFull) => {
            "; sslmode=verify-full wants a certificate signed by sslrootcert (or a CA the \
             system trusts) with the URL's host among its names"
        }
        (rustls::Error::InvalidCertificate(_), PgSslMode::VerifyCa) => {
            "; sslmode=verify-ca wants a certificate signed by sslrootcert"
        }
        _ => "",
    };
    ReplicationError::Tls(format!("handshake with {host} failed: {tls}{hint}"))
}

/// Whether an I/O error is rustls's (a handshake or certificate failure), as sqlx and
/// tokio-rustls report them.
pub(crate) fn wraps_rustls(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
}

/// The rustls configuration for `options`.
fn client_config(options: &TlsOptions) -> Result<ClientConfig, ReplicationError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| ReplicationError::Tls(e.to_string()))?;
    if matches!(options.mode, PgSslMode::VerifyCa) && options.root_cert.is_none() {
        return Err(ReplicationError::Tls(
            "sslmode=verify-ca needs sslrootcert: without it any certificate from a CA the \
             system trusts would pass, for any host; give sslrootcert, or use verify-full"
                .into(),
        ));
    }
    let builder = match options.mode {
        PgSslMode::VerifyCa | PgSslMode::VerifyFull => {
            let verifier = WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots(options.root_cert.as_deref())?),
                Arc::clone(&provider),
            )
            .build()
            .map_err(|e| ReplicationError::Tls(format!("certificate verifier: {e}")))?;
            if matches!(options.mode, PgSslMode::VerifyFull) {
                builder.with_webpki_verifier(verifier)
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyName { verifier }))
            }
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked { provider })),
    };
    match (&options.client_cert, &options.client_key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let certs = pem_certs(cert, "sslcert")?;
            let key = pem_key(key)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| ReplicationError::Tls(format!("sslcert and sslkey: {e}")))
        }
        _ => Err(ReplicationError::Tls(
            "sslcert and sslkey go together: give both or neither".into(),
        )),
    }
}

/// The CAs a certificate must chain to: `sslrootcert`'s, else the system's.
fn roots(root_cert: Option<&str>) -> Result<RootCertStore, ReplicationError> {
    let mut store = RootCertStore::empty();
    let certs = match root_cert {
        Some(source) => pem_certs(source, "sslrootcert")?,
        None => rustls_native_certs::load_native_certs().certs,
    };
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(ReplicationError::Tls(match root_cert {
            Some(_) => "sslrootcert holds no usable CA certificate".into(),
            None => "sslmode=verify-full without sslrootcert checks against the system's CAs, \
                     and the system has none: give sslrootcert (the CA's certificate, PEM)"
                .into(),
        }));
    }
    Ok(store)
}

/// The certificates of a PEM file.
fn pem_certs(
    source: &str,
    parameter: &str,
) -> Result<Vec<CertificateDer<'static>>, ReplicationError> {
    let bad = |e: rustls::pki_types::pem::Error| {
        ReplicationError::Tls(format!("cannot read {parameter} {source:?}: {e}"))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(source)
        .map_err(bad)?
        .collect::<Result<_, _>>()
        .map_err(bad)?;
    if certs.is_empty() {
        return Err(ReplicationError::Tls(format!(
            "{parameter} {source:?} holds no PEM certificate"
        )));
    }
    Ok(certs)
}

/// The private key of a PEM file.
fn pem_key(source: &str) -> Result<PrivateKeyDer<'static>, ReplicationError> {
    PrivateKeyDer::from_pem_file(source)
        .map_err(|e| ReplicationError::Tls(format!("cannot read sslkey {source:?}: {e}")))
}

/// `verify-ca`: the chain is checked, the name is not.
#[derive(Debug)]
struct AnyName {
    verifier: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifier.supported_verify_schemes()
    }
}

/// `prefer` and `require`: encryption without checking whom it is with (libpq's meaning).
/// The handshake's signatures are still checked, against the certificate offered.
#[derive(Debug)]
struct Unchecked {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_names_mode_and_files_as_in_libpq() {
        let vars = |set: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                set.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let o = TlsOptions::from_vars(vars(&[
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", "/ca.crt"),
            ("PGSSLCERT", "/c.crt"),
            ("PGSSLKEY", "/c.key"),
        ]));
        assert!(matches!(o.mode, PgSslMode::VerifyFull));
        assert_eq!(o.root_cert.as_deref(), Some("/ca.crt"));
        assert_eq!(o.client_cert.as_deref(), Some("/c.crt"));
        assert_eq!(o.client_key.as_deref(), Some("/c.key"));
        assert!(matches!(
            TlsOptions::from_vars(vars(&[])).mode,
            PgSslMode::Prefer
        ));
        let unknown = TlsOptions::from_vars(vars(&[("PGSSLMODE", "sometimes")]));
        assert!(matches!(unknown.mode, PgSslMode::Prefer));
        assert!(matches!(
            TlsOptions::from_vars(vars(&[("PGSSLMODE", "disable")])).mode,
            PgSslMode::Disable
        ));
    }

    fn options(mode: PgSslMode) -> TlsOptions {
        TlsOptions {
            mode,
            root_cert: None,
            client_cert: None,
            client_key: None,
        }
    }

    #[test]
    fn a_missing_root_certificate_file_is_named() {
        let mut o = options(PgSslMode::VerifyFull);
        o.root_cert = Some("/nonexistent/ca.pem".into());
        let e = client_config(&o).unwrap_err().to_string();
        assert!(
            e.contains("sslrootcert") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "not a certificate\n").unwrap();
        let mut o = options(PgSslMode::VerifyCa);
        o.root_cert = Some(file.path().display().to_string());
        let e = client_config(&o).unwrap_err().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
    }

    #[test]
    fn verify_ca_without_a_root_certificate_is_refused() {
        let e = options(PgSslMode::VerifyCa)
            .check()
            .unwrap_err()
            .to_string();
        assert!(e.contains("verify-ca needs sslrootcert"), "{e}");
        // verify-full checks the name, so the system's CAs are a sound default there.
        assert!(options(PgSslMode::VerifyFull).check().is_ok());
        assert!(options(PgSslMode::Disable).check().is_ok());
    }

    #[test]
    fn a_client_certificate_without_its_key_is_refused() {
        let mut o = options(PgSslMode::Require);
        o.client_cert = Some("/some/cert.pem".into());
        let e = client_config(&o).unwrap_err().to_string();
        assert!(e.contains("sslcert and sslkey go together"), "{e}");
    }

    #[test]
    fn names_are_checked_only_by_verify_full() {
        assert!(server_name("db host", PgSslMode::Require).is_ok());
        assert!(server_name("db host", PgSslMode::VerifyCa).is_ok());
        assert!(server_name("db host", PgSslMode::VerifyFull).is_err());
        assert!(server_name("db.example.com", PgSslMode::VerifyFull).is_ok());
        assert!(server_name("10.0.0.5", PgSslMode::VerifyFull).is_ok());
    }
}
