//! The part of a channel that queues touch: its consumers, delivery tags, unacked deliveries and
//! prefetch credit. Shared (`Arc`) between the connection task (acks, qos, cancel) and the
//! publishers' tasks that dispatch to this channel's consumers.

use crate::ids::DeliveryTag;
use crate::outbound::Outbound;
use crate::queue::{ConsumerSink, Queue, QueuedMessage};
use crate::stats::{self, ChannelStats, ConnectionCounters, MessageCounters};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use warren_protocol::{basic, Method, ShortStr};

/// A delivery awaiting basic.ack / nack / reject.
pub struct Unacked {
    /// Delivery tag on this channel.
    pub tag: DeliveryTag,
    /// Queue it came from (requeued there).
    pub queue: Arc<Queue>,
    /// The message and its place in the queue.
    pub msg: QueuedMessage,
    /// Consumer that got it (`None` for basic.get), for its prefetch credit.
    consumer: Option<ShortStr>,
}

struct ConsumerState {
    queue: Arc<Queue>,
    no_ack: bool,
    prefetch: u16,
    unacked: u32,
}

struct DeliveryState {
    next_tag: DeliveryTag,
    unacked: VecDeque<Unacked>,
    consumers: HashMap<ShortStr, ConsumerState>,
    /// basic.qos global=false: the prefetch of consumers created afterwards, and of the
    /// existing ones too (see `set_prefetch`).
    consumer_prefetch: u16,
    /// basic.qos global=true: shared by all consumers of the channel (RabbitMQ's reading).
    channel_prefetch: u16,
    /// Unacked consumer deliveries, counted against `channel_prefetch`.
    channel_unacked: u32,
    flow_active: bool,
    closed: bool,
}

/// A settle request naming a tag the channel never delivered (406).
#[derive(Debug, PartialEq, Eq)]
pub struct UnknownTag(pub DeliveryTag);

/// Delivery state of one channel.
pub struct ChannelShared {
    /// Channel number.
    pub id: u16,
    outbound: Arc<Outbound>,
    /// The client understands server-sent basic.cancel (capability consumer_cancel_notify).
    cancel_notify: bool,
    state: Mutex<DeliveryState>,
    /// What went through this channel (see `src/stats.rs`).
    counters: MessageCounters,
    /// Its connection's counters, bumped alongside.
    connection: Arc<ConnectionCounters>,
    /// confirm.select or tx.select seen (for the management API; set once, read when listed).
    confirm: std::sync::atomic::AtomicBool,
    transactional: std::sync::atomic::AtomicBool,
    /// The firehose: who this channel is, for `deliver.<queue>` traces (see `vhost/trace.rs`).
    pub(super) trace: ChannelTrace,
}

/// What a channel needs to trace its deliveries: its vhost's tracing switch (a relaxed load per
/// delivery) and, only when it is on, the vhost itself.
pub struct ChannelTrace {
    pub vhost: std::sync::Weak<crate::vhost::VHost>,
    pub on: Arc<std::sync::atomic::AtomicBool>,
    pub origin: Arc<crate::vhost::TraceOrigin>,
}

impl ChannelTrace {
    #[inline]
    pub fn is_on(&self) -> bool {
        self.on.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Traces a delivery of `msg` from `queue` (call only when [`ChannelTrace::is_on`]).
    pub fn deliver(&self, queue: &Queue, msg: &QueuedMessage) {
        if let Some(vhost) = self.vhost.upgrade() {
            vhost.trace(crate::vhost::TraceEvent::Deliver {
                message: msg.message.clone(),
                queue: queue.name.clone(),
                redelivered: msg.redelivered,
                origin: self.origin.clone(),
            });
        }
    }
}

impl ChannelShared {
    /// Delivery state for a newly opened channel.
    pub fn new(
        id: u16,
        outbound: Arc<Outbound>,
        cancel_notify: bool,
        connection: Arc<ConnectionCounters>,
        trace: ChannelTrace,
    ) -> Arc<Self> {
        Arc::new(ChannelShared {
            id,
            outbound,
            cancel_notify,
            counters: MessageCounters::default(),
            connection,
            confirm: Default::default(),
            transactional: Default::default(),
            trace,
            state: Mutex::new(DeliveryState {
                next_tag: DeliveryTag(1),
                unacked: VecDeque::new(),
                consumers: HashMap::new(),
                consumer_prefetch: 0,
                channel_prefetch: 0,
                channel_unacked: 0,
                flow_active: true,
                closed: false,
            }),
        })
    }

