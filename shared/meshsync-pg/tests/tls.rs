//! TLS against a real server that takes TCP connections only over TLS (the testkit's
//! `start_tls`, with a CA of its own): the replication connection and sqlx's sessions, read
//! from the same URL, encrypt, check the certificate as `sslmode` says, present a client
//! certificate, and refuse what they must with an error that names the fix.

use meshsync_pg::{
    error::{is_tls_failure, is_transient_sqlx},
    source::{
        replication::{Frame, ReplicationError, ReplicationStream},
        stream::ConnParts,
    },
};
use meshsync_testkit::{CERT_USER, Postgres, TlsFiles};
use sqlx::{Connection, PgConnection};

/// pgoutput options any stream needs.
fn options(_version: u32) -> Vec<(&'static str, String)> {
    vec![
        ("proto_version", "1".to_owned()),
        ("publication_names", "p".to_owned()),
    ]
}

/// A TLS server with table `t`, publication `p` and slot `s`, set up over its Unix socket.
async fn server() -> Postgres {
    let pg = Postgres::start_tls().await.unwrap();
    let mut c = PgConnection::connect(&pg.socket_url("postgres"))
        .await
        .unwrap();
    for sql in [
        "CREATE TABLE t (id int PRIMARY KEY)",
        "CREATE PUBLICATION p FOR ALL TABLES",
        "SELECT pg_create_logical_replication_slot('s', 'pgoutput')",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .unwrap();
    }
    pg
}

/// `postgres://user@host:port/postgres?query`.
fn url(pg: &Postgres, user: &str, host: &str, query: &str) -> String {
    format!("postgres://{user}@{host}:{}/postgres?{query}", pg.port())
}

fn ca(pg: &Postgres) -> String {
    pg.tls_files().unwrap().ca.display().to_string()
}

/// Starts a stream from `url` as `application_name` `name`.
async fn stream(url: &str, name: &str) -> Result<ReplicationStream, ReplicationError> {
    let parts = ConnParts::from_url(url).unwrap();
    ReplicationStream::start(&parts.target(name), "s", options).await
}

/// Whether the walsender of `name` runs over TLS, as the server sees it.
async fn walsender_uses_tls(pg: &Postgres, name: &str) -> bool {
    let mut c = PgConnection::connect(&pg.socket_url("postgres"))
        .await
        .unwrap();
    let (ssl,): (bool,) = sqlx::query_as(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_replication r USING (pid)
         WHERE r.application_name = $1",
    )
    .bind(name)
    .fetch_one(&mut c)
    .await
    .unwrap();
    ssl
}

#[tokio::test]
async fn verify_full_streams_over_tls_and_sessions_of_the_same_url_connect() {
    let pg = server().await;
    let url = url(
        &pg,
        "postgres",
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", ca(&pg)),
    );
    let mut s = stream(&url, "verify full").await.unwrap();
    let mut session = PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("INSERT INTO t VALUES (1)")
        .execute(&mut session)
        .await
        .unwrap();
    // Begin, Relation, Insert, Commit arrive as XLogData.
    let mut data = 0;
    while data < 4 {
        if let Frame::XLogData { .. } = s.next().await.unwrap() {
            data += 1;
        }
    }
    assert!(walsender_uses_tls(&pg, "verify full").await);
    let (session_ssl,): (bool,) =
        sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut session)
            .await
            .unwrap();
    assert!(session_ssl, "sqlx's session of the same URL should use TLS");
}

#[tokio::test]
async fn prefer_encrypts_without_checking_and_disable_is_refused_by_the_server() {
    let pg = server().await;
    // The default: TLS when offered, no certificate check (127.0.0.1 is not in it).
    let _s = stream(&url(&pg, "postgres", "127.0.0.1", ""), "prefer")
        .await
        .unwrap();
    assert!(walsender_uses_tls(&pg, "prefer").await);
    let refused = stream(
        &url(&pg, "postgres", "127.0.0.1", "sslmode=disable"),
        "plain",
    )
    .await
    .err()
    .unwrap();
    let ReplicationError::Server { message, .. } = &refused else {
        panic!("want the server's refusal, got {refused}");
    };
    assert!(message.contains("no encryption"), "{message}");
}

#[tokio::test]
async fn verify_full_refuses_a_host_not_named_in_the_certificate_but_verify_ca_accepts_it() {
    let pg = server().await;
    let ca = ca(&pg);
    let full = url(
        &pg,
        "postgres",
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let e = stream(&full, "wrong name").await.err().unwrap();
    assert!(matches!(e, ReplicationError::Tls(_)), "{e}");
    assert!(
        !e.is_transient(),
        "a certificate will not mend by reconnecting"
    );
    let text = e.to_string();
    assert!(
        text.contains("127.0.0.1") && text.contains("verify-full"),
        "{text}"
    );
    // sqlx's sessions judge the same URL alike.
    let e = PgConnection::connect(&full).await.err().unwrap();
    assert!(is_tls_failure(&e), "{e:?}");
    let verify_ca = url(
        &pg,
        "postgres",
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    );
    let _s = stream(&verify_ca, "any name").await.unwrap();
    PgConnection::connect(&verify_ca).await.unwrap();
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let pg = server().await;
    let other = tempfile::tempdir().unwrap();
    let other = TlsFiles::generate(other.path()).unwrap();
    let url = url(
        &pg,
        "postgres",
        "localhost",
        &format!("sslmode=verify-ca&sslrootcert={}", other.ca.display()),
    );
    let e = stream(&url, "other ca").await.err().unwrap();
    assert!(matches!(e, ReplicationError::Tls(_)), "{e}");
    assert!(e.to_string().contains("sslrootcert"), "{e}");
    let e = PgConnection::connect(&url).await.err().unwrap();
    assert!(is_tls_failure(&e), "{e:?}");
}

#[tokio::test]
async fn require_refuses_a_server_without_tls_and_says_so() {
    let pg = Postgres::start().await.unwrap();
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=require",
        pg.port()
    );
    let e = stream(&url, "required").await.err().unwrap();
    assert!(matches!(e, ReplicationError::Tls(_)), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("does not offer TLS") && text.contains("ssl = on"),
        "{text}"
    );
    let e = PgConnection::connect(&url).await.err().unwrap();
    assert!(is_tls_failure(&e), "{e:?}");
    // A plain connection refused is not a TLS failure: the server may be starting.
    let nobody = meshsync_testkit::free_port().unwrap();
    let refused = format!("postgres://postgres@127.0.0.1:{nobody}/postgres");
    let e = PgConnection::connect(&refused).await.err().unwrap();
    assert!(!is_tls_failure(&e) && is_transient_sqlx(&e), "{e:?}");
}

#[tokio::test]
async fn a_client_certificate_authenticates_its_user() {
    let pg = server().await;
    let files = pg.tls_files().unwrap().clone();
    let with_cert = pg.verified_url("postgres").unwrap();
    let _s = stream(&with_cert, "with cert").await.unwrap();
    PgConnection::connect(&with_cert).await.unwrap();
    // Without it the server refuses the user.
    let without = url(
        &pg,
        CERT_USER,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", files.ca.display()),
    );
    let e = stream(&without, "without cert").await.err().unwrap();
    assert!(matches!(e, ReplicationError::Server { .. }), "{e}");
}
