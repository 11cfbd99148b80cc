//! TLS over loopback with certificates made in the test (rcgen; no key is committed): TLS 1.2
//! and 1.3 handshakes, mutual TLS and the identity it yields, refusals, load errors, reload.

use super::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ProtocolVersion, SupportedProtocolVersion};
use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

/// A CA, a server certificate for `localhost` and a client certificate, all as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
    ca_pem: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    sans: &[&str],
    dn: &[(DnType, &str)],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("params");
    // rcgen starts with a CN of its own; the test's DN replaces it whole, in the given order.
    params.distinguished_name = DistinguishedName::new();
    for (ty, value) in dn {
        params.distinguished_name.push(ty.clone(), *value);
    }
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, issuer).expect("signed");
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ca("Warren test CA");
        let ca_pem = dir.path().join("ca.pem");
        std::fs::write(&ca_pem, ca.pem()).expect("write");
        let (cert, key) = leaf(
            &ca,
            &["localhost"],
            &[(DnType::CommonName, "localhost")],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let server_cert = dir.path().join("server.pem");
        let server_key = dir.path().join("server.key");
        std::fs::write(&server_cert, cert).expect("write");
        std::fs::write(&server_key, key).expect("write");
        Pki {
            dir,
            ca,
            ca_pem,
            server_cert,
            server_key,
        }
    }

    fn settings(&self, verify_peer: bool, fail_if_no_peer_cert: bool) -> TlsSettings {
        TlsSettings {
            cert: self.server_cert.clone(),
            key: self.server_key.clone(),
            ca: Some(self.ca_pem.clone()),
            verify_peer,
            fail_if_no_peer_cert,
            login_from: CertLoginFrom::CommonName,
        }
    }

    /// A client certificate signed by `issuer` (this PKI's CA unless given another).
    fn client_cert(
        &self,
        issuer: Option<&CertifiedIssuer<'static, KeyPair>>,
    ) -> (Vec<u8>, Vec<u8>) {
        let (cert, key) = leaf(
            issuer.unwrap_or(&self.ca),
            &[],
            &[
                (DnType::CountryName, "US"),
                (DnType::OrganizationName, "Acme, Inc"),
                (DnType::CommonName, "app-1"),
            ],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        (cert.into_bytes(), key.into_bytes())
    }

    fn client(
        &self,
        version: &'static SupportedProtocolVersion,
        client_cert: Option<(Vec<u8>, Vec<u8>)>,
    ) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.ca.der().clone())
            .expect("CA is a trust anchor");
        let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_protocol_versions(&[version])
            .expect("versions")
            .with_root_certificates(roots);
        let config = match client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(&cert)
                        .collect::<Result<Vec<_>, _>>()
                        .expect("pem"),
                    PrivateKeyDer::from_pem_slice(&key).expect("key"),
                )
                .expect("client auth"),
        };
        TlsConnector::from(Arc::new(config))
    }
}

/// Accepts one connection with `tls` and echoes one line; returns what the server saw.
async fn serve_once(
    tls: Arc<ReloadableTls>,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<std::io::Result<(bool, Option<String>, Option<ProtocolVersion>)>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let (socket, _) = listener.accept().await?;
        let mut peer = tls.accept(socket).await?;
        let version = peer.stream.get_ref().1.protocol_version();
        let mut buf = [0u8; 5];
        peer.stream.read_exact(&mut buf).await?;
        peer.stream.write_all(&buf).await?;
        peer.stream.flush().await?;
        Ok((peer.has_verified_certificate, peer.identity, version))
    });
    (addr, task)
}

async fn connect_and_echo(
    connector: &TlsConnector,
    addr: std::net::SocketAddr,
) -> std::io::Result<ProtocolVersion> {
    let socket = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    let mut stream = connector.connect(name, socket).await?;
    stream.write_all(b"hello").await?;
    let mut buf = [0u8; 5];
    stream.read_exact(&mut buf).await?;
    assert_eq!(&buf, b"hello");
    Ok(stream.get_ref().1.protocol_version().expect("negotiated"))
}

#[tokio::test]
async fn tls12_and_tls13_handshakes_over_loopback() {
    let pki = Pki::new();
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let tls = ReloadableTls::load(pki.settings(false, false)).expect("loads");
        let (addr, server) = serve_once(tls).await;
        let got = connect_and_echo(&pki.client(version, None), addr)
            .await
            .expect("handshake");
        assert_eq!(got, version.version);
        let (verified, identity, server_version) =
            server.await.expect("task").expect("server side");
        assert_eq!(server_version, Some(version.version));
        assert!(
            !verified && identity.is_none(),
            "no client certificate was asked for"
        );
    }
}

