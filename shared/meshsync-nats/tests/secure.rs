//! A server that takes clients only over TLS, with a client certificate and a password
//! (`nats-config/single-secure.conf`): meshsync connects with the CA, certificate and
//! credentials, and a client the server refuses is told so at once instead of waiting for a
//! server that will never accept it.

use std::time::Duration;

use meshsync_nats::{
    ClientCertificate, NatsError, NatsTls, Topology, provision, publisher::Publisher,
};
use meshsync_testkit::{NatsServer, TlsFiles};

use crate::batch;

/// Everything the secure server wants.
fn full(files: &TlsFiles) -> NatsTls {
    NatsTls {
        ca_file: Some(files.ca.clone()),
        client: Some(ClientCertificate {
            cert_file: files.client_cert.clone(),
            key_file: files.client_key.clone(),
        }),
    }
}

/// `connect`, bounded: a refusal must come back, not retry forever.
async fn connect(url: &str, tls: &NatsTls) -> Result<async_nats::Client, NatsError> {
    tokio::time::timeout(
        Duration::from_secs(20),
        meshsync_nats::connect(url, "secure test", tls),
    )
    .await
    .expect("a refused client must be told, not left waiting")
}

#[tokio::test]
async fn tls_with_a_client_certificate_and_password_publishes() {
    let nats = NatsServer::start_secure().await.unwrap();
    let files = nats.tls_files().unwrap().clone();
    let client = connect(&nats.secure_url(), &full(&files)).await.unwrap();
    provision(&client, &Topology::Direct { replicas: 1 })
        .await
        .unwrap();
    let ack = Publisher::new(client, "mesh.changes.a")
        .send(&batch("a", "0000000000000001", 1))
        .await
        .unwrap()
        .acked()
        .await
        .unwrap();
    assert_eq!(ack.sequence, 1);
}

#[tokio::test]
async fn a_client_the_server_refuses_is_told_at_once() {
    let nats = NatsServer::start_secure().await.unwrap();
    let files = nats.tls_files().unwrap().clone();
    let tls = full(&files);
    let refused = |r: Result<async_nats::Client, NatsError>, what: &str| match r {
        Err(NatsError::Refused(_)) => {}
        Err(e) => panic!("{what}: want Refused, got {e}"),
        Ok(_) => panic!("{what}: the server should refuse"),
    };
    // A wrong password.
    let wrong = nats.secure_url().replace("mesh-secret", "guess");
    refused(connect(&wrong, &tls).await, "wrong password");
    // No client certificate.
    let no_cert = NatsTls {
        client: None,
        ..tls.clone()
    };
    refused(
        connect(&nats.secure_url(), &no_cert).await,
        "no client certificate",
    );
    // The server's CA not given: its certificate is from no CA the system trusts.
    let no_ca = NatsTls {
        ca_file: None,
        ..tls.clone()
    };
    refused(connect(&nats.secure_url(), &no_ca).await, "unknown CA");
    // Its host not among the certificate's names (`localhost` only).
    let by_ip = nats.secure_url().replace("@localhost:", "@127.0.0.1:");
    refused(connect(&by_ip, &tls).await, "host not in the certificate");
}

#[tokio::test]
async fn a_certificate_file_that_cannot_be_read_is_named() {
    let nats = NatsServer::start_secure().await.unwrap();
    let files = nats.tls_files().unwrap().clone();
    let tls = NatsTls {
        ca_file: Some(files.ca.with_file_name("missing-ca.crt")),
        ..full(&files)
    };
    let e = connect(&nats.secure_url(), &tls).await.err().unwrap();
    assert!(
        matches!(
            e,
            NatsError::TlsFile {
                field: "tls_ca_file",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("missing-ca.crt"), "{e}");
}

#[tokio::test]
async fn a_refusal_after_waiting_for_the_server_is_still_told() {
    let mut nats = NatsServer::start_secure().await.unwrap();
    let files = nats.tls_files().unwrap().clone();
    let wrong = nats.secure_url().replace("mesh-secret", "guess");
    nats.stop().unwrap();
    // The server is down: connect waits for it...
    let waiting = tokio::spawn(async move { connect(&wrong, &full(&files)).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !waiting.is_finished(),
        "connect should wait for a server that is down"
    );
    // ...and once it answers, its refusal ends the wait.
    nats.restart().await.unwrap();
    match waiting.await.unwrap() {
        Err(NatsError::Refused(_)) => {}
        Err(e) => panic!("want Refused, got {e}"),
        Ok(_) => panic!("the server should refuse a wrong password"),
    }
}
