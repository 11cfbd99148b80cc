//! Message counters for the management API and Prometheus (issues 13 and 14), kept cheaply: plain
//! atomics bumped with `Relaxed` ordering on structs the hot path already touches (the queue, the
//! channel's shared delivery state, the connection context). No lock and no map lookup per
//! message; sums over connections and queues are made when someone asks for a snapshot.
//!
//! A leaf module: the counters know nothing of queues or channels. The snapshot types are what
//! the `stats()` methods of queue, channel, connection, vhost and broker return.
//!
//! The names follow RabbitMQ's Prometheus plugin (`rabbitmq_global_messages_*_total`): a
//! delivery is counted once, in one of four ways (consume or get, manual or automatic ack).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! message_counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// Live message counters (monotonic).
        #[derive(Debug, Default)]
        pub struct MessageCounters {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
        }

        /// A snapshot of [`MessageCounters`], or a sum of several.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct MessageStats {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl MessageCounters {
            /// The counters now (each read on its own: not one atomic picture, as in RabbitMQ).
            pub fn snapshot(&self) -> MessageStats {
                MessageStats { $($name: self.$name.load(Relaxed),)* }
            }

            /// Adds a snapshot: a closed connection's counts stay in its vhost's totals.
            pub fn absorb(&self, stats: &MessageStats) {
                $(self.$name.fetch_add(stats.$name, Relaxed);)*
            }
        }

        impl std::ops::AddAssign for MessageStats {
            fn add_assign(&mut self, other: Self) {
                $(self.$name += other.$name;)*
            }
        }
    };
}

message_counters! {
    /// Messages received from publishers (`received_total`; a channel's `publish`).
    published,
    /// Of those, received on a channel in confirm mode (`received_confirm_total`).
    published_confirm,
    /// Publishes confirmed with basic.ack (`confirmed_total`).
    confirmed,
    /// Publishes that reached at least one queue (`routed_total`).
    routed,
    /// Publishes that reached no queue and were dropped (`unroutable_dropped_total`).
    unroutable_dropped,
    /// Mandatory publishes that reached no queue and were returned (`unroutable_returned_total`).
    unroutable_returned,
    /// basic.deliver to a consumer that acks (`delivered_consume_manual_ack_total`).
    delivered_consume_manual_ack,
    /// basic.deliver to a no-ack consumer (`delivered_consume_auto_ack_total`).
    delivered_consume_auto_ack,
    /// basic.get-ok that must be acked (`delivered_get_manual_ack_total`).
    delivered_get_manual_ack,
    /// basic.get-ok with no-ack (`delivered_get_auto_ack_total`).
    delivered_get_auto_ack,
    /// basic.get-empty (`get_empty_total`).
    get_empty,
    /// Deliveries acknowledged with basic.ack (`acknowledged_total`).
    acked,
    /// Deliveries (consume or get) with redelivered=true (`redelivered_total`).
    redelivered,
}

impl MessageStats {
    /// Every delivery, consume and get alike (the management API's `deliver_get`).
    pub fn delivered(&self) -> u64 {
        self.delivered_consume_manual_ack
            + self.delivered_consume_auto_ack
            + self.delivered_get_manual_ack
            + self.delivered_get_auto_ack
    }
}

/// One exchange's publishes (the management API's `publish_in` and `publish_out`), counted
/// by the publishing channel: one relaxed add each per publish.
#[derive(Debug, Default)]
pub struct ExchangeCounters {
    /// Messages published to the exchange.
    pub publish_in: AtomicU64,
    /// Copies routed from it to queues (one per queue reached).
    pub publish_out: AtomicU64,
}

impl ExchangeCounters {
    /// Counts one publish that reached `queues` queues.
    #[inline]
    pub fn count_publish(&self, queues: usize) {
        bump(&self.publish_in);
        bump_by(&self.publish_out, queues as u64);
    }

    /// (publish_in, publish_out) now.
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.publish_in.load(Relaxed),
            self.publish_out.load(Relaxed),
        )
    }
}

/// Adds one to a counter.
#[inline]
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