#[tokio::test]
async fn mutual_tls_yields_the_certificate_identity() {
    let pki = Pki::new();
    for (from, expected) in [
        (CertLoginFrom::CommonName, "app-1"),
        (
            CertLoginFrom::DistinguishedName,
            "CN=app-1,O=Acme\\, Inc,C=US",
        ),
    ] {
        let mut settings = pki.settings(true, true);
        settings.login_from = from;
        let tls = ReloadableTls::load(settings).expect("loads");
        let (addr, server) = serve_once(tls).await;
        let client = pki.client(&rustls::version::TLS13, Some(pki.client_cert(None)));
        connect_and_echo(&client, addr).await.expect("handshake");
        let (verified, identity, _) = server.await.expect("task").expect("server side");
        assert!(verified);
        assert_eq!(identity.as_deref(), Some(expected));
    }
}

#[tokio::test]
async fn untrusted_client_certificate_is_refused() {
    let pki = Pki::new();
    let tls = ReloadableTls::load(pki.settings(true, false)).expect("loads");
    let (addr, server) = serve_once(tls).await;
    let stranger = ca("Someone else's CA");
    let client = pki.client(
        &rustls::version::TLS12,
        Some(pki.client_cert(Some(&stranger))),
    );
    let _ = connect_and_echo(&client, addr).await;
    let err = server.await.expect("task").expect_err("refused");
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[tokio::test]
async fn missing_client_certificate_obeys_fail_if_no_peer_cert() {
    let pki = Pki::new();
    let strict = ReloadableTls::load(pki.settings(true, true)).expect("loads");
    let (addr, server) = serve_once(strict).await;
    let _ = connect_and_echo(&pki.client(&rustls::version::TLS13, None), addr).await;
    assert!(
        server.await.expect("task").is_err(),
        "fail_if_no_peer_cert refuses"
    );

    let lenient = ReloadableTls::load(pki.settings(true, false)).expect("loads");
    let (addr, server) = serve_once(lenient).await;
    connect_and_echo(&pki.client(&rustls::version::TLS13, None), addr)
        .await
        .expect("allowed");
    let (verified, identity, _) = server.await.expect("task").expect("server side");
    assert!(
        !verified && identity.is_none(),
        "no certificate: EXTERNAL is not offered"
    );
}

#[tokio::test]
async fn plaintext_amqp_on_the_tls_port_fails_the_handshake_quickly() {
    let pki = Pki::new();
    let tls = ReloadableTls::load(pki.settings(false, false)).expect("loads");
    let (addr, server) = serve_once(tls).await;
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    socket
        .write_all(b"AMQP\x00\x00\x09\x01")
        .await
        .expect("write");
    let result = tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("no hang");
    assert!(result.expect("task").is_err());
    assert!(looks_like_tls(&[0x16, 0x03, 0x01]) && !looks_like_tls(b"AMQP"));
}

#[test]
fn mismatched_key_is_refused_at_load_naming_both_files() {
    let pki = Pki::new();
    let other_key = pki.dir.path().join("other.key");
    std::fs::write(
        &other_key,
        KeyPair::generate().expect("key").serialize_pem(),
    )
    .expect("write");
    let mut settings = pki.settings(false, false);
    settings.key = other_key.clone();
    let err = load_server_config(&settings).expect_err("mismatch");
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&*other_key.to_string_lossy()) && text.contains("server.pem"),
        "{text}"
    );
}

#[test]
fn unreadable_or_empty_files_are_named() {
    let pki = Pki::new();
    let mut settings = pki.settings(false, false);
    settings.cert = pki.dir.path().join("missing.pem");
    let text = load_server_config(&settings)
        .expect_err("missing")
        .to_string();
    assert!(
        text.starts_with("cannot read certificate file") && text.contains("missing.pem"),
        "{text}"
    );

    let garbage = pki.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a pem").expect("write");
    let mut settings = pki.settings(false, false);
    settings.cert = garbage;
    let text = load_server_config(&settings)
        .expect_err("garbage")
        .to_string();
    assert!(
        text.contains("garbage.pem") && text.contains("certificate"),
        "{text}"
    );

    let mut settings = pki.settings(false, false);
    settings.key = pki.server_cert.clone();
    let text = load_server_config(&settings)
        .expect_err("not a key")
        .to_string();
    assert!(
        text.contains("private key file") && text.contains("server.pem"),
        "{text}"
    );

    let mut settings = pki.settings(true, true);
    settings.ca = None;
    assert!(matches!(
        load_server_config(&settings),
        Err(TlsError::VerifyPeerWithoutCa)
    ));
}

