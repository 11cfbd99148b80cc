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

/// Serves AMQP on `listener` until `shutdown` completes, then closes every connection.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let broker = Broker::open(config).map_err(std::io::Error::other)?;
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
    broker.close();
    Ok(())
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
    /// Binds `addr` (port 0 picks a free port) and starts serving on the current runtime.
    pub async fn start(config: Config, addr: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task =
            tokio::spawn(async move { run(config, listener, stopped.cancelled_owned()).await });
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
