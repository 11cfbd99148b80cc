//! One picture of the broker for a scrape: rows of queues, connections and channels read from
//! the lock-free counters (and each queue's gauges, one short lock per queue), plus node-wide
//! totals and process gauges. Taken on the blocking pool, never on a runtime worker.

use crate::broker::Broker;
use crate::stats::{
    ChannelStats, ChurnStats, ConnectionStats, MessageStats, QueueStats, SizeStats,
};
use std::sync::Arc;

/// The queue types RabbitMQ always reports global counters for, even with no such queue.
pub const QUEUE_TYPES: [&str; 3] = ["classic", "quorum", "stream"];

/// One queue.
pub struct QueueRow {
    pub vhost: Arc<str>,
    pub name: String,
    /// `classic`, `quorum`, `stream`.
    pub kind: &'static str,
    pub stats: QueueStats,
    /// Body bytes of its deliveries not yet acked (read from the channels holding them).
    pub unacked_bytes: u64,
}

/// One open connection.
pub struct ConnectionRow {
    pub name: String,
    pub stats: ConnectionStats,
}

/// One open channel.
pub struct ChannelRow {
    /// `PEER (N)`, as RabbitMQ's management names channels.
    pub name: String,
    pub stats: ChannelStats,
}

/// Node-wide numbers.
#[derive(Default)]
pub struct Node {
    pub churn: ChurnStats,
    /// Over vhosts, closed connections included (the protocol-level global counters).
    pub messages: MessageStats,
    /// By queue type (see [`QUEUE_TYPES`]): live queues' counters plus deleted ones'.
    pub by_queue_type: Vec<(&'static str, MessageStats)>,
    pub message_sizes: SizeStats,
    pub connections: u64,
    pub channels: u64,
    pub queues: u64,
    pub consumers: u64,
    /// Channels that have published at least once (RabbitMQ's `publishers`).
    pub publishers: u64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub open_sockets: u64,
    pub max_sockets: u64,
    pub resident_memory: u64,
    pub memory_limit: u64,
    pub disk_free: u64,
    pub disk_free_limit: u64,
    pub uptime_seconds: f64,
    pub memory_alarm: bool,
    pub disk_alarm: bool,
    /// Journal fsync time (µs bounds, counts, sum) and records per batch (same shape).
    pub journal_fsync: (Vec<u64>, Vec<u64>, u64),
    pub journal_batches: (Vec<u64>, Vec<u64>, u64),
}

/// Everything one scrape reports.
pub struct Snapshot {
    pub node: Node,
    pub queues: Vec<QueueRow>,
    pub connections: Vec<ConnectionRow>,
    pub channels: Vec<ChannelRow>,
    /// (vhost, exchange, type) of every exchange but the default one.
    pub exchanges: Vec<(Arc<str>, String, String)>,
    pub vhosts: Vec<Arc<str>>,
}

impl Snapshot {
    /// Reads the broker now.
    pub fn take(broker: &Broker) -> Snapshot {
        let mut node = Node {
            churn: broker.churn(),
            ..Node::default()
        };
        let mut queues = Vec::new();
        let mut connections = Vec::new();
        let mut channels = Vec::new();
        let mut exchanges = Vec::new();
        let mut vhosts = Vec::new();
        let mut queue_ids = Vec::new();
        let mut by_type: Vec<(&'static str, MessageStats)> = QUEUE_TYPES
            .iter()
            .map(|t| (*t, MessageStats::default()))
            .collect();
        let mut unacked_bytes: std::collections::HashMap<usize, u64> = Default::default();
        let mut add_typed = |kind: &'static str, m: MessageStats| match by_type
            .iter_mut()
            .find(|(k, _)| *k == kind)
        {
            Some((_, total)) => *total += m,
            None => by_type.push((kind, m)),
        };
        for vhost in broker.vhost_list() {
            let vname: Arc<str> = Arc::from(vhost.name.as_str());
            vhosts.push(vname.clone());
            node.message_sizes += vhost.message_sizes();
            for (kind, m) in vhost.deleted_queue_stats() {
                add_typed(kind, m);
            }
            for q in vhost.queue_list() {
                let stats = q.stats();
                let kind = q.queue_type().name();
                add_typed(kind, stats.messages);
                node.queues += 1;
                node.consumers += stats.consumers;
                queues.push(QueueRow {
                    vhost: vname.clone(),
                    name: q.name.to_string(),
                    kind,
                    stats,
                    unacked_bytes: 0,
                });
                queue_ids.push(Arc::as_ptr(&q) as usize);
            }
            for x in vhost.exchange_list() {
                if !x.name.is_empty() && !x.options.internal {
                    exchanges.push((
                        vname.clone(),
                        x.name.to_string(),
                        x.options.kind.name().to_owned(),
                    ));
                }
            }
            for c in vhost.connection_list() {
                let stats = c.snapshot();
                for ch in c.channels() {
                    ch.unacked_bytes(&mut |queue, bytes| {
                        *unacked_bytes.entry(queue).or_default() += bytes;
                    });
                    let stats = ch.probe();
                    if stats.messages.published > 0 {
                        node.publishers += 1;
                    }
                    channels.push(ChannelRow {
                        name: format!("{} ({})", c.name, ch.number()),
                        stats,
                    });
                }
                node.channels += stats.channels;
                connections.push(ConnectionRow {
                    name: c.name.clone(),
                    stats,
                });
            }
            node.messages += vhost.message_stats();
        }
        if !unacked_bytes.is_empty() {
            for (row, id) in queues.iter_mut().zip(&queue_ids) {
                row.unacked_bytes = unacked_bytes.get(id).copied().unwrap_or(0);
            }
        }
        node.by_queue_type = by_type;
        node.connections = connections.len() as u64;
        read_process(broker, &mut node);
        Snapshot {
            node,
            queues,
            connections,
            channels,
            exchanges,
            vhosts,
        }
    }
}

/// The process and filesystem gauges (RabbitMQ's `node_coarse_metrics` and `node_metrics`).
fn read_process(broker: &Broker, node: &mut Node) {
    use rustix::process::{getrlimit, Resource};
    node.max_fds = getrlimit(Resource::Nofile).current.unwrap_or(0);
    node.open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    node.open_sockets = broker.live_connections() as u64;
    node.max_sockets = match broker.config.connection_max {
        usize::MAX => node.max_fds,
        n => (n as u64).min(node.max_fds.max(n as u64)),
    };
    node.resident_memory = resident_memory().unwrap_or(0);
    node.memory_limit = broker.config.memory_high_watermark;
    node.disk_free = crate::alarm::disk_free(&broker.config.data_dir).unwrap_or(0);
    node.disk_free_limit = broker.config.disk_free_limit;
    node.uptime_seconds = broker.started.elapsed().as_secs_f64();
    node.memory_alarm = *broker.memory_alarm.borrow();
    node.disk_alarm = *broker.disk_alarm.borrow();
    node.journal_fsync = broker.journal_stats().fsync_micros.snapshot();
    node.journal_batches = broker.journal_stats().batch_records.snapshot();
}

/// The process's resident set size (`VmRSS` of /proc/self/status), in bytes.
fn resident_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}
