//! The accept loop and graceful shutdown: one task per connection, tracked, each with a child
//! cancellation token; on shutdown every connection gets connection.close 320. Also binding the
//! listeners and opening the data directory, with startup errors that say what to do.

use crate::broker::Broker;
use crate::config::listen::ListenerSetting;
use crate::config::{io_reason, Config, StartupError};
use crate::connection;
use crate::http::views::{CertificateFiles, ListenerView};
use crate::store::StoreError;
use crate::tls::{ReloadableTls, TlsError, TlsSettings, HANDSHAKE_TIMEOUT};
use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// How long shutdown waits for connections to finish their close handshake.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Pending connections the kernel queues per listener (RabbitMQ's default backlog is 128;
/// a larger one rides out connection storms at no cost).
const LISTEN_BACKLOG: i32 = 1024;

/// Serves AMQP on `listener` until `shutdown` completes, then closes every connection.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let broker = recover(config).await?;
    serve(broker, vec![listener], shutdown).await;
    Ok(())
}

/// Opens the store and replays it on the blocking pool: recovery reads and fsyncs files and
/// must not hold a runtime worker. Nothing is accepted before it has finished.
pub async fn recover(config: Config) -> std::io::Result<Arc<Broker>> {
    tokio::task::spawn_blocking(move || open_and_load(config))
        .await
        .map_err(std::io::Error::other)?
        .map_err(std::io::Error::other)
}

/// Opens the broker, then imports `--load-definitions` (as RabbitMQ's `load_definitions`, at
/// every start, after the store is restored).
fn open_and_load(config: Config) -> Result<Arc<Broker>, StoreError> {
    let load = config.load_definitions.clone();
    let broker = Broker::open(config)?;
    if let Some(path) = load {
        if let Err(e) = crate::http::definitions_import::load_file(&broker, &path) {
            broker.close();
            return Err(e);
        }
    }
    Ok(broker)
}

/// Checks the data directory and opens the broker in it (recovering durable state), with
/// errors that say which path failed and what to do. Creates the directory if missing.
pub fn open_broker(config: Config) -> Result<Arc<Broker>, StartupError> {
    let dir = config.data_dir.clone();
    let definitions_error = |path: &Path, why: &str| {
        StartupError(format!(
            "cannot load the definitions file {} (--load-definitions): {why}",
            path.display()
        ))
    };
    if let Some(path) = &config.load_definitions {
        crate::http::definitions_import::read_file(path).map_err(|e| match e {
            StoreError::LoadDefinitions(_, why) => definitions_error(path, &why),
            other => definitions_error(path, &other.to_string()),
        })?;
    }
    prepare_data_dir(&dir)?;
    open_and_load(config).map_err(|e| {
        if let StoreError::LoadDefinitions(path, why) = &e {
            return definitions_error(path, why);
        }
        let why = match &e {
            StoreError::Io(path, io) => format!("{}: {}", path.display(), io_reason(io)),
            other => other.to_string(),
        };
        StartupError(format!(
            "cannot open the data directory {} (--data-dir): {why}; everything in it must be \
             readable and writable by the user Warren runs as",
            dir.display()
        ))
    })
}

fn prepare_data_dir(dir: &Path) -> Result<(), StartupError> {
    let what = format!("the data directory {} (--data-dir)", dir.display());
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => {
            return Err(StartupError(format!(
                "{what} exists but is not a directory; remove it or choose another path with \
                 --data-dir"
            )))
        }
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| {
                StartupError(format!(
                    "cannot create {what}: {}; choose a writable path with --data-dir",
                    io_reason(&e)
                ))
            })?;
        }
        Err(e) => {
            return Err(StartupError(format!(
                "cannot use {what}: {}; choose another path with --data-dir",
                io_reason(&e)
            )))
        }
    }
    // Refuse a read-only directory now rather than at the first persistent publish.
    let probe = dir.join(".warren-write-check");
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(StartupError(format!(
            "cannot write in {what}: {}; make it writable by the user Warren runs as, or \
             choose another path with --data-dir",
            io_reason(&e)
        ))),
    }
}

/// Binds every address of `settings` (named `flag` in errors). A bare port or the default
/// binds `[::]` and `0.0.0.0`; the IPv6 half is skipped, with a warning, on a machine without
/// IPv6. Returns the listeners and the warnings to log.
pub fn bind_listeners(
    settings: &[ListenerSetting],
    flag: &str,
) -> Result<(Vec<TcpListener>, Vec<String>), StartupError> {
    let mut listeners = Vec::new();
    let mut warnings = Vec::new();
    for a in settings.iter().flat_map(|s| s.addrs()) {
        match bind(a.addr) {
            Ok(l) => listeners.push(l),
            Err(e) if a.ipv6_optional && no_ipv6(&e) => {
                warnings.push(format!("not listening on {} (no IPv6 here: {e})", a.addr));
            }
            Err(e) => return Err(bind_error(a.addr, flag, &e)),
        }
    }
    Ok((listeners, warnings))
}

