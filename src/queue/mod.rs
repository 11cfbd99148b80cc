//! A queue: its ready messages in order, its consumers, and dispatch between them.
//!
//! Publishers push inline on their own task and dispatch happens right there when a consumer has
//! credit; the queue never writes to a socket itself but hands each delivery to the consumer's
//! [`ConsumerSink`] (a channel), which decides whether it has room.
//! Lock order: queue state → the sink's own locks (see `src/vhost.rs`). Dead letters are
//! collected under the lock and handed to the [`QueueOwner`] only after it is released, and
//! paged-out bodies are read from the journal with the lock released (no disk I/O under it).
//! A publish reaches a queue in two steps, [`Queue::admit`] then [`Queue::enqueue`], with the
//! journal write between them (`src/vhost/publish.rs`); `kind.rs` lists what every queue type
//! implements.
//!
//! One file per concern: `args` (x-arguments, validation), `priority` (the ready list),
//! `consumers` (priorities, single active consumer), `ttl` (message expiry), `limits` (length
//! limits), `dead_letter` (x-death, cycles, the owner trait), `timer` (the per-queue timer task
//! and x-expires). A queue declared without arguments pays for none of them on its hot path: no
//! clock read, no allocation and no extra lock per message.

pub mod args;
mod consumers;
pub mod dead_letter;
pub mod kind;
mod limits;
mod priority;
mod timer;
mod ttl;

use crate::ids::{ConnectionId, DurableQueueId};
use crate::message::Message;
use crate::stats::{self, MessageCounters, QueueStats};
use crate::store::Store;
use args::QueueArgs;
use consumers::Consumers;
use dead_letter::DeadLetters;
pub use dead_letter::{DeadLetter, DeadLetterReason, QueueOwner};
pub use kind::QueueType;
use parking_lot::{Mutex, MutexGuard};
use priority::ReadyList;
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};
use warren_protocol::{BasicProperties, FieldTable, FieldValue, ShortStr};

/// A message waiting in (or delivered from) one queue.
#[derive(Clone, Debug)]
pub struct QueuedMessage {
    /// Position in the queue: requeued messages go back to where this says.
    pub seq: u64,
    /// The shared message.
    pub message: Arc<Message>,
    /// Whether it was delivered before.
    pub redelivered: bool,
    /// When it expires (x-message-ttl / expiration), fixed when it entered the queue.
    pub expires_at: Option<Instant>,
    /// Deliveries before this one that ended in a requeue (`x-delivery-count` on redelivery).
    pub delivery_count: u32,
}

impl QueuedMessage {
    /// A message entering a queue at position `seq`, never delivered.
    pub fn new(seq: u64, message: Arc<Message>) -> Self {
        QueuedMessage {
            seq,
            message,
            redelivered: false,
            expires_at: None,
            delivery_count: 0,
        }
    }

    /// The properties to deliver with: the message's own, plus an `x-delivery-count` header
    /// once it was requeued (RabbitMQ 4.x quorum-queue behaviour, adopted for every queue).
    /// Only redeliveries pay for the copy.
    pub fn delivery_properties(&self) -> Cow<'_, BasicProperties> {
        if self.delivery_count == 0 {
            return Cow::Borrowed(&self.message.properties);
        }
        let mut properties = BasicProperties::clone(&self.message.properties);
        properties
            .headers
            .get_or_insert_with(FieldTable::new)
            .insert(
                ShortStr::from_static(X_DELIVERY_COUNT),
                FieldValue::I64(i64::from(self.delivery_count)),
            );
        Cow::Owned(properties)
    }
}

/// Ready bodies a journaled queue keeps in memory before newer persistent messages stay on disk.
pub const PAGE_OUT_BYTES: u64 = 16 * 1024 * 1024;

/// Header counting a message's earlier deliveries that were requeued.
pub const X_DELIVERY_COUNT: &str = "x-delivery-count";

/// Where a queue hands deliveries: implemented by a channel, which owns delivery tags, prefetch
/// credit and the connection's outbound buffer.
pub trait ConsumerSink: Send + Sync {
    /// Delivers `msg` to consumer `tag` if it has credit; `false` means "not now".
    fn try_deliver(
        &self,
        tag: &ShortStr,
        no_ack: bool,
        queue: &Arc<Queue>,
        msg: &QueuedMessage,
    ) -> bool;
    /// The queue went away: tell the client (basic.cancel) and forget the consumer.
    fn cancelled_by_server(&self, tag: &ShortStr);
}

