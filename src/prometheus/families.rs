//! RabbitMQ's metric families (`prometheus_rabbitmq_core_metrics_collector.erl`,
//! `..._global_metrics_collector`, `..._alarm_metrics_collector`, `rabbit_msg_size_metrics`):
//! names, types and HELP texts as RabbitMQ writes them, grouped by the ETS table names that
//! `/metrics/detailed?family=` selects, each with where Warren reads its value.
//!
//! What Warren does not have is left out rather than faked: Erlang process reductions, GC,
//! Mnesia, packets, per-exchange counters, memory and disk I/O of queue processes.

use super::encode::{Kind, Writer};
use super::snapshot::{ChannelRow, ConnectionRow, Node, QueueRow, Snapshot};
use crate::stats::{MessageStats, MESSAGE_SIZE_BUCKETS};

/// One metric: name without prefix, type, HELP, and its value for a row of type `T`.
pub struct Spec<T> {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub value: fn(&T) -> f64,
}

/// A group of metrics read from one RabbitMQ table (the `family` of `/metrics/detailed`).
pub struct Group<T: 'static> {
    pub family: &'static str,
    pub specs: &'static [Spec<T>],
}

macro_rules! spec {
    ($name:literal, $kind:ident, $help:literal, $value:expr) => {
        Spec {
            name: $name,
            kind: Kind::$kind,
            help: $help,
            value: $value,
        }
    };
}

fn f(n: u64) -> f64 {
    n as f64
}

pub static NODE_GROUPS: &[Group<Node>] = &[
    Group {
        family: "connection_churn_metrics",
        specs: &[
            spec!(
                "connections_opened_total",
                Counter,
                "Total number of connections opened",
                |n| f(n.churn.connections_opened)
            ),
            spec!(
                "connections_closed_total",
                Counter,
                "Total number of connections closed or terminated",
                |n| f(n.churn.connections_closed)
            ),
            spec!(
                "channels_opened_total",
                Counter,
                "Total number of channels opened",
                |n| f(n.churn.channels_opened)
            ),
            spec!(
                "channels_closed_total",
                Counter,
                "Total number of channels closed",
                |n| f(n.churn.channels_closed)
            ),
            spec!(
                "queues_declared_total",
                Counter,
                "Total number of queues declared",
                |n| f(n.churn.queues_declared)
            ),
            spec!(
                "queues_created_total",
                Counter,
                "Total number of queues created",
                |n| f(n.churn.queues_created)
            ),
            spec!(
                "queues_deleted_total",
                Counter,
                "Total number of queues deleted",
                |n| f(n.churn.queues_deleted)
            ),
        ],
    },
    Group {
        family: "node_coarse_metrics",
        specs: &[
            spec!("process_open_fds", Gauge, "Open file descriptors", |n| f(
                n.open_fds
            )),
            spec!(
                "process_open_tcp_sockets",
                Gauge,
                "Open TCP sockets",
                |n| f(n.open_sockets)
            ),
            spec!(
                "process_resident_memory_bytes",
                Gauge,
                "Memory used in bytes",
                |n| f(n.resident_memory)
            ),
            spec!(
                "disk_space_available_bytes",
                Gauge,
                "Disk space available in bytes",
                |n| f(n.disk_free)
            ),
        ],
    },
    Group {
        family: "node_metrics",
        specs: &[
            spec!(
                "process_max_fds",
                Gauge,
                "Open file descriptors limit",
                |n| f(n.max_fds)
            ),
            spec!(
                "process_max_tcp_sockets",
                Gauge,
                "Open TCP sockets limit",
                |n| f(n.max_sockets)
            ),
            spec!(
                "resident_memory_limit_bytes",
                Gauge,
                "Memory high watermark in bytes",
                |n| f(n.memory_limit)
            ),
            spec!(
                "disk_space_available_limit_bytes",
                Gauge,
                "Free disk space low watermark in bytes",
                |n| f(n.disk_free_limit)
            ),
            spec!("erlang_uptime_seconds", Gauge, "Node uptime", |n| n
                .uptime_seconds),
        ],
    },
];

