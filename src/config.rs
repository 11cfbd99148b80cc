//! Broker settings, with defaults that run with zero configuration.

use std::path::PathBuf;
use std::time::Duration;

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
}

/// RabbitMQ's default: 40% of the machine's memory (1 GiB when that cannot be read).
pub fn default_memory_high_watermark() -> u64 {
    let total_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemTotal:"))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    });
    total_kib.map_or(1 << 30, |kib| kib * 1024 * 4 / 10)
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
        }
    }
}
