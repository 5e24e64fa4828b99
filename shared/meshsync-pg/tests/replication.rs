//! The replication client against a real server: each authentication method it speaks
//! (SCRAM-SHA-256, MD5, cleartext password) admits a right password and reports a wrong one as
//! the server's refusal; a missing slot is the server's error, named.

use meshsync_pg::source::replication::{ReplicationError, ReplicationStream, Target};
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
