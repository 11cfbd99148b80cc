//! Dead-lettering: messages rejected without requeue (`rejected`), expired (`expired`) or pushed
//! out by a length limit (`maxlen`) are republished to the queue's `x-dead-letter-exchange`,
//! with `x-dead-letter-routing-key` if set, as RabbitMQ 3.10 does (`rabbit_dead_letter`).
//!
//! The republished message is a new `Arc<Message>` (the shared one is immutable): its headers
//! gain an `x-death` entry (count, reason, queue, time, exchange, routing-keys, and
//! original-expiration when the message had an `expiration`, which is removed) and, on its first
//! death, `x-first-death-reason/queue/exchange`. Dying again in the same queue for the same
//! reason increments that entry's count and moves it to the front.
//!
//! A queue never routes: it collects its dead letters while its lock is held and hands them to
//! its [`QueueOwner`] (the vhost) after releasing the lock, so routing takes the vhost and
//! exchange locks in their documented order and a dead letter pushed back into the same queue
//! cannot deadlock.

use super::{Backend, Queue, QueuedMessage};
use crate::message::Message;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use warren_protocol::{BasicProperties, FieldTable, FieldValue, ShortStr};

/// Why a message was dead-lettered (the `reason` in `x-death`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// basic.reject / basic.nack with requeue=false.
    Rejected,
    /// Its TTL passed.
    Expired,
    /// A length limit dropped or refused it.
    MaxLen,
    /// A quorum queue's `x-delivery-limit` was passed.
    DeliveryLimit,
}

impl DeadLetterReason {
    /// The reason as `x-death` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::Rejected => "rejected",
            DeadLetterReason::Expired => "expired",
            DeadLetterReason::MaxLen => "maxlen",
            DeadLetterReason::DeliveryLimit => "delivery_limit",
        }
    }
}

/// A message on its way to a dead-letter exchange.
pub struct DeadLetter {
    /// The republished message: `exchange` is the dead-letter exchange, `routing_key` the key to
    /// route with, headers carry `x-death`.
    pub message: Arc<Message>,
    /// Why it died (cycle detection ignores cycles that contain a rejection).
    pub reason: DeadLetterReason,
}

/// Dead letters collected under a queue's lock, published once it is released.
#[derive(Default)]
pub(crate) struct DeadLetters {
    letters: Vec<DeadLetter>,
    /// Messages whose body is paged out (a dead-lettering policy came after they were paged):
    /// their dead letter is made once the body is read back, with no lock held (disk I/O never
    /// happens under the queue lock), and they are settled only then, so that the journal
    /// still has the record to read.
    paged: Vec<(QueuedMessage, DeadLetterReason)>,
}

impl DeadLetters {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push(&mut self, letter: DeadLetter) {
        self.letters.push(letter);
    }
}

/// What a queue needs from the vhost that holds it, without depending on it: routing of its dead
/// letters and its own deletion when `x-expires` runs out. Called with no queue lock held.
pub trait QueueOwner: Send + Sync {
    /// Routes each dead letter through its exchange (`message.exchange`; a missing exchange
    /// drops it, as RabbitMQ does) and pushes it to the queues reached, except those
    /// [`is_cycle`] excludes.
    fn publish_dead_letters(&self, letters: Vec<DeadLetter>);
    /// At-least-once dead-lettering (quorum queues): publishes one dead letter and says whether
    /// it reached a queue and no queue refused it; when not, the source keeps it and retries.
    fn publish_dead_letter_taken(&self, letter: DeadLetter) -> bool;
    /// `queue` was unused for its whole `x-expires` period: delete it.
    fn expire_queue(&self, queue: &Arc<Queue>);
}

impl Queue {
    /// A message leaves the queue for good because it expired or overflowed: it is dead-lettered
    /// when the queue has a dead-letter exchange, and always settled here.
    pub(super) fn discard(
        &self,
        m: QueuedMessage,
        reason: DeadLetterReason,
        dead: &mut DeadLetters,
    ) {
        if m.message.is_paged() && self.args().dead_letter_exchange.is_some() {
            dead.paged.push((m, reason));
            return;
        }
        if let Some(letter) = self.dead_letter_of(&m.message, reason) {
            dead.push(letter);
        }
        self.remove_for_good(std::iter::once(m));
    }

