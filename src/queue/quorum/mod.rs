//! The quorum queue type (`x-queue-type: quorum`), single node: a [`QuorumState`] state
//! machine (state.rs, pure) driven by commands, plus what a state machine cannot hold —
//! consumer sinks with credit, the journal, the expiry timer, dead-letter publishing.
//!
//! Every change is a [`Command`] applied under the queue's lock; the effects it returns are
//! carried out here (journal settles, dead letters after the lock is released). Consumer choice
//! (priorities, single active consumer, credit) happens here, and its outcome enters the log as
//! a `Checkout` of the head, so a replica replaying the log reaches the same state without
//! knowing about channels.
//!
//! How the log is written down on one node: every message a quorum queue admits is journaled,
//! persistent or not (RabbitMQ's quorum queues keep every message on disk), so its confirm waits
//! for the journal's group-commit fsync. `Enqueue` is the journal's publish record, `Checkout`
//! its delivered record, `Settle`/`Discard`/`CheckoutSettled`/drops its settle record. A
//! `Return` needs no record: a message still in the journal after a restart was returned once
//! for every recorded delivery (each delivery ended in a return, or the restart returns it), so
//! recovery replays it as `Restore` with that delivery count, and `x-delivery-count` survives
//! kill -9.
//!
//! Never writes to a socket and never does disk I/O under its lock (the journal calls only queue
//! records for the writer thread).
//!
//! Not yet (issue 15): consumers are not commands of the state machine (which consumer gets the
//! head depends on channel credit, known only here; a replicated leader would log its choice as
//! the `Checkout` it already is); a dead letter held by at-least-once comes back as a ready
//! message after a restart (its journal records do not say it was held); replication (openraft)
//! itself.
//!
//! Deep queues keep their bodies on disk, as classic queues do: a message that joins behind
//! [`PAGE_OUT_BYTES`] of ready bodies enters the state machine as its journal id and body length
//! only (`state::Body::OnDisk`, 16 bytes), and its body is read back from the journal, with the
//! lock released, when it reaches the head and is about to go out (or is dead-lettered); a
//! restart reads back only the first `PAGE_OUT_BYTES`. The state machine stays pure: it never
//! reads a body, only counts its size.

pub(crate) mod state;

use super::args::{
    invalid, unacceptable, ArgError, Overflow, QueueArgs, X_MESSAGE_TTL, X_QUEUE_MODE,
};
use super::consumers::Consumers;
use super::dead_letter::{DeadLetterReason, DeadLetters};
use super::Backend;
use super::DeadLetter;
use super::{ConsumeError, Consumer, ConsumerSink, Queue, QueuedMessage, PAGE_OUT_BYTES};
use crate::message::Message;
use parking_lot::{Mutex, MutexGuard};
use state::{Body, Command, Config, Effect, Entry, MsgId, QuorumState, Reason};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use warren_protocol::{FieldTable, FieldValue, ShortStr};

/// Returns allowed before a message is dead-lettered.
pub const X_DELIVERY_LIMIT: &str = "x-delivery-limit";
/// `at-most-once` (default) or `at-least-once`.
pub const X_DEAD_LETTER_STRATEGY: &str = "x-dead-letter-strategy";
/// Replicas to start with (accepted; one node has one).
pub const X_QUORUM_INITIAL_GROUP_SIZE: &str = "x-quorum-initial-group-size";
/// Where the leader goes (accepted; one node is the leader).
pub const X_QUEUE_LEADER_LOCATOR: &str = "x-queue-leader-locator";

/// Arguments of the other queue types that RabbitMQ 3.10 refuses on a quorum queue (every
/// type's `queue_arguments` minus `rabbit_quorum_queue:capabilities/0`'s): 406 `invalid arg
/// '<key>' for queue '<q>' in vhost '<v>' of queue type rabbit_quorum_queue`
/// (shared/RABBITMQ-FACTS.md: measured with `x-max-priority`).
const REFUSED_ARGUMENTS: &[&str] = &[
    "x-max-priority",
    X_QUEUE_MODE,
    "x-queue-master-locator",
    "x-queue-version",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
    "x-initial-cluster-size",
];

