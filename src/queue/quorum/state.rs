//! The quorum queue's state machine: every change to a quorum queue is a [`Command`], applied
//! by [`QuorumState::apply`] in log order, and what the outside world must do about it comes
//! back as [`Effect`]s. Pure: no I/O, no locks, no clock (time arrives inside the commands as
//! Unix milliseconds), no consumer sinks. Replaying the same commands gives the same state,
//! which is what lets a replicated log (openraft) drive it on every node later; today the
//! single-node log is the shared message journal (see `mod.rs` for how each command is
//! written down and replayed).
//!
//! Semantics follow RabbitMQ 3.10's `rabbit_fifo` as measured (shared/RABBITMQ-FACTS.md):
//! - returned messages go to the back of the queue, in the order they were returned, and
//!   count one more delivery (`x-delivery-count`);
//! - with `x-delivery-limit` N, the (N+1)-th return dead-letters with reason `delivery_limit`;
//! - `x-max-length` / `x-max-length-bytes` count ready messages only; drop-head drops the
//!   oldest ready ones (reason `maxlen`); reject-publish lets the publish that goes over the
//!   limit in, then refuses publishes until the queue is below 80% of the limit;
//! - TTL expires only at the head (reason `expired`);
//! - `x-dead-letter-strategy: at-least-once` (with reject-publish and a dead-letter exchange):
//!   a dying message is held here, out of the ready list, until the owner reports with
//!   `DeadLettered` that its dead letter was taken by every target queue.

use crate::ids::MessageId;
use crate::message::Message;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// A message's position in this queue's log; unique for the queue's lifetime.
pub(crate) type MsgId = u64;

/// RabbitMQ's `?LOW_LIMIT`: a reject-publish queue takes publishes again below this share of
/// its limits.
const LOW_LIMIT: f64 = 0.8;

/// The queue's settings the state machine acts on (from its x-arguments).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Config {
    /// `x-max-length`: most ready messages.
    pub(crate) max_length: Option<u64>,
    /// `x-max-length-bytes`: most ready body bytes.
    pub(crate) max_bytes: Option<u64>,
    /// `x-overflow: reject-publish` (otherwise drop-head).
    pub(crate) reject_publish: bool,
    /// `x-delivery-limit`: returns allowed before a message is dead-lettered (negative acts
    /// as 0, as in RabbitMQ 3.10).
    pub(crate) delivery_limit: Option<i64>,
    /// `x-message-ttl` in milliseconds.
    pub(crate) message_ttl: Option<u64>,
    /// Dead letters are held until their targets took them (at-least-once).
    pub(crate) at_least_once: bool,
}

/// Where a message's body is. The state machine only needs a body's size; a deep queue keeps
/// the bodies of messages far from the head in the journal only, named by journal id (16
/// bytes each here instead of a message in memory).
#[derive(Clone, Debug)]
pub(crate) enum Body {
    /// The whole message, in memory.
    Loaded(Arc<Message>),
    /// Only in the journal: read back (by the owner, with no lock held) before it goes out.
    OnDisk {
        /// The journal's id of the message.
        journal_id: MessageId,
        /// Its body's length.
        len: u32,
    },
}

impl Body {
    /// The body's length (what `x-max-length-bytes` counts).
    pub(crate) fn size(&self) -> usize {
        match self {
            Body::Loaded(m) => m.body_size(),
            Body::OnDisk { len, .. } => *len as usize,
        }
    }

    /// Whether the body is in the journal only.
    pub(crate) fn is_paged(&self) -> bool {
        match self {
            Body::Loaded(m) => m.is_paged(),
            Body::OnDisk { .. } => true,
        }
    }

    /// The message, in memory if it is; else a stub naming it by journal id (body on disk).
    pub(crate) fn message(&self) -> Arc<Message> {
        match self {
            Body::Loaded(m) => m.clone(),
            Body::OnDisk { journal_id, len } => Arc::new(Message::paged(
                crate::message::Route::new("", ""),
                warren_protocol::BasicProperties::default(),
                *len as usize,
                *journal_id,
            )),
        }
    }
}

impl From<Arc<Message>> for Body {
    /// A message as it is; a stub (its body on disk) becomes just its journal id and length.
    fn from(m: Arc<Message>) -> Self {
        match (m.is_paged(), m.persist_id.get()) {
            (true, Some(id)) => Body::OnDisk {
                journal_id: id,
                len: u32::try_from(m.body_size()).unwrap_or(u32::MAX),
            },
            _ => Body::Loaded(m),
        }
    }
}

