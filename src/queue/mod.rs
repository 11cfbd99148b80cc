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
//! One file per concern: `kind` (the queue-type seam), `classic` (the classic type's state and
//! operations, behind [`Queue`]'s backend enum), `args` (x-arguments, validation), `priority`
//! (the ready list), `consumers` (priorities, single active consumer), `ttl` (message expiry),
//! `limits` (length limits), `dead_letter` (x-death, cycles, the owner trait), `timer` (the
//! per-queue timer task and x-expires). A queue declared without arguments pays for none of them on its hot path: no
//! clock read, no allocation and no extra lock per message.

pub mod args;
mod classic;
mod consumers;
pub mod dead_letter;
pub mod kind;
mod limits;
mod paged;
pub mod policy;
mod priority;
mod quorum;
pub mod stream;
mod timer;
mod ttl;

use crate::ids::{ConnectionId, DurableQueueId};
use crate::message::Message;
use crate::queue::policy::Applied;
use crate::stats::{self, MessageCounters, QueueStats};
use crate::store::Store;
use arc_swap::ArcSwap;
use args::QueueArgs;
use classic::{ClassicQueue, QueueState};
pub use dead_letter::{DeadLetter, DeadLetterReason, QueueOwner};
pub use kind::QueueType;
use parking_lot::MutexGuard;
use quorum::QuorumQueue;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use stream::StreamQueue;
// The tokio clock (the same as std's outside tests), so timer tests can run on paused time.
use tokio::time::Instant;
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

    /// The properties to deliver with from a queue of type `kind`: the message's own, plus an
    /// `x-delivery-count` header once it was returned when the type shows it (quorum queues,
    /// as RabbitMQ). Only such redeliveries pay for the copy.
    pub fn delivery_properties(&self, kind: QueueType) -> Cow<'_, BasicProperties> {
        if self.delivery_count == 0 || !kind.shows_delivery_count() {
            return Cow::Borrowed(&self.message.properties);
        }
        Cow::Owned(self.counted_properties())
    }

    /// The message's properties with an `x-delivery-count` header (type `l`), also when it is
    /// 0: what a quorum queue's basic.get always sends (RabbitMQ 3.10.8, RABBITMQ-FACTS.md).
    pub fn counted_properties(&self) -> BasicProperties {
        let mut properties = BasicProperties::clone(&self.message.properties);
        properties
            .headers
            .get_or_insert_with(FieldTable::new)
            .insert(
                ShortStr::from_static(X_DELIVERY_COUNT),
                FieldValue::I64(i64::from(self.delivery_count)),
            );
        properties
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
    /// Delivers messages from the front of `msgs` while there is credit, calling `delivered`
    /// for each one taken (a stream consumer hands over a read buffer's worth at once; a sink
    /// may do it under one lock and one wake of the connection's writer).
    fn try_deliver_batch(
        &self,
        tag: &ShortStr,
        queue: &Arc<Queue>,
        msgs: &mut VecDeque<QueuedMessage>,
        delivered: &mut dyn FnMut(&QueuedMessage),
    ) {
        while let Some(m) = msgs.front() {
            if !self.try_deliver(tag, false, queue, m) {
                return;
            }
            delivered(m);
            msgs.pop_front();
        }
    }
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
    /// basic.consume arguments (a stream's consumer reads its offset, filter and tracking
    /// name from them).
    pub arguments: FieldTable,
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

/// What a queue's type keeps for itself; every [`Queue`] operation that differs between types
/// matches on it (the seam described in `kind.rs`). Quorum queues and streams become further
/// variants.
enum Backend {
    /// `x-queue-type: classic` (the default).
    Classic(ClassicQueue),
    /// `x-queue-type: quorum` (quorum/mod.rs). Boxed so that the enum, and with it every
    /// `Queue`, keeps the classic queue's size and field layout (the classic hot path).
    Quorum(Box<QuorumQueue>),
    /// `x-queue-type: stream` (stream/mod.rs), boxed for the same reason.
    Stream(Box<StreamQueue>),
}

/// A queue: what every queue type shares, and its type's own state in [`Backend`].
pub struct Queue {
    /// Queue name.
    pub name: ShortStr,
    /// Declared options.
    pub options: QueueOptions,
    backend: Backend,
    deleted: AtomicBool,
    /// The store and this queue's id in it, for durable queues (set once, when declared or
    /// restored).
    journal: OnceLock<(Arc<Store>, DurableQueueId)>,
    /// The x-arguments it was declared with, parsed.
    declared_args: QueueArgs,
    /// The arguments it acts on: `declared_args` merged with the policies that apply
    /// (`src/queue/policy.rs`), replaced whole when a policy changes; read once per operation.
    args: ArcSwap<QueueArgs>,
    /// The policies behind `args`, for the management API.
    applied: parking_lot::Mutex<Arc<Applied>>,
    /// The vhost, for dead letters and x-expires (none for a queue made with [`Queue::new`]).
    owner: Option<Weak<dyn QueueOwner>>,
    timer: timer::Timer,
    /// What went through this queue (see `src/stats.rs`).
    counters: MessageCounters,
    /// Deliveries awaiting ack, requeue or reject.
    unacked: AtomicU64,
    /// `x-message-deduplication`: ids of recent messages (exchange/dedup.rs).
    dedup: Option<crate::dedup::DedupCache>,
}

impl Queue {
    /// A new, empty queue on its own: arguments that do not parse are ignored and nothing is
    /// dead-lettered or expired by the timer (unit tests; a vhost uses [`Queue::try_new`]).
    pub fn new(name: ShortStr, options: QueueOptions) -> Arc<Self> {
        let args = QueueArgs::parse_lenient(&options.arguments);
        Self::build(name, options, args, QueueType::Classic, None)
    }

    /// A new, empty queue with validated arguments, owned by `owner` (its vhost), which
    /// receives its dead letters and deletes it when `x-expires` runs out. `x-queue-type`
    /// picks the type, after the arguments every type shares were checked; the type then checks
    /// its own (RabbitMQ's order, so a client sees the same 406 texts).
    /// Whether [`Queue::try_new`] would accept `options` (definitions import checks a whole
    /// document before it changes anything).
    pub fn check_options(options: &QueueOptions) -> Result<(), args::ArgError> {
        let flags = args::DeclaredFlags {
            durable: options.durable,
            auto_delete: options.auto_delete,
            exclusive: options.exclusive_owner.is_some(),
        };
        QueueArgs::try_parse_shared(&options.arguments)?;
        QueueType::of_declare(&options.arguments, flags)?.validate_arguments(&options.arguments)
    }

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
        let args = QueueArgs::try_parse_shared(&options.arguments)?;
        let queue_type = QueueType::of_declare(&options.arguments, flags)?;
        queue_type.validate_arguments(&options.arguments)?;
        Ok(Self::build(name, options, args, queue_type, Some(owner)))
    }

    fn build(
        name: ShortStr,
        options: QueueOptions,
        args: QueueArgs,
        queue_type: QueueType,
        owner: Option<Weak<dyn QueueOwner>>,
    ) -> Arc<Self> {
        let backend = match queue_type {
            QueueType::Classic => Backend::Classic(ClassicQueue::new(&args)),
            QueueType::Quorum => {
                Backend::Quorum(Box::new(QuorumQueue::new(&args, &options.arguments)))
            }
            QueueType::Stream => Backend::Stream(Box::new(StreamQueue::new(&options.arguments))),
        };
        let dedup = crate::dedup::queue_wants_it(&options.arguments)
            .then(|| crate::dedup::cache_for(&options.arguments));
        let q = Arc::new(Queue {
            name,
            options,
            backend,
            deleted: AtomicBool::new(false),
            journal: OnceLock::new(),
            args: ArcSwap::from_pointee(args.clone()),
            declared_args: args,
            applied: Default::default(),
            owner,
            timer: timer::Timer::default(),
            counters: MessageCounters::default(),
            unacked: AtomicU64::new(0),
            dedup,
        });
        match &q.backend {
            Backend::Classic(c) => c.start(&q),
            Backend::Quorum(qq) => qq.start(&q),
            Backend::Stream(_) => {}
        }
        q
    }

    /// Whether this queue drops `message` as a duplicate (`x-message-deduplication`); its id
    /// is remembered when it is not one.
    #[inline]
    pub fn is_duplicate(&self, message: &Message) -> bool {
        match &self.dedup {
            None => false,
            Some(cache) => cache.is_duplicate(
                message.properties.headers.as_ref(),
                std::time::Instant::now(),
            ),
        }
    }

    /// Whether this queue deduplicates (`x-message-deduplication`).
    pub fn deduplicates(&self) -> bool {
        self.dedup.is_some()
    }

    /// Its deduplication cache (`x-message-deduplication`), if it has one.
    pub fn dedup_cache(&self) -> Option<&crate::dedup::DedupCache> {
        self.dedup.as_ref()
    }

    /// The arguments this queue acts on now: its x-arguments merged with its policies.
    pub fn args(&self) -> arc_swap::Guard<Arc<QueueArgs>> {
        self.args.load()
    }

    /// The policies that apply now (names and merged definition).
    pub fn applied_policy(&self) -> Arc<Applied> {
        self.applied.lock().clone()
    }

    /// Makes `applied` this queue's policy: its effective arguments are recomputed and take
    /// effect at once (a lower max-length drops or refuses now, a new TTL or expiry is timed
    /// from now; messages already queued keep the expiry they had).
    pub fn apply_policy(self: &Arc<Self>, applied: Applied) {
        let effective = applied.queue_args(&self.declared_args);
        *self.applied.lock() = Arc::new(applied);
        if **self.args.load() == effective {
            return;
        }
        let old = self.args.swap(Arc::new(effective));
        match &self.backend {
            Backend::Classic(c) => c.policy_changed(self, &old),
            Backend::Quorum(qq) => qq.policy_changed(self, &old),
            // A stream has no limits a policy could tighten at once (retention runs at roll-over).
            Backend::Stream(_) => {}
        }
    }

    /// Makes this a journaled queue: persistent messages in it survive restarts.
    pub fn attach_journal(&self, store: Arc<Store>, id: DurableQueueId) {
        if let Backend::Stream(s) = &self.backend {
            s.attach(&store, id);
        }
        let _ = self.journal.set((store, id));
    }

    /// Why a stream's log could not be recovered (startup stops with it), once.
    pub fn take_open_error(&self) -> Option<crate::store::StoreError> {
        match &self.backend {
            Backend::Stream(s) => s.take_open_error(),
            _ => None,
        }
    }

    /// This queue's id in the journal, if it is durable.
    pub fn journal_id(&self) -> Option<DurableQueueId> {
        self.journal.get().map(|(_, id)| *id)
    }

    /// Puts back a message recovered from the journal, in publish order.
    /// `deliveries` is how often it was delivered before the restart: it comes back
    /// redelivered, with that many earlier deliveries counted in `x-delivery-count`.
    pub fn push_recovered(self: &Arc<Self>, message: Arc<Message>, deliveries: u32) {
        match &self.backend {
            Backend::Classic(c) => c.push_recovered(self, message, deliveries),
            Backend::Quorum(qq) => qq.push_recovered(self, message, deliveries),
            // A stream's messages come back from its own log, never from the journal.
            Backend::Stream(_) => {}
        }
    }

    /// A journaled message landing behind [`PAGE_OUT_BYTES`] of ready bodies keeps only a stub
    /// in memory; its body is read back from the journal when it nears the head (ARCHITECTURE
    /// §5: bodies of deep queues stay on disk). Queues that dead-letter keep bodies in memory,
    /// since a dead letter is republished from the message itself.
    fn page_out_if_deep(&self, st: &QueueState, queued: &mut QueuedMessage) {
        if self.journal.get().is_none()
            || st.ready.bytes() < PAGE_OUT_BYTES
            // A transient message is journaled only for quorum queues, which may settle it
            // while this queue still needs its body: it stays in memory here.
            || !queued.message.properties.is_persistent()
            || self.args().dead_letter_exchange.is_some()
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
        match store.read_message(id) {
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
        match &self.backend {
            Backend::Classic(c) => c.admit(self, message),
            Backend::Quorum(qq) => qq.admit(),
            Backend::Stream(_) => true,
        }
    }

    /// The second step of a publish: appends an admitted message (already journaled when it is
    /// persistent and this queue durable) and delivers what consumers can take, applying the
    /// queue's TTL and drop-head length limits.
    pub fn enqueue(self: &Arc<Self>, message: Arc<Message>) {
        match &self.backend {
            Backend::Classic(c) => c.enqueue(self, message),
            Backend::Quorum(qq) => qq.enqueue(self, message),
            Backend::Stream(s) => {
                let _ = s.append(&message);
            }
        }
    }

    /// [`Queue::enqueue`], returning the journal sequence number a confirm must wait for when
    /// the queue writes the message down itself (a stream appends to its own log and has the
    /// journal's next group commit fsync it).
    pub fn enqueue_logged(
        self: &Arc<Self>,
        message: Arc<Message>,
    ) -> Option<crate::ids::JournalSeq> {
        match &self.backend {
            Backend::Stream(s) => s.append(&message),
            _ => {
                self.enqueue(message);
                None
            }
        }
    }

    /// Puts messages back where they were (within their priority), marked redelivered and
    /// counted in `x-delivery-count`, and delivers again. Expired ones go at once.
    pub fn requeue(self: &Arc<Self>, messages: impl IntoIterator<Item = QueuedMessage>) {
        match &self.backend {
            Backend::Classic(c) => c.requeue(self, messages),
            Backend::Quorum(qq) => qq.requeue(self, messages),
            // Nothing left a stream: a returned delivery is simply forgotten.
            Backend::Stream(_) => {
                let n = messages.into_iter().count() as u64;
                self.settled_unacked(n);
            }
        }
    }

    /// Delivers ready messages to consumers with credit (consumers.rs decides who).
    pub fn dispatch(self: &Arc<Self>) {
        match &self.backend {
            Backend::Classic(c) => c.dispatch(self),
            Backend::Quorum(qq) => qq.dispatch(self),
            Backend::Stream(s) => s.dispatch(),
        }
    }

    /// basic.get: the first ready message and how many remain. With `no_ack` the message
    /// leaves the queue for good; otherwise the channel settles it later.
    pub fn get(self: &Arc<Self>, no_ack: bool) -> Option<(QueuedMessage, u32)> {
        match &self.backend {
            Backend::Classic(c) => c.get(self, no_ack),
            Backend::Quorum(qq) => qq.get(self, no_ack),
            // The channel answers basic.get on a stream with 540 before it gets here.
            Backend::Stream(_) => None,
        }
    }

    /// Delivered messages that were acknowledged: they leave the queue for good. (Rejected ones
    /// go through [`Queue::reject`], which dead-letters them.)
    pub fn settle(&self, messages: impl IntoIterator<Item = QueuedMessage>) {
        let n = match &self.backend {
            // Acked messages are already off a classic queue's lists: only the journal hears.
            Backend::Classic(_) => self.remove_for_good(messages),
            Backend::Quorum(qq) => qq.settle(self, messages),
            Backend::Stream(s) => s.settle(messages),
        };
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

    /// Whether every message this queue admits is journaled, transient ones too (quorum).
    pub fn journals_every_message(&self) -> bool {
        matches!(self.backend, Backend::Quorum(_))
    }

    /// This queue's type (see `kind.rs`: the seam quorum queues and streams will use).
    pub fn queue_type(&self) -> QueueType {
        match &self.backend {
            Backend::Classic(_) => QueueType::Classic,
            Backend::Quorum(_) => QueueType::Quorum,
            Backend::Stream(_) => QueueType::Stream,
        }
    }

    /// What went through this queue (atomics only: takes no lock).
    pub fn counted(&self) -> stats::MessageStats {
        self.counters.snapshot()
    }

    /// Counters and gauges now (the gauges under the queue lock, once per call).
    pub fn stats(&self) -> QueueStats {
        let (messages_ready, message_bytes_ready, consumers) = match &self.backend {
            Backend::Classic(c) => c.gauges(),
            Backend::Quorum(qq) => qq.gauges(),
            Backend::Stream(s) => s.gauges(),
        };
        let (messages_paged_out, message_bytes_paged_out) = match &self.backend {
            Backend::Classic(c) => c.paged(),
            _ => (0, 0),
        };
        QueueStats {
            messages: self.counters.snapshot(),
            messages_ready,
            messages_unacked: self.unacked.load(Ordering::Relaxed),
            message_bytes_ready,
            consumers,
            messages_paged_out,
            message_bytes_paged_out,
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
                store.settle(id, *queue);
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
            store.delivered(id, *queue);
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
        match &self.backend {
            Backend::Classic(c) => c.add_consumer(self, consumer, on_added),
            Backend::Quorum(qq) => qq.add_consumer(self, consumer, on_added),
            Backend::Stream(s) => {
                let arguments = consumer.arguments.clone();
                s.add_consumer(self, consumer, &arguments, on_added)
            }
        }
    }

    /// Removes consumer `tag` of `sink`; returns whether the queue should now auto-delete.
    /// Under single-active-consumer the next consumer takes over at once.
    pub fn remove_consumer(self: &Arc<Self>, sink: &Arc<dyn ConsumerSink>, tag: &ShortStr) -> bool {
        match &self.backend {
            Backend::Classic(c) => c.remove_consumer(self, sink, tag),
            Backend::Quorum(qq) => qq.remove_consumer(self, sink, tag),
            Backend::Stream(s) => s.remove_consumer(sink, tag),
        }
    }

    /// Ready messages (what queue.declare-ok reports).
    pub fn message_count(&self) -> u32 {
        match &self.backend {
            Backend::Classic(c) => c.message_count(),
            Backend::Quorum(qq) => qq.message_count(),
            Backend::Stream(s) => s.message_count(),
        }
    }

    /// Active consumers.
    pub fn consumer_count(&self) -> u32 {
        match &self.backend {
            Backend::Classic(c) => c.consumer_count(),
            Backend::Quorum(qq) => qq.consumer_count(),
            Backend::Stream(s) => s.consumer_count(),
        }
    }

    /// Drops every ready message; returns how many.
    pub fn purge(&self) -> u32 {
        match &self.backend {
            Backend::Classic(c) => c.purge(self),
            Backend::Quorum(qq) => qq.purge(self),
            // The channel answers queue.purge on a stream with 540 before it gets here.
            Backend::Stream(_) => 0,
        }
    }

    /// Marks the queue deleted, drops its messages and cancels its consumers (basic.cancel).
    /// Returns how many ready messages it held.
    pub fn mark_deleted(&self) -> u32 {
        let (count, consumers) = match &self.backend {
            Backend::Classic(c) => c.delete(self),
            Backend::Quorum(qq) => qq.delete(self),
            Backend::Stream(s) => s.delete(self),
        };
        self.stop_timer();
        for c in consumers {
            c.sink.cancelled_by_server(&c.tag);
        }
        count
    }
}