pub static QUEUE_GROUPS: &[Group<QueueRow>] = &[
    Group {
        family: "queue_coarse_metrics",
        specs: &[
            spec!("queue_messages_ready", Gauge, "Messages ready to be delivered to consumers", |q| f(q.stats.messages_ready)),
            spec!("queue_messages_unacked", Gauge, "Messages delivered to consumers but not yet acknowledged", |q| f(q.stats.messages_unacked)),
            spec!("queue_messages", Gauge, "Sum of ready and unacknowledged messages - total queue depth", |q| f(q.stats.messages_ready + q.stats.messages_unacked)),
        ],
    },
    Group {
        family: "queue_consumer_count",
        specs: &[spec!("queue_consumers", Gauge, "Consumers on a queue", |q| f(q.stats.consumers))],
    },
    Group {
        family: "queue_metrics",
        specs: &[
            spec!("queue_consumers", Gauge, "Consumers on a queue", |q| f(q.stats.consumers)),
            spec!("queue_consumer_capacity", Gauge, "Consumer capacity", consumer_utilisation),
            spec!("queue_consumer_utilisation", Gauge, "Same as consumer capacity", consumer_utilisation),
            spec!("queue_messages_ready_bytes", Gauge, "Size in bytes of ready messages", |q| f(q.stats.message_bytes_ready)),
            spec!("queue_messages_unacked_bytes", Gauge, "Size in bytes of all unacknowledged messages", |q| f(q.unacked_bytes)),
            spec!("queue_messages_bytes", Gauge, "Size in bytes of ready and unacknowledged messages", |q| f(q.stats.message_bytes_ready + q.unacked_bytes)),
        ],
    },
    Group {
        family: "queue_delivery_metrics",
        specs: &[
            spec!("queue_get_ack_total", Counter, "Total number of messages fetched from a queue with basic.get in manual acknowledgement mode", |q| f(q.stats.messages.delivered_get_manual_ack)),
            spec!("queue_get_total", Counter, "Total number of messages fetched from a queue with basic.get in automatic acknowledgement mode", |q| f(q.stats.messages.delivered_get_auto_ack)),
            spec!("queue_messages_delivered_ack_total", Counter, "Total number of messages delivered from a queue to consumers in manual acknowledgement mode", |q| f(q.stats.messages.delivered_consume_manual_ack)),
            spec!("queue_messages_delivered_total", Counter, "Total number of messages delivered from a queue to consumers in automatic acknowledgement mode", |q| f(q.stats.messages.delivered_consume_auto_ack)),
            spec!("queue_messages_redelivered_total", Counter, "Total number of messages redelivered from a queue to consumers", |q| f(q.stats.messages.redelivered)),
            spec!("queue_messages_acked_total", Counter, "Total number of messages acknowledged by consumers on a queue", |q| f(q.stats.messages.acked)),
            spec!("queue_get_empty_total", Counter, "Total number of times basic.get operations fetched no message on a queue", |q| f(q.stats.messages.get_empty)),
        ],
    },
];

/// RabbitMQ's consumer utilisation is the share of time the queue could deliver at once.
/// Warren does not sample that; it reports 1 when the queue has consumers and nothing waits
/// for them, 0 otherwise (no consumers, or messages ready that consumers are not taking).
fn consumer_utilisation(q: &QueueRow) -> f64 {
    if q.stats.consumers > 0 && q.stats.messages_ready == 0 {
        1.0
    } else {
        0.0
    }
}