    /// The dead letter for `message`, if this queue has a dead-letter exchange.
    pub(super) fn dead_letter_of(
        &self,
        message: &Message,
        reason: DeadLetterReason,
    ) -> Option<DeadLetter> {
        let args = self.args();
        let dlx = args.dead_letter_exchange.as_ref()?;
        let message = make_dead_letter(
            message,
            reason,
            &self.name,
            dlx,
            args.dead_letter_routing_key.as_ref(),
            unix_seconds(),
        );
        Some(DeadLetter {
            message: Arc::new(message),
            reason,
        })
    }

    /// Hands collected dead letters to the owner, reading paged-out bodies back first; call
    /// with no lock held.
    pub(super) fn publish_dead_letters(&self, dead: DeadLetters) {
        let DeadLetters { mut letters, paged } = dead;
        for (mut m, reason) in paged {
            // Not found in the journal (logged by page_in): it goes out as the stub it is.
            self.page_in(&mut m);
            letters.extend(self.dead_letter_of(&m.message, reason));
            self.remove_for_good(std::iter::once(m));
        }
        if letters.is_empty() {
            return;
        }
        if let Some(owner) = self.owner.as_ref().and_then(|o| o.upgrade()) {
            owner.publish_dead_letters(letters);
        }
    }

    /// basic.reject / basic.nack without requeue: dead-letter (reason `rejected`) or drop.
    pub fn reject(&self, messages: impl IntoIterator<Item = QueuedMessage>) {
        match &self.backend {
            Backend::Classic(_) => self.reject_classic(messages),
            Backend::Quorum(qq) => qq.reject(self, messages),
            // The channel refuses nack/reject on a stream (540); nothing to drop here.
            Backend::Stream(_) => {
                let n = messages.into_iter().count() as u64;
                self.settled_unacked(n);
            }
        }
    }