/// One message in the queue, ready or checked out.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// Its place in the log.
    pub(crate) id: MsgId,
    /// The message, or where its body is.
    pub(crate) message: Body,
    /// How often it was returned (nack/reject with requeue, consumer gone, restart).
    pub(crate) delivery_count: u32,
    /// When it expires (Unix ms), fixed when it was enqueued.
    pub(crate) expires_at: Option<u64>,
}

/// Why a message left the queue other than by an ack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// basic.reject / basic.nack without requeue.
    Rejected,
    /// Its TTL passed at the head.
    Expired,
    /// drop-head pushed it out.
    MaxLen,
    /// Returned more often than `x-delivery-limit` allows.
    DeliveryLimit,
}

/// A change to the queue, in log order.
#[derive(Clone, Debug)]
pub(crate) enum Command {
    /// A published message joins the back of the queue. `expiration_ms` is the message's own
    /// `expiration` property, parsed; `now` is when it arrived.
    Enqueue {
        /// The message.
        message: Body,
        /// Its per-message TTL, if any.
        expiration_ms: Option<u64>,
        /// Unix ms.
        now: u64,
    },
    /// A message found in the journal at startup, returned `delivery_count` times so far
    /// (every delivery that was not settled before the restart counts as a return).
    Restore {
        /// The message.
        message: Body,
        /// Its per-message TTL, if any.
        expiration_ms: Option<u64>,
        /// Earlier returns.
        delivery_count: u32,
        /// Unix ms (the TTL starts again at restore).
        now: u64,
    },
    /// The ready head `id` went to a consumer (or basic.get) that must settle it.
    Checkout {
        /// The message (must be the ready head).
        id: MsgId,
    },
    /// The ready head `id` went out with no acknowledgement: it is gone.
    CheckoutSettled {
        /// The message (must be the ready head).
        id: MsgId,
    },
    /// Checked-out messages were acknowledged.
    Settle {
        /// Messages.
        ids: Vec<MsgId>,
    },
    /// Checked-out messages come back (nack/reject with requeue, consumer gone, recover).
    Return {
        /// Messages, in the order returned.
        ids: Vec<MsgId>,
    },
    /// Checked-out messages were rejected without requeue.
    Discard {
        /// Messages.
        ids: Vec<MsgId>,
    },
    /// Every ready message goes (queue.purge).
    Purge,
    /// Expired messages at the head go.
    Expire {
        /// Unix ms.
        now: u64,
    },
    /// Held dead letters (at-least-once) reached their target queues: they go.
    DeadLettered {
        /// Messages.
        ids: Vec<MsgId>,
    },
    /// New settings (a policy changed): limits apply at once, a TTL to messages from now on.
    Configure(Config),
}

/// What the queue's owner must do after a command.
#[derive(Debug)]
pub(crate) enum Effect {
    /// The message left the queue for good (settled, purged, or dropped without a
    /// dead-letter exchange): the journal forgets it.
    Removed(Entry),
    /// The message died: dead-letter it (if the queue has a dead-letter exchange), then the
    /// journal forgets it.
    Died(Entry, Reason),
    /// At-least-once: dead-letter the message and report back with `DeadLettered` once every
    /// target queue took it; until then it stays held here.
    DeadLetterHeld(Entry, Reason),
}

/// A quorum queue's messages and counters.
#[derive(Debug, Default)]
pub(crate) struct QuorumState {
    config: Config,
    next_id: MsgId,
    ready: VecDeque<Entry>,
    ready_bytes: u64,
    checked_out: HashMap<MsgId, Entry>,
    /// At-least-once dead letters not yet taken by their targets.
    held: std::collections::BTreeMap<MsgId, (Entry, Reason)>,
    /// reject-publish: over the limit, refusing publishes until below [`LOW_LIMIT`].
    blocked: bool,
}

impl QuorumState {
    /// An empty queue with these settings.
    pub(crate) fn new(config: Config) -> Self {
        QuorumState {
            config,
            next_id: 1,
            ..QuorumState::default()
        }
    }