pub static CHANNEL_GROUPS: &[Group<ChannelRow>] = &[
    Group {
        family: "channel_metrics",
        specs: &[
            spec!("channel_consumers", Gauge, "Consumers on a channel", |c| f(c.stats.consumers)),
            spec!("channel_messages_unacked", Gauge, "Delivered but not yet acknowledged messages", |c| f(c.stats.messages_unacked)),
        ],
    },
    Group {
        family: "channel_exchange_metrics",
        specs: &[
            spec!("channel_messages_published_total", Counter, "Total number of messages published into an exchange on a channel", |c| f(c.stats.messages.published)),
            spec!("channel_messages_confirmed_total", Counter, "Total number of messages published into an exchange and confirmed on the channel", |c| f(c.stats.messages.confirmed)),
            spec!("channel_messages_unroutable_returned_total", Counter, "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable", |c| f(c.stats.messages.unroutable_returned)),
            spec!("channel_messages_unroutable_dropped_total", Counter, "Total number of messages published as non-mandatory into an exchange and dropped as unroutable", |c| f(c.stats.messages.unroutable_dropped)),
        ],
    },
    Group {
        family: "channel_queue_metrics",
        specs: &[
            spec!("channel_get_ack_total", Counter, "Total number of messages fetched with basic.get in manual acknowledgement mode", |c| f(c.stats.messages.delivered_get_manual_ack)),
            spec!("channel_get_total", Counter, "Total number of messages fetched with basic.get in automatic acknowledgement mode", |c| f(c.stats.messages.delivered_get_auto_ack)),
            spec!("channel_messages_delivered_ack_total", Counter, "Total number of messages delivered to consumers in manual acknowledgement mode", |c| f(c.stats.messages.delivered_consume_manual_ack)),
            spec!("channel_messages_delivered_total", Counter, "Total number of messages delivered to consumers in automatic acknowledgement mode", |c| f(c.stats.messages.delivered_consume_auto_ack)),
            spec!("channel_messages_redelivered_total", Counter, "Total number of messages redelivered to consumers", |c| f(c.stats.messages.redelivered)),
            spec!("channel_messages_acked_total", Counter, "Total number of messages acknowledged by consumers", |c| f(c.stats.messages.acked)),
            spec!("channel_get_empty_total", Counter, "Total number of times basic.get operations fetched no message", |c| f(c.stats.messages.get_empty)),
        ],
    },
];

pub static CONNECTION_GROUPS: &[Group<ConnectionRow>] = &[
    Group {
        family: "connection_coarse_metrics",
        specs: &[
            spec!(
                "connection_incoming_bytes_total",
                Counter,
                "Total number of bytes received on a connection",
                |c| f(c.stats.bytes_in)
            ),
            spec!(
                "connection_outgoing_bytes_total",
                Counter,
                "Total number of bytes sent on a connection",
                |c| f(c.stats.bytes_out)
            ),
        ],
    },
    Group {
        family: "connection_metrics",
        specs: &[spec!(
            "connection_channels",
            Gauge,
            "Channels on a connection",
            |c| f(c.stats.channels)
        )],
    },
];