#[tokio::test]
async fn reload_swaps_certificates_without_dropping_open_connections() {
    let pki = Pki::new();
    let tls = ReloadableTls::load(pki.settings(false, false)).expect("loads");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server_tls = Arc::clone(&tls);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let tls = Arc::clone(&server_tls);
            tokio::spawn(async move {
                let Ok(mut peer) = tls.accept(socket).await else {
                    return;
                };
                let mut buf = [0u8; 1];
                while peer.stream.read_exact(&mut buf).await.is_ok() {
                    if peer.stream.write_all(&buf).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let connector = pki.client(&rustls::version::TLS13, None);
    let name = ServerName::try_from("localhost").expect("name");
    let mut open = connector
        .connect(name.clone(), TcpStream::connect(addr).await.expect("tcp"))
        .await
        .expect("first handshake");
    let first_cert = open.get_ref().1.peer_certificates().expect("server cert")[0].clone();

    // New server certificate from the same CA, written over the old files, then reload.
    let (cert, key) = leaf(
        &pki.ca,
        &["localhost"],
        &[(DnType::CommonName, "renewed")],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    std::fs::write(&pki.server_cert, cert).expect("write");
    std::fs::write(&pki.server_key, key).expect("write");
    tls.reload().expect("reloads");

    for byte in [b'a', b'b'] {
        open.write_all(&[byte])
            .await
            .expect("old connection still writes");
        let mut buf = [0u8; 1];
        open.read_exact(&mut buf)
            .await
            .expect("old connection still reads");
        assert_eq!(buf[0], byte);
    }
    let fresh = connector
        .connect(name, TcpStream::connect(addr).await.expect("tcp"))
        .await
        .expect("second handshake");
    let second_cert = fresh.get_ref().1.peer_certificates().expect("server cert")[0].clone();
    assert_ne!(
        first_cert, second_cert,
        "new handshakes get the new certificate"
    );

    // A broken file on reload keeps the working configuration.
    std::fs::write(&pki.server_key, "broken").expect("write");
    assert!(tls.reload().is_err());
    connector
        .connect(
            ServerName::try_from("localhost").expect("name"),
            TcpStream::connect(addr).await.expect("tcp"),
        )
        .await
        .expect("still serving with the last good certificate");
}

use std::time::Duration;

/// The same subject fed to RabbitMQ 3.10.8's `rabbit_cert_info:subject/1` (erl with the broker's
/// ebin, on a certificate made by this test) printed exactly the expected string below.
#[test]
fn distinguished_name_matches_rabbitmqs_formatting() {
    let issuer = ca("x");
    let (cert, _) = leaf(
        &issuer,
        &[],
        &[
            (DnType::CountryName, "US"),
            (DnType::StateOrProvinceName, "Bayern"),
            (DnType::OrganizationName, "Acme, Inc; \"R&D\" <x>+y"),
            (DnType::OrganizationalUnitName, " lead#trail "),
            (DnType::CommonName, "Jürgen~ü"),
        ],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let der = CertificateDer::from_pem_slice(cert.as_bytes()).expect("pem");
    assert_eq!(
        peer_identity(std::slice::from_ref(&der), CertLoginFrom::DistinguishedName).as_deref(),
        Some(
            r#"CN=J\C3\BCrgen\7E\C3\BC,OU=\ lead#trail\ ,O=Acme\, Inc\; \"R&D\" \<x\>\+y,ST=Bayern,C=US"#
        )
    );
    assert_eq!(
        peer_identity(&[der], CertLoginFrom::CommonName).as_deref(),
        Some("Jürgen~ü")
    );
    assert_eq!(
        CertLoginFrom::try_from_name("distinguished_name"),
        Some(CertLoginFrom::DistinguishedName)
    );
    assert_eq!(CertLoginFrom::try_from_name("cn"), None);
}