    /// Adds `n` to one counter of this channel and of its connection.
    #[inline]
    pub fn count(&self, n: u64, counter: impl Fn(&MessageCounters) -> &AtomicU64) {
        stats::bump_by(counter(&self.counters), n);
        stats::bump_by(counter(&self.connection.messages), n);
    }

    /// Counts a delivery (consume or get) on this channel and its connection.
    #[inline]
    pub fn count_delivery(&self, get: bool, no_ack: bool, redelivered: bool) {
        stats::count_delivery(&self.counters, get, no_ack, redelivered);
        stats::count_delivery(&self.connection.messages, get, no_ack, redelivered);
    }

    /// Counters and gauges now.
    pub fn stats(&self) -> ChannelStats {
        let (messages_unacked, consumers) = {
            let st = self.state.lock();
            (st.unacked.len() as u64, st.consumers.len() as u64)
        };
        ChannelStats {
            messages: self.counters.snapshot(),
            messages_unacked,
            consumers,
        }
    }

    /// The channel entered confirm mode (`true`) or tx mode (`false`), for the management API.
    pub fn set_mode(&self, confirm: bool) {
        let flag = if confirm {
            &self.confirm
        } else {
            &self.transactional
        };
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// What the management API lists for this channel (see `src/registry.rs`).
    pub fn info(&self) -> crate::registry::ChannelInfo {
        let st = self.state.lock();
        let consumers = st
            .consumers
            .iter()
            .map(|(tag, c)| crate::registry::ConsumerInfo {
                tag: tag.to_string(),
                queue: c.queue.name.to_string(),
                ack_required: !c.no_ack,
                prefetch_count: c.prefetch,
            })
            .collect();
        crate::registry::ChannelInfo {
            number: self.id,
            stats: ChannelStats {
                messages: self.counters.snapshot(),
                messages_unacked: st.unacked.len() as u64,
                consumers: st.consumers.len() as u64,
            },
            prefetch_count: st.consumer_prefetch,
            global_prefetch_count: st.channel_prefetch,
            confirm: self.confirm.load(std::sync::atomic::Ordering::Relaxed),
            transactional: self
                .transactional
                .load(std::sync::atomic::Ordering::Relaxed),
            consumers,
        }
    }

    /// The per-consumer prefetch (basic.qos global=false) new consumers get; 0 when unset.
    pub fn consumer_prefetch(&self) -> u16 {
        self.state.lock().consumer_prefetch
    }

    /// Whether `tag` names a consumer of this channel.
    pub fn has_consumer(&self, tag: &str) -> bool {
        self.state.lock().consumers.contains_key(tag)
    }

    /// Registers a consumer (before the queue learns of it, so its first delivery finds it).
    pub fn add_consumer(&self, tag: ShortStr, queue: Arc<Queue>, no_ack: bool) {
        let mut st = self.state.lock();
        let prefetch = st.consumer_prefetch;
        st.consumers.insert(
            tag,
            ConsumerState {
                queue,
                no_ack,
                prefetch,
                unacked: 0,
            },
        );
    }

    /// Forgets a consumer; returns its queue.
    pub fn remove_consumer(&self, tag: &str) -> Option<Arc<Queue>> {
        self.state.lock().consumers.remove(tag).map(|c| c.queue)
    }

    /// basic.qos. A per-consumer limit (global=false) also applies to the channel's existing
    /// consumers. RabbitMQ applies it to new consumers only, but kombu (Celery) takes any broker
    /// whose product is not "RabbitMQ" for a spec one, where global=false means this channel, at
    /// once: a Celery worker raises its prefetch that way for every ETA/countdown task it holds,
    /// and without this it stops receiving tasks while holding them (LavinMQ does the same).
    pub fn set_prefetch(&self, count: u16, global: bool) {
        let mut st = self.state.lock();
        if global {
            st.channel_prefetch = count;
        } else {
            st.consumer_prefetch = count;
            for c in st.consumers.values_mut() {
                c.prefetch = count;
            }
        }
    }

    /// channel.flow.
    pub fn set_flow(&self, active: bool) {
        self.state.lock().flow_active = active;
    }

    /// The next delivery tag and the outstanding deliveries (tag, timeout in ms), oldest first,
    /// for the consumer timeout check (`consumer_timeout.rs`). `default_ms` applies to queues
    /// without `x-consumer-timeout`.
    pub fn with_outstanding<R>(
        &self,
        default_ms: Option<u64>,
        f: impl FnOnce(DeliveryTag, &mut dyn Iterator<Item = (DeliveryTag, Option<u64>)>) -> R,
    ) -> R {
        let st = self.state.lock();
        let mut outstanding = st
            .unacked
            .iter()
            .map(|u| (u.tag, u.queue.args().consumer_timeout.or(default_ms)));
        f(st.next_tag, &mut outstanding)
    }

    /// Records a basic.get delivery; returns its tag.
    pub fn record_get(&self, queue: Arc<Queue>, msg: QueuedMessage, no_ack: bool) -> DeliveryTag {
        let mut st = self.state.lock();
        let tag = st.next_tag;
        st.next_tag.0 += 1;
        if !no_ack {
            st.unacked.push_back(Unacked {
                tag,
                queue,
                msg,
                consumer: None,
            });
        }
        tag
    }

    /// Removes the deliveries an ack/nack/reject names; their prefetch credit stays in use
    /// until [`ChannelShared::release`] (a transaction holds them until tx.commit). `tag` 0
    /// with `multiple` means "everything outstanding" (spec: basic.ack delivery-tag). Otherwise `tag` itself must be outstanding,
    /// even with `multiple`: RabbitMQ answers "unknown delivery tag" for a multiple ack naming
    /// an already acked or never delivered tag (same result with pika against RabbitMQ 3.10).
    pub fn take(&self, tag: DeliveryTag, multiple: bool) -> Result<Vec<Unacked>, UnknownTag> {
        let mut st = self.state.lock();
        if multiple && tag == DeliveryTag(0) {
            return Ok(st.unacked.drain(..).collect());
        }
        let at = st.unacked.partition_point(|u| u.tag < tag);
        if st.unacked.get(at).map(|u| u.tag) != Some(tag) {
            return Err(UnknownTag(tag));
        }
        Ok(if multiple {
            st.unacked.drain(..=at).collect()
        } else {
            st.unacked.remove(at).into_iter().collect()
        })
    }

    /// Frees the prefetch credit of deliveries taken with [`ChannelShared::take`].
    pub fn release(&self, settled: &[Unacked]) {
        let mut st = self.state.lock();
        for u in settled {
            release_credit(&mut st, u);
        }
    }

    /// Puts taken deliveries back among the outstanding ones (tx.rollback), in tag order.
    pub fn restore(&self, taken: Vec<Unacked>) {
        let mut st = self.state.lock();
        for u in taken {
            let at = st.unacked.partition_point(|o| o.tag < u.tag);
            st.unacked.insert(at, u);
        }
    }

    /// Takes every outstanding delivery (basic.recover, channel close).
    pub fn take_all_unacked(&self) -> Vec<Unacked> {
        let mut st = self.state.lock();
        let taken: Vec<Unacked> = st.unacked.drain(..).collect();
        for u in &taken {
            release_credit(&mut st, u);
        }
        taken
    }

    /// Stops all deliveries and returns the consumers (tag, queue) to remove from their queues.
    pub fn close(&self) -> Vec<(ShortStr, Arc<Queue>)> {
        let mut st = self.state.lock();
        st.closed = true;
        st.consumers
            .drain()
            .map(|(tag, c)| (tag, c.queue))
            .collect()
    }

    /// The distinct queues this channel consumes from (kicked when credit frees up).
    pub fn consumed_queues(&self) -> Vec<Arc<Queue>> {
        let st = self.state.lock();
        let mut queues: Vec<Arc<Queue>> = Vec::new();
        for c in st.consumers.values() {
            if !queues.iter().any(|q| Arc::ptr_eq(q, &c.queue)) {
                queues.push(c.queue.clone());
            }
        }
        queues
    }
}

fn release_credit(st: &mut DeliveryState, u: &Unacked) {
    if let Some(tag) = &u.consumer {
        st.channel_unacked = st.channel_unacked.saturating_sub(1);
        if let Some(c) = st.consumers.get_mut(tag) {
            c.unacked = c.unacked.saturating_sub(1);
        }
    }
}

impl ConsumerSink for ChannelShared {
    fn try_deliver(
        &self,
        tag: &ShortStr,
        no_ack: bool,
        queue: &Arc<Queue>,
        msg: &QueuedMessage,
    ) -> bool {
        let mut st = self.state.lock();
        if st.closed || !st.flow_active {
            return false;
        }
        let channel_full =
            st.channel_prefetch > 0 && st.channel_unacked >= u32::from(st.channel_prefetch);
        let Some(c) = st.consumers.get_mut(tag.as_str()) else {
            return false;
        };
        let consumer_full = c.prefetch > 0 && c.unacked >= u32::from(c.prefetch);
        if (!no_ack && (channel_full || consumer_full)) || self.outbound.is_congested_for(queue) {
            return false;
        }
        if !c.no_ack {
            c.unacked += 1;
        }
        let delivery_tag = st.next_tag;
        st.next_tag.0 += 1;
        if !no_ack {
            st.channel_unacked += 1;
            st.unacked.push_back(Unacked {
                tag: delivery_tag,
                queue: queue.clone(),
                msg: msg.clone(),
                consumer: Some(tag.clone()),
            });
        }
        let m = &msg.message;
        let deliver = Method::BasicDeliver(basic::Deliver {
            consumer_tag: tag.clone(),
            delivery_tag: delivery_tag.0,
            redelivered: msg.redelivered,
            exchange: m.exchange().clone(),
            routing_key: m.routing_key().clone(),
        });
        // Written under the channel lock so delivery tags reach the wire in order.
        self.outbound.send_content(
            self.id,
            &deliver,
            &msg.delivery_properties(queue.queue_type()),
            &m.body,
        );
        self.count_delivery(false, no_ack, msg.redelivered);
        if self.trace.is_on() {
            self.trace.deliver(queue, msg);
        }
        true
    }

