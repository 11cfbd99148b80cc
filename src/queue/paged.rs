//! The tail of a FIFO ready list once bodies are paged out: paged-out messages as 24-byte
//! entries (journal id, queue position, body length) instead of a stub `Message` (an 80-byte
//! allocation) in a 40-byte ready-list slot each (issue 16: ≤ 64 B of bookkeeping per
//! paged-out message; the journal's own entry is 20 B, `store/journal/live.rs`).
//!
//! A paged-out message needs nothing else before it nears the head: its body, properties and
//! route come back from the journal record (`Queue::page_in`), which holds the whole message.
//! Only messages that carry nothing else are compacted: journaled, never delivered, no expiry
//! time (`expires_at`: TTL needs the head's deadline), and in a queue without priorities (the
//! priority picks the level when it is pushed). Any other message landing behind compacted ones
//! waits in `held`, in memory as today; both lists are in queue order, and they are merged by
//! queue position as messages move up to the list's head, so delivery order is unchanged.
//!
//! A message taken out of the tail becomes a stub again ([`Message::paged`], with an empty
//! route and no properties): the queue reads its body back before it is delivered, as it does
//! for every stub.

use super::QueuedMessage;
use crate::ids::MessageId;
use crate::message::{Message, Route};
use std::collections::VecDeque;
use std::sync::Arc;
use warren_protocol::BasicProperties;

/// A paged-out message in the tail.
#[derive(Clone, Copy, Debug)]
struct Compact {
    seq: u64,
    id: u64,
    body_len: u32,
}

/// Messages behind the first compacted one, in queue order (see the module doc).
#[derive(Default)]
pub(crate) struct PagedTail {
    paged: VecDeque<Compact>,
    /// Messages that could not be compacted, behind or between compacted ones.
    held: VecDeque<QueuedMessage>,
    /// Body bytes of the compacted messages.
    paged_bytes: u64,
    /// The route stubs made from compacted messages carry (the real one is read back with the
    /// body); one per queue, so that no counter is shared between queues.
    empty_route: Option<Arc<Route>>,
}

impl PagedTail {
    pub(crate) fn is_empty(&self) -> bool {
        self.paged.is_empty() && self.held.is_empty()
    }

    /// Compacted messages and their body bytes (`messages_paged_out` of the management API).
    pub(crate) fn paged(&self) -> (usize, u64) {
        (self.paged.len(), self.paged_bytes)
    }

    /// Whether `m` can be kept as a compact entry.
    pub(crate) fn compacts(m: &QueuedMessage) -> bool {
        m.message.is_paged()
            && m.expires_at.is_none()
            && !m.redelivered
            && m.delivery_count == 0
            && m.message.persist_id.get().is_some()
    }

    /// Appends `m` (the newest message of the queue).
    pub(crate) fn push_back(&mut self, m: QueuedMessage) {
        match m.message.persist_id.get() {
            Some(MessageId(id)) if Self::compacts(&m) => {
                let body_len = u32::try_from(m.message.body_size()).unwrap_or(u32::MAX);
                self.paged_bytes += u64::from(body_len);
                self.paged.push_back(Compact {
                    seq: m.seq,
                    id,
                    body_len,
                });
            }
            // Both lists stay in queue order (positions only grow): they are merged by
            // position when messages leave the tail.
            _ => self.held.push_back(m),
        }
    }

    /// The position of the first message in the tail.
    pub(crate) fn first_seq(&self) -> Option<u64> {
        match (self.paged.front(), self.held.front()) {
            (Some(p), Some(h)) => Some(p.seq.min(h.seq)),
            (Some(p), None) => Some(p.seq),
            (None, Some(h)) => Some(h.seq),
            (None, None) => None,
        }
    }

    /// Puts a message back by its position (a requeue that belongs behind the list's head).
    pub(crate) fn insert_by_seq(&mut self, m: QueuedMessage) {
        let at = self.held.partition_point(|r| r.seq < m.seq);
        self.held.insert(at, m);
    }

    /// Takes the first message, a stub again if it was compacted.
    pub(crate) fn pop_front(&mut self) -> Option<QueuedMessage> {
        let from_paged = match (self.paged.front(), self.held.front()) {
            (Some(p), Some(h)) => p.seq < h.seq,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !from_paged {
            return self.held.pop_front();
        }
        let c = self.paged.pop_front()?;
        self.paged_bytes -= u64::from(c.body_len);
        if self.paged.capacity() > 1024 && self.paged.len() < self.paged.capacity() / 4 {
            self.paged.shrink_to(self.paged.capacity() / 2);
        }
        let route = self
            .empty_route
            .get_or_insert_with(|| Route::new("", ""))
            .clone();
        let stub = Message::paged(
            route,
            BasicProperties::default(),
            c.body_len as usize,
            MessageId(c.id),
        );
        Some(QueuedMessage::new(c.seq, Arc::new(stub)))
    }

    /// Everything, in queue order (purge, delete).
    pub(crate) fn take_all(&mut self) -> Vec<QueuedMessage> {
        let mut all = Vec::with_capacity(self.paged.len() + self.held.len());
        while let Some(m) = self.pop_front() {
            all.push(m);
        }
        self.paged = VecDeque::new();
        self.held = VecDeque::new();
        all
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.paged.capacity() + self.held.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stub(seq: u64, id: u64) -> QueuedMessage {
        let m = Message::paged(
            Route::new("x", "k"),
            BasicProperties::default(),
            1000,
            MessageId(id),
        );
        QueuedMessage::new(seq, Arc::new(m))
    }

    #[test]
    fn a_compacted_message_is_24_bytes() {
        assert_eq!(std::mem::size_of::<Compact>(), 24);
    }

    #[test]
    fn compacted_and_held_messages_come_back_in_queue_order() {
        let mut tail = PagedTail::default();
        tail.push_back(stub(10, 100));
        tail.push_back(stub(11, 101));
        let mut redelivered = stub(12, 102);
        redelivered.redelivered = true;
        tail.push_back(redelivered);
        tail.push_back(stub(13, 103));
        assert_eq!(tail.paged(), (3, 3000));
        assert_eq!(tail.first_seq(), Some(10));
        let first = tail.pop_front().expect("a message");
        assert_eq!(
            (first.seq, first.message.persist_id.get()),
            (10, Some(MessageId(100)))
        );
        assert!(
            first.message.is_paged(),
            "a stub: read back before delivery"
        );
        assert_eq!(first.message.body_size(), 1000);
        let order: Vec<(u64, bool)> = tail
            .take_all()
            .into_iter()
            .map(|m| (m.seq, m.redelivered))
            .collect();
        assert_eq!(order, vec![(11, false), (12, true), (13, false)]);
        assert!(tail.is_empty());
        assert_eq!(tail.paged(), (0, 0));
    }

    #[test]
    fn messages_with_an_expiry_or_in_memory_are_not_compacted() {
        let mut timed = stub(1, 1);
        timed.expires_at = Some(tokio::time::Instant::now());
        assert!(!PagedTail::compacts(&timed));
        let in_memory = QueuedMessage::new(
            2,
            Arc::new(Message::new(
                warren_protocol::ShortStr::empty(),
                warren_protocol::ShortStr::empty(),
                BasicProperties::default(),
                bytes::Bytes::from_static(b"body"),
            )),
        );
        assert!(!PagedTail::compacts(&in_memory));
        assert!(PagedTail::compacts(&stub(3, 3)));
    }
}