    /// Applies one command; the effects come back in the order they must be carried out.
    pub(crate) fn apply(&mut self, command: Command) -> Vec<Effect> {
        let mut effects = Vec::new();
        match command {
            Command::Enqueue {
                message,
                expiration_ms,
                now,
            } => {
                self.push(message, expiration_ms, 0, now);
                self.enforce_limits(&mut effects);
            }
            Command::Restore {
                message,
                expiration_ms,
                delivery_count,
                now,
            } => self.push(message, expiration_ms, delivery_count, now),
            Command::Checkout { id } => {
                if let Some(e) = self.pop_head(id) {
                    self.checked_out.insert(id, e);
                }
            }
            Command::CheckoutSettled { id } => {
                if let Some(e) = self.pop_head(id) {
                    effects.push(Effect::Removed(e));
                }
            }
            Command::Settle { ids } => effects.extend(
                ids.iter()
                    .filter_map(|id| self.checked_out.remove(id))
                    .map(Effect::Removed),
            ),
            Command::Return { ids } => self.return_all(&ids, &mut effects),
            Command::Discard { ids } => {
                for id in ids {
                    if let Some(e) = self.checked_out.remove(&id) {
                        self.die(e, Reason::Rejected, &mut effects);
                    }
                }
            }
            Command::DeadLettered { ids } => effects.extend(
                ids.iter()
                    .filter_map(|id| self.held.remove(id))
                    .map(|(e, _)| Effect::Removed(e)),
            ),
            Command::Purge => {
                self.ready_bytes = 0;
                effects.extend(self.ready.drain(..).map(Effect::Removed));
                self.unblock_if_low();
            }
            Command::Configure(config) => {
                self.config = config;
                self.enforce_limits(&mut effects);
                if !self.config.reject_publish || !self.is_over_limit() {
                    self.blocked = false;
                }
            }
            Command::Expire { now } => {
                while self
                    .ready
                    .front()
                    .is_some_and(|e| e.expires_at.is_some_and(|at| at <= now))
                {
                    if let Some(e) = self.pop_front() {
                        self.die(e, Reason::Expired, &mut effects);
                    }
                }
                self.unblock_if_low();
            }
        }
        effects
    }

    /// The next message a consumer would get (ready head), without taking it.
    pub(crate) fn head(&self) -> Option<&Entry> {
        self.ready.front()
    }

    /// The ready head `id`'s body is back in memory: `message` replaces the stub it held (whose
    /// journal id names the body on disk). Not a command: the queue's state is the same, only
    /// where a body lives changed. Ignored unless `id` is still the head.
    pub(crate) fn load_head(&mut self, id: MsgId, message: Arc<Message>) {
        if let Some(head) = self.ready.front_mut().filter(|e| e.id == id) {
            head.message = Body::Loaded(message);
        }
    }

    /// When the ready head expires (Unix ms), if it does.
    pub(crate) fn head_expiry(&self) -> Option<u64> {
        self.ready.front().and_then(|e| e.expires_at)
    }

    /// Whether a reject-publish queue refuses publishes now.
    pub(crate) fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// Ready messages.
    pub(crate) fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Ready body bytes.
    pub(crate) fn ready_bytes(&self) -> u64 {
        self.ready_bytes
    }

    /// Messages delivered and not yet settled.
    #[cfg(test)]
    pub(crate) fn checked_out_len(&self) -> usize {
        self.checked_out.len()
    }

    /// Takes every message, ready and checked out (the queue is deleted).
    pub(crate) fn take_all(&mut self) -> Vec<Entry> {
        self.ready_bytes = 0;
        let mut all: Vec<Entry> = self.ready.drain(..).collect();
        all.extend(self.checked_out.drain().map(|(_, e)| e));
        all.extend(std::mem::take(&mut self.held).into_values().map(|(e, _)| e));
        all
    }

    /// A message dies: it goes (at-most-once) or is held until its dead letter is taken.
    fn die(&mut self, e: Entry, reason: Reason, effects: &mut Vec<Effect>) {
        if self.config.at_least_once {
            self.held.insert(e.id, (e.clone(), reason));
            effects.push(Effect::DeadLetterHeld(e, reason));
        } else {
            effects.push(Effect::Died(e, reason));
        }
    }

    /// The held dead letters (at-least-once), oldest first, to publish again.
    pub(crate) fn held(&self) -> impl Iterator<Item = &(Entry, Reason)> {
        self.held.values()
    }

