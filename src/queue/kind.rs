//! The queue-type seam. Channel and vhost code talk to every queue through the same [`Queue`]
//! methods and never branch on the type. [`Queue`] (mod.rs) holds what every type shares: name,
//! declared options, parsed shared x-arguments, counters, the deleted flag, the owner (vhost)
//! and the journal attachment. A type's own state sits in the private `Backend` enum inside
//! `Queue` — today one variant, `Backend::Classic(ClassicQueue)` (classic.rs) — and each
//! operation below is a `match` on it, so a new type is a new variant, a new file and new
//! match arms, with nothing to change in channel/ or vhost/:
//!
//! | operation | `Queue` method | classic queue (classic.rs) |
//! |---|---|---|
//! | declare-time validation | [`Queue::try_new`]: shared args (`QueueArgs::try_parse_shared`), then [`QueueType::of_declare`], then [`QueueType::validate_arguments`] | refuses quorum/stream-only args (`NotForClassicQueues`) |
//! | redeclare equivalence | [`QueueType::compared_arguments`] (used by vhost.rs) | `classic::COMPARED_ARGUMENTS` |
//! | admission | [`Queue::admit`] | x-overflow reject-publish, with reserved room |
//! | enqueue | [`Queue::enqueue`] (and [`Queue::push`] = admit + enqueue) | ready list, TTL, drop-head, dispatch |
//! | checkout / deliver | [`Queue::dispatch`], [`Queue::get`], [`Queue::add_consumer`], [`Queue::remove_consumer`] | consumers with credit (`ConsumerSink`) |
//! | settle | [`Queue::settle`] (ack), [`Queue::reject`] (nack/reject), [`Queue::requeue`] | journal settle, dead-lettering, redelivery |
//! | purge / delete | [`Queue::purge`], [`Queue::mark_deleted`] | journal settles, consumers cancelled |
//! | recovery | [`Queue::push_recovered`] | from the shared message journal |
//! | stats | [`Queue::stats`], [`Queue::message_count`], [`Queue::consumer_count`] | counters (shared) and gauges (`ClassicQueue::gauges`) |
//! | x-expires | [`Queue::touch`], the timer (timer.rs) | `last_used` under the classic lock |
//!
//! The classic queue's building blocks live beside it as sibling modules, each an `impl Queue`
//! block or a plain type over the classic state they are passed: `priority` (ready list),
//! `consumers`, `ttl`, `limits`, `dead_letter`, `timer`. Shared helpers every type will use stay
//! on `Queue`: `remove_for_good` (journal settle), `journal_delivery`, `count_delivery`,
//! `publish_dead_letters`, page-in/out of journaled bodies.
//!
//! Quorum queues (issue 15) are the second variant: `Backend::Quorum(QuorumQueue)`
//! (quorum/mod.rs), a pure state machine over a command log (quorum/state.rs) with delivery
//! counts and limits. Streams are the third: `Backend::Stream(StreamQueue)` (stream/mod.rs), an
//! append-only segmented log with per-consumer offsets, whose "settle" is a credit/offset
//! update rather than a removal; a stream writes its own log, so a publish to it goes through
//! [`Queue::enqueue_logged`], which hands back the fsync its confirm waits for.
//!
//! Why an enum and not a `dyn` trait: the set of types is closed and known to this crate; an
//! enum match is a predictable branch the compiler can inline through (with one variant it
//! costs nothing), where a trait object costs an indirect call per message on the publish and
//! deliver paths, hides the concrete type from the optimiser, and needs `Arc<dyn …>` casts
//! wherever a queue is handed around (bindings, consumers, the outbound buffer's drain
//! waiters). A trait would pay off only for types defined outside the crate, which Warren does
//! not want.

use super::args::{invalid, unacceptable, ArgError, DeclaredFlags, X_QUEUE_TYPE};
use warren_protocol::{FieldTable, FieldValue};

#[allow(unused_imports)] // for the links in the module doc
use super::Queue;

/// A queue's type, fixed when it is declared (`x-queue-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueueType {
    /// RabbitMQ's classic queue.
    Classic,
    /// RabbitMQ's quorum queue (single node: quorum/mod.rs).
    Quorum,
    /// RabbitMQ's stream (an append-only log: stream/mod.rs).
    Stream,
}

