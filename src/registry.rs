//! The open connections and their channels, by name, for the management API (issue 13):
//! `/api/connections`, `/api/channels`, `/api/consumers` and closing a connection.
//!
//! A connection registers once its handshake is done and leaves when it ends; a channel registers
//! at channel.open and leaves at its close. Nothing here is touched per message: the counters the
//! data path bumps are the connection's and channel's own atomics (`src/stats.rs`), read through
//! [`ChannelProbe`] only when someone lists them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use warren_protocol::FieldTable;

use crate::ids::ConnectionId;
use crate::stats::{ChannelStats, ConnectionCounters};

/// One consumer, as a channel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerInfo {
    pub tag: String,
    pub queue: String,
    pub ack_required: bool,
    pub prefetch_count: u16,
}

/// One channel now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelInfo {
    pub number: u16,
    pub stats: ChannelStats,
    /// basic.qos with global=false (per consumer).
    pub prefetch_count: u16,
    /// basic.qos with global=true (shared by the channel).
    pub global_prefetch_count: u16,
    /// In confirm mode (confirm.select).
    pub confirm: bool,
    /// In tx mode (tx.select).
    pub transactional: bool,
    pub consumers: Vec<ConsumerInfo>,
}

/// What the registry asks of an open channel (implemented by the channel's shared delivery
/// state); called only when someone lists channels.
pub trait ChannelProbe: Send + Sync {
    fn number(&self) -> u16;
    fn info(&self) -> ChannelInfo;
    /// Counters and gauges only (the rate sampler's read, every 5 s).
    fn stats(&self) -> ChannelStats;
}

/// One open connection.
pub struct ConnectionEntry {
    pub id: ConnectionId,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub user: String,
    pub vhost: String,
    pub client_properties: FieldTable,
    /// Milliseconds since the Unix epoch.
    pub connected_at_ms: u64,
    pub channel_max: u16,
    pub frame_max: u32,
    pub heartbeat: u16,
    pub auth_mechanism: String,
    pub ssl: bool,
    pub counters: Arc<ConnectionCounters>,
    channels: Mutex<BTreeMap<u16, Arc<dyn ChannelProbe>>>,
    /// Cancelled to close the connection (from the API); the connection's run loop watches it.
    close: CancellationToken,
    close_reason: Mutex<Option<String>>,
}

/// What a connection tells the registry at registration.
pub struct ConnectionDetails {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub user: String,
    pub vhost: String,
    pub client_properties: FieldTable,
    pub channel_max: u16,
    pub frame_max: u32,
    pub heartbeat: u16,
    pub auth_mechanism: String,
    pub ssl: bool,
}

impl ConnectionEntry {
    /// RabbitMQ's name for a network connection: `"{peer} -> {local}"`.
    pub fn name(&self) -> String {
        connection_name(self.peer, self.local)
    }

    /// The channels open now, by number.
    pub fn channels(&self) -> Vec<ChannelInfo> {
        let probes: Vec<Arc<dyn ChannelProbe>> = self.channels.lock().values().cloned().collect();
        probes.iter().map(|p| p.info()).collect()
    }

    /// (number, counters) of each open channel, without consumer details.
    pub fn channel_stats(&self) -> Vec<(u16, ChannelStats)> {
        let probes: Vec<Arc<dyn ChannelProbe>> = self.channels.lock().values().cloned().collect();
        probes.iter().map(|p| (p.number(), p.stats())).collect()
    }

    pub fn add_channel(&self, number: u16, probe: Arc<dyn ChannelProbe>) {
        self.channels.lock().insert(number, probe);
    }

    pub fn remove_channel(&self, number: u16) {
        self.channels.lock().remove(&number);
    }

    /// Asks the connection to close with 320 CONNECTION_FORCED and `reason` (kept to 255 bytes:
    /// it goes into an AMQP short string).
    pub fn close(&self, reason: &str) {
        let mut end = reason.len().min(255);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        *self.close_reason.lock() = Some(reason[..end].to_owned());
        self.close.cancel();
    }

    /// The reason given to [`ConnectionEntry::close`], if it was called.
    pub fn close_reason(&self) -> Option<String> {
        self.close_reason.lock().clone()
    }

    /// Completes when the connection must close: the API asked, or the broker shuts down
    /// (`close` is a child of the broker's shutdown token).
    pub fn closing(&self) -> &CancellationToken {
        &self.close
    }
}

/// `"{peer} -> {local}"`, as RabbitMQ names connections.
pub fn connection_name(peer: SocketAddr, local: SocketAddr) -> String {
    format!("{peer} -> {local}")
}

/// Every open connection of the node.
#[derive(Default)]
pub struct Registry {
    connections: DashMap<ConnectionId, Arc<ConnectionEntry>>,
}

impl Registry {
    /// Registers a connection whose handshake is done; `shutdown` is the broker's stop token.
    pub fn register(
        &self,
        id: ConnectionId,
        details: ConnectionDetails,
        counters: Arc<ConnectionCounters>,
        shutdown: &CancellationToken,
    ) -> Arc<ConnectionEntry> {
        let connected_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let entry = Arc::new(ConnectionEntry {
            id,
            peer: details.peer,
            local: details.local,
            user: details.user,
            vhost: details.vhost,
            client_properties: details.client_properties,
            connected_at_ms,
            channel_max: details.channel_max,
            frame_max: details.frame_max,
            heartbeat: details.heartbeat,
            auth_mechanism: details.auth_mechanism,
            ssl: details.ssl,
            counters,
            channels: Mutex::default(),
            close: shutdown.child_token(),
            close_reason: Mutex::default(),
        });
        self.connections.insert(id, entry.clone());
        entry
    }

    pub fn unregister(&self, id: ConnectionId) {
        self.connections.remove(&id);
    }

    /// Every open connection, in id (opening) order.
    pub fn list(&self) -> Vec<Arc<ConnectionEntry>> {
        let mut out: Vec<_> = self.connections.iter().map(|e| e.value().clone()).collect();
        out.sort_by_key(|e| e.id.0);
        out
    }

    /// The connection RabbitMQ would call `name`.
    pub fn find(&self, name: &str) -> Option<Arc<ConnectionEntry>> {
        self.connections
            .iter()
            .find(|e| e.name() == name)
            .map(|e| e.value().clone())
    }
}