    /// One channel lock and one outbound lock (and one wake of the writer) for the whole run:
    /// a stream consumer hands over a read buffer's messages at once.
    fn try_deliver_batch(
        &self,
        tag: &ShortStr,
        queue: &Arc<Queue>,
        msgs: &mut VecDeque<QueuedMessage>,
        delivered: &mut dyn FnMut(&QueuedMessage),
    ) {
        if self.trace.is_on() {
            // The firehose publishes from inside a delivery: keep the one-at-a-time path.
            while let Some(m) = msgs.front() {
                if !self.try_deliver(tag, false, queue, m) {
                    return;
                }
                delivered(m);
                msgs.pop_front();
            }
            return;
        }
        let mut guard = self.state.lock();
        let st = &mut *guard;
        if st.closed || !st.flow_active {
            return;
        }
        let Some(c) = st.consumers.get_mut(tag.as_str()) else {
            return;
        };
        let consumer_tag = Some(tag.clone());
        self.outbound.batch(queue, |out| {
            while let Some(msg) = msgs.front() {
                let channel_full =
                    st.channel_prefetch > 0 && st.channel_unacked >= u32::from(st.channel_prefetch);
                let consumer_full = c.prefetch > 0 && c.unacked >= u32::from(c.prefetch);
                if channel_full || consumer_full || out.is_full() {
                    return;
                }
                c.unacked += 1;
                let delivery_tag = st.next_tag;
                st.next_tag.0 += 1;
                st.channel_unacked += 1;
                st.unacked.push_back(Unacked {
                    tag: delivery_tag,
                    queue: queue.clone(),
                    msg: msg.clone(),
                    consumer: consumer_tag.clone(),
                });
                let m = &msg.message;
                let deliver = Method::BasicDeliver(basic::Deliver {
                    consumer_tag: tag.clone(),
                    delivery_tag: delivery_tag.0,
                    redelivered: msg.redelivered,
                    exchange: m.exchange().clone(),
                    routing_key: m.routing_key().clone(),
                });
                out.content(
                    self.id,
                    &deliver,
                    &msg.delivery_properties(queue.queue_type()),
                    &m.body,
                );
                self.count_delivery(false, false, msg.redelivered);
                delivered(msg);
                msgs.pop_front();
            }
        });
    }