impl QueueType {
    /// The name `x-queue-type` and the management API use.
    pub fn name(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
            QueueType::Stream => "stream",
        }
    }

    /// The type a new queue's `x-queue-type` asks for (absent: classic, as in RabbitMQ).
    /// Quorum queues must be durable, non-exclusive and not auto-delete, checked with
    /// RabbitMQ's texts in RabbitMQ's order (auto-delete, exclusive, durable:
    /// `rabbit_quorum_queue:declare/2`; exclusive + auto-delete gets 'auto-delete' from 3.10.8
    /// with pika). Streams (`stream`) follow the same rules with the same texts.
    pub fn of_declare(arguments: &FieldTable, flags: DeclaredFlags) -> Result<Self, ArgError> {
        let name = match arguments.get(X_QUEUE_TYPE) {
            None => return Ok(QueueType::Classic),
            Some(FieldValue::LongStr(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(other) => return Err(invalid(X_QUEUE_TYPE, unacceptable(other))),
        };
        match name.as_str() {
            "classic" => Ok(QueueType::Classic),
            "quorum" | "stream" => {
                if flags.auto_delete {
                    Err(ArgError::InvalidProperty("auto-delete"))
                } else if flags.exclusive {
                    Err(ArgError::InvalidProperty("exclusive-owner"))
                } else if !flags.durable {
                    Err(ArgError::InvalidProperty("non-durable"))
                } else if name == "quorum" {
                    Ok(QueueType::Quorum)
                } else {
                    Ok(QueueType::Stream)
                }
            }
            _ => Err(invalid(
                X_QUEUE_TYPE,
                format!("\"unsupported queue type '{name}'\""),
            )),
        }
    }

    /// The x-arguments a redeclare must repeat exactly (others may differ freely).
    pub fn compared_arguments(self) -> &'static [&'static str] {
        match self {
            QueueType::Classic => super::classic::COMPARED_ARGUMENTS,
            QueueType::Quorum => super::quorum::COMPARED_ARGUMENTS,
            QueueType::Stream => super::stream::COMPARED_ARGUMENTS,
        }
    }

    /// Whether deliveries carry an `x-delivery-count` header once a message was returned.
    /// RabbitMQ adds it for quorum queues only; classic queues count returns too (the journal
    /// keeps the count across restarts, for delivery limits) but never show it to clients.
    pub fn shows_delivery_count(self) -> bool {
        match self {
            QueueType::Classic => false,
            QueueType::Quorum => true,
            QueueType::Stream => false,
        }
    }

    /// The type's own checks of a new queue's arguments, after the shared ones
    /// (`args::QueueArgs::try_parse_shared`) and the type itself were accepted.
    pub fn validate_arguments(self, arguments: &FieldTable) -> Result<(), ArgError> {
        match self {
            QueueType::Classic => super::classic::validate_arguments(arguments),
            QueueType::Quorum => super::quorum::validate_arguments(arguments),
            QueueType::Stream => super::stream::validate_arguments(arguments),
        }
    }
}

/// The type an `x-queue-type` value names, as a string (`None` when it is not a string); an
/// absent argument is `classic`, as in RabbitMQ. Used to compare redeclares; a new queue's
/// value is validated by [`QueueType::of_declare`].
pub fn requested_type(arguments: &FieldTable) -> Option<&str> {
    arguments
        .get(X_QUEUE_TYPE)
        .map_or(Some(QueueType::Classic.name()), FieldValue::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_protocol::ShortStr;

    const DURABLE: DeclaredFlags = DeclaredFlags {
        durable: true,
        auto_delete: false,
        exclusive: false,
    };

    fn table(pairs: &[(&'static str, FieldValue)]) -> FieldTable {
        let mut t = FieldTable::new();
        for (k, v) in pairs {
            t.insert(ShortStr::from_static(k), v.clone());
        }
        t
    }

    #[test]
    fn x_queue_type_picks_the_type() {
        assert_eq!(
            QueueType::of_declare(&FieldTable::new(), DURABLE),
            Ok(QueueType::Classic)
        );
        let classic = table(&[(X_QUEUE_TYPE, "classic".into())]);
        assert_eq!(
            QueueType::of_declare(&classic, DURABLE),
            Ok(QueueType::Classic)
        );
        let quorum = table(&[(X_QUEUE_TYPE, "quorum".into())]);
        let exclusive = DeclaredFlags {
            exclusive: true,
            ..DURABLE
        };
        assert_eq!(
            QueueType::of_declare(&quorum, exclusive),
            Err(ArgError::InvalidProperty("exclusive-owner"))
        );
        assert_eq!(
            QueueType::of_declare(&quorum, DURABLE),
            Ok(QueueType::Quorum)
        );
        let stream = table(&[(X_QUEUE_TYPE, "stream".into())]);
        assert_eq!(
            QueueType::of_declare(&stream, DURABLE),
            Ok(QueueType::Stream)
        );
        let transient = DeclaredFlags {
            durable: false,
            ..DURABLE
        };
        assert_eq!(
            QueueType::of_declare(&stream, transient),
            Err(ArgError::InvalidProperty("non-durable"))
        );
    }

    #[test]
    fn the_classic_type_checks_its_own_arguments() {
        let limit = table(&[("x-delivery-limit", FieldValue::I32(3))]);
        assert_eq!(
            QueueType::Classic.validate_arguments(&limit),
            Err(ArgError::NotForClassicQueues("x-delivery-limit"))
        );
        let ttl = table(&[("x-message-ttl", FieldValue::I32(3))]);
        assert_eq!(QueueType::Classic.validate_arguments(&ttl), Ok(()));
        let compared = QueueType::Classic.compared_arguments();
        assert!(compared.contains(&"x-max-length"));
        assert!(!compared.contains(&"x-delivery-limit"));
    }
}
