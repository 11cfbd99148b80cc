//! The classic queue type (`x-queue-type: classic`, the default): its own state and how it
//! carries out each operation of the seam in `kind.rs`. [`Queue`] keeps what every type shares
//! (name, options, parsed arguments, counters, the deleted flag, the owner, the journal
//! attachment) and dispatches here through its backend enum.
//!
//! A classic queue is one mutex around its ready list (`priority`), consumers (`consumers`),
//! expiry bookkeeping (`ttl`, `timer`) and reserved room (`limits`); persistent messages of a
//! durable one are recorded in the shared message journal, which recovery replays.

use super::args::{self, ArgError, QueueArgs, OTHER_QUEUE_TYPE_ARGUMENTS};
use super::consumers::Consumers;
use super::dead_letter::DeadLetters;
use super::limits;
use super::priority::ReadyList;
use super::{ConsumeError, Consumer, ConsumerSink, Queue, QueuedMessage, PAGE_OUT_BYTES};
use crate::message::Message;
use crate::stats;
use parking_lot::{Mutex, MutexGuard};
use std::sync::Arc;
use std::time::Duration;
// The tokio clock (the same as std's outside tests), so timer tests can run on paused time.
use tokio::time::Instant;
use warren_protocol::{FieldTable, ShortStr};

/// The arguments only classic queues refuse: RabbitMQ's quorum- and stream-only ones, named
/// in the 406 text (`... of queue type rabbit_classic_queue`), the first in table order. Runs
/// after the shared argument checks and the `x-queue-type` check, as in RabbitMQ.
pub(super) fn validate_arguments(arguments: &FieldTable) -> Result<(), ArgError> {
    match arguments.iter().find_map(|(k, _)| {
        OTHER_QUEUE_TYPE_ARGUMENTS
            .iter()
            .find(|a| **a == k.as_str())
    }) {
        Some(key) => Err(ArgError::NotForClassicQueues(key)),
        None => Ok(()),
    }
}

/// The x-arguments RabbitMQ 3.10 compares on queue redeclare: the classic queue type's own
/// (`rabbit_classic_queue:capabilities/0`, `queue_arguments`); any other argument may differ
/// freely, quorum- and stream-only ones included (`x-delivery-limit` added on a redeclare is
/// accepted by 3.10.8: checked with amqplib). `x-queue-type` is compared separately: RabbitMQ
/// accepts `classic` against an absent one (vhost.rs).
pub(super) const COMPARED_ARGUMENTS: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-single-active-consumer",
    "x-queue-master-locator",
];

/// What a classic queue holds under its lock.
#[derive(Default)]
pub(super) struct QueueState {
    pub(super) ready: ReadyList,
    pub(super) next_seq: u64,
    pub(super) consumers: Consumers,
    /// Auto-delete applies only once a queue has had a consumer (spec: queue.declare auto-delete).
    pub(super) had_consumer: bool,
    /// Some message could expire: the head is checked and the timer runs (ttl.rs).
    pub(super) has_expiring: bool,
    /// When the queue was last used, for x-expires (timer.rs).
    pub(super) last_used: Option<Instant>,
    /// The deadline the timer task sleeps until, if it sleeps until one.
    pub(super) timer_at: Option<Instant>,
    /// Publishes admitted but not yet enqueued (reject-publish queues only, see
    /// [`Queue::admit`]): counted against the length limits.
    pub(super) reserved: limits::Reserved,
}

/// A classic queue's own state.
pub(super) struct ClassicQueue {
    pub(super) state: Mutex<QueueState>,
}

impl ClassicQueue {
    pub(super) fn new(args: &QueueArgs) -> Self {
        let state = QueueState {
            ready: ReadyList::new(args.max_priority),
            consumers: Consumers::new(args.single_active_consumer),
            last_used: args.expires.map(|_| Instant::now()),
            ..QueueState::default()
        };
        ClassicQueue {
            state: Mutex::new(state),
        }
    }

    /// Starts the `x-expires` clock of a queue just made.
    pub(super) fn start(&self, q: &Arc<Queue>) {
        if q.args().expires.is_some() {
            q.reschedule(&mut self.state.lock());
        }
    }

    pub(super) fn push_recovered(&self, q: &Arc<Queue>, message: Arc<Message>, deliveries: u32) {
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
        let args = q.args();
        if st.ready.bytes() < PAGE_OUT_BYTES || args.dead_letter_exchange.is_some() {
            MutexGuard::unlocked(&mut st, || q.page_in(&mut queued));
        }
        if args.message_ttl.is_some() || queued.message.properties.expiration.is_some() {
            // The journal keeps no expiry times: a recovered message's TTL starts again now
            // (RabbitMQ keeps the original deadline; this is later, never sooner).
            queued.expires_at =
                super::ttl::expiry_of(args.message_ttl, &queued.message, Instant::now());
            st.has_expiring |= queued.expires_at.is_some();
        }
        st.ready.push_back(queued);
        q.reschedule(&mut st);
    }

