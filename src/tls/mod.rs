//! TLS for the AMQPS listener (and, later, HTTPS): a rustls server configuration built from PEM
//! files, client-certificate verification as RabbitMQ's `verify_peer`/`fail_if_no_peer_cert`,
//! the user name a verified client certificate stands for (`ssl_cert_login_from`), and an
//! acceptor whose configuration is swapped on reload without touching open connections.
//! Never reads or writes AMQP; the server hands the accepted stream to `connection`.

mod acceptor;
mod identity;
pub mod validity;

#[cfg(test)]
mod tests;

pub use acceptor::{looks_like_tls, ReloadableTls, TlsPeer, HANDSHAKE_TIMEOUT};
pub use identity::{peer_identity, CertLoginFrom};

use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the TLS listener needs from the configuration (`--tls-cert`, `--tls-key`, `--tls-ca`,
/// `--tls-verify-peer`, `--tls-fail-if-no-peer-cert`, `--ssl-cert-login-from`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: PathBuf,
    /// PEM bundle of CAs that client certificates must chain to.
    pub ca: Option<PathBuf>,
    /// Ask clients for a certificate and verify it (RabbitMQ's `verify_peer`; otherwise
    /// `verify_none`: no certificate is asked for).
    pub verify_peer: bool,
    /// With `verify_peer`, refuse clients that send no certificate.
    pub fail_if_no_peer_cert: bool,
    /// Which part of a client certificate is the user name for EXTERNAL.
    pub login_from: CertLoginFrom,
}

/// A TLS configuration that cannot be used; each message names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {what} file {}: {}", path.display(), io_text(source))]
    Read {
        /// certificate, private key or CA.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not the PEM it should be.
    #[error("{what} file {} holds no usable PEM {what}: {reason}", path.display())]
    Pem {
        /// certificate, private key or CA.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key is not the certificate's, or not a key rustls can sign with.
    #[error("private key {} does not match certificate {}: {reason}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' words.
        reason: String,
    },
    /// A CA certificate rustls refuses as a trust anchor.
    #[error("CA file {}: {reason}", path.display())]
    BadCa {
        /// The CA file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `verify_peer` needs CAs to verify against.
    #[error("--tls-verify-peer needs --tls-ca (the CAs that sign client certificates)")]
    VerifyPeerWithoutCa,
}

/// An I/O error in words, without Rust's "(os error N)" suffix (the startup error is for an
/// operator; `config::io_reason` does the same one layer up).
fn io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let text = e.to_string();
            match text.find(" (os error") {
                Some(i) => text[..i].to_owned(),
                None => text,
            }
        }
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let pem_error = |reason: String| TlsError::Pem {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error("no CERTIFICATE section".to_owned()));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("private key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        what: "private key",
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Builds the server configuration: TLS 1.2 and 1.3 with the ring provider; client
/// certificates as `verify_peer`/`fail_if_no_peer_cert` say. Every error names its file.
pub fn load_server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates("certificate", &settings.cert)?;
    let key = private_key(&settings.key)?;
    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3");
    let builder = if settings.verify_peer {
        let ca = settings
            .ca
            .as_deref()
            .ok_or(TlsError::VerifyPeerWithoutCa)?;
        let mut roots = RootCertStore::empty();
        for cert in certificates("CA", ca)? {
            roots.add(cert).map_err(|e| TlsError::BadCa {
                path: ca.to_owned(),
                reason: e.to_string(),
            })?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        let verifier = if settings.fail_if_no_peer_cert {
            verifier
        } else {
            verifier.allow_unauthenticated()
        };
        let verifier = verifier.build().map_err(|e| TlsError::BadCa {
            path: ca.to_owned(),
            reason: e.to_string(),
        })?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::KeyMismatch {
            cert: settings.cert.clone(),
            key: settings.key.clone(),
            reason: e.to_string(),
        })?;
    Ok(Arc::new(config))
}
