//! The `x-delayed-message` exchange type (the interface of RabbitMQ's community plugin
//! rabbitmq-delayed-message-exchange): a message with an `x-delay` header of N > 0
//! milliseconds is held by the exchange and routed N ms later, as the exchange's
//! `x-delayed-type` argument's type routes; without the header (or with N <= 0) it is routed
//! at once. As with the plugin, `mandatory` is not honoured for held messages (they are never
//! returned) and the `x-delay` header stays on the delivered message.
//!
//! Cost: held messages sit in one ordered map per exchange (due time, then arrival); one
//! task per exchange sleeps until the earliest due time. No timer per message: a million
//! pending delays are a million map entries and still one task.
//!
//! Restarts: the journaled copy of a held message carries its absolute due time (wall clock,
//! [`DUE_AT`]), so after a restart it is routed when it was due, not a whole delay later; one
//! already due by then is routed at once, in due order.

use super::ExchangeKind;
use crate::ids::DurableQueueId;
use crate::message::Message;
use crate::store::Store;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use warren_protocol::{FieldTable, FieldValue};

/// The exchange type's name.
pub const TYPE_NAME: &str = "x-delayed-message";
/// The exchange argument naming how held messages are routed.
pub const X_DELAYED_TYPE: &str = "x-delayed-type";
/// The message header: milliseconds to hold the message.
pub const X_DELAY: &str = "x-delay";

/// The header on the journaled copy of a held message: when it is due, in wall-clock
/// milliseconds since the Unix epoch. Stripped before the message is routed.
pub const DUE_AT: &str = "x-delayed-due-at";

/// Held persistent messages of a durable delayed exchange are journaled as if in a queue of
/// this name (a prefix no client may declare): the metadata store gives it a journal id, and a
/// restart gives its messages back to the exchange instead of to a queue.
pub const HELD_QUEUE_PREFIX: &str = "amq.delayed-message/";

/// The journal's name for the held messages of delayed exchange `exchange`.
pub fn held_queue_name(exchange: &str) -> String {
    format!("{HELD_QUEUE_PREFIX}{exchange}")
}

/// The routing kind an `x-delayed-type` argument names, if it names a usable one.
pub fn routing_kind(arguments: &FieldTable) -> Option<ExchangeKind> {
    let name = arguments.get(X_DELAYED_TYPE)?.as_str()?;
    ExchangeKind::from_name(name).filter(|k| *k != ExchangeKind::DelayedMessage)
}

/// Why a delayed exchange's declare is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum DelayedTypeError {
    /// 406 with the plugin's text.
    Invalid(&'static str),
    /// `x-delayed-type` names no exchange type (503, as RabbitMQ's `check_type`).
    UnknownType(String),
}

/// The plugin's checks of `x-delayed-type` (rabbit_exchange_type_delayed_message:validate/1).
pub fn validate(arguments: &FieldTable) -> Result<(), DelayedTypeError> {
    match arguments.get(X_DELAYED_TYPE).and_then(|v| v.as_str()) {
        Some(TYPE_NAME) => Err(DelayedTypeError::Invalid(
            "Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'",
        )),
        Some(name) if ExchangeKind::from_name(name).is_some() => Ok(()),
        Some(name) => Err(DelayedTypeError::UnknownType(name.to_string())),
        None => Err(DelayedTypeError::Invalid(
            "Invalid argument, 'x-delayed-type' must be an existing exchange type",
        )),
    }
}

