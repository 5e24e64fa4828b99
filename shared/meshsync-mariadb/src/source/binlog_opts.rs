//! The binlog connection's options, from the one `database.url` that sqlx's sessions read too.
//!
//! mysql_async (the binlog client) refuses URL parameters it does not know and reads no TLS
//! settings from a URL. So sqlx's own parameters are taken out, and TLS is set as sqlx sets
//! it for the sessions, so one URL behaves one way:
//! - `ssl-mode=DISABLED`: no TLS;
//! - `PREFERRED` (the default): TLS when the server offers it (the binlog connection does
//!   what the session opened first did), the certificate not checked;
//! - `REQUIRED`: TLS or no connection, the certificate not checked;
//! - `VERIFY_CA`: the certificate must chain to `ssl-ca` (or a CA the system trusts);
//! - `VERIFY_IDENTITY`: that, and the URL's host must be a name in it.
//!
//! `ssl-cert` and `ssl-key` give a client certificate (for `REQUIRE X509` / `SUBJECT` users).

use std::path::PathBuf;

use mysql_async::{ClientIdentity, Opts, OptsBuilder, SslOpts};
use sqlx::mysql::MySqlSslMode;

use crate::error::MariaDbError;

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

/// `ssl-ca` beside the CAs the system trusts.
fn roots(tls: &Tls) -> SslOpts {
    SslOpts::default().with_root_certs(tls.ca.iter().map(|ca| ca.clone().into()).collect())
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
        let (url, tls) = split(
            "mysql://u:p@h:3306/app?ssl-mode=verify_identity&ssl-ca=/ca.pem&charset=utf8mb4\
             &ssl-cert=/c.pem&ssl-key=/k.pem&tcp_keepalive=10000",
        )
        .unwrap();
        assert_eq!(url, "mysql://u:p@h:3306/app?tcp_keepalive=10000");
        assert!(matches!(tls.mode, MySqlSslMode::VerifyIdentity));
        assert_eq!(tls.ca, Some(PathBuf::from("/ca.pem")));
        assert!(tls.client.is_some());
        let (url, tls) = split("mysql://h/app?timezone=%2B00:00").unwrap();
        assert_eq!(url, "mysql://h/app");
        assert!(matches!(tls.mode, MySqlSslMode::Preferred));
        assert!(split("mysql://h/app?ssl-mode=always").is_err());
        assert!(split("mysql://h/app?ssl-cert=/c.pem").is_err());
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