/// What a quorum queue's redeclare must repeat: `rabbit_quorum_queue:capabilities/0`'s
/// `queue_arguments` (`x-queue-type` is compared separately, in vhost.rs).
pub(super) const COMPARED_ARGUMENTS: &[&str] = &[
    "x-expires",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    X_DEAD_LETTER_STRATEGY,
    "x-max-length",
    "x-max-length-bytes",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-overflow",
    "x-single-active-consumer",
    X_QUORUM_INITIAL_GROUP_SIZE,
    X_DELIVERY_LIMIT,
    X_MESSAGE_TTL,
    X_QUEUE_LEADER_LOCATOR,
];

/// The quorum type's own argument checks, after the shared ones: other types' arguments are
/// refused (the first in table order), and its own are checked for type and range.
pub(super) fn validate_arguments(arguments: &FieldTable) -> Result<(), ArgError> {
    for (key, value) in arguments.iter() {
        if let Some(refused) = REFUSED_ARGUMENTS.iter().find(|a| **a == key.as_str()) {
            return Err(ArgError::NotForQueueType {
                key: refused,
                queue_type: "rabbit_quorum_queue",
            });
        }
        match key.as_str() {
            // Any integer: RabbitMQ 3.10.8 accepts -1 and then dead-letters on the first
            // return, as with 0 (checked with pika).
            X_DELIVERY_LIMIT => integer(X_DELIVERY_LIMIT, value).map(drop)?,
            "x-max-in-memory-length" => non_negative("x-max-in-memory-length", value).map(drop)?,
            "x-max-in-memory-bytes" => non_negative("x-max-in-memory-bytes", value).map(drop)?,
            X_QUORUM_INITIAL_GROUP_SIZE => initial_group_size(value)?,
            X_DEAD_LETTER_STRATEGY => one_of(
                X_DEAD_LETTER_STRATEGY,
                value,
                &["at-most-once", "at-least-once"],
                "invalid_dlx_strategy",
            )?,
            X_QUEUE_LEADER_LOCATOR => one_of(
                X_QUEUE_LEADER_LOCATOR,
                value,
                &["client-local", "balanced", "random", "least-leaders"],
                "invalid_queue_locator_arg",
            )?,
            _ => {}
        }
    }
    Ok(())
}

/// A replica count: a positive integer.
fn initial_group_size(v: &FieldValue) -> Result<(), ArgError> {
    match non_negative(X_QUORUM_INITIAL_GROUP_SIZE, v)? {
        0 => Err(invalid(
            X_QUORUM_INITIAL_GROUP_SIZE,
            "{value_zero,0}".into(),
        )),
        _ => Ok(()),
    }
}

fn non_negative(key: &'static str, v: &FieldValue) -> Result<u64, ArgError> {
    let n = integer(key, v)?;
    u64::try_from(n).map_err(|_| invalid(key, format!("{{value_negative,{n}}}")))
}

fn integer(key: &'static str, v: &FieldValue) -> Result<i64, ArgError> {
    match v {
        FieldValue::I8(_)
        | FieldValue::U8(_)
        | FieldValue::I16(_)
        | FieldValue::U16(_)
        | FieldValue::I32(_)
        | FieldValue::U32(_)
        | FieldValue::I64(_) => v.as_i64().ok_or_else(|| invalid(key, unacceptable(v))),
        other => Err(invalid(key, unacceptable(other))),
    }
}

/// A string argument with a closed set of values; `reason` is RabbitMQ's for any other
/// (`invalid_dlx_strategy`, `invalid_queue_locator_arg`: 3.10.8 with pika).
fn one_of(
    key: &'static str,
    v: &FieldValue,
    allowed: &[&str],
    reason: &str,
) -> Result<(), ArgError> {
    match v {
        FieldValue::LongStr(b) if allowed.iter().any(|a| a.as_bytes() == &b[..]) => Ok(()),
        FieldValue::LongStr(_) => Err(invalid(key, reason.to_owned())),
        other => Err(invalid(key, unacceptable(other))),
    }
}

