//! The binlog connection's options, from the one `database.url` that sqlx's sessions read too.
//!
//! mysql_async (the binlog client) refuses URL parameters it does not know and has TLS
//! parameters of its own that sqlx does not read. So sqlx's own parameters are taken out,
//! mysql_async's TLS ones refused, and TLS set as sqlx sets it for the sessions:
//! - `ssl-mode=DISABLED`: no TLS;
//! - `PREFERRED` (the default): TLS when the server offers it (the binlog connection does
//!   what the session opened first did), the certificate not checked;
//! - `REQUIRED`: TLS or no connection, the certificate not checked;
//! - `VERIFY_CA`: the certificate must chain to `ssl-ca` (required: sqlx's sessions would
//!   also take any certificate from a CA the system trusts, for any host);
//! - `VERIFY_IDENTITY`: the certificate must chain to `ssl-ca` (without it, to the CAs
//!   mysql_async has built in, Mozilla's), and the URL's host must be a name in it.
//!
//! `ssl-cert` and `ssl-key` give a client certificate (for `REQUIRE X509` / `SUBJECT` users).

use std::path::PathBuf;

use mysql_async::{ClientIdentity, Opts, OptsBuilder, SslOpts};
use sqlx::mysql::MySqlSslMode;

use crate::error::MariaDbError;

/// mysql_async's own TLS parameters: sqlx ignores them, so they would make the binlog
/// connection behave unlike the sessions.
const MYSQL_ASYNC_TLS: [&str; 4] = [
    "require_ssl",
    "verify_ca",
    "verify_identity",
    "built_in_roots",
];

/// sqlx's parameters that mysql_async does not know, besides the TLS ones.
const SQLX_ONLY: [&str; 5] = [
    "charset",
    "collation",
    "statement-cache-capacity",
    "timezone",
    "time-zone",
];

/// The TLS parameters of a URL, in sqlx's meaning.
#[derive(Debug)]
pub(crate) struct Tls {
    /// `ssl-mode`.
    pub mode: MySqlSslMode,
    ca: Option<PathBuf>,
    client: Option<(PathBuf, PathBuf)>,
}

/// The binlog connection's options for `url`, and its TLS parameters (the caller decides
/// `PREFERRED` by what the session got, see [`binlog_opts`]).
pub(crate) fn split(url: &str) -> Result<(String, Tls), MariaDbError> {
    let mut parsed = url::Url::parse(url).map_err(|e| MariaDbError::Url(e.to_string()))?;
    let mut tls = Tls {
        mode: MySqlSslMode::Preferred,
        ca: None,
        client: None,
    };
    let (mut cert, mut key) = (None, None);
    let mut kept = Vec::new();
    for (name, value) in parsed.query_pairs() {
        match &*name {
            "ssl-mode" | "sslmode" => {
                tls.mode = value.parse().map_err(|_| {
                    MariaDbError::Url(format!(
                        "ssl-mode {value:?} is not one of DISABLED, PREFERRED, REQUIRED, \
                         VERIFY_CA, VERIFY_IDENTITY"
                    ))
                })?;
            }
            "ssl-ca" | "sslca" => tls.ca = Some(PathBuf::from(&*value)),
            "ssl-cert" | "sslcert" => cert = Some(PathBuf::from(&*value)),
            "ssl-key" | "sslkey" => key = Some(PathBuf::from(&*value)),
            other if SQLX_ONLY.contains(&other) => {}
            other if MYSQL_ASYNC_TLS.contains(&other) => {
                return Err(MariaDbError::Url(format!(
                    "{other} is not read by every connection of the agent: use ssl-mode \
                     (DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY)"
                )));
            }
            _ => kept.push((name.into_owned(), value.into_owned())),
        }
    }
    tls.client = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => {
            return Err(MariaDbError::Url(
                "ssl-cert and ssl-key go together: give both or neither".into(),
            ));
        }
    };
    if matches!(tls.mode, MySqlSslMode::VerifyCa) && tls.ca.is_none() {
        return Err(MariaDbError::Url(
            "ssl-mode=VERIFY_CA needs ssl-ca: without it any certificate from a CA the system \
             trusts would pass, for any host; give ssl-ca, or use VERIFY_IDENTITY"
                .into(),
        ));
    }
    // Named here rather than as a bare "not found" from a connection retried as unreachable.
    let files = tls.ca.iter().map(|p| ("ssl-ca", p)).chain(
        tls.client
            .iter()
            .flat_map(|(c, k)| [("ssl-cert", c), ("ssl-key", k)]),
    );
    for (parameter, path) in files {
        std::fs::File::open(path).map_err(|e| {
            MariaDbError::Url(format!("{parameter}: cannot read {}: {e}", path.display()))
        })?;
    }
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok((parsed.into(), tls))
}