/// The rows of one object type with how each is labelled.
pub trait Labelled {
    fn labels(&self) -> Vec<(&'static str, &str)>;
}

impl Labelled for QueueRow {
    fn labels(&self) -> Vec<(&'static str, &str)> {
        vec![("vhost", &*self.vhost), ("queue", &self.name)]
    }
}

/// RabbitMQ labels channel and connection metrics alike with `channel` (the Erlang process of
/// the channel or connection: `label(P) when is_pid(P)`); Warren's values name the peer, and
/// for a channel its number.
impl Labelled for ChannelRow {
    fn labels(&self) -> Vec<(&'static str, &str)> {
        vec![("channel", &self.name)]
    }
}

impl Labelled for ConnectionRow {
    fn labels(&self) -> Vec<(&'static str, &str)> {
        vec![("channel", &self.name)]
    }
}

impl Labelled for Node {
    fn labels(&self) -> Vec<(&'static str, &str)> {
        Vec::new()
    }
}

/// Writes the groups `groups` over `rows`: one sample per row (per object), or one unlabelled
/// sum over the rows (aggregated, RabbitMQ's default).
pub fn write_groups<T: Labelled>(
    w: &mut Writer,
    prefix: &str,
    groups: &[&Group<T>],
    rows: &[&T],
    per_object: bool,
) {
    let labels: Vec<_> = if per_object {
        rows.iter().map(|r| r.labels()).collect()
    } else {
        Vec::new()
    };
    for group in groups {
        for spec in group.specs {
            let name = format!("{prefix}{}", spec.name);
            if per_object {
                w.family(
                    &name,
                    spec.help,
                    spec.kind,
                    rows.iter()
                        .zip(&labels)
                        .map(|(r, l)| (&l[..], (spec.value)(r))),
                );
            } else {
                // A fold from +0: `sum()` of no f64 is -0, which the text format writes as `-0`.
                let total = rows.iter().fold(0.0, |t, r| t + (spec.value)(r));
                w.family(&name, spec.help, spec.kind, [(&[][..], total)]);
            }
        }
    }
}

/// `rabbitmq_connections`, `_channels`, `_consumers`, `_queues` (RabbitMQ's `TOTALS`).
pub fn write_totals(w: &mut Writer, s: &Snapshot) {
    let n = &s.node;
    for (name, help, value) in [
        (
            "rabbitmq_connections",
            "Connections currently open",
            n.connections,
        ),
        ("rabbitmq_channels", "Channels currently open", n.channels),
        (
            "rabbitmq_consumers",
            "Consumers currently connected",
            n.consumers,
        ),
        ("rabbitmq_queues", "Queues available", n.queues),
    ] {
        w.family(name, help, Kind::Gauge, [(&[][..], f(value))]);
    }
}

const AMQP091: (&str, &str) = ("protocol", "amqp091");

/// `rabbitmq_global_*` (`rabbit_global_counters`): per protocol, and for deliveries per
/// protocol and queue type.
pub fn write_global(w: &mut Writer, n: &Node) {
    let m = &n.messages;
    let protocol = [AMQP091];
    for (name, help, value) in [
        ("messages_received_total", "Total number of messages received from publishers", m.published),
        ("messages_received_confirm_total", "Total number of messages received from publishers expecting confirmations", m.published_confirm),
        ("messages_routed_total", "Total number of messages routed to queues or streams", m.routed),
        ("messages_unroutable_dropped_total", "Total number of messages published as non-mandatory into an exchange and dropped as unroutable", m.unroutable_dropped),
        ("messages_unroutable_returned_total", "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable", m.unroutable_returned),
        ("messages_confirmed_total", "Total number of messages confirmed to publishers", m.confirmed),
    ] {
        let name = format!("rabbitmq_global_{name}");
        w.family(&name, help, Kind::Counter, [(&protocol[..], f(value))]);
    }
    for (name, help, value) in [
        ("publishers", "Current number of publishers", n.publishers),
        ("consumers", "Current number of consumers", n.consumers),
    ] {
        let name = format!("rabbitmq_global_{name}");
        w.family(&name, help, Kind::Gauge, [(&protocol[..], f(value))]);
    }
    let type_labels: Vec<(String, &MessageStats)> = n
        .by_queue_type
        .iter()
        .map(|(kind, m)| (format!("rabbit_{kind}_queue"), m))
        .collect();
    type Counted = fn(&MessageStats) -> u64;
    let typed: [(&str, &str, Counted); 8] = [
        ("messages_delivered_total", "Total number of messages delivered to consumers", MessageStats::delivered),
        ("messages_delivered_consume_manual_ack_total", "Total number of messages delivered to consumers using basic.consume with manual acknowledgment", |m| m.delivered_consume_manual_ack),
        ("messages_delivered_consume_auto_ack_total", "Total number of messages delivered to consumers using basic.consume with automatic acknowledgment", |m| m.delivered_consume_auto_ack),
        ("messages_delivered_get_manual_ack_total", "Total number of messages delivered to consumers using basic.get with manual acknowledgment", |m| m.delivered_get_manual_ack),
        ("messages_delivered_get_auto_ack_total", "Total number of messages delivered to consumers using basic.get with automatic acknowledgment", |m| m.delivered_get_auto_ack),
        ("messages_get_empty_total", "Total number of times basic.get operations fetched no message", |m| m.get_empty),
        ("messages_redelivered_total", "Total number of messages redelivered to consumers", |m| m.redelivered),
        ("messages_acknowledged_total", "Total number of messages acknowledged by consumers", |m| m.acked),
    ];
    for (name, help, value) in typed {
        let name = format!("rabbitmq_global_{name}");
        let labels: Vec<[(&'static str, &str); 2]> = type_labels
            .iter()
            .map(|(t, _)| [AMQP091, ("queue_type", t.as_str())])
            .collect();
        w.family(
            &name,
            help,
            Kind::Counter,
            labels
                .iter()
                .zip(&type_labels)
                .map(|(l, (_, m))| (&l[..], f(value(m)))),
        );
    }
}

/// `rabbitmq_message_size_bytes` (`rabbit_msg_size_metrics`).
pub fn write_message_sizes(w: &mut Writer, n: &Node) {
    let bounds: Vec<f64> = MESSAGE_SIZE_BUCKETS.iter().map(|b| *b as f64).collect();
    let sizes = &n.message_sizes;
    w.histogram(
        "rabbitmq_message_size_bytes",
        "Size of messages received from publishers",
        &bounds,
        [(&[AMQP091][..], sizes.buckets.to_vec(), f(sizes.sum))],
    );
}

/// `rabbitmq_alarms_*` (the alarm collector of 3.10–3.13, which still had the file descriptor
/// alarm; Warren raises that one never: it raises the limit at start instead).
pub fn write_alarms(w: &mut Writer, n: &Node) {
    for (name, help, on) in [
        (
            "file_descriptor_limit",
            "is 1 if file descriptor limit alarm is in effect",
            false,
        ),
        (
            "free_disk_space_watermark",
            "is 1 if free disk space watermark alarm is in effect",
            n.disk_alarm,
        ),
        (
            "memory_used_watermark",
            "is 1 if VM memory watermark alarm is in effect",
            n.memory_alarm,
        ),
    ] {
        let name = format!("rabbitmq_alarms_{name}");
        w.family(&name, help, Kind::Untyped, [(&[][..], f(u64::from(on)))]);
    }
}

/// Warren's own: the message journal's group commit (`src/store/journal.rs`).
pub fn write_warren(w: &mut Writer, n: &Node) {
    let (bounds, counts, micros) = &n.journal_fsync;
    let seconds: Vec<f64> = bounds.iter().map(|b| *b as f64 / 1e6).collect();
    w.histogram(
        "warren_journal_fsync_seconds",
        "Time of each fdatasync of the message journal (one per group-commit batch)",
        &seconds,
        [(&[][..], counts.clone(), *micros as f64 / 1e6)],
    );
    let (bounds, counts, records) = &n.journal_batches;
    let bounds: Vec<f64> = bounds.iter().map(|b| *b as f64).collect();
    w.histogram(
        "warren_journal_batch_records",
        "Records written per group-commit batch of the message journal (one fsync each)",
        &bounds,
        [(&[][..], counts.clone(), *records as f64)],
    );
}

/// `PREFIXqueue_info{vhost,queue,queue_type,membership}`: one per queue.
pub fn write_queue_info(w: &mut Writer, prefix: &str, queues: &[&QueueRow]) {
    let types: Vec<String> = queues
        .iter()
        .map(|q| format!("rabbit_{}_queue", q.kind))
        .collect();
    let labels: Vec<[(&'static str, &str); 4]> = queues
        .iter()
        .zip(&types)
        .map(|(q, t)| {
            [
                ("vhost", &*q.vhost),
                ("queue", q.name.as_str()),
                ("queue_type", t.as_str()),
                ("membership", "leader"),
            ]
        })
        .collect();
    w.family(
        &format!("{prefix}queue_info"),
        "A metric with a constant '1' value and labels that provide some queue details",
        Kind::Gauge,
        labels.iter().map(|l| (&l[..], 1.0)),
    );
}
