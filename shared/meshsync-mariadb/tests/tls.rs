//! TLS against a MariaDB that takes TCP only over TLS (`require_secure_transport`, the
//! testkit's `start_tls` with a CA of its own): the binlog connection reads its TLS from the
//! URL sqlx's sessions read (sqlx's `ssl-mode`, `ssl-ca`, `ssl-cert`, `ssl-key`), checks the
//! certificate as the mode says, and a failure is reported as TLS, not retried.

use meshsync_core::TableName;
use meshsync_mariadb::{MariaDbError, MariaDbSource, SourceConfig, source::binlog_opts};
use meshsync_testkit::MariaDb;
use mysql_async::prelude::Queryable;
use sqlx::{Connection, MySqlConnection};

use crate::support::{exec, next_rows};

/// `mysql://user@host:port/app?query`.
fn url(m: &MariaDb, user: &str, host: &str, query: &str) -> String {
    format!("mysql://{user}@{host}:{}/app?{query}", m.port())
}

async fn server() -> MariaDb {
    let m = MariaDb::start_tls().await.unwrap();
    m.create_database("app").await.unwrap();
    m
}

/// The TLS cipher of a binlog-client connection ("" without TLS).
async fn cipher(opts: mysql_async::Opts) -> Result<String, mysql_async::Error> {
    let mut conn = mysql_async::Conn::new(opts).await?;
    let row: Option<(String, String)> = conn
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .await?;
    Ok(row.map(|(_, v)| v).unwrap_or_default())
}

#[tokio::test]
async fn capture_streams_over_verified_tls_with_a_client_certificate() {
    let m = server().await;
    let url = m.verified_url("app").unwrap();
    // The binlog client's own connection is encrypted.
    let c = cipher(binlog_opts(&url, false).unwrap()).await.unwrap();
    assert!(!c.is_empty(), "the binlog connection should use TLS");
    let mut session = MySqlConnection::connect(&url).await.unwrap();
    exec(&mut session, "CREATE TABLE t (id INT PRIMARY KEY, v TEXT)").await;
    let config = SourceConfig {
        url: url.clone(),
        server_id: 4_000_000_000 - m.server_id(),
        tables: vec![TableName::new("app", "t")],
        resume: String::new(),
        heartbeat: std::time::Duration::from_millis(300),
    };
    let mut src = MariaDbSource::connect(&config).await.unwrap();
    exec(&mut session, "INSERT INTO t VALUES (1, 'over tls')").await;
    let txn = next_rows(&mut src).await;
    assert_eq!(txn.rows.len(), 1);
}

#[tokio::test]
async fn preferred_follows_the_session_and_disabled_is_refused_by_the_server() {
    let m = server().await;
    // The default, PREFERRED: TLS, since the server offers it.
    let plain_url = url(&m, "root", "127.0.0.1", "");
    assert!(
        !cipher(binlog_opts(&plain_url, true).unwrap())
            .await
            .unwrap()
            .is_empty()
    );
    let disabled = url(&m, "root", "127.0.0.1", "ssl-mode=DISABLED");
    // MariaDB 10.11 answers a plain connection under require_secure_transport with 1045.
    match cipher(binlog_opts(&disabled, true).unwrap()).await {
        Err(mysql_async::Error::Server(e)) => assert!([1045, 3159].contains(&e.code), "{e}"),
        other => panic!("the server should refuse a plain connection: {other:?}"),
    }
}

#[tokio::test]
async fn capture_with_the_default_ssl_mode_uses_tls_when_the_session_got_it() {
    // No TLS parameter: PREFERRED. The server refuses plain TCP, so capture only streams if
    // it saw that the session got TLS and followed.
    let m = server().await;
    let url = url(&m, "root", "127.0.0.1", "");
    let mut session = MySqlConnection::connect(&url).await.unwrap();
    exec(&mut session, "CREATE TABLE t (id INT PRIMARY KEY)").await;
    let config = SourceConfig {
        url,
        server_id: 4_000_000_000 - m.server_id(),
        tables: vec![TableName::new("app", "t")],
        resume: String::new(),
        heartbeat: std::time::Duration::from_millis(300),
    };
    let mut src = MariaDbSource::connect(&config).await.unwrap();
    exec(&mut session, "INSERT INTO t VALUES (1)").await;
    assert_eq!(next_rows(&mut src).await.rows.len(), 1);
}

#[tokio::test]
async fn verify_identity_refuses_a_host_not_in_the_certificate_and_stops() {
    let m = server().await;
    let by_ip = m
        .verified_url("app")
        .unwrap()
        .replace("@localhost:", "@127.0.0.1:");
    let e = cipher(binlog_opts(&by_ip, false).unwrap())
        .await
        .unwrap_err();
    let e = MariaDbError::Binlog {
        what: "connect",
        source: e,
    };
    assert!(
        e.is_tls_failure() && !e.is_transient(),
        "a certificate will not mend by reconnecting: {e:?}"
    );
    // VERIFY_CA through the certificate's name. (Through another, mysql_async 0.37.1 refuses
    // it too: its name check matches error text rustls no longer prints; docs/mariadb.md.)
    let verify_ca = m
        .verified_url("app")
        .unwrap()
        .replace("VERIFY_IDENTITY", "VERIFY_CA");
    let c = cipher(binlog_opts(&verify_ca, false).unwrap())
        .await
        .unwrap();
    assert!(!c.is_empty());
    // A CA that did not sign the server's certificate.
    let other = tempfile::tempdir().unwrap();
    let other = meshsync_testkit::TlsFiles::generate(other.path()).unwrap();
    let wrong_ca = verify_ca.replace(
        &m.tls_files().unwrap().ca.display().to_string(),
        &other.ca.display().to_string(),
    );
    let e = cipher(binlog_opts(&wrong_ca, false).unwrap())
        .await
        .unwrap_err();
    let e = MariaDbError::Binlog {
        what: "connect",
        source: e,
    };
    assert!(e.is_tls_failure() && !e.is_transient(), "{e:?}");
}

#[tokio::test]
async fn required_against_a_server_without_tls_is_a_tls_failure() {
    let m = MariaDb::start().await.unwrap();
    let required = format!(
        "mysql://root@127.0.0.1:{}/mysql?ssl-mode=REQUIRED",
        m.port()
    );
    let e = cipher(binlog_opts(&required, false).unwrap())
        .await
        .unwrap_err();
    let e = MariaDbError::Binlog {
        what: "connect",
        source: e,
    };
    assert!(e.is_tls_failure() && !e.is_transient(), "{e:?}");
}