/// One consumer of this queue.
#[derive(Clone)]
pub struct Consumer {
    /// Consumer tag, unique on its channel.
    pub tag: ShortStr,
    /// The channel that receives deliveries.
    pub sink: Arc<dyn ConsumerSink>,
    /// Deliveries need no acknowledgement.
    pub no_ack: bool,
    /// basic.consume exclusive: no other consumer may join.
    pub exclusive: bool,
    /// basic.consume `x-priority`: higher gets messages first (default 0).
    pub priority: i64,
}

/// Whether a queue took a published message.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// Enqueued or delivered (drop-head may have pushed older messages out).
    Accepted,
    /// Refused by `x-overflow` reject-publish / reject-publish-dlx: a confirming publisher
    /// gets basic.nack.
    Rejected,
}

/// Why a consumer could not be added.
#[derive(Debug, PartialEq, Eq)]
pub enum ConsumeError {
    /// An exclusive consumer asked for a queue that has consumers, or the queue has one.
    ExclusiveInUse,
    /// The queue was deleted meanwhile.
    Deleted,
}

#[derive(Default)]
struct QueueState {
    ready: ReadyList,
    next_seq: u64,
    consumers: Consumers,
    /// Auto-delete applies only once a queue has had a consumer (spec: queue.declare auto-delete).
    had_consumer: bool,
    /// Some message could expire: the head is checked and the timer runs (ttl.rs).
    has_expiring: bool,
    /// When the queue was last used, for x-expires (timer.rs).
    last_used: Option<Instant>,
    /// The deadline the timer task sleeps until, if it sleeps until one.
    timer_at: Option<Instant>,
    /// Publishes admitted but not yet enqueued (reject-publish queues only, see
    /// [`Queue::admit`]): counted against the length limits.
    reserved: limits::Reserved,
}

/// What queue.declare said about a queue, to compare redeclares with.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueOptions {
    /// Survives a broker restart.
    pub durable: bool,
    /// Deleted when its last consumer goes.
    pub auto_delete: bool,
    /// Owning connection, for exclusive queues.
    pub exclusive_owner: Option<ConnectionId>,
    /// x-arguments as declared.
    pub arguments: FieldTable,
}

/// A queue.
pub struct Queue {
    /// Queue name.
    pub name: ShortStr,
    /// Declared options.
    pub options: QueueOptions,
    state: Mutex<QueueState>,
    deleted: AtomicBool,
    /// The store and this queue's id in it, for durable queues (set once, when declared or
    /// restored).
    journal: OnceLock<(Arc<Store>, DurableQueueId)>,
    /// The x-arguments it acts on.
    args: QueueArgs,
    /// The vhost, for dead letters and x-expires (none for a queue made with [`Queue::new`]).
    owner: Option<Weak<dyn QueueOwner>>,
    timer: timer::Timer,
    /// What went through this queue (see `src/stats.rs`).
    counters: MessageCounters,
    /// Deliveries awaiting ack, requeue or reject.
    unacked: AtomicU64,
}

impl Queue {
    /// A new, empty queue on its own: arguments that do not parse are ignored and nothing is
    /// dead-lettered or expired by the timer (unit tests; a vhost uses [`Queue::try_new`]).
    pub fn new(name: ShortStr, options: QueueOptions) -> Arc<Self> {
        let args = QueueArgs::parse_lenient(&options.arguments);
        Self::build(name, options, args, None)
    }

    /// A new, empty queue with validated arguments, owned by `owner` (its vhost), which
    /// receives its dead letters and deletes it when `x-expires` runs out.
    pub fn try_new(
        name: ShortStr,
        options: QueueOptions,
        owner: Weak<dyn QueueOwner>,
    ) -> Result<Arc<Self>, args::ArgError> {
        let flags = args::DeclaredFlags {
            durable: options.durable,
            auto_delete: options.auto_delete,
            exclusive: options.exclusive_owner.is_some(),
        };
        let args = QueueArgs::try_parse(&options.arguments, flags)?;
        Ok(Self::build(name, options, args, Some(owner)))
    }

