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
#[derive(Debug, Default)]
pub struct ConnectionCounters {
    /// Messages through all of its channels.
    pub messages: MessageCounters,
    /// Open channels.
    pub channels: AtomicU64,
}

/// One connection, now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// What went through its channels.
    pub messages: MessageStats,
    /// Open channels.
    pub channels: u64,
}

impl ConnectionCounters {
    /// The counters now.
    pub fn snapshot(&self) -> ConnectionStats {
        ConnectionStats {
            messages: self.messages.snapshot(),
            channels: self.channels.load(Relaxed),
        }
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
