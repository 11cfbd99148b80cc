//! Length limits: `x-max-length` (ready messages) and `x-max-length-bytes` (ready body bytes),
//! with `x-overflow` deciding what gives (RabbitMQ 3.10, `rabbit_amqqueue_process`):
//!
//! - `drop-head` (default): the message is enqueued (or delivered straight away when a consumer
//!   can take it), then the oldest ready messages are dropped until the queue fits again,
//!   dead-lettered with reason `maxlen` when the queue has a dead-letter exchange;
//! - `reject-publish`: a message that would not fit is refused; a publisher in confirm mode gets
//!   basic.nack, others lose it silently (no basic.return, even when mandatory);
//! - `reject-publish-dlx`: the same, and the refused message is dead-lettered (`maxlen`).
//!
//! Unacknowledged deliveries do not count, as in RabbitMQ.

use super::args::Overflow;
use super::dead_letter::{DeadLetterReason, DeadLetters};
use super::{Queue, QueueState};
use crate::message::Message;

/// Room held for publishes admitted but not yet enqueued (the journal write happens between
/// the two): a reject-publish queue counts them as if they were ready.
#[derive(Default)]
pub(super) struct Reserved {
    messages: u64,
    bytes: u64,
}

impl Reserved {
    pub(super) fn add(&mut self, message: &Message) {
        self.messages += 1;
        self.bytes += message.body_size() as u64;
    }

    pub(super) fn remove(&mut self, message: &Message) {
        self.messages = self.messages.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(message.body_size() as u64);
    }
}

impl Queue {
    /// Whether this queue refuses `message` because it would not fit (reject-publish modes).
    pub(super) fn refuses(&self, st: &QueueState, message: &Message) -> bool {
        let args = self.args();
        if args.overflow == Overflow::DropHead {
            return false;
        }
        let too_long = args
            .max_length
            .is_some_and(|max| st.ready.len() as u64 + st.reserved.messages + 1 > max);
        let too_big = args.max_length_bytes.is_some_and(|max| {
            st.ready.bytes() + st.reserved.bytes + message.body_size() as u64 > max
        });
        too_long || too_big
    }

    /// Drops ready messages from the head while the queue is over a limit (drop-head).
    pub(super) fn drop_over_limit(&self, st: &mut QueueState, dead: &mut DeadLetters) {
        let args = self.args();
        if args.overflow != Overflow::DropHead {
            return;
        }
        let over = |st: &QueueState| {
            args.max_length
                .is_some_and(|max| st.ready.len() as u64 > max)
                || args
                    .max_length_bytes
                    .is_some_and(|max| st.ready.bytes() > max)
        };
        while over(st) {
            let Some(m) = st.ready.pop_front() else {
                return;
            };
            self.discard(m, DeadLetterReason::MaxLen, dead);
        }
    }

    /// A publish this queue refused: dead-lettered with reason `maxlen` under
    /// reject-publish-dlx. It was refused before the journal saw it, so there is nothing to
    /// settle.
    pub(super) fn refuse(&self, message: &Message, dead: &mut DeadLetters) {
        if self.args().overflow == Overflow::RejectPublishDlx {
            if let Some(letter) = self.dead_letter_of(message, DeadLetterReason::MaxLen) {
                dead.push(letter);
            }
        }
    }
}