/// The state machine's settings from the queue's arguments. `x-overflow: reject-publish-dlx`
/// is not a quorum strategy: RabbitMQ logs a warning and uses drop-head, and so does Warren.
fn config(args: &QueueArgs, arguments: &FieldTable) -> Config {
    // The argument and a `delivery-limit` policy: the lower wins (RabbitMQ's
    // args_policy_lookup with min).
    let delivery_limit = match (
        arguments.get(X_DELIVERY_LIMIT).and_then(FieldValue::as_i64),
        args.delivery_limit,
    ) {
        (Some(a), Some(p)) => Some(a.min(p)),
        (a, p) => a.or(p),
    };
    // RabbitMQ applies at-least-once only with reject-publish and a dead-letter exchange
    // (otherwise it logs a warning and dead-letters at most once).
    let reject_publish = args.overflow == Overflow::RejectPublish;
    let at_least_once = reject_publish
        && args.dead_letter_exchange.is_some()
        && arguments
            .get(X_DEAD_LETTER_STRATEGY)
            .and_then(FieldValue::as_str)
            == Some("at-least-once");
    Config {
        max_length: args.max_length,
        max_bytes: args.max_length_bytes,
        reject_publish,
        delivery_limit,
        message_ttl: args.message_ttl,
        at_least_once,
    }
}

/// What a quorum queue holds under its lock.
struct Core {
    state: QuorumState,
    consumers: Consumers,
    /// When the expiry timer task will next look at the head (Unix ms), if one is pending.
    timer_at: Option<u64>,
    /// A retry of held dead letters is scheduled.
    retry_pending: bool,
    /// x-expires: when the queue was last used (Unix ms): declared, fetched from, or a
    /// consumer came or went.
    last_used: u64,
}

/// What leaves the lock with a command's effects: dead letters to publish, then the messages
/// whose journal settle waits for them (so a crash in between leaves the message in this queue
/// rather than in neither: at-least-once across restarts).
#[derive(Default)]
struct Outcome {
    dead: DeadLetters,
    settle_after: Vec<QueuedMessage>,
    /// At-least-once dead letters, with the id the state machine holds each under.
    held: Vec<(DeadLetter, MsgId)>,
    /// Dying messages whose bodies are on disk: read back (no lock held) before their dead
    /// letters are made; `true` for held (at-least-once) ones.
    paged_dead: Vec<(Entry, Reason, bool)>,
}

/// How often held at-least-once dead letters are published again while their target does not
/// take them (no route, or a target refusing).
const HELD_RETRY: Duration = Duration::from_secs(1);

/// A quorum queue's own state.
pub(super) struct QuorumQueue {
    core: Mutex<Core>,
    /// Whether any message can expire (queue TTL set, or some message had an expiration):
    /// only then is the clock read on the delivery path.
    may_expire: std::sync::atomic::AtomicBool,
    /// The queue this is the backend of, for timer tasks started where only `&Queue` is at hand.
    me: std::sync::OnceLock<Weak<Queue>>,
}

/// Unix milliseconds now: the time that goes into commands.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn expiration_ms(message: &Message) -> Option<u64> {
    message
        .properties
        .expiration
        .as_ref()
        .and_then(|e| super::args::parse_expiration(e).ok())
}

fn queued(e: &Entry) -> QueuedMessage {
    QueuedMessage {
        seq: e.id,
        message: e.message.message(),
        redelivered: e.delivery_count > 0,
        expires_at: None,
        delivery_count: e.delivery_count,
    }
}

impl From<Reason> for DeadLetterReason {
    fn from(r: Reason) -> Self {
        match r {
            Reason::Rejected => DeadLetterReason::Rejected,
            Reason::Expired => DeadLetterReason::Expired,
            Reason::MaxLen => DeadLetterReason::MaxLen,
            Reason::DeliveryLimit => DeadLetterReason::DeliveryLimit,
        }
    }
}

impl QuorumQueue {
    pub(super) fn new(args: &QueueArgs, arguments: &FieldTable) -> Self {
        QuorumQueue {
            core: Mutex::new(Core {
                state: QuorumState::new(config(args, arguments)),
                consumers: Consumers::new(args.single_active_consumer),
                timer_at: None,
                retry_pending: false,
                last_used: now_ms(),
            }),
            may_expire: std::sync::atomic::AtomicBool::new(args.message_ttl.is_some()),
            me: std::sync::OnceLock::new(),
        }
    }

    /// Called once the queue exists: starts the x-expires watch if the queue has one.
    pub(super) fn start(&self, q: &Arc<Queue>) {
        let _ = self.me.set(Arc::downgrade(q));
        if let (Some(_), Ok(rt)) = (q.args().expires, tokio::runtime::Handle::try_current()) {
            rt.spawn(watch_expiry(Arc::downgrade(q)));
        }
    }

