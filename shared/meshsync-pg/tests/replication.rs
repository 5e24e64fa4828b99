//! The replication client against a real server: each authentication method it speaks
//! (SCRAM-SHA-256, MD5, cleartext password) admits a right password and reports a wrong one as
//! the server's refusal; a missing slot is the server's error, named; a socket directory as
//! host streams over the Unix socket.

use meshsync_pg::source::{
    replication::{Frame, ReplicationError, ReplicationStream, Target},
    stream::ConnParts,
    tls::TlsOptions,
};
use meshsync_testkit::Postgres;

/// pgoutput options any stream needs.
fn options(_version: u32) -> Vec<(&'static str, String)> {
    vec![
        ("proto_version", "1".to_owned()),
        ("publication_names", "p".to_owned()),
    ]
}

async fn start(
    pg: &Postgres,
    user: &str,
    password: &str,
    slot: &str,
) -> Result<u32, ReplicationError> {
    let target = Target {
        host: "127.0.0.1",
        port: pg.port(),
        user,
        password,
        database: "postgres",
        application_name: "meshsync test",
        tls: &TlsOptions::default(),
    };
    ReplicationStream::start(&target, slot, options)
        .await
        .map(|s| s.server_version())
}

#[tokio::test]
async fn every_password_method_admits_the_right_password_and_names_a_wrong_one() {
    let pg = Postgres::start().await.unwrap();
    let mut c = pg.connect("postgres").await.unwrap();
    for sql in [
        "CREATE PUBLICATION p FOR ALL TABLES",
        "SET password_encryption = 'scram-sha-256'",
        "CREATE ROLE scram_user LOGIN REPLICATION PASSWORD 'pa''ss word'",
        "CREATE ROLE plain_user LOGIN REPLICATION PASSWORD 'pa''ss word'",
        "SET password_encryption = 'md5'",
        "CREATE ROLE md5_user LOGIN REPLICATION PASSWORD 'pa''ss word'",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .unwrap();
    }
    let hba = pg.dir().join("data").join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    let methods = "host all scram_user 127.0.0.1/32 scram-sha-256\n\
                   host all md5_user 127.0.0.1/32 md5\n\
                   host all plain_user 127.0.0.1/32 password\n";
    std::fs::write(&hba, format!("{methods}{old}")).unwrap();
    sqlx::raw_sql("SELECT pg_reload_conf()")
        .execute(&mut c)
        .await
        .unwrap();
    for (i, user) in ["scram_user", "md5_user", "plain_user"]
        .into_iter()
        .enumerate()
    {
        let slot = format!("s{i}");
        sqlx::query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')")
            .bind(&slot)
            .execute(&mut c)
            .await
            .unwrap();
        let version = start(&pg, user, "pa'ss word", &slot)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        assert!(version >= 150_000, "{user}: server_version_num {version}");
        match start(&pg, user, "wrong", &slot).await {
            Err(ReplicationError::Server { code, .. }) => assert_eq!(code, "28P01", "{user}"),
            other => panic!("{user} with a wrong password: {:?}", other.map(|_| ())),
        }
    }
    match start(&pg, "postgres", "", "no_such_slot").await {
        Err(e @ ReplicationError::Server { .. }) => {
            assert!(e.to_string().contains("no_such_slot"), "{e}")
        }
        other => panic!("a missing slot: {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn a_socket_directory_as_host_streams_over_the_unix_socket() {
    let pg = Postgres::start().await.unwrap();
    let mut c = pg.connect("postgres").await.unwrap();
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
    // The URL form sqlx connects with names the socket directory; capture reads it alike.
    let parts = ConnParts::from_url(&pg.socket_url("postgres")).unwrap();
    assert_eq!(std::path::Path::new(&parts.host), pg.dir());
    assert_eq!(parts.port, pg.port());
    let target = parts.target("meshsync socket test");
    let mut stream = ReplicationStream::start(&target, "s", options)
        .await
        .unwrap();
    sqlx::raw_sql("INSERT INTO t VALUES (1)")
        .execute(&mut c)
        .await
        .unwrap();
    // Begin, Relation, Insert, Commit arrive as XLogData.
    let mut data = 0;
    while data < 4 {
        if let Frame::XLogData { .. } = stream.next().await.unwrap() {
            data += 1;
        }
    }
    // A session over a Unix socket has no client address.
    let (over_socket,): (bool,) = sqlx::query_as(
        "SELECT client_addr IS NULL FROM pg_stat_replication
         WHERE application_name = 'meshsync socket test'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert!(over_socket, "the stream should use the Unix socket");
}