/// Adds `n` to a counter.
#[inline]
pub fn bump_by(counter: &AtomicU64, n: u64) {
    if n > 0 {
        counter.fetch_add(n, Relaxed);
    }
}

/// Counts one delivery in the right one of the four delivery counters.
#[inline]
pub fn count_delivery(counters: &MessageCounters, get: bool, no_ack: bool, redelivered: bool) {
    bump(match (get, no_ack) {
        (false, false) => &counters.delivered_consume_manual_ack,
        (false, true) => &counters.delivered_consume_auto_ack,
        (true, false) => &counters.delivered_get_manual_ack,
        (true, true) => &counters.delivered_get_auto_ack,
    });
    if redelivered {
        bump(&counters.redelivered);
    }
}

/// One queue, now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// What went through it (published = enqueued; no confirm/return counts).
    pub messages: MessageStats,
    /// Messages ready for delivery.
    pub messages_ready: u64,
    /// Delivered and not yet acked (or requeued).
    pub messages_unacked: u64,
    /// Body bytes of the ready messages.
    pub message_bytes_ready: u64,
    /// Consumers.
    pub consumers: u64,
    /// Ready messages whose bodies are on disk only, kept compact (classic queues).
    pub messages_paged_out: u64,
    /// Their body bytes.
    pub message_bytes_paged_out: u64,
}

/// One channel, now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// What went through it.
    pub messages: MessageStats,
    /// Deliveries awaiting ack.
    pub messages_unacked: u64,
    /// Consumers on it.
    pub consumers: u64,
}

/// The live counters of one connection (its channels count into them too).
#[derive(Default)]
pub struct ConnectionCounters {
    /// How Prometheus labels it: the peer address (unique among open connections).
    pub name: String,
    /// Messages through all of its channels.
    pub messages: MessageCounters,
    /// Open channels.
    pub channels: AtomicU64,
    /// Bytes read from the socket (one add per read, not per frame).
    pub bytes_in: AtomicU64,
    /// Bytes written to the socket (one add per write).
    pub bytes_out: AtomicU64,
    /// Socket reads that returned data (the management API's `recv_cnt`).
    pub reads: AtomicU64,
    /// Socket writes (`send_cnt`).
    pub writes: AtomicU64,
    /// Sizes of the message bodies published on it.
    pub message_sizes: SizeHistogram,
    /// Its open channels, for per-channel metrics: changed on channel.open and read by a
    /// scrape, never touched per message.
    open_channels: parking_lot::Mutex<Vec<std::sync::Weak<dyn ChannelProbe>>>,
}

impl std::fmt::Debug for ConnectionCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionCounters")
            .field("name", &self.name)
            .field("stats", &self.snapshot())
            .finish_non_exhaustive()
    }
}

/// One connection, now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// What went through its channels.
    pub messages: MessageStats,
    /// Open channels.
    pub channels: u64,
    /// Bytes read from its socket.
    pub bytes_in: u64,
    /// Bytes written to its socket.
    pub bytes_out: u64,
    /// Socket reads.
    pub reads: u64,
    /// Socket writes.
    pub writes: u64,
}