    fn build(
        name: ShortStr,
        options: QueueOptions,
        args: QueueArgs,
        owner: Option<Weak<dyn QueueOwner>>,
    ) -> Arc<Self> {
        let state = QueueState {
            ready: ReadyList::new(args.max_priority),
            consumers: Consumers::new(args.single_active_consumer),
            last_used: args.expires.map(|_| Instant::now()),
            ..QueueState::default()
        };
        let q = Arc::new(Queue {
            name,
            options,
            state: Mutex::new(state),
            deleted: AtomicBool::new(false),
            journal: OnceLock::new(),
            args,
            owner,
            timer: timer::Timer::default(),
            counters: MessageCounters::default(),
            unacked: AtomicU64::new(0),
        });
        if q.args.expires.is_some() {
            q.reschedule(&mut q.state.lock());
        }
        q
    }

    /// The x-arguments this queue acts on.
    pub fn args(&self) -> &QueueArgs {
        &self.args
    }

    /// Makes this a journaled queue: persistent messages in it survive restarts.
    pub fn attach_journal(&self, store: Arc<Store>, id: DurableQueueId) {
        let _ = self.journal.set((store, id));
    }

    /// This queue's id in the journal, if it is durable.
    pub fn journal_id(&self) -> Option<DurableQueueId> {
        self.journal.get().map(|(_, id)| *id)
    }

    /// Puts back a message recovered from the journal, in publish order.
    /// `deliveries` is how often it was delivered before the restart: it comes back
    /// redelivered, with that many earlier deliveries counted in `x-delivery-count`.
    pub fn push_recovered(self: &Arc<Self>, message: Arc<Message>, deliveries: u32) {
        let redelivered = deliveries > 0;
        let mut st = self.state.lock();
        let seq = st.next_seq;
        st.next_seq += 1;
        let mut queued = QueuedMessage {
            redelivered,
            delivery_count: deliveries,
            ..QueuedMessage::new(seq, message)
        };
        // Recovered messages arrive with their bodies on disk: the first ones, and every one
        // of a queue that dead-letters, are read back now; deeper ones when they near the head.
        if st.ready.bytes() < PAGE_OUT_BYTES || self.args.dead_letter_exchange.is_some() {
            MutexGuard::unlocked(&mut st, || self.page_in(&mut queued));
        }
        if self.args.message_ttl.is_some() || queued.message.properties.expiration.is_some() {
            // The journal keeps no expiry times: a recovered message's TTL starts again now
            // (RabbitMQ keeps the original deadline; this is later, never sooner).
            queued.expires_at =
                ttl::expiry_of(self.args.message_ttl, &queued.message, Instant::now());
            st.has_expiring |= queued.expires_at.is_some();
        }
        st.ready.push_back(queued);
        self.reschedule(&mut st);
    }

    /// A journaled message landing behind [`PAGE_OUT_BYTES`] of ready bodies keeps only a stub
    /// in memory; its body is read back from the journal when it nears the head (ARCHITECTURE
    /// §5: bodies of deep queues stay on disk). Queues that dead-letter keep bodies in memory,
    /// since a dead letter is republished from the message itself.
    fn page_out_if_deep(&self, st: &QueueState, queued: &mut QueuedMessage) {
        if self.journal.get().is_none()
            || st.ready.bytes() < PAGE_OUT_BYTES
            || self.args.dead_letter_exchange.is_some()
        {
            return;
        }
        if let Some(stub) = queued.message.stub() {
            queued.message = Arc::new(stub);
        }
    }

    /// Reads the body of the paged-out head back with the queue unlocked (disk I/O never
    /// happens under the queue lock), then puts it in place if the head is still that message.
    /// Returns false when the journal did not have it (logged; the stub goes out as it is).
    fn page_in_head(&self, st: &mut MutexGuard<'_, QueueState>) -> bool {
        let Some(head) = st.ready.front() else {
            return true;
        };
        let mut copy = head.clone();
        MutexGuard::unlocked(st, || self.page_in(&mut copy));
        if copy.message.is_paged() {
            return false;
        }
        if let Some(head) = st.ready.front_mut() {
            if head.seq == copy.seq && head.message.is_paged() {
                head.message = copy.message;
            }
        }
        true
    }

    /// Reads a paged-out body back before the message is delivered (no lock held).
    fn page_in(&self, m: &mut QueuedMessage) {
        if !m.message.is_paged() {
            return;
        }
        let (Some((store, _)), Some(id)) = (self.journal.get(), m.message.persist_id.get()) else {
            return;
        };
        match store.read_message(*id) {
            Some(full) => m.message = Arc::new(full),
            None => {
                tracing::error!(queue = %self.name, id = %id, "a paged-out message is missing from the journal")
            }
        }
    }

