//! The accept loop and graceful shutdown: one task per connection, tracked, each with a child
//! cancellation token; on shutdown every connection gets connection.close 320.

use crate::broker::Broker;
use crate::config::Config;
use crate::connection;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// How long shutdown waits for connections to finish their close handshake.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Recovers the broker from `config.data_dir`, then serves AMQP on `listener` until `shutdown`
/// completes, then closes every connection. Nothing is accepted before recovery has finished;
/// a store that cannot be opened (e.g. a corrupt file, named in the error) is returned as an
/// error.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let broker = recover(config).await?;
    serve(broker, listener, shutdown).await
}

/// Opens the store in `config.data_dir` and rebuilds the broker from it, on the blocking pool:
/// recovery reads and fsyncs files and must not hold a runtime worker. A program that wants to
/// bind its listener only once recovery is done calls this, then [`serve`].
pub async fn recover(config: Config) -> std::io::Result<Arc<Broker>> {
    tokio::task::spawn_blocking(move || Broker::open(config))
        .await
        .map_err(std::io::Error::other)?
        .map_err(std::io::Error::other)
}

/// Serves AMQP for a recovered `broker` on `listener` until `shutdown` completes, then closes
/// every connection and flushes the store.
pub async fn serve(
    broker: Arc<Broker>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let token = CancellationToken::new();
    tokio::spawn(crate::alarm::watch_memory(
        broker.config.memory_high_watermark,
        broker.memory_alarm.clone(),
        token.clone(),
    ));
    let tracker = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    tracker.spawn(serve_socket(broker.clone(), socket, peer, token.child_token()));
                }
                // Running out of file descriptors must not end the accept loop.
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut shutdown => break,
        }
    }
    // Stop listening first, as RabbitMQ does: a client reconnecting during the grace period
    // is refused at once instead of waiting in the listen backlog until the process exits.
    drop(listener);
    info!("shutting down: closing connections");
    token.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        warn!("some connections did not close in time");
    }
    // Flushing the journal and the metadata waits for their writer threads.
    tokio::task::spawn_blocking(move || broker.close())
        .await
        .map_err(std::io::Error::other)
}

async fn serve_socket(
    broker: Arc<Broker>,
    socket: TcpStream,
    peer: SocketAddr,
    token: CancellationToken,
) {
    let _ = socket.set_nodelay(true);
    connection::serve(broker, socket, peer, token).await;
}

/// A broker running in the background, as tests and embedding programs start one.
pub struct BrokerHandle {
    /// The address it listens on.
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl BrokerHandle {
    /// Recovers the store in `config.data_dir`, then binds `addr` (port 0 picks a free port)
    /// and starts serving on the current runtime. Returns once the broker accepts connections,
    /// with recovery complete; a store that cannot be opened is an error naming the file.
    pub async fn start(config: Config, addr: &str) -> std::io::Result<Self> {
        let broker = recover(config).await?;
        let listener = match TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(e) => {
                broker.close();
                return Err(e);
            }
        };
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task =
            tokio::spawn(async move { serve(broker, listener, stopped.cancelled_owned()).await });
        Ok(BrokerHandle { addr, stop, task })
    }

    /// `amqp://guest:guest@ADDR/%2f`
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// Closes every connection and stops the broker.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.stop.cancel();
        self.task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}