/// How long a message asks to be held: its `x-delay` header when that is a positive integer.
pub fn delay_of(message: &Message) -> Option<Duration> {
    let headers = message.properties.headers.as_ref()?;
    let ms = match headers.get(X_DELAY)? {
        FieldValue::LongStr(text) => std::str::from_utf8(text).ok()?.trim().parse::<i64>().ok()?,
        v => v.as_i64()?,
    };
    u64::try_from(ms)
        .ok()
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

/// When a journaled held message is due (wall-clock ms), from its [`DUE_AT`] header; `None`
/// for one journaled before the header existed.
pub fn due_at_of(message: &Message) -> Option<u64> {
    let headers = message.properties.headers.as_ref()?;
    u64::try_from(headers.get(DUE_AT)?.as_i64()?).ok()
}

/// The messages one delayed exchange holds, and the wake-up of its timer task.
#[derive(Default)]
pub struct Delayed {
    held: Mutex<Held>,
    /// The timer task sleeps on this; woken by a new earliest message or by close.
    wake: tokio::sync::Notify,
    /// The timer task was started.
    started: AtomicBool,
    /// The exchange was deleted: the task ends and held messages are dropped.
    closed: AtomicBool,
    /// Durable exchanges: the store and the journal id its held persistent messages go under.
    journal: OnceLock<(Arc<Store>, DurableQueueId)>,
}

#[derive(Default)]
struct Held {
    /// (due, arrival) → message: earliest first, ties in arrival order.
    by_due: BTreeMap<(Instant, u64), Arc<Message>>,
    arrivals: u64,
}

impl Delayed {
    /// Journals this (durable) exchange's held persistent messages under `id`.
    pub fn attach_journal(&self, store: Arc<Store>, id: DurableQueueId) {
        let _ = self.journal.set((store, id));
    }

    /// Writes a persistent message down before it is held (durable exchanges only), as a copy
    /// carrying its due time `due_ms` (wall clock): returns the message to hold (that copy) and
    /// the journal position its confirm waits for.
    pub fn journal(
        &self,
        message: Arc<Message>,
        due_ms: u64,
    ) -> (Arc<Message>, Option<crate::ids::JournalSeq>) {
        let Some((store, id)) = self
            .journal
            .get()
            .filter(|_| message.properties.is_persistent())
        else {
            return (message, None);
        };
        let mut properties = warren_protocol::BasicProperties::clone(&message.properties);
        let due_ms = i64::try_from(due_ms).unwrap_or(i64::MAX);
        properties
            .headers
            .get_or_insert_with(FieldTable::new)
            .insert(DUE_AT.into(), FieldValue::I64(due_ms));
        let copy = Message::new(
            message.exchange().clone(),
            message.routing_key().clone(),
            properties,
            message.body.clone(),
        );
        let seq = store.publish(&copy, vec![*id]);
        (Arc::new(copy), Some(seq))
    }

    /// A due message is routed as a new message (the journal gives it a new id for its
    /// queues), without the [`DUE_AT`] header of its journaled copy; the held copy's record
    /// is settled once that is done, by [`Delayed::settle`].
    pub fn routable_copy(message: &Arc<Message>) -> Arc<Message> {
        if message.persist_id.get().is_none() {
            return message.clone();
        }
        let mut properties = warren_protocol::BasicProperties::clone(&message.properties);
        if let Some(headers) = properties.headers.as_mut() {
            headers.remove(DUE_AT);
        }
        Arc::new(Message::new(
            message.exchange().clone(),
            message.routing_key().clone(),
            properties,
            message.body.clone(),
        ))
    }

    /// The held copy of `message` left the exchange: its journal record goes.
    pub fn settle(&self, message: &Message) {
        if let (Some((store, id)), Some(message_id)) =
            (self.journal.get(), message.persist_id.get())
        {
            store.settle(message_id, *id);
        }
    }

    /// Whether the timer task is yet to be started (true once: the caller starts it).
    pub fn start_once(&self) -> bool {
        !self.started.swap(true, Ordering::AcqRel)
    }

    /// Holds `message` until `due`.
    pub fn hold(&self, due: Instant, message: Arc<Message>) {
        let earliest = {
            let mut held = self.held.lock();
            let arrival = held.arrivals;
            held.arrivals += 1;
            held.by_due.insert((due, arrival), message);
            held.by_due.keys().next() == Some(&(due, arrival))
        };
        if earliest {
            self.wake.notify_one();
        }
    }

    /// Removes and returns the messages due by `now`, earliest first.
    pub fn take_due(&self, now: Instant) -> Vec<Arc<Message>> {
        let mut held = self.held.lock();
        let mut due = Vec::new();
        while let Some(entry) = held.by_due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        due
    }

    /// When the next held message is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.held.lock().by_due.keys().next().map(|(due, _)| *due)
    }

    /// How many messages are held.
    pub fn len(&self) -> usize {
        self.held.lock().by_due.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The exchange is gone: its held messages go with it and the timer task ends.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.held.lock().by_due.clear();
        self.wake.notify_one();
    }

    /// Whether [`Delayed::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Waits until `until` (or forever when `None`), or until woken.
    pub async fn sleep(&self, until: Option<Instant>) {
        match until {
            Some(t) => {
                tokio::select! {
                    () = tokio::time::sleep_until(t.into()) => {}
                    () = self.wake.notified() => {}
                }
            }
            None => self.wake.notified().await,
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
            "k".into(),
            BasicProperties::default(),
            Bytes::from_static(body.as_bytes()),
        ))
    }

    #[test]
    fn messages_come_out_in_due_order_then_arrival_order() {
        let d = Delayed::default();
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        d.hold(at(30), msg("c"));
        d.hold(at(10), msg("a"));
        d.hold(at(10), msg("b"));
        assert!(d.start_once(), "the first caller starts the task");
        assert!(!d.start_once());
        assert_eq!(d.next_due(), Some(at(10)));
        assert!(d.take_due(at(5)).is_empty());
        let bodies = |v: Vec<Arc<Message>>| v.iter().map(|m| m.body.to_bytes()).collect::<Vec<_>>();
        assert_eq!(bodies(d.take_due(at(10))), vec!["a", "b"]);
        assert_eq!(bodies(d.take_due(at(40))), vec!["c"]);
        assert!(d.is_empty());
    }

    #[test]
    fn the_plugin_refuses_a_missing_or_recursive_type() {
        let mut args = FieldTable::new();
        assert!(
            matches!(validate(&args), Err(DelayedTypeError::Invalid(t)) if t.contains("must be an existing exchange type"))
        );
        args.insert(
            X_DELAYED_TYPE.into(),
            FieldValue::LongStr(Bytes::from_static(b"nope")),
        );
        assert_eq!(
            validate(&args),
            Err(DelayedTypeError::UnknownType("nope".into()))
        );
        args.insert(
            X_DELAYED_TYPE.into(),
            FieldValue::LongStr(Bytes::from_static(b"topic")),
        );
        assert_eq!(validate(&args), Ok(()));
        assert_eq!(routing_kind(&args), Some(ExchangeKind::Topic));
    }
}