/// The error binding `[::]` gives on a machine (or container) without IPv6.
fn no_ipv6(e: &std::io::Error) -> bool {
    const EAFNOSUPPORT: i32 = 97;
    matches!(
        e.kind(),
        ErrorKind::AddrNotAvailable | ErrorKind::Unsupported
    ) || e.raw_os_error() == Some(EAFNOSUPPORT)
}

fn bind_error(addr: SocketAddr, flag: &str, e: &std::io::Error) -> StartupError {
    let advice = match e.kind() {
        ErrorKind::AddrInUse => format!(
            "port {} is in use — is RabbitMQ or another Warren running? Stop it, or choose \
             another address with {flag}",
            addr.port()
        ),
        ErrorKind::PermissionDenied => format!(
            "ports below 1024 need root or CAP_NET_BIND_SERVICE; choose a port above 1023 with \
             {flag} or grant the capability"
        ),
        ErrorKind::AddrNotAvailable => format!(
            "{} is not an address of this machine; use one of its addresses, 0.0.0.0 or [::] \
             with {flag}",
            addr.ip()
        ),
        _ => format!("check the address given with {flag}"),
    };
    StartupError(format!(
        "cannot listen on {addr} ({flag}): {}: {advice}",
        io_reason(e)
    ))
}

/// A listening socket; IPv6 ones are IPv6-only so that `[::]:P` and `0.0.0.0:P` can both bind,
/// as RabbitMQ's default listeners do.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

/// Serves AMQP on every listener until `shutdown` completes, then stops accepting and closes
/// every connection (connection.close 320), waiting at most [`SHUTDOWN_GRACE`].
pub async fn serve(
    broker: Arc<Broker>,
    listeners: Vec<TcpListener>,
    shutdown: impl Future<Output = ()>,
) {
    serve_with_tls(broker, listeners, None, shutdown).await
}

/// The AMQPS listeners (`--amqps-listen`) and the certificates they present.
pub struct AmqpsListeners {
    /// Bound sockets; each accepted connection does a TLS handshake before AMQP.
    pub listeners: Vec<TcpListener>,
    /// The server configuration, reloadable (SIGHUP) without touching open connections.
    pub tls: Arc<ReloadableTls>,
}

impl AmqpsListeners {
    /// How the management API lists these listeners (`amqp/ssl`, with their certificate files).
    pub fn views(&self) -> Vec<ListenerView> {
        let settings = self.tls.settings();
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|a| ListenerView::tls("amqp/ssl", a, certificate_files(settings)))
            .collect()
    }
}

/// The certificate files of a TLS configuration, as the management API reports them.
pub fn certificate_files(settings: &TlsSettings) -> CertificateFiles {
    CertificateFiles {
        cert: settings.cert.clone(),
        ca: settings.ca.clone(),
    }
}

/// [`serve`], also serving AMQP over TLS on `amqps`.
pub async fn serve_with_tls(
    broker: Arc<Broker>,
    listeners: Vec<TcpListener>,
    amqps: Option<AmqpsListeners>,
    shutdown: impl Future<Output = ()>,
) {
    let token = CancellationToken::new();
    tokio::spawn(crate::alarm::watch_memory(
        broker.config.memory_high_watermark,
        broker.memory_alarm.clone(),
        token.clone(),
    ));
    tokio::spawn(crate::alarm::watch_disk(
        broker.config.data_dir.clone(),
        broker.config.disk_free_limit,
        broker.disk_alarm.clone(),
        token.clone(),
    ));
    let tracker = TaskTracker::new();
    let stop_accepting = CancellationToken::new();
    let (amqps_listeners, tls) = match amqps {
        Some(a) => (a.listeners, Some(a.tls)),
        None => (Vec::new(), None),
    };
    let plain = listeners.into_iter().map(|l| (l, None));
    let secure = amqps_listeners.into_iter().map(|l| (l, tls.clone()));
    let accepting: Vec<JoinHandle<()>> = plain
        .chain(secure)
        .map(|(listener, tls)| {
            tokio::spawn(accept_loop(
                listener,
                tls,
                broker.clone(),
                tracker.clone(),
                token.clone(),
                stop_accepting.clone(),
            ))
        })
        .collect();
    shutdown.await;
    // Stop listening first, as RabbitMQ does: a client reconnecting during the grace period
    // is refused at once instead of waiting in the listen backlog until the process exits.
    stop_accepting.cancel();
    for task in accepting {
        let _ = task.await;
    }
    info!("shutting down: closing connections");
    token.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        warn!("some connections did not close in time");
    }
    broker.close();
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<ReloadableTls>>,
    broker: Arc<Broker>,
    tracker: TaskTracker,
    token: CancellationToken,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => match &tls {
                    None => {
                        tracker.spawn(serve_socket(broker.clone(), socket, peer, token.child_token()));
                    }
                    Some(tls) => {
                        tracker.spawn(serve_tls_socket(
                            broker.clone(),
                            tls.clone(),
                            socket,
                            peer,
                            token.child_token(),
                        ));
                    }
                },
                // Running out of file descriptors must not end the accept loop.
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.cancelled() => return,
        }
    }
}

