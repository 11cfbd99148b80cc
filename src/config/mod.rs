//! Broker settings, with defaults that run with zero configuration, and the operator's view of
//! them: flags, environment and TOML file ([`settings`]), listener addresses ([`listen`]) and
//! RabbitMQ's memory watermark forms ([`memory`]).

pub mod listen;
pub mod memory;
pub mod settings;

use std::path::PathBuf;
use std::time::Duration;

/// A reason Warren cannot start, worded for the operator: what failed (flag, address, path),
/// why, and what to do. Printed as is, without a backtrace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupError(pub String);

impl std::fmt::Display for StartupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartupError {}

/// An I/O error in words, without Rust's "(os error N)" suffix.
pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::AlreadyExists => "a file of that name already exists".into(),
        std::io::ErrorKind::AddrInUse => "address already in use".into(),
        std::io::ErrorKind::AddrNotAvailable => "no local interface has this address".into(),
        _ => {
            let text = e.to_string();
            match text.find(" (os error") {
                Some(i) => text[..i].to_owned(),
                None => text,
            }
        }
    }
}

/// Everything a broker needs to start.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where durable state lives.
    pub data_dir: PathBuf,
    /// Largest frame the broker accepts and proposes in connection.tune.
    pub frame_max: u32,
    /// Most channels a connection may have open at once (connection.tune channel-max; RabbitMQ's
    /// `channel_max`, 2047). Channel *numbers* may be anything from 1 to 65535, as in RabbitMQ.
    pub channel_max: u16,
    /// Heartbeat interval proposed in connection.tune, in seconds (0 disables).
    pub heartbeat: u16,
    /// Largest message body accepted (RabbitMQ's `max_message_size`, 128 MiB by default).
    pub max_message_size: u64,
    /// The default user, created with full rights on vhost `/`.
    pub default_user: String,
    /// The default user's password.
    pub default_pass: String,
    /// Whether the default user may only connect from loopback (RabbitMQ's `loopback_users`).
    pub default_user_loopback_only: bool,
    /// Above this many bytes of queued messages, publishing connections are blocked
    /// (connection.blocked) until it drops again: RabbitMQ's memory alarm.
    pub memory_high_watermark: u64,
    /// Below this many free bytes on the data directory's filesystem, publishing connections are
    /// blocked until space returns (RabbitMQ's `disk_free_limit`, 50 MB by default; 0 disables).
    pub disk_free_limit: u64,
    /// A peer must finish the handshake (protocol header to connection.open-ok) within this
    /// (RabbitMQ's `handshake_timeout`, 10 s).
    pub handshake_timeout: Duration,
    /// Most client connections at once (RabbitMQ's `connection_max`; unlimited by default).
    /// Connection.open beyond it is refused with 530.
    pub connection_max: usize,
    /// Honour channel.flow(active=false) by pausing deliveries on the channel, as the spec
    /// describes. Off by default: RabbitMQ 3.x closes the connection with 540 NOT_IMPLEMENTED.
    pub honour_channel_flow: bool,
    /// A definitions file (RabbitMQ's JSON) imported at every start, after the store is
    /// restored (RabbitMQ's `load_definitions`).
    pub load_definitions: Option<PathBuf>,
    /// An unacknowledged delivery older than this closes its channel with 406 and is requeued
    /// (RabbitMQ's `consumer_timeout`, 30 min by default; `None` disables it). A queue's
    /// `x-consumer-timeout` overrides it for that queue's deliveries.
    pub consumer_timeout: Option<Duration>,
}

/// RabbitMQ's default `consumer_timeout`: 30 minutes.
pub const DEFAULT_CONSUMER_TIMEOUT_MS: u64 = 1_800_000;

/// RabbitMQ's default: 40% of the memory available (RAM, or the cgroup limit in a container).
pub fn default_memory_high_watermark() -> u64 {
    memory::Watermark::default().bytes(memory::available_memory())
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("data"),
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
            max_message_size: 128 * 1024 * 1024,
            default_user: "guest".into(),
            default_pass: "guest".into(),
            default_user_loopback_only: true,
            memory_high_watermark: default_memory_high_watermark(),
            disk_free_limit: 50_000_000,
            handshake_timeout: Duration::from_secs(10),
            connection_max: usize::MAX,
            honour_channel_flow: false,
            load_definitions: None,
            consumer_timeout: Some(Duration::from_millis(DEFAULT_CONSUMER_TIMEOUT_MS)),
        }
    }
}
