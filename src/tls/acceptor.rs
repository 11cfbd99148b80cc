//! The AMQPS acceptor: a TLS configuration read per accept from an `ArcSwap`, so a reload
//! (SIGHUP) applies to the next handshake while open connections keep the session they have.

use super::identity::peer_identity;
use super::{load_server_config, TlsError, TlsSettings};
use arc_swap::ArcSwap;
use rustls::ServerConfig;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client has to finish the TLS handshake (RabbitMQ's `ssl_handshake_timeout`).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A TLS configuration that can be reloaded from its files.
pub struct ReloadableTls {
    settings: TlsSettings,
    current: ArcSwap<ServerConfig>,
}

/// An accepted TLS connection.
pub struct TlsPeer<IO> {
    /// The decrypted stream for the AMQP connection.
    pub stream: TlsStream<IO>,
    /// Whether the client presented a certificate that was verified (EXTERNAL is offered then).
    pub has_verified_certificate: bool,
    /// The user name the certificate stands for (`ssl_cert_login_from`), if any.
    pub identity: Option<String>,
}

impl ReloadableTls {
    /// Loads the files; an error names the file at fault and should stop startup.
    pub fn load(settings: TlsSettings) -> Result<Arc<Self>, TlsError> {
        let config = load_server_config(&settings)?;
        Ok(Arc::new(ReloadableTls {
            settings,
            current: ArcSwap::new(config),
        }))
    }

    /// Re-reads the files. On error the previous configuration stays in force.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = load_server_config(&self.settings)?;
        self.current.store(config);
        Ok(())
    }

    /// The configuration new handshakes use.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// The settings it was loaded from.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// Runs the server side of a handshake within [`HANDSHAKE_TIMEOUT`]. A client that speaks
    /// plaintext AMQP, sends an untrusted certificate or stalls gets an error here; the caller
    /// logs it and drops the socket, which affects no one else.
    pub async fn accept<IO>(&self, io: IO) -> io::Result<TlsPeer<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = TlsAcceptor::from(self.config());
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        let (has_verified_certificate, identity) = {
            let (_, connection) = stream.get_ref();
            match connection.peer_certificates() {
                Some(chain) => (true, peer_identity(chain, self.settings.login_from)),
                None => (false, None),
            }
        };
        Ok(TlsPeer {
            stream,
            has_verified_certificate,
            identity,
        })
    }
}

impl std::fmt::Debug for ReloadableTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadableTls")
            .field("settings", &self.settings)
            .finish()
    }
}

/// Whether the first bytes on a plaintext port are a TLS handshake record (content type 22,
/// version 3.x), so the plaintext listener can log "TLS on the plaintext port" before closing.
pub fn looks_like_tls(first: &[u8]) -> bool {
    matches!(first, [0x16, 0x03, ..])
}