    /// Whether the queue was deleted (a binding or delivery may still hold it).
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Admits and enqueues a message in one go (no journal involved: unit tests, benches).
    /// Publishes go through the vhost's pipeline, which journals between the two steps.
    pub fn push(self: &Arc<Self>, message: Arc<Message>) -> PushOutcome {
        if !self.admit(&message) {
            return PushOutcome::Rejected;
        }
        self.enqueue(message);
        PushOutcome::Accepted
    }

    /// The first step of a publish: whether this queue takes `message` (`x-overflow`
    /// reject-publish / reject-publish-dlx refuse what would not fit; a refused message is
    /// dead-lettered under reject-publish-dlx). An admitted message holds a place in the queue
    /// until [`Queue::enqueue`] puts it there, so concurrent publishers cannot overfill it; the
    /// caller must enqueue every message admitted. Queues that never refuse answer without
    /// taking their lock.
    pub fn admit(self: &Arc<Self>, message: &Arc<Message>) -> bool {
        if !self.reserves_room() {
            return true;
        }
        let mut dead = DeadLetters::new();
        let admitted = {
            let mut st = self.state.lock();
            if self.args.message_ttl.is_some() || message.properties.expiration.is_some() {
                self.expire_head(&mut st, Instant::now(), &mut dead);
            }
            if self.refuses(&st, message) {
                self.refuse(message, &mut dead);
                false
            } else {
                st.reserved.add(message);
                true
            }
        };
        self.publish_dead_letters(dead);
        admitted
    }

    /// Whether publishes reserve room at [`Queue::admit`]: only a queue that refuses publishes.
    fn reserves_room(&self) -> bool {
        self.args.has_limits() && self.args.overflow != args::Overflow::DropHead
    }

    /// The second step of a publish: appends an admitted message (already journaled when it is
    /// persistent and this queue durable) and delivers what consumers can take, applying the
    /// queue's TTL and drop-head length limits.
    pub fn enqueue(self: &Arc<Self>, message: Arc<Message>) {
        let mut dead = DeadLetters::new();
        self.enqueue_locked(message, &mut dead);
        self.publish_dead_letters(dead);
    }