    pub(super) fn admit(&self, q: &Arc<Queue>, message: &Arc<Message>) -> bool {
        let args = q.args();
        if !reserves_room(&args) {
            return true;
        }
        let mut dead = DeadLetters::new();
        let admitted = {
            let mut st = self.state.lock();
            if args.message_ttl.is_some() || message.properties.expiration.is_some() {
                q.expire_head(&mut st, Instant::now(), &mut dead);
            }
            if q.refuses(&st, message) {
                q.refuse(message, &mut dead);
                false
            } else {
                st.reserved.add(message);
                true
            }
        };
        q.publish_dead_letters(dead);
        admitted
    }

    pub(super) fn enqueue(&self, q: &Arc<Queue>, message: Arc<Message>) {
        let mut dead = DeadLetters::new();
        self.enqueue_locked(q, message, &mut dead);
        q.publish_dead_letters(dead);
    }

    fn enqueue_locked(&self, q: &Arc<Queue>, message: Arc<Message>, dead: &mut DeadLetters) {
        // The effective arguments, read once per message (a policy may replace them).
        let args = q.args();
        let timed = args.message_ttl.is_some() || message.properties.expiration.is_some();
        let now = timed.then(Instant::now);
        stats::bump(&q.counters.published);
        let mut st = self.state.lock();
        if reserves_room(&args) {
            st.reserved.remove(&message);
        }
        if let Some(now) = now {
            q.expire_head(&mut st, now, dead);
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        let mut queued = QueuedMessage::new(seq, message);
        q.page_out_if_deep(&st, &mut queued);
        if let Some(now) = now {
            queued.expires_at = super::ttl::expiry_of(args.message_ttl, &queued.message, now);
            st.has_expiring |= queued.expires_at.is_some();
        }
        st.ready.push_back(queued);
        dispatch_locked(q, &mut st, now, dead);
        if args.has_limits() {
            q.drop_over_limit(&mut st, dead);
        }
        if let Some(now) = now {
            // What is still here with TTL 0 could not be delivered at once: it expires now.
            q.expire_head(&mut st, now + Duration::from_nanos(1), dead);
            q.reschedule(&mut st);
        }
    }

    pub(super) fn requeue(
        &self,
        q: &Arc<Queue>,
        messages: impl IntoIterator<Item = QueuedMessage>,
    ) {
        let mut n = 0;
        let messages = messages.into_iter().inspect(|_| n += 1);
        if q.is_deleted() {
            messages.for_each(drop);
            q.settled_unacked(n);
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
            q.settled_unacked(n);
            let now = Queue::expiry_clock(&st);
            if let Some(now) = now {
                q.expire_head(&mut st, now, &mut dead);
            }
            dispatch_locked(q, &mut st, now, &mut dead);
            q.reschedule(&mut st);
        }
        q.publish_dead_letters(dead);
    }

    pub(super) fn dispatch(&self, q: &Arc<Queue>) {
        let mut dead = DeadLetters::new();
        {
            let mut st = self.state.lock();
            let now = Queue::expiry_clock(&st);
            dispatch_locked(q, &mut st, now, &mut dead);
            q.reschedule(&mut st);
        }
        q.publish_dead_letters(dead);
    }

    pub(super) fn get(&self, q: &Arc<Queue>, no_ack: bool) -> Option<(QueuedMessage, u32)> {
        let mut dead = DeadLetters::new();
        let got = {
            let mut st = self.state.lock();
            if q.args().expires.is_some() {
                st.last_used = Some(Instant::now());
            }
            let now = Queue::expiry_clock(&st);
            if let Some(now) = now {
                q.expire_head(&mut st, now, &mut dead);
            }
            let mut msg = st.ready.pop_front();
            if let Some(m) = msg.as_mut().filter(|m| m.message.is_paged()) {
                // Taken off the queue already: read its body with the queue unlocked (and
                // before a no-ack settle lets the journal forget it).
                MutexGuard::unlocked(&mut st, || q.page_in(m));
            }
            if let Some(now) = now {
                // RabbitMQ drops what expired behind the fetched message before answering.
                q.expire_head(&mut st, now, &mut dead);
                q.reschedule(&mut st);
            }
            if msg.is_none() {
                stats::bump(&q.counters.get_empty);
            }
            msg.map(|msg| {
                q.count_delivery(true, no_ack, msg.redelivered);
                if no_ack {
                    q.remove_for_good(std::iter::once(msg.clone()));
                } else {
                    q.journal_delivery(&msg);
                }
                (msg, st.ready.len() as u32)
            })
        };
        q.publish_dead_letters(dead);
        got
    }

    pub(super) fn add_consumer(
        &self,
        q: &Arc<Queue>,
        consumer: Consumer,
        on_added: impl FnOnce(),
    ) -> Result<(), ConsumeError> {
        let mut st = self.state.lock();
        if q.is_deleted() {
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
        let now = Queue::expiry_clock(&st);
        dispatch_locked(q, &mut st, now, &mut dead);
        drop(st);
        q.publish_dead_letters(dead);
        Ok(())
    }

    pub(super) fn remove_consumer(
        &self,
        q: &Arc<Queue>,
        sink: &Arc<dyn ConsumerSink>,
        tag: &ShortStr,
    ) -> bool {
        let mut st = self.state.lock();
        st.consumers.remove(sink, tag);
        if st.consumers.is_empty() {
            if q.args().expires.is_some() {
                st.last_used = Some(Instant::now());
                q.reschedule(&mut st);
            }
            return q.options.auto_delete && st.had_consumer;
        }
        if q.declared_args.single_active_consumer {
            let mut dead = DeadLetters::new();
            let now = Queue::expiry_clock(&st);
            dispatch_locked(q, &mut st, now, &mut dead);
            drop(st);
            q.publish_dead_letters(dead);
        }
        false
    }

    /// Ready messages, their body bytes and consumers (one lock).
    /// Ready messages kept compact with their bodies on disk, and their body bytes.
    pub(super) fn paged(&self) -> (u64, u64) {
        let (count, bytes) = self.state.lock().ready.paged();
        (count as u64, bytes)
    }

    pub(super) fn gauges(&self) -> (u64, u64, u64) {
        let st = self.state.lock();
        (
            st.ready.len() as u64,
            st.ready.bytes(),
            st.consumers.len() as u64,
        )
    }

    pub(super) fn message_count(&self) -> u32 {
        self.state.lock().ready.len() as u32
    }

    pub(super) fn consumer_count(&self) -> u32 {
        self.state.lock().consumers.len() as u32
    }

    /// The effective arguments changed (a policy was set, changed or cleared): what the new
    /// ones demand happens now, as RabbitMQ's `process_args_policy` does: a new `expires`
    /// counts from now, a lower limit drops (drop-head) at once, an expired head goes.
    pub(super) fn policy_changed(&self, q: &Arc<Queue>, old: &QueueArgs) {
        let args = q.args();
        let mut dead = DeadLetters::new();
        {
            let mut st = self.state.lock();
            if reserves_room(old) && !reserves_room(&args) {
                // Admitted publishes still in flight will not take their reservation back.
                st.reserved = Default::default();
            }
            if args.expires.is_some() && args.expires != old.expires {
                st.last_used = Some(Instant::now());
            }
            q.expire_head(&mut st, Instant::now(), &mut dead);
            if args.has_limits() {
                q.drop_over_limit(&mut st, &mut dead);
            }
            q.reschedule(&mut st);
        }
        q.publish_dead_letters(dead);
    }

    pub(super) fn touch(&self) {
        self.state.lock().last_used = Some(Instant::now());
    }

    pub(super) fn purge(&self, q: &Queue) -> u32 {
        let mut st = self.state.lock();
        let n = st.ready.len() as u32;
        q.remove_for_good(st.ready.take_all());
        n
    }

    /// Sets the deleted flag under the lock (so no consumer joins after), drops the ready
    /// messages and hands back the consumers to cancel and how many messages there were.
    pub(super) fn delete(&self, q: &Queue) -> (u32, Vec<Consumer>) {
        let mut st = self.state.lock();
        q.deleted.store(true, std::sync::atomic::Ordering::Release);
        let count = st.ready.len() as u32;
        q.remove_for_good(st.ready.take_all());
        (count, st.consumers.take_all())
    }
}

/// Whether publishes reserve room at [`Queue::admit`]: only a queue that refuses publishes.
fn reserves_room(args: &QueueArgs) -> bool {
    args.has_limits() && args.overflow != args::Overflow::DropHead
}

/// Delivers while a consumer can take the head; expired heads (expiry before `now`) are
/// dropped first.
fn dispatch_locked(
    q: &Arc<Queue>,
    st: &mut MutexGuard<'_, QueueState>,
    now: Option<Instant>,
    dead: &mut DeadLetters,
) {
    // A head whose body the journal did not give back goes out as it is (once).
    let mut unreadable = None;
    while !st.consumers.is_empty() {
        if let Some(now) = now {
            q.expire_head(st, now, dead);
        }
        let paged = st
            .ready
            .front()
            .filter(|m| m.message.is_paged())
            .map(|m| m.seq);
        if paged.is_some() && paged != unreadable {
            if !q.page_in_head(st) {
                unreadable = paged;
            }
            // The lock was released meanwhile: look at the queue afresh.
            continue;
        }
        let state: &mut QueueState = st;
        let Some(msg) = state.ready.front() else {
            return;
        };
        let Some(no_ack) = state.consumers.offer(q, msg) else {
            return;
        };
        if let Some(sent) = st.ready.pop_front() {
            q.count_delivery(false, no_ack, sent.redelivered);
            if no_ack {
                q.remove_for_good(std::iter::once(sent));
            } else {
                q.journal_delivery(&sent);
            }
        }
    }
}