/// Not an `async fn`: the connection's future is spawned as it is, without a wrapper state
/// that would keep this function's arguments for the connection's life.
fn serve_socket(
    broker: Arc<Broker>,
    socket: TcpStream,
    peer: SocketAddr,
    token: CancellationToken,
) -> impl Future<Output = ()> + Send {
    let _ = socket.set_nodelay(true);
    let local = socket
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    connection::serve_at(broker, socket, peer, local, token)
}

/// The TLS handshake (within [`HANDSHAKE_TIMEOUT`]), then the same AMQP connection
/// code as plaintext. A failed handshake (untrusted or missing client certificate, plaintext
/// AMQP, a stalled peer) is logged and closes this socket only.
async fn serve_tls_socket(
    broker: Arc<Broker>,
    tls: Arc<ReloadableTls>,
    socket: TcpStream,
    peer: SocketAddr,
    token: CancellationToken,
) {
    let _ = socket.set_nodelay(true);
    let local = socket
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    // One peeked byte tells a plaintext AMQP client (it starts with "AMQP") from a TLS one, so
    // the log says what happened instead of rustls' "corrupt message". Peek and handshake share
    // one deadline.
    let handshake = async {
        let mut first = [0u8; 1];
        let plaintext = matches!(socket.peek(&mut first).await, Ok(1))
            && !crate::tls::looks_like_tls(&[first[0], 0x03]);
        (plaintext, tls.accept(socket).await)
    };
    let (plaintext, accepted) = tokio::select! {
        done = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake) => match done {
            Ok(done) => done,
            Err(_) => return warn!(%peer, "TLS handshake timed out; connection closed"),
        },
        _ = token.cancelled() => return,
    };
    match accepted {
        Ok(accepted) => {
            let certificate = connection::PeerCertificate {
                verified: accepted.has_verified_certificate,
                identity: accepted.identity,
            };
            connection::serve_with_certificate(
                broker,
                accepted.stream,
                (peer, local),
                Some(certificate),
                token,
            )
            .await;
        }
        Err(e) if plaintext => {
            warn!(%peer, error = %e, "plaintext data on the AMQPS (TLS) port; connection closed (plaintext AMQP clients must use the --listen port)")
        }
        Err(e) => warn!(%peer, error = %e, "TLS handshake failed; connection closed"),
    }
}

/// Serves the management HTTP API over `broker` on each of `listeners` until `stop` is
/// cancelled. `amqp` names the AMQP listeners for `/api/overview`'s `listeners`. Returns the
/// serving tasks (each ends after finishing its in-flight requests).
pub fn start_management(
    broker: &Arc<Broker>,
    listeners: Vec<TcpListener>,
    amqp: &[ListenerView],
    stop: CancellationToken,
) -> Vec<JoinHandle<()>> {
    start_management_with_tls(broker, listeners, None, amqp, stop)
}

/// The management API over TLS: listeners, the server configuration they hand out and the
/// certificate files it was loaded from (for the certificate-expiration health check).
pub struct ManagementTls {
    pub listeners: Vec<TcpListener>,
    pub config: Arc<rustls::ServerConfig>,
    pub certificates: CertificateFiles,
}