impl ConnectionCounters {
    /// Counters for a connection labelled `name`.
    pub fn named(name: String) -> Self {
        ConnectionCounters {
            name,
            ..Default::default()
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> ConnectionStats {
        ConnectionStats {
            messages: self.messages.snapshot(),
            channels: self.channels.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            reads: self.reads.load(Relaxed),
            writes: self.writes.load(Relaxed),
        }
    }

    /// Lists an opened channel (closed ones drop out by themselves: the list holds weak
    /// references, pruned here).
    pub fn add_channel(&self, channel: std::sync::Weak<dyn ChannelProbe>) {
        let mut open = self.open_channels.lock();
        open.retain(|c| c.strong_count() > 0);
        open.push(channel);
    }

    /// The open channels now, by number.
    pub fn channels(&self) -> Vec<std::sync::Arc<dyn ChannelProbe>> {
        let mut open: Vec<_> = self
            .open_channels
            .lock()
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .collect();
        open.sort_by_key(|c| c.number());
        open
    }
}

/// A vhost (or, summed, the broker), now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VHostStats {
    /// What went through its connections, closed ones included.
    pub messages: MessageStats,
    /// Open connections.
    pub connections: u64,
    /// Open channels.
    pub channels: u64,
    /// Queues.
    pub queues: u64,
    /// Consumers, over all queues.
    pub consumers: u64,
    /// Ready messages, over all queues.
    pub messages_ready: u64,
    /// Unacked messages, over all queues.
    pub messages_unacked: u64,
    /// Ready body bytes, over all queues.
    pub message_bytes_ready: u64,
}

impl std::ops::AddAssign for VHostStats {
    fn add_assign(&mut self, o: Self) {
        self.messages += o.messages;
        self.connections += o.connections;
        self.channels += o.channels;
        self.queues += o.queues;
        self.consumers += o.consumers;
        self.messages_ready += o.messages_ready;
        self.messages_unacked += o.messages_unacked;
        self.message_bytes_ready += o.message_bytes_ready;
    }
}

/// Opened/closed/declared counts (RabbitMQ's `connection_churn_metrics`), bumped when a
/// connection, channel or queue comes or goes: never per message.
#[derive(Debug, Default)]
pub struct Churn {
    /// Connections accepted.
    pub connections_opened: AtomicU64,
    /// Connections ended (closed by either side or dropped).
    pub connections_closed: AtomicU64,
    /// Channels opened.
    pub channels_opened: AtomicU64,
    /// Channels closed.
    pub channels_closed: AtomicU64,
    /// Successful queue.declare (new or existing queue).
    pub queues_declared: AtomicU64,
    /// Queues created.
    pub queues_created: AtomicU64,
    /// Queues deleted (by the client, auto-delete, exclusive owner gone or expiry).
    pub queues_deleted: AtomicU64,
}

/// A snapshot of [`Churn`], or a sum of several.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChurnStats {
    /// See [`Churn`].
    pub connections_opened: u64,
    /// See [`Churn`].
    pub connections_closed: u64,
    /// See [`Churn`].
    pub channels_opened: u64,
    /// See [`Churn`].
    pub channels_closed: u64,
    /// See [`Churn`].
    pub queues_declared: u64,
    /// See [`Churn`].
    pub queues_created: u64,
    /// See [`Churn`].
    pub queues_deleted: u64,
}

impl Churn {
    /// The counts now.
    pub fn snapshot(&self) -> ChurnStats {
        ChurnStats {
            connections_opened: self.connections_opened.load(Relaxed),
            connections_closed: self.connections_closed.load(Relaxed),
            channels_opened: self.channels_opened.load(Relaxed),
            channels_closed: self.channels_closed.load(Relaxed),
            queues_declared: self.queues_declared.load(Relaxed),
            queues_created: self.queues_created.load(Relaxed),
            queues_deleted: self.queues_deleted.load(Relaxed),
        }
    }
}

impl std::ops::AddAssign for ChurnStats {
    fn add_assign(&mut self, o: Self) {
        self.connections_opened += o.connections_opened;
        self.connections_closed += o.connections_closed;
        self.channels_opened += o.channels_opened;
        self.channels_closed += o.channels_closed;
        self.queues_declared += o.queues_declared;
        self.queues_created += o.queues_created;
        self.queues_deleted += o.queues_deleted;
    }
}

/// The upper bounds of RabbitMQ's message size buckets (`rabbit_msg_size_metrics`), in bytes;
/// a last, unbounded bucket follows.
pub const MESSAGE_SIZE_BUCKETS: [u64; 8] = [
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    50_000_000,
    100_000_000,
];

/// Sizes of published message bodies, per connection (two relaxed adds per publish on the
/// connection's own counters; summed over connections when scraped).
#[derive(Debug, Default)]
pub struct SizeHistogram {
    /// Messages per bucket (not cumulative): `buckets[i]` counts sizes up to
    /// `MESSAGE_SIZE_BUCKETS[i]`, the last one everything larger.
    buckets: [AtomicU64; MESSAGE_SIZE_BUCKETS.len() + 1],
    sum: AtomicU64,
}