    fn push(&mut self, message: Body, expiration_ms: Option<u64>, delivery_count: u32, now: u64) {
        let ttl = match (self.config.message_ttl, expiration_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let id = self.next_id;
        self.next_id += 1;
        self.ready_bytes += message.size() as u64;
        self.ready.push_back(Entry {
            id,
            message,
            delivery_count,
            expires_at: ttl.map(|t| now.saturating_add(t)),
        });
    }

    fn pop_front(&mut self) -> Option<Entry> {
        let e = self.ready.pop_front()?;
        self.ready_bytes -= e.message.size() as u64;
        Some(e)
    }

    /// Takes the ready head if it is `id` (a checkout names what the leader saw).
    fn pop_head(&mut self, id: MsgId) -> Option<Entry> {
        if self.ready.front().map(|e| e.id) != Some(id) {
            return None;
        }
        let e = self.pop_front();
        self.unblock_if_low();
        e
    }

    fn return_all(&mut self, ids: &[MsgId], effects: &mut Vec<Effect>) {
        for id in ids {
            let Some(mut e) = self.checked_out.remove(id) else {
                continue;
            };
            e.delivery_count = e.delivery_count.saturating_add(1);
            if self
                .config
                .delivery_limit
                .is_some_and(|limit| i64::from(e.delivery_count) > limit)
            {
                self.die(e, Reason::DeliveryLimit, effects);
                continue;
            }
            self.ready_bytes += e.message.size() as u64;
            self.ready.push_back(e);
        }
        self.enforce_limits(effects);
    }

    fn is_over_limit(&self) -> bool {
        self.config
            .max_length
            .is_some_and(|max| self.ready.len() as u64 > max)
            || self
                .config
                .max_bytes
                .is_some_and(|max| self.ready_bytes > max)
    }

    fn is_below_low_limit(&self) -> bool {
        let low = |max: u64| (max as f64 * LOW_LIMIT) as u64;
        self.config
            .max_length
            .is_none_or(|max| (self.ready.len() as u64) < low(max))
            && self
                .config
                .max_bytes
                .is_none_or(|max| self.ready_bytes < low(max))
    }

    fn enforce_limits(&mut self, effects: &mut Vec<Effect>) {
        if self.config.reject_publish {
            if self.is_over_limit() {
                self.blocked = true;
            }
            return;
        }
        while self.is_over_limit() {
            match self.pop_front() {
                Some(e) => self.die(e, Reason::MaxLen, effects),
                None => break,
            }
        }
    }

    fn unblock_if_low(&mut self) {
        if self.blocked && self.is_below_low_limit() {
            self.blocked = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use warren_protocol::{BasicProperties, ShortStr};

    fn msg(body: &'static str) -> Arc<Message> {
        Arc::new(Message::new(
            ShortStr::empty(),
            ShortStr::from("q"),
            BasicProperties::default(),
            Bytes::from_static(body.as_bytes()),
        ))
    }

    fn enqueue(s: &mut QuorumState, body: &'static str) -> Vec<Effect> {
        s.apply(Command::Enqueue {
            message: msg(body).into(),
            expiration_ms: None,
            now: 0,
        })
    }

    fn checkout_head(s: &mut QuorumState) -> MsgId {
        let id = s.head().expect("a ready message").id;
        assert!(s.apply(Command::Checkout { id }).is_empty());
        id
    }

    fn bodies(s: &QuorumState) -> Vec<String> {
        s.ready
            .iter()
            .map(|e| String::from_utf8_lossy(&e.message.message().body).into_owned())
            .collect()
    }

    #[test]
    fn returns_go_to_the_back_and_count() {
        let mut s = QuorumState::new(Config::default());
        enqueue(&mut s, "a");
        enqueue(&mut s, "b");
        let a = checkout_head(&mut s);
        assert!(s.apply(Command::Return { ids: vec![a] }).is_empty());
        assert_eq!(bodies(&s), ["b", "a"]);
        assert_eq!(s.ready.back().map(|e| e.delivery_count), Some(1));
        assert_eq!(s.checked_out_len(), 0);
    }

    #[test]
    fn the_return_past_the_delivery_limit_dead_letters() {
        let mut s = QuorumState::new(Config {
            delivery_limit: Some(1),
            ..Config::default()
        });
        enqueue(&mut s, "a");
        let id = checkout_head(&mut s);
        assert!(s.apply(Command::Return { ids: vec![id] }).is_empty());
        let id = checkout_head(&mut s);
        let effects = s.apply(Command::Return { ids: vec![id] });
        assert!(matches!(
            effects.as_slice(),
            [Effect::Died(e, Reason::DeliveryLimit)] if e.delivery_count == 2
        ));
        assert_eq!(s.ready_len(), 0);
    }

    #[test]
    fn settle_and_discard_only_touch_checked_out_messages() {
        let mut s = QuorumState::new(Config::default());
        enqueue(&mut s, "a");
        enqueue(&mut s, "b");
        let a = checkout_head(&mut s);
        let b_id = s.head().map(|e| e.id).expect("b");
        assert!(s.apply(Command::Settle { ids: vec![b_id] }).is_empty());
        assert!(matches!(
            s.apply(Command::Discard { ids: vec![a] }).as_slice(),
            [Effect::Died(_, Reason::Rejected)]
        ));
        assert!(s.apply(Command::Settle { ids: vec![a] }).is_empty());
        assert_eq!(bodies(&s), ["b"]);
    }

    #[test]
    fn at_least_once_holds_dead_letters_until_they_were_taken() {
        let mut s = QuorumState::new(Config {
            at_least_once: true,
            ..Config::default()
        });
        enqueue(&mut s, "a");
        let id = checkout_head(&mut s);
        assert!(matches!(
            s.apply(Command::Discard { ids: vec![id] }).as_slice(),
            [Effect::DeadLetterHeld(_, Reason::Rejected)]
        ));
        assert_eq!((s.ready_len(), s.held().count()), (0, 1));
        assert!(matches!(
            s.apply(Command::DeadLettered { ids: vec![id] }).as_slice(),
            [Effect::Removed(e)] if e.id == id
        ));
        assert_eq!(s.held().count(), 0);
    }

    #[test]
    fn drop_head_keeps_the_newest() {
        let mut s = QuorumState::new(Config {
            max_length: Some(2),
            ..Config::default()
        });
        enqueue(&mut s, "a");
        enqueue(&mut s, "b");
        let dropped = enqueue(&mut s, "c");
        assert!(
            matches!(dropped.as_slice(), [Effect::Died(e, Reason::MaxLen)] if &e.message.message().body[..] == b"a")
        );
        assert_eq!(bodies(&s), ["b", "c"]);
    }

    #[test]
    fn reject_publish_blocks_past_the_limit_until_below_80_percent() {
        let mut s = QuorumState::new(Config {
            max_length: Some(5),
            reject_publish: true,
            ..Config::default()
        });
        for body in ["1", "2", "3", "4", "5"] {
            enqueue(&mut s, body);
        }
        assert!(!s.is_blocked(), "at the limit, not over it");
        enqueue(&mut s, "6");
        assert!(s.is_blocked());
        // Low watermark: trunc(5 * 0.8) = 4; blocked until fewer than 4 are ready.
        for expect_blocked in [true, true, false] {
            let id = s.head().map(|e| e.id).expect("head");
            let _ = s.apply(Command::CheckoutSettled { id });
            assert_eq!(s.is_blocked(), expect_blocked, "{} ready", s.ready_len());
        }
        assert_eq!(s.ready_len(), 3);
    }

    #[test]
    fn a_paged_out_message_costs_48_bytes_in_the_queue() {
        // A deep queue holds a million of these: the bookkeeping per paged message.
        assert_eq!(std::mem::size_of::<Body>(), 16);
        assert!(std::mem::size_of::<Entry>() <= 48);
        let body: Body = msg("abc").into();
        assert!(!body.is_paged());
        let paged = Body::OnDisk {
            journal_id: MessageId(7),
            len: 1024,
        };
        assert!(paged.is_paged());
        assert_eq!(paged.size(), 1024);
        let stub = paged.message();
        assert_eq!(stub.persist_id.get(), Some(MessageId(7)));
        assert!(stub.is_paged() && stub.body_size() == 1024);
    }

    #[test]
    fn ttl_expires_at_the_head_only() {
        let mut s = QuorumState::new(Config::default());
        let _ = s.apply(Command::Enqueue {
            message: msg("long").into(),
            expiration_ms: Some(1000),
            now: 0,
        });
        let _ = s.apply(Command::Enqueue {
            message: msg("short").into(),
            expiration_ms: Some(10),
            now: 0,
        });
        assert!(s.apply(Command::Expire { now: 500 }).is_empty());
        assert_eq!(s.ready_len(), 2, "the short one waits behind the long one");
        let gone = s.apply(Command::Expire { now: 1000 });
        assert_eq!(gone.len(), 2);
        assert_eq!(s.ready_bytes(), 0);
    }

    #[test]
    fn replaying_the_same_commands_gives_the_same_state() {
        let m = msg("x");
        let log = vec![
            Command::Enqueue {
                message: m.clone().into(),
                expiration_ms: None,
                now: 1,
            },
            Command::Enqueue {
                message: m.into(),
                expiration_ms: Some(5),
                now: 2,
            },
            Command::Checkout { id: 1 },
            Command::Return { ids: vec![1] },
            Command::Expire { now: 100 },
        ];
        let run = |log: &[Command]| {
            let mut s = QuorumState::new(Config::default());
            let n: usize = log.iter().map(|c| s.apply(c.clone()).len()).sum();
            (
                n,
                s.ready
                    .iter()
                    .map(|e| (e.id, e.delivery_count))
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(run(&log), run(&log));
        assert_eq!(run(&log), (1, vec![(1, 1)]));
    }
}
