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
}

/// The type an `x-queue-type` value names, as a string (`None` when it is not a string); an
/// absent argument is `classic`, as in RabbitMQ. Used to compare redeclares; a new queue's
/// value is validated by `args::QueueArgs::try_parse`.
pub fn requested_type(arguments: &FieldTable) -> Option<&str> {
    arguments
        .get(super::args::X_QUEUE_TYPE)
        .map_or(Some(QueueType::Classic.name()), FieldValue::as_str)
}