    fn cancelled_by_server(&self, tag: &ShortStr) {
        let removed = self.state.lock().consumers.remove(tag.as_str()).is_some();
        if removed && self.cancel_notify {
            let cancel = basic::Cancel {
                consumer_tag: tag.clone(),
                no_wait: true,
            };
            self.outbound.send_method(self.id, &cancel.into());
        }
    }
}

/// A queue that skipped a congested connection delivers again once the writer drained it.
impl crate::outbound::DrainWaiter for Queue {
    fn drained(self: Arc<Self>) {
        self.dispatch();
    }
}

impl crate::registry::ChannelProbe for ChannelShared {
    fn number(&self) -> u16 {
        self.id
    }

    fn info(&self) -> crate::registry::ChannelInfo {
        ChannelShared::info(self)
    }

    fn stats(&self) -> ChannelStats {
        ChannelShared::stats(self)
    }
}

// The metrics' view of the same channel. (Two probes for one channel: the registry's for the
// management API and this one for Prometheus; folding them into one is a known follow-up.)
impl stats::ChannelProbe for ChannelShared {
    fn number(&self) -> u16 {
        self.id
    }

    fn probe(&self) -> ChannelStats {
        self.stats()
    }

    fn unacked_bytes(&self, add: &mut dyn FnMut(usize, u64)) {
        let st = self.state.lock();
        for u in &st.unacked {
            add(
                Arc::as_ptr(&u.queue) as usize,
                u.msg.message.body_size() as u64,
            );
        }
    }
}