    /// The queue's policy changed (`q.args()` now holds the new effective arguments): the
    /// state machine takes the new limits, TTL and delivery limit; an `expires` that is new
    /// starts its watch.
    pub(super) fn policy_changed(&self, q: &Arc<Queue>, old: &QueueArgs) {
        let args = q.args();
        if args.message_ttl.is_some() {
            self.may_expire
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let mut out = Outcome::default();
        let mut core = self.core.lock();
        let command = Command::Configure(config(&args, &q.options.arguments));
        Self::apply(q, &mut core, command, &mut out);
        drop(core);
        Self::finish(q, out);
        if let (Some(_), None) = (args.expires, old.expires) {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                self.touch();
                rt.spawn(watch_expiry(Arc::downgrade(q)));
            }
        }
    }

    /// Records a use of the queue for x-expires.
    pub(super) fn touch(&self) {
        self.core.lock().last_used = now_ms();
    }

    /// When the queue will have been unused for `period` ms, or `None` while it has consumers.
    fn unused_deadline(&self, period: u64) -> Option<u64> {
        let core = self.core.lock();
        core.consumers
            .is_empty()
            .then(|| core.last_used.saturating_add(period))
    }

    fn may_expire(&self) -> bool {
        self.may_expire.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Applies `command` and carries out its effects: journal settles now (or after the dead
    /// letters, for dying messages), dead letters into `out`.
    fn apply(q: &Queue, core: &mut Core, command: Command, out: &mut Outcome) {
        for effect in core.state.apply(command) {
            match effect {
                Effect::Removed(e) => {
                    q.remove_for_good(std::iter::once(queued(&e)));
                }
                Effect::DeadLetterHeld(e, reason) if e.message.is_paged() => {
                    out.paged_dead.push((e, reason, true));
                }
                Effect::Died(e, reason) if e.message.is_paged() => {
                    out.paged_dead.push((e, reason, false));
                }
                Effect::DeadLetterHeld(e, reason) => {
                    if let Some(letter) = q.dead_letter_of(&e.message.message(), reason.into()) {
                        out.held.push((letter, e.id));
                    }
                }
                Effect::Died(e, reason) => {
                    if let Some(letter) = q.dead_letter_of(&e.message.message(), reason.into()) {
                        out.dead.push(letter);
                        out.settle_after.push(queued(&e));
                    } else {
                        q.remove_for_good(std::iter::once(queued(&e)));
                    }
                }
            }
        }
    }

    /// Publishes dead letters (no lock held), then lets the journal forget their originals.
    /// Held (at-least-once) ones are forgotten only once taken; the rest wait for a retry.
    fn finish(q: &Queue, mut out: Outcome) {
        for (e, reason, held) in std::mem::take(&mut out.paged_dead) {
            let mut whole = queued(&e);
            q.page_in(&mut whole);
            match q.dead_letter_of(&whole.message, reason.into()) {
                Some(letter) if held => out.held.push((letter, e.id)),
                Some(letter) => {
                    out.dead.push(letter);
                    out.settle_after.push(queued(&e));
                }
                None if held => {}
                None => {
                    q.remove_for_good(std::iter::once(queued(&e)));
                }
            }
        }
        q.publish_dead_letters(out.dead);
        q.remove_for_good(out.settle_after);
        if out.held.is_empty() {
            return;
        }
        let Backend::Quorum(qq) = &q.backend else {
            return;
        };
        let Some(owner) = q.owner.as_ref().and_then(Weak::upgrade) else {
            return;
        };
        let mut taken = Vec::new();
        let mut left = false;
        for (letter, id) in out.held {
            if owner.publish_dead_letter_taken(letter) {
                taken.push(id);
            } else {
                left = true;
            }
        }
        let mut again = Outcome::default();
        let mut core = qq.core.lock();
        Self::apply(
            q,
            &mut core,
            Command::DeadLettered { ids: taken },
            &mut again,
        );
        if left && !core.retry_pending {
            core.retry_pending = true;
            qq.schedule_retry();
        }
    }

    /// Publishes the held dead letters again after [`HELD_RETRY`].
    fn schedule_retry(&self) {
        let (Ok(rt), Some(me)) = (tokio::runtime::Handle::try_current(), self.me.get()) else {
            return;
        };
        let queue = me.clone();
        rt.spawn(async move {
            tokio::time::sleep(HELD_RETRY).await;
            let Some(q) = queue.upgrade() else { return };
            let Backend::Quorum(qq) = &q.backend else {
                return;
            };
            let mut out = Outcome::default();
            {
                let mut core = qq.core.lock();
                core.retry_pending = false;
                if q.is_deleted() {
                    return;
                }
                for (e, reason) in core.state.held() {
                    if e.message.is_paged() {
                        out.paged_dead.push((e.clone(), *reason, true));
                    } else if let Some(letter) =
                        q.dead_letter_of(&e.message.message(), (*reason).into())
                    {
                        out.held.push((letter, e.id));
                    }
                }
            }
            Self::finish(&q, out);
        });
    }

    pub(super) fn push_recovered(&self, q: &Arc<Queue>, message: Arc<Message>, deliveries: u32) {
        let mut message = QueuedMessage::new(0, message);
        // Recovered messages arrive as stubs with their bodies on disk: the first ones are
        // read back now, deeper ones when they reach the head.
        if self.core.lock().state.ready_bytes() < PAGE_OUT_BYTES {
            q.page_in(&mut message);
        }
        let expiration_ms = expiration_ms(&message.message);
        if expiration_ms.is_some() {
            self.may_expire
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let mut out = Outcome::default();
        let mut core = self.core.lock();
        Self::apply(
            q,
            &mut core,
            Command::Restore {
                message: message.message.into(),
                expiration_ms,
                delivery_count: deliveries,
                now: now_ms(),
            },
            &mut out,
        );
        self.schedule_expiry(q, &mut core);
        drop(core);
        Self::finish(q, out);
    }

    /// reject-publish: refused while the state machine says the queue is over its limit.
    pub(super) fn admit(&self) -> bool {
        !self.core.lock().state.is_blocked()
    }

    pub(super) fn enqueue(&self, q: &Arc<Queue>, message: Arc<Message>) {
        crate::stats::bump(&q.counters.published);
        let expiration_ms = expiration_ms(&message);
        if expiration_ms.is_some() && !self.may_expire() {
            self.may_expire
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let mut out = Outcome::default();
        let mut core = self.core.lock();
        let now = now_ms();
        // Behind enough ready bodies, only its journal id joins (its body stays on disk).
        let message = match (
            core.state.ready_bytes() >= PAGE_OUT_BYTES,
            message.persist_id.get(),
        ) {
            (true, Some(id)) => Body::OnDisk {
                journal_id: id,
                len: u32::try_from(message.body.len()).unwrap_or(u32::MAX),
            },
            _ => Body::Loaded(message),
        };
        Self::apply(
            q,
            &mut core,
            Command::Enqueue {
                message,
                expiration_ms,
                now,
            },
            &mut out,
        );
        self.dispatch_locked(q, &mut core, &mut out);
        drop(core);
        Self::finish(q, out);
    }

    pub(super) fn requeue(
        &self,
        q: &Arc<Queue>,
        messages: impl IntoIterator<Item = QueuedMessage>,
    ) {
        let ids: Vec<u64> = messages.into_iter().map(|m| m.seq).collect();
        q.settled_unacked(ids.len() as u64);
        let mut out = Outcome::default();
        let mut core = self.core.lock();
        Self::apply(q, &mut core, Command::Return { ids }, &mut out);
        self.dispatch_locked(q, &mut core, &mut out);
        drop(core);
        Self::finish(q, out);
    }

    pub(super) fn settle(
        &self,
        q: &Queue,
        messages: impl IntoIterator<Item = QueuedMessage>,
    ) -> u64 {
        let ids: Vec<u64> = messages.into_iter().map(|m| m.seq).collect();
        let n = ids.len() as u64;
        let mut out = Outcome::default();
        Self::apply(q, &mut self.core.lock(), Command::Settle { ids }, &mut out);
        Self::finish(q, out);
        n
    }

    pub(super) fn reject(&self, q: &Queue, messages: impl IntoIterator<Item = QueuedMessage>) {
        let ids: Vec<u64> = messages.into_iter().map(|m| m.seq).collect();
        q.settled_unacked(ids.len() as u64);
        let mut out = Outcome::default();
        Self::apply(q, &mut self.core.lock(), Command::Discard { ids }, &mut out);
        Self::finish(q, out);
    }

    pub(super) fn dispatch(&self, q: &Arc<Queue>) {
        let mut out = Outcome::default();
        let mut core = self.core.lock();
        self.dispatch_locked(q, &mut core, &mut out);
        drop(core);
        Self::finish(q, out);
    }

    /// Expires the head if it is due (only when something can expire: no clock read otherwise).
    fn expire(&self, q: &Queue, core: &mut Core, out: &mut Outcome) {
        if self.may_expire() && core.state.head_expiry().is_some() {
            Self::apply(q, core, Command::Expire { now: now_ms() }, out);
        }
    }

    /// Reads the paged-out `head`'s body back with the queue unlocked (no disk I/O under the
    /// lock) and puts it in place if it is still the head; false if the journal did not have
    /// it (logged; the stub then goes out as it is, once).
    fn load_head(q: &Queue, core: &mut MutexGuard<'_, Core>, mut head: QueuedMessage) -> bool {
        MutexGuard::unlocked(core, || q.page_in(&mut head));
        if head.message.is_paged() {
            return false;
        }
        core.state.load_head(head.seq, head.message);
        true
    }

    /// Expires what is due at the head, then makes sure the head's body is in memory.
    fn ready_head(&self, q: &Queue, core: &mut MutexGuard<'_, Core>, out: &mut Outcome) {
        let mut unreadable = None;
        loop {
            self.expire(q, core, out);
            match core.state.head().map(queued) {
                Some(head) if head.message.is_paged() && unreadable != Some(head.seq) => {
                    let id = head.seq;
                    if !Self::load_head(q, core, head) {
                        unreadable = Some(id);
                    }
                }
                _ => return,
            }
        }
    }

    /// Hands the head to consumers with credit while one takes it; each taking is a checkout.
    fn dispatch_locked(&self, q: &Arc<Queue>, core: &mut MutexGuard<'_, Core>, out: &mut Outcome) {
        while !core.consumers.is_empty() {
            self.ready_head(q, core, out);
            let Some(head) = core.state.head().map(queued) else {
                break;
            };
            let Some(no_ack) = core.consumers.offer(q, &head) else {
                break;
            };
            q.count_delivery(false, no_ack, head.redelivered);
            let id = head.seq;
            if no_ack {
                Self::apply(q, core, Command::CheckoutSettled { id }, out);
            } else {
                q.journal_delivery(&head);
                Self::apply(q, core, Command::Checkout { id }, out);
            }
        }
        self.expire(q, core, out);
        self.schedule_expiry(q, core);
    }

    /// Starts a timer task for the head's expiry unless one is due no later (RabbitMQ expires
    /// quorum messages at the head, also with no consumer).
    fn schedule_expiry(&self, q: &Arc<Queue>, core: &mut Core) {
        let Some(at) = core.state.head_expiry() else {
            return;
        };
        if core.timer_at.is_some_and(|t| t <= at) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        core.timer_at = Some(at);
        let queue: Weak<Queue> = Arc::downgrade(q);
        let delay = Duration::from_millis(at.saturating_sub(now_ms()));
        rt.spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(q) = queue.upgrade() {
                if let Backend::Quorum(qq) = &q.backend {
                    qq.on_timer(&q, at);
                }
            }
        });
    }

    fn on_timer(&self, q: &Arc<Queue>, at: u64) {
        if q.is_deleted() {
            return;
        }
        let mut out = Outcome::default();
        let mut core = self.core.lock();
        if core.timer_at == Some(at) {
            core.timer_at = None;
        }
        self.dispatch_locked(q, &mut core, &mut out);
        drop(core);
        Self::finish(q, out);
    }

    /// basic.get: the head, checked out (or settled at once with `no_ack`), and how many ready
    /// messages remain.
    pub(super) fn get(&self, q: &Arc<Queue>, no_ack: bool) -> Option<(QueuedMessage, u32)> {
        let mut out = Outcome::default();
        let mut core = self.core.lock();
        if q.args().expires.is_some() {
            core.last_used = now_ms();
        }
        self.ready_head(q, &mut core, &mut out);
        let got = core.state.head().map(queued);
        if let Some(m) = &got {
            q.count_delivery(true, no_ack, m.redelivered);
            let id = m.seq;
            if no_ack {
                Self::apply(q, &mut core, Command::CheckoutSettled { id }, &mut out);
            } else {
                q.journal_delivery(m);
                Self::apply(q, &mut core, Command::Checkout { id }, &mut out);
            }
        } else {
            crate::stats::bump(&q.counters.get_empty);
        }
        let remaining = core.state.ready_len() as u32;
        self.schedule_expiry(q, &mut core);
        drop(core);
        Self::finish(q, out);
        got.map(|m| (m, remaining))
    }

    pub(super) fn add_consumer(
        &self,
        q: &Arc<Queue>,
        consumer: Consumer,
        on_added: impl FnOnce(),
    ) -> Result<(), ConsumeError> {
        let mut core = self.core.lock();
        if q.is_deleted() {
            return Err(ConsumeError::Deleted);
        }
        if core.consumers.iter().any(|c| c.exclusive)
            || (consumer.exclusive && !core.consumers.is_empty())
        {
            return Err(ConsumeError::ExclusiveInUse);
        }
        on_added();
        core.consumers.add(consumer);
        core.last_used = now_ms();
        let mut out = Outcome::default();
        self.dispatch_locked(q, &mut core, &mut out);
        drop(core);
        Self::finish(q, out);
        Ok(())
    }

    pub(super) fn remove_consumer(
        &self,
        q: &Arc<Queue>,
        sink: &Arc<dyn ConsumerSink>,
        tag: &ShortStr,
    ) -> bool {
        let mut core = self.core.lock();
        core.consumers.remove(sink, tag);
        core.last_used = now_ms();
        if !core.consumers.is_empty() {
            // Under single-active-consumer the next one takes over at once.
            let mut out = Outcome::default();
            self.dispatch_locked(q, &mut core, &mut out);
            drop(core);
            Self::finish(q, out);
        }
        // Quorum queues are never auto-delete.
        false
    }

    /// Ready messages, their body bytes and consumers (one lock).
    pub(super) fn gauges(&self) -> (u64, u64, u64) {
        let core = self.core.lock();
        (
            core.state.ready_len() as u64,
            core.state.ready_bytes(),
            core.consumers.len() as u64,
        )
    }

    pub(super) fn message_count(&self) -> u32 {
        self.core.lock().state.ready_len() as u32
    }

    pub(super) fn consumer_count(&self) -> u32 {
        self.core.lock().consumers.len() as u32
    }

    pub(super) fn purge(&self, q: &Queue) -> u32 {
        let mut core = self.core.lock();
        let n = core.state.ready_len() as u32;
        let mut out = Outcome::default();
        Self::apply(q, &mut core, Command::Purge, &mut out);
        drop(core);
        Self::finish(q, out);
        n
    }

    /// Sets the deleted flag under the lock, forgets every message (ready and checked out: a
    /// later ack of a checked-out one finds nothing) and hands back the consumers to cancel.
    pub(super) fn delete(&self, q: &Queue) -> (u32, Vec<Consumer>) {
        let mut core = self.core.lock();
        q.deleted.store(true, std::sync::atomic::Ordering::Release);
        let count = core.state.ready_len() as u32;
        let all = core.state.take_all();
        q.remove_for_good(all.iter().map(queued));
        (count, core.consumers.take_all())
    }
}

/// x-expires on a quorum queue: deletes it once it has had no consumers, no basic.get and no
/// declare for the whole period (RabbitMQ's rule, as for classic queues: timer.rs). One task per
/// such queue, asleep until the deadline; it ends with the queue.
async fn watch_expiry(queue: Weak<Queue>) {
    loop {
        let wait = {
            let Some(q) = queue.upgrade() else { return };
            let Backend::Quorum(qq) = &q.backend else {
                return;
            };
            // The period in force now: a policy may change or clear it.
            let (false, Some(period)) = (q.is_deleted(), q.args().expires) else {
                return;
            };
            match qq.unused_deadline(period) {
                Some(at) if at <= now_ms() => {
                    if let Some(owner) = q.owner.as_ref().and_then(Weak::upgrade) {
                        tracing::debug!(queue = %q.name, "queue expired (x-expires)");
                        owner.expire_queue(&q);
                    }
                    return;
                }
                Some(at) => at - now_ms(),
                // In use: look again a period later.
                None => period,
            }
        };
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}