/// A snapshot of [`SizeHistogram`], or a sum of several.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SizeStats {
    /// Messages per bucket, not cumulative (see [`SizeHistogram`]).
    pub buckets: [u64; MESSAGE_SIZE_BUCKETS.len() + 1],
    /// Bytes over all messages.
    pub sum: u64,
}

impl SizeHistogram {
    /// Counts one message of `size` bytes.
    #[inline]
    pub fn observe(&self, size: u64) {
        let i = MESSAGE_SIZE_BUCKETS.partition_point(|&upper| upper < size);
        bump(&self.buckets[i]);
        bump_by(&self.sum, size);
    }

    /// The counts now.
    pub fn snapshot(&self) -> SizeStats {
        SizeStats {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Relaxed)),
            sum: self.sum.load(Relaxed),
        }
    }

    /// Adds a snapshot (a closed connection's sizes stay in its vhost's totals).
    pub fn absorb(&self, s: &SizeStats) {
        for (b, n) in self.buckets.iter().zip(s.buckets) {
            bump_by(b, n);
        }
        bump_by(&self.sum, s.sum);
    }
}

impl std::ops::AddAssign for SizeStats {
    fn add_assign(&mut self, o: Self) {
        for (b, n) in self.buckets.iter_mut().zip(o.buckets) {
            *b += n;
        }
        self.sum += o.sum;
    }
}

impl SizeStats {
    /// Messages counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// What a scrape can ask an open channel (implemented by the channel's shared delivery state;
/// a trait so that this module stays a leaf).
pub trait ChannelProbe: Send + Sync {
    /// The channel number.
    fn number(&self) -> u16;
    /// Its counters and gauges now.
    fn probe(&self) -> ChannelStats;
    /// Adds the body bytes of its unacked deliveries to `add(queue, bytes)`, the queue named
    /// by the address of its `Arc` (this module knows no queues). Reads under the channel's
    /// delivery lock, once per scrape: nothing is counted per delivery for it.
    fn unacked_bytes(&self, add: &mut dyn FnMut(usize, u64));
}

/// A histogram of plain atomics for what is observed off the data path (the journal writer's
/// batches): `bounds` are the buckets' upper bounds, the last one `u64::MAX` (+Inf).
#[derive(Debug)]
pub struct AtomicHistogram<const N: usize> {
    bounds: [u64; N],
    counts: [AtomicU64; N],
    sum: AtomicU64,
}

impl<const N: usize> AtomicHistogram<N> {
    /// Empty, with these upper bounds (ascending, the last `u64::MAX`).
    pub fn new(bounds: [u64; N]) -> Self {
        AtomicHistogram {
            bounds,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
        }
    }

    /// Counts one value.
    pub fn observe(&self, value: u64) {
        let i = self.bounds.partition_point(|&b| b < value).min(N - 1);
        bump(&self.counts[i]);
        bump_by(&self.sum, value);
    }

    /// The finite upper bounds, the per-bucket counts (not cumulative; the last is +Inf's
    /// own), and the sum.
    pub fn snapshot(&self) -> (Vec<u64>, Vec<u64>, u64) {
        (
            self.bounds[..N - 1].to_vec(),
            self.counts.iter().map(|c| c.load(Relaxed)).collect(),
            self.sum.load(Relaxed),
        )
    }
}

/// What the journal writer measures, once per batch (never per message).
#[derive(Debug)]
pub struct JournalStats {
    /// `fdatasync` time per batch, in microseconds.
    pub fsync_micros: AtomicHistogram<13>,
    /// Records per batch (group commit).
    pub batch_records: AtomicHistogram<12>,
}

impl Default for JournalStats {
    fn default() -> Self {
        JournalStats {
            fsync_micros: AtomicHistogram::new([
                100,
                250,
                500,
                1_000,
                2_500,
                5_000,
                10_000,
                25_000,
                50_000,
                100_000,
                250_000,
                1_000_000,
                u64::MAX,
            ]),
            batch_records: AtomicHistogram::new([
                1,
                2,
                4,
                8,
                16,
                32,
                64,
                128,
                256,
                512,
                1024,
                u64::MAX,
            ]),
        }
    }
}
