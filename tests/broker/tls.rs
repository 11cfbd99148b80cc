//! AMQP over TLS (`--amqps-listen`) with certificates made in the test (tests/common/pki.rs):
//! lapin over TLS 1.2 and 1.3, mutual TLS with SASL EXTERNAL (CN and DN), an untrusted client
//! certificate refused without harm to others, wrong-protocol peers on both ports closed
//! cleanly, certificates reloaded under open connections, and pika over TLS with EXTERNAL.

use crate::common::pki::{client_config_trusting, connect_tls, ClientCert, Pki};
use crate::common::*;
use bytes::BytesMut;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use warren::tls::{CertLoginFrom, TlsSettings};
use warren::{BrokerHandle, Config};
use warren_protocol::{decode_frame, Frame, Method, PROTOCOL_HEADER};

/// A broker serving plaintext and TLS on 127.0.0.1:0.
struct TlsBroker {
    handle: BrokerHandle,
    _data: tempfile::TempDir,
}

impl TlsBroker {
    async fn start(tls: TlsSettings) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let config = Config {
            data_dir: data.path().to_path_buf(),
            ..Config::default()
        };
        let handle = BrokerHandle::start_with_tls(config, "127.0.0.1:0", "127.0.0.1:0", tls)
            .await
            .expect("broker starts");
        TlsBroker {
            handle,
            _data: data,
        }
    }

    fn amqps(&self) -> SocketAddr {
        self.handle.amqps_addr.expect("an AMQPS listener")
    }

    /// Adds `user` with full permissions on `/` and no password (only EXTERNAL can log in).
    fn add_certificate_user(&self, user: &str) {
        let users = self.handle.users();
        users
            .add_user(user, "unused-password", Vec::new())
            .expect("user added");
        users.clear_password(user).expect("password cleared");
        users
            .set_permissions(user, "/", ".*", ".*", ".*")
            .expect("permissions");
    }

    async fn finish(self) {
        let leftovers = within("the broker to shut down", self.handle.shutdown_and_audit())
            .await
            .expect("broker stops");
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

/// Declares a queue, publishes one message and gets it back on `conn`.
async fn round_trip(conn: &lapin::Connection, queue: &str) {
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare(
        queue,
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    ch.basic_publish(
        "",
        queue,
        BasicPublishOptions::default(),
        b"over tls",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    wait_ready(&ch, queue, 1).await;
    assert_eq!(get_body(&ch, queue).await.as_deref(), Some("over tls"));
    ch.close(200, "bye").await.expect("channel close");
}

/// Opens TLS to `addr` with `config`, sends the AMQP header and returns connection.start's
/// mechanisms.
async fn offered_mechanisms(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> String {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    mechanisms_of_start(&mut tls).await
}

async fn mechanisms_of_start<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> String {
    stream.write_all(&PROTOCOL_HEADER).await.expect("header");
    let mut buf = BytesMut::new();
    loop {
        if let Some(frame) = decode_frame(&mut buf, 131_072).expect("a frame") {
            match frame {
                Frame::Method {
                    method: Method::ConnectionStart(start),
                    ..
                } => return String::from_utf8_lossy(&start.mechanisms).into_owned(),
                other => panic!("expected connection.start, got {other:?}"),
            }
        }
        let n = within("connection.start", stream.read_buf(&mut buf))
            .await
            .expect("read");
        assert!(n > 0, "closed before connection.start");
    }
}

#[tokio::test]
async fn lapin_connects_over_tls_1_2_and_1_3() {
    let pki = Pki::new("Warren test CA");
    let broker = TlsBroker::start(pki.settings(false, false)).await;
    for (version, queue) in [
        (&rustls::version::TLS12, "tls12"),
        (&rustls::version::TLS13, "tls13"),
    ] {
        let conn = connect_tls(broker.amqps(), pki.client_config(&[version], None), "")
            .await
            .unwrap_or_else(|e| panic!("lapin over {version:?}: {e}"));
        round_trip(&conn, queue).await;
        conn.close(200, "bye").await.expect("close");
    }
    // The plaintext listener keeps working beside it.
    let plain = connect_url(&broker.handle.url()).await.expect("plaintext");
    round_trip(&plain, "plain").await;
    plain.close(200, "bye").await.expect("close");
    broker.finish().await;
}

#[tokio::test]
async fn external_is_offered_only_with_a_verified_client_certificate() {
    let pki = Pki::new("Warren test CA");
    let broker = TlsBroker::start(pki.settings(true, false)).await;
    let client = pki.client_cert("app-1");
    let with_cert = offered_mechanisms(broker.amqps(), pki.client_config(&[], Some(&client))).await;
    assert_eq!(with_cert, "PLAIN AMQPLAIN EXTERNAL");
    let without = offered_mechanisms(broker.amqps(), pki.client_config(&[], None)).await;
    assert_eq!(without, "PLAIN AMQPLAIN");
    let mut plain = TcpStream::connect(broker.handle.addr).await.expect("tcp");
    assert_eq!(mechanisms_of_start(&mut plain).await, "PLAIN AMQPLAIN");
    drop(plain);
    broker.finish().await;
}

#[tokio::test]
async fn mutual_tls_logs_in_with_external_as_the_certificates_common_name() {
    let pki = Pki::new("Warren test CA");
    let broker = TlsBroker::start(pki.settings(true, true)).await;
    broker.add_certificate_user("app-1");
    let external = "?auth_mechanism=external";
    let config = pki.client_config(&[], Some(&pki.client_cert("app-1")));
    let conn = connect_tls(broker.amqps(), config.clone(), external)
        .await
        .expect("EXTERNAL login as app-1");
    round_trip(&conn, "mtls").await;
    // PLAIN still works over the same mutual TLS (guest from loopback).
    let plain = connect_tls(broker.amqps(), config, "")
        .await
        .expect("PLAIN");
    plain.close(200, "bye").await.expect("close");
    conn.close(200, "bye").await.expect("close");

    // A verified certificate for a user that does not exist: RabbitMQ's refusal.
    let stranger = pki.client_config(&[], Some(&pki.client_cert("stranger")));
    let err = connect_tls(broker.amqps(), stranger, external)
        .await
        .expect_err("no user 'stranger'");
    assert_eq!(
        amqp_error(&err),
        Some((
            403,
            "ACCESS_REFUSED - Login was refused using authentication mechanism EXTERNAL. For \
             details see the broker logfile."
                .into()
        )),
        "{err:?}"
    );
    broker.finish().await;
}

#[tokio::test]
async fn external_uses_the_distinguished_name_when_configured() {
    let pki = Pki::new("Warren test CA");
    let settings = TlsSettings {
        login_from: CertLoginFrom::DistinguishedName,
        ..pki.settings(true, true)
    };
    let broker = TlsBroker::start(settings).await;
    broker.add_certificate_user("CN=app-2,O=Acme,C=US");
    let config = pki.client_config(&[], Some(&pki.client_cert("app-2")));
    let conn = connect_tls(broker.amqps(), config, "?auth_mechanism=external")
        .await
        .expect("EXTERNAL login as the DN");
    round_trip(&conn, "dn").await;
    conn.close(200, "bye").await.expect("close");
    broker.finish().await;
}

#[tokio::test]
async fn external_without_a_certificate_is_refused() {
    let pki = Pki::new("Warren test CA");
    let broker = TlsBroker::start(pki.settings(true, false)).await;
    broker.add_certificate_user("app-1");
    let err = connect_tls(
        broker.amqps(),
        pki.client_config(&[], None),
        "?auth_mechanism=external",
    )
    .await
    .expect_err("EXTERNAL without a certificate");
    assert_eq!(amqp_error(&err).map(|e| e.0), Some(403), "{err:?}");
    broker.finish().await;
}

#[tokio::test]
async fn untrusted_or_missing_client_certificates_are_refused_without_harm_to_others() {
    let pki = Pki::new("Warren test CA");
    let other = Pki::new("Someone else's CA");
    let broker = TlsBroker::start(pki.settings(true, true)).await;
    let good = connect_tls(
        broker.amqps(),
        pki.client_config(&[], Some(&pki.client_cert("app-1"))),
        "",
    )
    .await
    .expect("trusted client");
    // Signed by a CA the broker does not trust: the handshake fails (with TLS 1.3 the
    // client learns it at its first read, when lapin waits for connection.start).
    let untrusted: ClientCert = other.client_cert("app-1");
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = client_config_trusting(&pki.ca_pem, &[version], Some(&untrusted));
        connect_tls(broker.amqps(), config, "")
            .await
            .expect_err("untrusted client certificate");
    }
    // fail_if_no_peer_cert: no certificate at all is refused too.
    connect_tls(broker.amqps(), pki.client_config(&[], None), "")
        .await
        .expect_err("no client certificate");
    round_trip(&good, "unharmed").await;
    good.close(200, "bye").await.expect("close");
    broker.finish().await;
}

#[tokio::test]
async fn wrong_protocol_peers_are_closed_cleanly() {
    let pki = Pki::new("Warren test CA");
    let broker = TlsBroker::start(pki.settings(false, false)).await;
    // Plaintext AMQP on the TLS port: the connection ends (an alert or EOF), no hang.
    let mut plain_on_tls = TcpStream::connect(broker.amqps()).await.expect("tcp");
    plain_on_tls
        .write_all(&PROTOCOL_HEADER)
        .await
        .expect("write");
    let mut got = Vec::new();
    let _ = within(
        "the TLS port to close a plaintext peer",
        plain_on_tls.read_to_end(&mut got),
    )
    .await;
    assert!(
        !got.starts_with(b"AMQP"),
        "the TLS port must not speak plaintext AMQP: {got:?}"
    );
    // A TLS client on the plaintext port: its handshake fails, no hang.
    let tcp = TcpStream::connect(broker.handle.addr).await.expect("tcp");
    let name = ServerName::try_from("localhost").expect("name");
    let handshake =
        tokio_rustls::TlsConnector::from(pki.client_config(&[], None)).connect(name, tcp);
    let result = within("the plaintext port to close a TLS peer", handshake).await;
    assert!(
        result.is_err(),
        "a TLS handshake cannot succeed on the plaintext port"
    );
    // Both listeners still serve.
    let tls = connect_tls(broker.amqps(), pki.client_config(&[], None), "")
        .await
        .expect("TLS still works");
    round_trip(&tls, "after-tls").await;
    let plain = connect_url(&broker.handle.url()).await.expect("plaintext");
    round_trip(&plain, "after-plain").await;
    tls.close(200, "bye").await.expect("close");
    plain.close(200, "bye").await.expect("close");
    broker.finish().await;
}

#[tokio::test]
async fn reloaded_certificates_apply_to_new_connections_and_keep_open_ones() {
    let pki = Pki::new("First CA");
    let renewed = Pki::new("Second CA");
    let broker = TlsBroker::start(pki.settings(false, false)).await;
    let before = connect_tls(broker.amqps(), pki.client_config(&[], None), "")
        .await
        .expect("first certificate");
    pki.install_server_of(&renewed);
    broker.handle.reload_tls().expect("reload");
    // The open connection keeps working.
    round_trip(&before, "kept").await;
    // New connections get the new certificate: trusted by the second CA, not the first.
    connect_tls(broker.amqps(), pki.client_config(&[], None), "")
        .await
        .expect_err("the old CA no longer verifies the server");
    let after = connect_tls(broker.amqps(), renewed.client_config(&[], None), "")
        .await
        .expect("renewed certificate");
    round_trip(&after, "renewed").await;
    // A broken file on reload keeps the current certificate.
    std::fs::write(&pki.server_key, "not a key").expect("write");
    let e = broker.handle.reload_tls().expect_err("bad key");
    assert!(e.to_string().contains("server.key"), "{e}");
    let again = connect_tls(broker.amqps(), renewed.client_config(&[], None), "")
        .await
        .expect("still the renewed certificate");
    for conn in [before, after, again] {
        conn.close(200, "bye").await.expect("close");
    }
    broker.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pika_connects_over_tls_and_with_external() {
    let python = tokio::task::spawn_blocking(crate::pika_client::python_with_pika)
        .await
        .expect("provisioning pika");
    let pki = Pki::new("Warren test CA");
    let broker = TlsBroker::start(pki.settings(true, false)).await;
    broker.add_certificate_user("pika-app");
    let (cert, key) = pki.write_client("pika-app", &pki.client_cert("pika-app"));
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/pika_tls_scenario.py"
    );
    let mut command = tokio::process::Command::new(&python.program);
    if let Some(path) = &python.pythonpath {
        command.env("PYTHONPATH", path);
    }
    let port = broker.amqps().port().to_string();
    let paths = [&pki.ca_pem, &cert, &key].map(|p| p.to_str().expect("utf-8").to_owned());
    let output = command
        .arg(script)
        .arg(&port)
        .args(&paths)
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pika TLS scenario failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("PIKA TLS OK"), "{stdout}");
    broker.finish().await;
}

#[tokio::test]
async fn a_peer_that_never_finishes_the_tls_handshake_is_closed_after_the_timeout() {
    let pki = Pki::new("Warren test CA");
    let broker = TlsBroker::start(pki.settings(false, false)).await;
    let started = std::time::Instant::now();
    let mut silent = TcpStream::connect(broker.amqps()).await.expect("tcp");
    let mut got = Vec::new();
    tokio::time::timeout(
        warren::tls::HANDSHAKE_TIMEOUT + WAIT,
        silent.read_to_end(&mut got),
    )
    .await
    .expect("closed by the handshake timeout")
    .expect("a clean close");
    let waited = started.elapsed();
    assert!(
        waited >= warren::tls::HANDSHAKE_TIMEOUT,
        "closed after {waited:?}, before the timeout"
    );
    broker.finish().await;
}