    /// A classic queue's reject: the messages are already off its lists.
    fn reject_classic(&self, messages: impl IntoIterator<Item = QueuedMessage>) {
        let mut n = 0;
        let messages = messages.into_iter().inspect(|_| n += 1);
        if self.args().dead_letter_exchange.is_none() || self.is_deleted() {
            self.remove_for_good(messages);
            self.settled_unacked(n);
            return;
        }
        let mut dead = DeadLetters::new();
        for m in messages {
            self.discard(m, DeadLetterReason::Rejected, &mut dead);
        }
        self.settled_unacked(n);
        self.publish_dead_letters(dead);
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

const X_DEATH: &str = "x-death";

/// The message republished to the dead-letter exchange `dlx` after dying in `queue`
/// (`rabbit_dead_letter:make_msg`).
pub fn make_dead_letter(
    message: &Message,
    reason: DeadLetterReason,
    queue: &ShortStr,
    dlx: &ShortStr,
    dlrk: Option<&ShortStr>,
    now: u64,
) -> Message {
    let mut headers = message.properties.headers.clone().unwrap_or_default();
    // The first routing key is the publish's own; the others came from CC/BCC headers.
    let mut routing_keys = vec![longstr(message.routing_key())];
    for key in ["CC", "BCC"] {
        if let Some(FieldValue::Array(keys)) = headers.get(key) {
            routing_keys.extend(
                keys.iter()
                    .filter(|k| matches!(k, FieldValue::LongStr(_)))
                    .cloned(),
            );
        }
    }
    let mut info = vec![
        ("reason", longstr(reason.as_str())),
        ("queue", longstr(queue)),
        ("time", FieldValue::Timestamp(now)),
        ("exchange", longstr(message.exchange())),
        ("routing-keys", FieldValue::Array(routing_keys)),
    ];
    if let Some(expiration) = &message.properties.expiration {
        info.push(("original-expiration", longstr(expiration)));
    }
    update_x_death(&mut headers, info, queue, reason, message.exchange());
    if dlrk.is_some() {
        // Routed with the dead-letter key alone: the CC keys must not apply again.
        headers.remove("CC");
    }
    let properties = BasicProperties {
        headers: Some(headers),
        expiration: None,
        ..BasicProperties::clone(&message.properties)
    };
    let routing_key = dlrk.unwrap_or(message.routing_key()).clone();
    Message::new(dlx.clone(), routing_key, properties, message.body.clone())
}

fn longstr(s: &str) -> FieldValue {
    FieldValue::from(s)
}

/// `rabbit_dead_letter:update_x_death_header`.
fn update_x_death(
    headers: &mut FieldTable,
    info: Vec<(&'static str, FieldValue)>,
    queue: &str,
    reason: DeadLetterReason,
    exchange: &str,
) {
    let entry = |count: i64, info: Vec<(&'static str, FieldValue)>| -> FieldTable {
        std::iter::once((ShortStr::from("count"), FieldValue::I64(count)))
            .chain(info.into_iter().map(|(k, v)| (ShortStr::from(k), v)))
            .collect()
    };
    let deaths = match headers.get(X_DEATH) {
        Some(FieldValue::Array(deaths)) => deaths.clone(),
        None => {
            // The first death also gets its own top-level headers (rabbitmq-server#1332).
            for (key, value) in [
                ("x-first-death-reason", reason.as_str()),
                ("x-first-death-queue", queue),
                ("x-first-death-exchange", exchange),
            ] {
                headers.insert(ShortStr::from(key), longstr(value));
            }
            headers.insert(
                ShortStr::from(X_DEATH),
                FieldValue::Array(vec![FieldValue::Table(entry(1, info))]),
            );
            return;
        }
        // Not an array (a client re-published it as something else): RabbitMQ resets it.
        Some(_) => {
            headers.insert(
                ShortStr::from(X_DEATH),
                FieldValue::Array(vec![FieldValue::Table(entry(1, info))]),
            );
            return;
        }
    };
    let (matches, others): (Vec<FieldValue>, Vec<FieldValue>) = deaths
        .into_iter()
        .partition(|d| matches!(d, FieldValue::Table(t) if is_death_of(t, queue, reason.as_str())));
    let mut updated = match matches.into_iter().next() {
        Some(FieldValue::Table(mut old)) => {
            let count = old.get("count").and_then(FieldValue::as_i64).unwrap_or(0);
            old.insert(
                ShortStr::from("count"),
                FieldValue::I64(count.saturating_add(1)),
            );
            old
        }
        _ => entry(1, info),
    };
    // RabbitMQ sorts the keys of every entry it writes into an existing array.
    updated
        .0
        .sort_by(|(a, _), (b, _)| a.as_str().cmp(b.as_str()));
    let mut deaths = vec![FieldValue::Table(updated)];
    deaths.extend(others);
    headers.insert(ShortStr::from(X_DEATH), FieldValue::Array(deaths));
}

fn is_death_of(entry: &FieldTable, queue: &str, reason: &str) -> bool {
    entry.get("queue").and_then(FieldValue::as_str) == Some(queue)
        && entry.get("reason").and_then(FieldValue::as_str) == Some(reason)
}

/// RabbitMQ's cycle detection (`rabbit_dead_letter:is_cycle`): a dead letter is not delivered
/// to `queue` when `queue` already appears in its `x-death` and no death up to and including
/// that one was a rejection, i.e. the message would circle forever with no client involved.
/// Messages dead-lettered because they were rejected are never treated as cycles.
pub fn is_cycle(letter: &DeadLetter, queue: &str) -> bool {
    if letter.reason == DeadLetterReason::Rejected {
        return false;
    }
    let Some(FieldValue::Array(deaths)) = letter
        .message
        .properties
        .headers
        .as_ref()
        .and_then(|h| h.get(X_DEATH))
    else {
        return false;
    };
    for d in deaths {
        let FieldValue::Table(t) = d else {
            return false;
        };
        if t.get("reason").and_then(FieldValue::as_str) == Some("rejected") {
            return false;
        }
        if t.get("queue").and_then(FieldValue::as_str) == Some(queue) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn published(headers: Option<FieldTable>, expiration: Option<&'static str>) -> Message {
        let properties = BasicProperties {
            headers,
            expiration: expiration.map(ShortStr::from),
            ..Default::default()
        };
        Message::new(
            ShortStr::from("ex"),
            ShortStr::from("rk"),
            properties,
            Bytes::from_static(b"x"),
        )
    }

    fn deaths(m: &Message) -> Vec<FieldTable> {
        match m.properties.headers.as_ref().and_then(|h| h.get(X_DEATH)) {
            Some(FieldValue::Array(a)) => a
                .iter()
                .map(|d| match d {
                    FieldValue::Table(t) => t.clone(),
                    other => panic!("not a table: {other:?}"),
                })
                .collect(),
            other => panic!("no x-death: {other:?}"),
        }
    }

    #[test]
    fn first_death_records_everything_and_drops_the_expiration() {
        let m = published(None, Some("60000"));
        let q = ShortStr::from("src");
        let d = make_dead_letter(
            &m,
            DeadLetterReason::Rejected,
            &q,
            &ShortStr::from("dlx"),
            None,
            7,
        );
        assert_eq!(d.exchange(), "dlx");
        assert_eq!(d.routing_key(), "rk");
        assert_eq!(d.properties.expiration, None);
        let h = d.properties.headers.as_ref().expect("headers");
        assert_eq!(
            h.get("x-first-death-reason").and_then(FieldValue::as_str),
            Some("rejected")
        );
        assert_eq!(
            h.get("x-first-death-queue").and_then(FieldValue::as_str),
            Some("src")
        );
        assert_eq!(
            h.get("x-first-death-exchange").and_then(FieldValue::as_str),
            Some("ex")
        );
        let x = &deaths(&d)[0];
        assert_eq!(x.get("count"), Some(&FieldValue::I64(1)));
        assert_eq!(x.get("time"), Some(&FieldValue::Timestamp(7)));
        assert_eq!(
            x.get("original-expiration").and_then(FieldValue::as_str),
            Some("60000")
        );
        assert_eq!(
            x.get("routing-keys"),
            Some(&FieldValue::Array(vec!["rk".into()]))
        );
    }

    #[test]
    fn same_queue_and_reason_counts_up_other_deaths_are_prepended() {
        let q1 = ShortStr::from("q1");
        let q2 = ShortStr::from("q2");
        let dlx = ShortStr::from("");
        let m = published(None, None);
        let d1 = make_dead_letter(&m, DeadLetterReason::Rejected, &q1, &dlx, None, 1);
        let d2 = make_dead_letter(&d1, DeadLetterReason::Expired, &q2, &dlx, None, 2);
        let d3 = make_dead_letter(&d2, DeadLetterReason::Rejected, &q1, &dlx, None, 3);
        let x = deaths(&d3);
        assert_eq!(x.len(), 2);
        assert_eq!(x[0].get("queue").and_then(FieldValue::as_str), Some("q1"));
        assert_eq!(x[0].get("count"), Some(&FieldValue::I64(2)));
        assert_eq!(x[1].get("queue").and_then(FieldValue::as_str), Some("q2"));
        let h = d3.properties.headers.as_ref().expect("headers");
        assert_eq!(
            h.get("x-first-death-queue").and_then(FieldValue::as_str),
            Some("q1")
        );
    }

    #[test]
    fn automatic_cycles_are_detected_but_not_through_a_rejection() {
        let q = ShortStr::from("q");
        let dlx = ShortStr::from("");
        let m = published(None, None);
        let expired = make_dead_letter(&m, DeadLetterReason::Expired, &q, &dlx, None, 1);
        let letter = DeadLetter {
            message: Arc::new(expired),
            reason: DeadLetterReason::Expired,
        };
        assert!(is_cycle(&letter, "q"));
        assert!(!is_cycle(&letter, "other"));
        let rejected = make_dead_letter(&m, DeadLetterReason::Rejected, &q, &dlx, None, 1);
        let again = make_dead_letter(
            &rejected,
            DeadLetterReason::Expired,
            &ShortStr::from("p"),
            &dlx,
            None,
            2,
        );
        let letter = DeadLetter {
            message: Arc::new(again),
            reason: DeadLetterReason::Expired,
        };
        assert!(
            !is_cycle(&letter, "q"),
            "the rejection in q breaks the cycle"
        );
        assert!(is_cycle(&letter, "p"));
    }

    #[test]
    fn a_dead_letter_routing_key_replaces_the_keys_and_drops_cc() {
        let mut h = FieldTable::new();
        h.insert(
            ShortStr::from("CC"),
            FieldValue::Array(vec!["other".into()]),
        );
        let m = published(Some(h), None);
        let d = make_dead_letter(
            &m,
            DeadLetterReason::MaxLen,
            &ShortStr::from("q"),
            &ShortStr::from("dlx"),
            Some(&ShortStr::from("k")),
            1,
        );
        assert_eq!(d.routing_key(), "k");
        let headers = d.properties.headers.as_ref().expect("headers");
        assert!(headers.get("CC").is_none());
        assert_eq!(
            deaths(&d)[0].get("routing-keys"),
            Some(&FieldValue::Array(vec!["rk".into(), "other".into()]))
        );
    }
}
