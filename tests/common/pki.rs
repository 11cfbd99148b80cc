//! Certificates made in the test (rcgen; no private key is committed): a CA, a server
//! certificate for `localhost` and client certificates, as PEM files in a temporary directory,
//! and the rustls client configurations and lapin connections that use them.

use lapin::tcp::{HandshakeError, RustlsConnector, TcpStream};
use lapin::uri::AMQPUri;
use lapin::Connection;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, SupportedProtocolVersion};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use warren::tls::{CertLoginFrom, TlsSettings};

/// A client certificate and its key, PEM.
#[derive(Clone)]
pub struct ClientCert {
    pub cert: String,
    pub key: String,
}

/// A CA with a `localhost` server certificate, in files under a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
    pub ca_pem: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
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
) -> ClientCert {
    let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("params");
    params.distinguished_name = DistinguishedName::new();
    for (ty, value) in dn {
        params.distinguished_name.push(ty.clone(), *value);
    }
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, issuer).expect("signed");
    ClientCert {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

impl Pki {
    pub fn new(ca_name: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ca(ca_name);
        let ca_pem = dir.path().join("ca.pem");
        std::fs::write(&ca_pem, ca.pem()).expect("write");
        let server = leaf(
            &ca,
            &["localhost", "127.0.0.1"],
            &[(DnType::CommonName, "localhost")],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let server_cert = dir.path().join("server.pem");
        let server_key = dir.path().join("server.key");
        std::fs::write(&server_cert, server.cert).expect("write");
        std::fs::write(&server_key, server.key).expect("write");
        Pki {
            dir,
            ca,
            ca_pem,
            server_cert,
            server_key,
        }
    }

    /// The broker's settings: verify_peer and fail_if_no_peer_cert as given, user names from CN.
    pub fn settings(&self, verify_peer: bool, fail_if_no_peer_cert: bool) -> TlsSettings {
        TlsSettings {
            cert: self.server_cert.clone(),
            key: self.server_key.clone(),
            ca: Some(self.ca_pem.clone()),
            verify_peer,
            fail_if_no_peer_cert,
            login_from: CertLoginFrom::CommonName,
        }
    }

    /// A client certificate for `cn` (subject `C=US, O=Acme, CN=cn`) signed by this CA.
    pub fn client_cert(&self, cn: &str) -> ClientCert {
        leaf(
            &self.ca,
            &[],
            &[
                (DnType::CountryName, "US"),
                (DnType::OrganizationName, "Acme"),
                (DnType::CommonName, cn),
            ],
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    /// Writes `cert` and its key as `NAME.pem` and `NAME.key` in this directory.
    pub fn write_client(&self, name: &str, cert: &ClientCert) -> (PathBuf, PathBuf) {
        let (c, k) = (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
        );
        std::fs::write(&c, &cert.cert).expect("write");
        std::fs::write(&k, &cert.key).expect("write");
        (c, k)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces this server certificate and key (same paths) with `other`'s, as an operator
    /// renewing them before SIGHUP.
    pub fn install_server_of(&self, other: &Pki) {
        std::fs::copy(&other.server_cert, &self.server_cert).expect("copy");
        std::fs::copy(&other.server_key, &self.server_key).expect("copy");
    }

    /// A rustls client that trusts this CA only, offers `versions` (both when empty) and,
    /// with `client`, presents that certificate.
    pub fn client_config(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        client: Option<&ClientCert>,
    ) -> Arc<ClientConfig> {
        client_config_trusting(&self.ca_pem, versions, client)
    }
}

/// A rustls client that trusts the CAs in `ca_pem`.
pub fn client_config_trusting(
    ca_pem: &Path,
    versions: &[&'static SupportedProtocolVersion],
    client: Option<&ClientCert>,
) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).expect("CA file") {
        roots.add(cert.expect("pem")).expect("trust anchor");
    }
    let versions = if versions.is_empty() {
        rustls::ALL_VERSIONS
    } else {
        versions
    };
    let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(c) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(c.cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("pem"),
                PrivateKeyDer::from_pem_slice(c.key.as_bytes()).expect("key"),
            )
            .expect("client auth"),
    };
    Arc::new(config)
}

/// lapin over TLS to `addr` (server name `localhost`) with `config`; `query` is appended to
/// `amqps://guest:guest@localhost:PORT/%2f` (e.g. `?auth_mechanism=external`).
pub async fn connect_tls(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    query: &str,
) -> lapin::Result<Connection> {
    let uri: AMQPUri = format!("amqps://guest:guest@localhost:{}/%2f{query}", addr.port())
        .parse()
        .expect("uri");
    let connector = RustlsConnector::from(config);
    // As lapin's own connector: a blocking handshake, then a non-blocking stream for its loop.
    // The error type is lapin's (its `connector` wants exactly this closure).
    #[allow(clippy::result_large_err)]
    let connect = Box::new(move |_: &AMQPUri| {
        let stream = TcpStream::connect(addr)
            .map_err(HandshakeError::Failure)?
            .into_rustls(&connector, "localhost")?;
        stream
            .set_nonblocking(true)
            .map_err(HandshakeError::Failure)?;
        Ok(stream)
    });
    tokio::time::timeout(
        super::WAIT,
        Connection::connector(uri, connect, super::lapin_properties()),
    )
    .await
    .unwrap_or_else(|_| panic!("connecting over TLS to {addr} timed out"))
}
