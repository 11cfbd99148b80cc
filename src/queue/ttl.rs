//! Message TTL: `x-message-ttl` per queue and the `expiration` property per message (the
//! smaller wins), fixed when the message enters the queue and kept across requeues.
//!
//! Like RabbitMQ, only the head of the queue expires: whenever a message is about to be
//! delivered or fetched, expired messages in front of it are dropped (or dead-lettered with
//! reason `expired`), and the queue's timer (timer.rs) wakes at the head's expiry so they go
//! even with no consumer. A message behind a longer-lived one waits for it (checked with pika
//! against RabbitMQ 3.10.8: a 50 ms message behind a 100 s one is still counted after 150 ms).
//!
//! TTL 0: a message is delivered only if a consumer takes it the moment it is published,
//! otherwise it expires at once (RabbitMQ: "expired unless it can be delivered immediately").
//! The publish path compares expiry times strictly against the instant the message was
//! pushed, so a TTL-0 message survives exactly until that first dispatch.

use super::args::parse_expiration;
use super::dead_letter::{DeadLetterReason, DeadLetters};
use super::{Queue, QueueState, QueuedMessage};
use crate::message::Message;
use std::time::Duration;
// The tokio clock (the same as std's outside tests), so timer tests can run on paused time.
use tokio::time::Instant;

/// When a message pushed at `now` expires, if it does.
pub(super) fn expiry_of(
    queue_ttl: Option<u64>,
    message: &Message,
    now: Instant,
) -> Option<Instant> {
    let message_ttl = message
        .properties
        .expiration
        .as_ref()
        // Validated at publish; a value that still fails to parse is ignored, not fatal.
        .and_then(|e| parse_expiration(e).ok());
    let ttl = match (queue_ttl, message_ttl) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    now.checked_add(Duration::from_millis(ttl))
}

/// Whether `m` expired before `now` (strictly: see the module docs on TTL 0).
fn expired(m: &QueuedMessage, now: Instant) -> bool {
    m.expires_at.is_some_and(|at| at < now)
}

impl Queue {
    /// Drops (or dead-letters) the expired messages at the head of the queue.
    pub(super) fn expire_head(&self, st: &mut QueueState, now: Instant, dead: &mut DeadLetters) {
        if !st.has_expiring {
            return;
        }
        while st.ready.front().is_some_and(|m| expired(m, now)) {
            if let Some(m) = st.ready.pop_front() {
                self.discard(m, DeadLetterReason::Expired, dead);
            }
        }
    }

    /// The clock for expiry checks, read only when some message can expire.
    pub(super) fn expiry_clock(st: &QueueState) -> Option<Instant> {
        st.has_expiring.then(Instant::now)
    }

    /// When the head of the queue expires, if it does.
    pub(super) fn head_expiry(st: &QueueState) -> Option<Instant> {
        if !st.has_expiring {
            return None;
        }
        st.ready.front().and_then(|m| m.expires_at)
    }
}