/// The binlog connection's options for `url`; `session_tls` says whether the sqlx session
/// to the same server got TLS (what `PREFERRED` follows).
pub fn binlog_opts(url: &str, session_tls: bool) -> Result<Opts, MariaDbError> {
    let (url, tls) = split(url)?;
    let opts = Opts::from_url(&url).map_err(|e| MariaDbError::Url(e.to_string()))?;
    let ssl = match tls.mode {
        MySqlSslMode::Disabled => None,
        MySqlSslMode::Preferred if !session_tls => None,
        MySqlSslMode::Preferred | MySqlSslMode::Required => Some(
            SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        ),
        MySqlSslMode::VerifyCa => Some(roots(&tls).with_danger_skip_domain_validation(true)),
        MySqlSslMode::VerifyIdentity => Some(roots(&tls)),
    };
    let Some(mut ssl) = ssl else {
        return Ok(opts);
    };
    if let Some((cert, key)) = &tls.client {
        ssl = ssl.with_client_identity(Some(ClientIdentity::new(
            cert.clone().into(),
            key.clone().into(),
        )));
    }
    // mysql_async would otherwise move a connection to 127.0.0.1 onto the server's Unix
    // socket, without TLS: keep the connection the URL asks for.
    Ok(OptsBuilder::from_opts(opts)
        .ssl_opts(ssl)
        .prefer_socket(false)
        .into())
}

/// `ssl-ca` alone when given, else mysql_async's built-in CAs.
fn roots(tls: &Tls) -> SslOpts {
    SslOpts::default()
        .with_root_certs(tls.ca.iter().map(|ca| ca.clone().into()).collect())
        .with_disable_built_in_roots(tls.ca.is_some())
}

/// Whether a binlog-connection error is TLS that could not be had (a certificate that did not
/// pass, a server without TLS where `ssl-mode` requires it): only configuration cures it.
pub(crate) fn is_tls_failure(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Io(mysql_async::IoError::Tls(_))
        | mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer) => true,
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) => io
            .get_ref()
            .is_some_and(|inner| inner.is::<rustls::Error>()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlx_parameters_are_taken_out_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, "").unwrap();
            path.display().to_string()
        };
        let (ca, cert, key) = (file("ca.pem"), file("c.pem"), file("k.pem"));
        let (url, tls) = split(&format!(
            "mysql://u:p@h:3306/app?ssl-mode=verify_identity&ssl-ca={ca}&charset=utf8mb4\
             &ssl-cert={cert}&ssl-key={key}&tcp_keepalive=10000"
        ))
        .unwrap();
        assert_eq!(url, "mysql://u:p@h:3306/app?tcp_keepalive=10000");
        assert!(matches!(tls.mode, MySqlSslMode::VerifyIdentity));
        assert_eq!(tls.ca, Some(PathBuf::from(&ca)));
        assert!(tls.client.is_some());
        let (url, tls) = split("mysql://h/app?timezone=%2B00:00").unwrap();
        assert_eq!(url, "mysql://h/app");
        assert!(matches!(tls.mode, MySqlSslMode::Preferred));
        assert!(split("mysql://h/app?ssl-mode=always").is_err());
        assert!(split("mysql://h/app?ssl-cert=/c.pem").is_err());
        // mysql_async's own TLS switches, which the sessions would not follow.
        let e = split("mysql://h/app?require_ssl=true")
            .unwrap_err()
            .to_string();
        assert!(e.contains("use ssl-mode"), "{e}");
        // A missing file is named.
        let e = split("mysql://h/app?ssl-mode=VERIFY_IDENTITY&ssl-ca=/nonexistent/ca.pem")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ssl-ca") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
        // VERIFY_CA without its CA.
        let e = split("mysql://h/app?ssl-mode=VERIFY_CA")
            .unwrap_err()
            .to_string();
        assert!(e.contains("VERIFY_CA needs ssl-ca"), "{e}");
    }

    #[test]
    fn preferred_follows_the_session() {
        let url = "mysql://h/app";
        assert!(binlog_opts(url, false).unwrap().ssl_opts().is_none());
        assert!(binlog_opts(url, true).unwrap().ssl_opts().is_some());
        let required = "mysql://h/app?ssl-mode=REQUIRED";
        assert!(binlog_opts(required, false).unwrap().ssl_opts().is_some());
        let disabled = "mysql://h/app?ssl-mode=DISABLED";
        assert!(binlog_opts(disabled, true).unwrap().ssl_opts().is_none());
    }
}