/// [`start_management`], plus HTTPS listeners when `tls` is given. `amqp`: the node's AMQP and
/// AMQPS listeners, as the API lists them.
pub fn start_management_with_tls(
    broker: &Arc<Broker>,
    listeners: Vec<TcpListener>,
    tls: Option<ManagementTls>,
    amqp: &[ListenerView],
    stop: CancellationToken,
) -> Vec<JoinHandle<()>> {
    use crate::http::broker_source::{BrokerAuth, BrokerManagement};
    let http = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| ListenerView::plain("http", a));
    let https = tls.iter().flat_map(|t| {
        t.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|a| ListenerView::tls("https", a, t.certificates.clone()))
    });
    let views = amqp.iter().cloned().chain(http).chain(https).collect();
    // One sampler for the node's message rates, while the API is served.
    let rates = Arc::new(crate::http::rates::RateBook::default());
    tokio::spawn(crate::http::broker_source::run_sampler(
        broker.clone(),
        rates.clone(),
        stop.clone(),
    ));
    let state = Arc::new(crate::http::Management::new(
        BrokerManagement::with_rates(broker.clone(), views, rates),
        BrokerAuth::new(broker.clone()),
    ));
    listeners
        .into_iter()
        .map(|listener| {
            let state = state.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::http::serve(listener, state, stop.cancelled_owned()).await {
                    warn!(error = %e, "management API listener failed");
                }
            })
        })
        .chain(tls.into_iter().flat_map(|t| {
            let (state, stop) = (state.clone(), stop.clone());
            t.listeners.into_iter().map(move |listener| {
                let (state, stop, config) = (state.clone(), stop.clone(), t.config.clone());
                tokio::spawn(async move {
                    let stopped = stop.cancelled_owned();
                    if let Err(e) = crate::http::serve_tls(listener, config, state, stopped).await {
                        warn!(error = %e, "management API (TLS) listener failed");
                    }
                })
            })
        }))
        .collect()
}

/// Serves the Prometheus metrics of `broker` on each of `listeners` until `stop` is cancelled.
/// Returns the serving tasks.
pub fn start_prometheus(
    broker: &Arc<Broker>,
    listeners: Vec<TcpListener>,
    stop: CancellationToken,
) -> Vec<JoinHandle<()>> {
    if listeners.is_empty() {
        return Vec::new();
    }
    let exporter = Arc::new(crate::prometheus::Exporter::new(broker.clone()));
    listeners
        .into_iter()
        .map(|listener| {
            let exporter = exporter.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                if let Err(e) =
                    crate::prometheus::serve(listener, exporter, stop.cancelled_owned()).await
                {
                    warn!(error = %e, "Prometheus listener failed");
                }
            })
        })
        .collect()
}

/// A broker running in the background, as tests and embedding programs start one.
pub struct BrokerHandle {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Where its management HTTP API listens, when started with one.
    pub management_addr: Option<SocketAddr>,
    /// Where its Prometheus metrics are served, when started with them.
    pub prometheus_addr: Option<SocketAddr>,
    /// Where it serves AMQP over TLS, when started with certificates.
    pub amqps_addr: Option<SocketAddr>,
    tls: Option<Arc<ReloadableTls>>,
    stop: CancellationToken,
    /// The serving task; taken by [`BrokerHandle::shutdown`].
    task: Option<JoinHandle<()>>,
    broker: Arc<Broker>,
}

/// A handle dropped without [`BrokerHandle::shutdown`] (a test that ended early, a panic) still
/// stops the broker's listeners and its store's writer threads before returning, so nothing is
/// written after the caller removes the data directory. (The journal and the metadata writer
/// stop the process when a write fails, as they must for a real broker; in a test binary that
/// took every other test down with it.)
impl Drop for BrokerHandle {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.stop.cancel();
            self.broker.close();
        }
    }
}

impl BrokerHandle {
    /// Recovers the store in `config.data_dir`, then binds `addr` (port 0 picks a free port)
    /// and starts serving on the current runtime. Returns once the broker accepts connections,
    /// with recovery complete; a store that cannot be opened is an error naming the file.
    pub async fn start(config: Config, addr: &str) -> std::io::Result<Self> {
        Self::start_inner(config, addr, None, None, None).await
    }

    /// [`BrokerHandle::start`], also serving Prometheus metrics on `prometheus_addr` (port 0
    /// picks a free port; see [`BrokerHandle::prometheus_addr`]).
    pub async fn start_with_prometheus(
        config: Config,
        addr: &str,
        prometheus_addr: &str,
    ) -> std::io::Result<Self> {
        Self::start_inner(config, addr, None, Some(prometheus_addr), None).await
    }

