//! The queue-type seam. Channel and vhost code talk to every queue through the same [`Queue`]
//! methods and never branch on the type; what differs between types lives behind them:
//!
//! | operation | `Queue` method | classic queue (today) |
//! |---|---|---|
//! | declare-time validation | [`Queue::try_new`] (`args::QueueArgs::try_parse`) | the classic x-arguments |
//! | admission | [`Queue::admit`] | x-overflow reject-publish, with reserved room |
//! | enqueue | [`Queue::enqueue`] | ready list, TTL, drop-head, dispatch |
//! | checkout / deliver | [`Queue::dispatch`], [`Queue::get`], [`Queue::add_consumer`] | consumers with credit (`ConsumerSink`) |
//! | settle | [`Queue::settle`] (ack), [`Queue::reject`], [`Queue::requeue`] | journal settle, dead-lettering, redelivery |
//! | purge / delete | [`Queue::purge`], [`Queue::mark_deleted`] | journal settles, consumers cancelled |
//! | recovery | [`Queue::push_recovered`] | from the shared message journal |
//! | stats | [`Queue::stats`] | counters and gauges (`src/stats.rs`) |
//!
//! Quorum queues and streams (issue 15) come in as variants of [`QueueType`] and of a private
//! backend enum inside `Queue` (the classic state is its first variant): a quorum queue keeps its
//! own command log (enqueue/settle/return entries, replayed on recovery instead of the shared
//! journal) and counts `x-delivery-count` (only quorum queues do; RabbitMQ 4.x classic queues do
//! not); a stream keeps an append-only log and per-consumer offsets, and its "settle" is a
//! credit/offset update rather than a removal. Each `Queue` method then matches on the backend.
//!
//! Why an enum and not a `dyn` trait: the set of types is closed and known to this crate; an
//! enum match is a predictable branch the compiler can inline through, where a trait object
//! costs an indirect call per message on the publish and deliver paths, hides the concrete type
//! from the optimiser, and needs `Arc<dyn …>` casts wherever a queue is handed around (bindings,
//! consumers, the outbound buffer's drain waiters). A trait would pay off only for types defined
//! outside the crate, which Warren does not want.

use super::args::{invalid, unacceptable, ArgError, DeclaredFlags, X_QUEUE_TYPE};
use warren_protocol::{FieldTable, FieldValue};

#[allow(unused_imports)] // for the links in the module doc
use super::Queue;

/// A queue's type, fixed when it is declared (`x-queue-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueueType {
    /// RabbitMQ's classic queue: what Warren implements.
    Classic,
}

impl QueueType {
    /// The name `x-queue-type` and the management API use.
    pub fn name(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
        }
    }

    /// The type a new queue's `x-queue-type` asks for (absent: classic, as in RabbitMQ).
    /// RabbitMQ's `quorum` and `stream` are refused with a 406 rather than silently declared
    /// as classic queues, which would lose their replication and delivery-limit semantics
    /// without the client knowing. Their property checks come first, with RabbitMQ's texts, in
    /// RabbitMQ's order (exclusive, auto-delete, durable).
    pub fn of_declare(arguments: &FieldTable, flags: DeclaredFlags) -> Result<Self, ArgError> {
        let name = match arguments.get(X_QUEUE_TYPE) {
            None => return Ok(QueueType::Classic),
            Some(FieldValue::LongStr(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(other) => return Err(invalid(X_QUEUE_TYPE, unacceptable(other))),
        };
        match name.as_str() {
            "classic" => Ok(QueueType::Classic),
            "quorum" | "stream" => {
                if flags.exclusive {
                    Err(ArgError::InvalidProperty("exclusive-owner"))
                } else if flags.auto_delete {
                    Err(ArgError::InvalidProperty("auto-delete"))
                } else if !flags.durable {
                    Err(ArgError::InvalidProperty("non-durable"))
                } else {
                    Err(invalid(
                        X_QUEUE_TYPE,
                        format!(
                            "\"unsupported queue type '{name}': Warren has classic queues only\""
                        ),
                    ))
                }
            }
            _ => Err(invalid(
                X_QUEUE_TYPE,
                format!("\"unsupported queue type '{name}'\""),
            )),
        }
    }

    /// The type's own checks of a new queue's arguments, after the shared ones
    /// (`args::QueueArgs::try_parse_shared`) and the type itself were accepted.
    pub fn validate_arguments(self, arguments: &FieldTable) -> Result<(), ArgError> {
        match self {
            QueueType::Classic => super::classic::validate_arguments(arguments),
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
