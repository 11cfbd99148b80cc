//! The `warren` binary: flags and environment to a [`warren::Config`], logging, signals.

use clap::Parser;

/// jemalloc gives freed memory back to the system after a deep queue drains (with glibc's
/// malloc the RSS stayed near its peak), at no cost in idle RSS.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use std::path::PathBuf;
use tokio::net::TcpListener;
use tracing::info;
use tracing_subscriber::EnvFilter;

/// An AMQP 0-9-1 message broker that RabbitMQ clients talk to unchanged.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to accept AMQP connections on.
    #[arg(long, env = "WARREN_LISTEN", default_value = "0.0.0.0:5672")]
    listen: String,
    /// Directory for durable state (created if missing).
    #[arg(long, env = "WARREN_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Largest frame accepted, proposed to clients in connection.tune (bytes).
    #[arg(long, env = "WARREN_FRAME_MAX", default_value_t = 131_072)]
    frame_max: u32,
    /// Heartbeat interval proposed to clients (seconds; 0 disables).
    #[arg(long, env = "WARREN_HEARTBEAT", default_value_t = 60)]
    heartbeat: u16,
    /// Most channels a connection may have open at once (negotiated channel_max; channel
    /// numbers may be anything from 1 to 65535, as in RabbitMQ).
    #[arg(long, env = "WARREN_CHANNEL_MAX", default_value_t = 2047)]
    channel_max: u16,
    /// Default user's name (allowed from loopback only unless --default-user-remote).
    #[arg(long, env = "WARREN_DEFAULT_USER", default_value = "guest")]
    default_user: String,
    /// Default user's password.
    #[arg(
        long,
        env = "WARREN_DEFAULT_PASS",
        default_value = "guest",
        hide_env_values = true
    )]
    default_pass: String,
    /// Bytes of queued messages above which publishers are blocked (connection.blocked);
    /// default: 40% of the machine's memory, as RabbitMQ.
    #[arg(long, env = "WARREN_MEMORY_HIGH_WATERMARK")]
    memory_high_watermark: Option<u64>,
    /// Let the default user connect from any address, not only loopback.
    #[arg(long, env = "WARREN_DEFAULT_USER_REMOTE")]
    default_user_remote: bool,
    /// Free bytes on the data directory's filesystem below which publishers are blocked
    /// (RabbitMQ's disk_free_limit; 0 disables).
    #[arg(long, env = "WARREN_DISK_FREE_LIMIT", default_value_t = 50_000_000)]
    disk_free_limit: u64,
    /// Largest message body accepted, in bytes (RabbitMQ's max_message_size).
    #[arg(long, env = "WARREN_MAX_MESSAGE_SIZE", default_value_t = 128 * 1024 * 1024)]
    max_message_size: u64,
    /// Seconds a client has to finish the handshake (RabbitMQ's handshake_timeout).
    #[arg(long, env = "WARREN_HANDSHAKE_TIMEOUT", default_value_t = 10.0)]
    handshake_timeout: f64,
    /// Most client connections at once (RabbitMQ's connection_max; default unlimited).
    #[arg(long, env = "WARREN_CONNECTION_MAX")]
    connection_max: Option<usize>,
    /// Pause deliveries on channel.flow(active=false) instead of closing the connection with
    /// 540 NOT_IMPLEMENTED as RabbitMQ 3.x does.
    #[arg(long, env = "WARREN_HONOUR_CHANNEL_FLOW")]
    honour_channel_flow: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let open_files = warren::alarm::raise_open_file_limit();
    std::fs::create_dir_all(&args.data_dir)?;
    let config = warren::Config {
        data_dir: args.data_dir.clone(),
        frame_max: args.frame_max.max(warren_protocol::FRAME_MIN_SIZE),
        channel_max: args.channel_max,
        heartbeat: args.heartbeat,
        default_user: args.default_user,
        default_pass: args.default_pass,
        default_user_loopback_only: !args.default_user_remote,
        memory_high_watermark: args
            .memory_high_watermark
            .unwrap_or_else(warren::config::default_memory_high_watermark),
        disk_free_limit: args.disk_free_limit,
        max_message_size: args.max_message_size,
        handshake_timeout: std::time::Duration::from_secs_f64(args.handshake_timeout.max(0.0)),
        connection_max: args.connection_max.unwrap_or(usize::MAX),
        honour_channel_flow: args.honour_channel_flow,
    };
    let listener = TcpListener::bind(&args.listen).await?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %listener.local_addr()?,
        data_dir = %args.data_dir.display(),
        ?open_files,
        "Warren started"
    );
    println!(
        "Warren {} listening on {} (data dir {})",
        env!("CARGO_PKG_VERSION"),
        listener.local_addr()?,
        args.data_dir.display()
    );
    warren::run(config, listener, shutdown_signal()).await?;
    info!("Warren stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