    /// [`BrokerHandle::start`], also serving AMQP over TLS on `amqps_addr` (port 0 picks a free
    /// port; see [`BrokerHandle::amqps_addr`]) with the certificates of `tls`. Unusable
    /// certificate files are an `InvalidInput` error naming the file.
    pub async fn start_with_tls(
        config: Config,
        addr: &str,
        amqps_addr: &str,
        tls: TlsSettings,
    ) -> std::io::Result<Self> {
        let tls = ReloadableTls::load(tls)
            .map_err(|e| std::io::Error::new(ErrorKind::InvalidInput, e.to_string()))?;
        Self::start_inner(config, addr, None, None, Some((amqps_addr, tls))).await
    }

    /// Re-reads the TLS certificate files, as SIGHUP does for `warren`: new handshakes use
    /// them, open connections keep theirs. On error the previous ones stay.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        match &self.tls {
            Some(tls) => tls.reload(),
            None => Ok(()),
        }
    }

    /// [`BrokerHandle::start`], also serving the management HTTP API on `management_addr`
    /// (port 0 picks a free port; see [`BrokerHandle::management_addr`]).
    pub async fn start_with_management(
        config: Config,
        addr: &str,
        management_addr: &str,
    ) -> std::io::Result<Self> {
        Self::start_inner(config, addr, Some(management_addr), None, None).await
    }

    async fn start_inner(
        config: Config,
        addr: &str,
        management_addr: Option<&str>,
        prometheus_addr: Option<&str>,
        amqps: Option<(&str, Arc<ReloadableTls>)>,
    ) -> std::io::Result<Self> {
        let broker = recover(config).await?;
        let bound = async {
            let amqp = TcpListener::bind(addr).await?;
            let http = match management_addr {
                Some(a) => Some(TcpListener::bind(a).await?),
                None => None,
            };
            let metrics = match prometheus_addr {
                Some(a) => Some(TcpListener::bind(a).await?),
                None => None,
            };
            let amqps = match amqps {
                Some((a, tls)) => Some(AmqpsListeners {
                    listeners: vec![TcpListener::bind(a).await?],
                    tls,
                }),
                None => None,
            };
            Ok::<_, std::io::Error>((amqp, http, metrics, amqps))
        };
        let (listener, http, metrics, amqps) = match bound.await {
            Ok(bound) => bound,
            Err(e) => {
                broker.close();
                return Err(e);
            }
        };
        let addr = listener.local_addr()?;
        let management_addr = http.as_ref().map(TcpListener::local_addr).transpose()?;
        let prometheus_addr = metrics.as_ref().map(TcpListener::local_addr).transpose()?;
        let amqps_addr = match &amqps {
            Some(a) => Some(a.listeners[0].local_addr()?),
            None => None,
        };
        let tls = amqps.as_ref().map(|a| a.tls.clone());
        let stop = CancellationToken::new();
        let mut amqp_views = vec![ListenerView::plain("amqp", addr)];
        amqp_views.extend(amqps.iter().flat_map(AmqpsListeners::views));
        let mut management = start_management(
            &broker,
            http.into_iter().collect(),
            &amqp_views,
            stop.clone(),
        );
        management.extend(start_prometheus(
            &broker,
            metrics.into_iter().collect(),
            stop.clone(),
        ));
        let stopped = stop.clone();
        let serving = broker.clone();
        let task = tokio::spawn(async move {
            serve_with_tls(serving, vec![listener], amqps, stopped.cancelled_owned()).await;
            for t in management {
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, t).await;
            }
        });
        Ok(BrokerHandle {
            addr,
            management_addr,
            prometheus_addr,
            amqps_addr,
            tls,
            stop,
            task: Some(task),
            broker,
        })
    }

    /// `amqp://guest:guest@ADDR/%2f`
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// The broker's users, vhost records and permissions (what `rabbitmqctl add_user`,
    /// `set_permissions` and `set_topic_permissions` change; tests and embedders call it).
    pub fn users(&self) -> &crate::auth::AccessControl {
        &self.broker.users
    }

    /// Closes every connection and stops the broker.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        self.stop.cancel();
        match self.task.take() {
            Some(task) => task.await.map_err(std::io::Error::other),
            None => Ok(()),
        }
    }

    /// What connections hold now (see [`Broker::leftovers`]).
    pub fn leftovers(&self) -> Vec<String> {
        self.broker.leftovers()
    }

    /// Stops the broker like [`BrokerHandle::shutdown`], then returns what its connections
    /// left behind (see [`Broker::leftovers`]): tests assert it is empty at teardown.
    pub async fn shutdown_and_audit(self) -> std::io::Result<Vec<String>> {
        let broker = self.broker.clone();
        self.shutdown().await?;
        Ok(broker.leftovers())
    }
}