    fn enqueue_locked(self: &Arc<Self>, message: Arc<Message>, dead: &mut DeadLetters) {
        let timed = self.args.message_ttl.is_some() || message.properties.expiration.is_some();
        let now = timed.then(Instant::now);
        stats::bump(&self.counters.published);
        let mut st = self.state.lock();
        if self.reserves_room() {
            st.reserved.remove(&message);
        }
        if let Some(now) = now {
            self.expire_head(&mut st, now, dead);
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        let mut queued = QueuedMessage::new(seq, message);
        self.page_out_if_deep(&st, &mut queued);
        if let Some(now) = now {
            queued.expires_at = ttl::expiry_of(self.args.message_ttl, &queued.message, now);
            st.has_expiring |= queued.expires_at.is_some();
        }
        st.ready.push_back(queued);
        self.dispatch_locked(&mut st, now, dead);
        if self.args.has_limits() {
            self.drop_over_limit(&mut st, dead);
        }
        if let Some(now) = now {
            // What is still here with TTL 0 could not be delivered at once: it expires now.
            self.expire_head(&mut st, now + Duration::from_nanos(1), dead);
            self.reschedule(&mut st);
        }
    }

    /// Puts messages back where they were (within their priority), marked redelivered and
    /// counted in `x-delivery-count`, and delivers again. Expired ones go at once.
    pub fn requeue(self: &Arc<Self>, messages: impl IntoIterator<Item = QueuedMessage>) {
        let mut n = 0;
        let messages = messages.into_iter().inspect(|_| n += 1);
        if self.is_deleted() {
            messages.for_each(drop);
            self.settled_unacked(n);
            return;
        }
        let mut dead = DeadLetters::new();
        {
            let mut st = self.state.lock();
            for mut m in messages {
                m.redelivered = true;
                m.delivery_count = m.delivery_count.saturating_add(1);
                st.ready.insert_by_seq(m);
            }
            self.settled_unacked(n);
            let now = Self::expiry_clock(&st);
            if let Some(now) = now {
                self.expire_head(&mut st, now, &mut dead);
            }
            self.dispatch_locked(&mut st, now, &mut dead);
            self.reschedule(&mut st);
        }
        self.publish_dead_letters(dead);
    }

    /// Delivers ready messages to consumers with credit (consumers.rs decides who).
    pub fn dispatch(self: &Arc<Self>) {
        let mut dead = DeadLetters::new();
        {
            let mut st = self.state.lock();
            let now = Self::expiry_clock(&st);
            self.dispatch_locked(&mut st, now, &mut dead);
            self.reschedule(&mut st);
        }
        self.publish_dead_letters(dead);
    }

    /// Delivers while a consumer can take the head; expired heads (expiry before `now`) are
    /// dropped first.
    fn dispatch_locked(
        self: &Arc<Self>,
        st: &mut MutexGuard<'_, QueueState>,
        now: Option<Instant>,
        dead: &mut DeadLetters,
    ) {
        // A head whose body the journal did not give back goes out as it is (once).
        let mut unreadable = None;
        while !st.consumers.is_empty() {
            if let Some(now) = now {
                self.expire_head(st, now, dead);
            }
            let paged = st
                .ready
                .front()
                .filter(|m| m.message.is_paged())
                .map(|m| m.seq);
            if paged.is_some() && paged != unreadable {
                if !self.page_in_head(st) {
                    unreadable = paged;
                }
                // The lock was released meanwhile: look at the queue afresh.
                continue;
            }
            let state: &mut QueueState = st;
            let Some(msg) = state.ready.front() else {
                return;
            };
            let Some(no_ack) = state.consumers.offer(self, msg) else {
                return;
            };
            if let Some(sent) = st.ready.pop_front() {
                self.count_delivery(false, no_ack, sent.redelivered);
                if no_ack {
                    self.remove_for_good(std::iter::once(sent));
                } else {
                    self.journal_delivery(&sent);
                }
            }
        }
    }

    /// basic.get: the first ready message and how many remain. With `no_ack` the message
    /// leaves the queue for good; otherwise the channel settles it later.
    pub fn get(self: &Arc<Self>, no_ack: bool) -> Option<(QueuedMessage, u32)> {
        let mut dead = DeadLetters::new();
        let got = {
            let mut st = self.state.lock();
            if self.args.expires.is_some() {
                st.last_used = Some(Instant::now());
            }
            let now = Self::expiry_clock(&st);
            if let Some(now) = now {
                self.expire_head(&mut st, now, &mut dead);
            }
            let mut msg = st.ready.pop_front();
            if let Some(m) = msg.as_mut().filter(|m| m.message.is_paged()) {
                // Taken off the queue already: read its body with the queue unlocked (and
                // before a no-ack settle lets the journal forget it).
                MutexGuard::unlocked(&mut st, || self.page_in(m));
            }
            if let Some(now) = now {
                // RabbitMQ drops what expired behind the fetched message before answering.
                self.expire_head(&mut st, now, &mut dead);
                self.reschedule(&mut st);
            }
            if msg.is_none() {
                stats::bump(&self.counters.get_empty);
            }
            msg.map(|msg| {
                self.count_delivery(true, no_ack, msg.redelivered);
                if no_ack {
                    self.remove_for_good(std::iter::once(msg.clone()));
                } else {
                    self.journal_delivery(&msg);
                }
                (msg, st.ready.len() as u32)
            })
        };
        self.publish_dead_letters(dead);
        got
    }

    /// Delivered messages that were acknowledged: they leave the queue for good. (Rejected ones
    /// go through [`Queue::reject`], which dead-letters them.)
    pub fn settle(&self, messages: impl IntoIterator<Item = QueuedMessage>) {
        let n = self.remove_for_good(messages);
        stats::bump_by(&self.counters.acked, n);
        self.settled_unacked(n);
    }

    /// Counts a delivery (and, when it must be acked, one more unacked message).
    fn count_delivery(&self, get: bool, no_ack: bool, redelivered: bool) {
        stats::count_delivery(&self.counters, get, no_ack, redelivered);
        if !no_ack {
            stats::bump(&self.unacked);
        }
    }

    /// `n` unacked deliveries were acked, rejected or requeued.
    pub(super) fn settled_unacked(&self, n: u64) {
        let _ = self
            .unacked
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(n))
            });
    }

    /// This queue's type (see `kind.rs`: the seam quorum queues and streams will use).
    pub fn queue_type(&self) -> QueueType {
        QueueType::Classic
    }

    /// Counters and gauges now (the gauges under the queue lock, once per call).
    pub fn stats(&self) -> QueueStats {
        let (messages_ready, message_bytes_ready, consumers) = {
            let st = self.state.lock();
            (
                st.ready.len() as u64,
                st.ready.bytes(),
                st.consumers.len() as u64,
            )
        };
        QueueStats {
            messages: self.counters.snapshot(),
            messages_ready,
            messages_unacked: self.unacked.load(Ordering::Relaxed),
            message_bytes_ready,
            consumers,
        }
    }

    /// The one place where messages leave this queue for good (ack, no-ack delivery, reject
    /// without requeue, purge, delete — and expiry, overflow and dead-lettering as they come):
    /// every such path must end here, because this is where a durable queue tells its journal
    /// that the message is settled.
    /// Returns how many messages left.
    fn remove_for_good(&self, messages: impl IntoIterator<Item = QueuedMessage>) -> u64 {
        let journal = self.journal.get();
        let mut n = 0;
        for m in messages {
            n += 1;
            if let (Some((store, queue)), Some(id)) = (journal, m.message.persist_id.get()) {
                store.settle(*id, *queue);
            }
        }
        n
    }

    /// A journaled message went out to a consumer that must ack it: after a crash it comes
    /// back with redelivered=true.
    /// Every delivery is journaled (not only the first), so the number of deliveries, and with
    /// it `x-delivery-count`, survives a restart (issue 5).
    fn journal_delivery(&self, m: &QueuedMessage) {
        if let (Some((store, queue)), Some(id)) = (self.journal.get(), m.message.persist_id.get()) {
            store.delivered(*id, *queue);
        }
    }

    /// Adds a consumer and starts delivering to it. `on_added` runs once the consumer is
    /// accepted and before its first delivery, so basic.consume-ok goes out only for a consumer
    /// that exists and always ahead of its deliveries (RabbitMQ sends just the channel.close
    /// when an exclusive consume is refused).
    pub fn add_consumer(
        self: &Arc<Self>,
        consumer: Consumer,
        on_added: impl FnOnce(),
    ) -> Result<(), ConsumeError> {
        let mut st = self.state.lock();
        if self.is_deleted() {
            return Err(ConsumeError::Deleted);
        }
        if st.consumers.iter().any(|c| c.exclusive)
            || (consumer.exclusive && !st.consumers.is_empty())
        {
            return Err(ConsumeError::ExclusiveInUse);
        }
        on_added();
        st.consumers.add(consumer);
        st.had_consumer = true;
        let mut dead = DeadLetters::new();
        let now = Self::expiry_clock(&st);
        self.dispatch_locked(&mut st, now, &mut dead);
        drop(st);
        self.publish_dead_letters(dead);
        Ok(())
    }

    /// Removes consumer `tag` of `sink`; returns whether the queue should now auto-delete.
    /// Under single-active-consumer the next consumer takes over at once.
    pub fn remove_consumer(self: &Arc<Self>, sink: &Arc<dyn ConsumerSink>, tag: &ShortStr) -> bool {
        let mut st = self.state.lock();
        st.consumers.remove(sink, tag);
        if st.consumers.is_empty() {
            if self.args.expires.is_some() {
                st.last_used = Some(Instant::now());
                self.reschedule(&mut st);
            }
            return self.options.auto_delete && st.had_consumer;
        }
        if self.args.single_active_consumer {
            let mut dead = DeadLetters::new();
            let now = Self::expiry_clock(&st);
            self.dispatch_locked(&mut st, now, &mut dead);
            drop(st);
            self.publish_dead_letters(dead);
        }
        false
    }

    /// Ready messages (what queue.declare-ok reports).
    pub fn message_count(&self) -> u32 {
        self.state.lock().ready.len() as u32
    }

    /// Active consumers.
    pub fn consumer_count(&self) -> u32 {
        self.state.lock().consumers.len() as u32
    }

    /// Drops every ready message; returns how many.
    pub fn purge(&self) -> u32 {
        let mut st = self.state.lock();
        let n = st.ready.len() as u32;
        self.remove_for_good(st.ready.take_all());
        n
    }

    /// Marks the queue deleted, drops its messages and cancels its consumers (basic.cancel).
    /// Returns how many ready messages it held.
    pub fn mark_deleted(&self) -> u32 {
        let (count, consumers) = {
            let mut st = self.state.lock();
            self.deleted.store(true, Ordering::Release);
            let count = st.ready.len() as u32;
            self.remove_for_good(st.ready.take_all());
            (count, st.consumers.take_all())
        };
        self.stop_timer();
        for c in consumers {
            c.sink.cancelled_by_server(&c.tag);
        }
        count
    }
}
