//! The ready messages of a queue, in delivery order: one FIFO, or one FIFO per priority level
//! for queues declared with `x-max-priority` (higher priority first, FIFO within a level, as
//! RabbitMQ's priority queues deliver). Also counts ready body bytes for `x-max-length-bytes`.
//! Knows nothing of consumers, expiry or limits.

use super::paged::PagedTail;
use super::QueuedMessage;
use std::collections::VecDeque;

/// Ready messages, the next one to deliver first.
pub(crate) struct ReadyList {
    levels: Levels,
    /// A FIFO's compacted paged-out messages and what follows them (`paged.rs`), behind its
    /// head; empty whenever the head is. Boxed on first use: most queues never page out.
    tail: Option<Box<PagedTail>>,
    len: usize,
    bytes: u64,
}

enum Levels {
    Fifo(VecDeque<QueuedMessage>),
    /// Index = priority (0..=max); delivered from the highest non-empty level.
    Priority(Vec<VecDeque<QueuedMessage>>),
}

impl Default for ReadyList {
    fn default() -> Self {
        Self::new(None)
    }
}

impl ReadyList {
    /// A FIFO list, or one with `max_priority + 1` levels.
    pub(crate) fn new(max_priority: Option<u8>) -> Self {
        let levels = match max_priority {
            None | Some(0) => Levels::Fifo(VecDeque::new()),
            Some(max) => Levels::Priority((0..=max).map(|_| VecDeque::new()).collect()),
        };
        ReadyList {
            levels,
            tail: None,
            len: 0,
            bytes: 0,
        }
    }

    /// The level of `m`: no priority is 0, above the maximum is the maximum (RabbitMQ).
    fn level_of(levels: &[VecDeque<QueuedMessage>], m: &QueuedMessage) -> usize {
        let p = usize::from(m.message.properties.priority.unwrap_or(0));
        p.min(levels.len() - 1)
    }

    /// Number of ready messages.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Total body bytes of the ready messages.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Paged-out messages kept compact and their body bytes (not counting the stubs at the
    /// head, whose bodies are read back next).
    pub(crate) fn paged(&self) -> (usize, u64) {
        self.tail.as_ref().map_or((0, 0), |t| t.paged())
    }

    /// Appends a newly published message (behind everything of its priority).
    pub(crate) fn push_back(&mut self, m: QueuedMessage) {
        self.count_in(&m);
        match &mut self.levels {
            Levels::Fifo(q) => {
                let tail_empty = self.tail.as_ref().is_none_or(|t| t.is_empty());
                if tail_empty && (q.is_empty() || !PagedTail::compacts(&m)) {
                    q.push_back(m);
                } else {
                    self.tail.get_or_insert_default().push_back(m);
                }
            }
            Levels::Priority(levels) => {
                let at = Self::level_of(levels, &m);
                levels[at].push_back(m);
            }
        }
    }

    /// Puts a requeued message back at its old place within its priority (ordered by `seq`).
    pub(crate) fn insert_by_seq(&mut self, m: QueuedMessage) {
        self.count_in(&m);
        // Behind the paged tail's first message, its place is in the tail.
        if let Some(tail) = self.tail.as_mut() {
            if tail.first_seq().is_some_and(|f| f < m.seq) {
                tail.insert_by_seq(m);
                return;
            }
        }
        let q = match &mut self.levels {
            Levels::Fifo(q) => q,
            Levels::Priority(levels) => {
                let at = Self::level_of(levels, &m);
                &mut levels[at]
            }
        };
        // Requeues usually come back in front of everything: check the ends first.
        let at = if q.front().is_none_or(|f| m.seq < f.seq) {
            0
        } else {
            q.partition_point(|r| r.seq < m.seq)
        };
        q.insert(at, m);
    }

    /// The next message to deliver.
    pub(crate) fn front(&self) -> Option<&QueuedMessage> {
        match &self.levels {
            Levels::Fifo(q) => q.front(),
            Levels::Priority(levels) => levels.iter().rev().find_map(|q| q.front()),
        }
    }

    /// The next message to deliver, to change in place (paging its body back in).
    pub(crate) fn front_mut(&mut self) -> Option<&mut QueuedMessage> {
        match &mut self.levels {
            Levels::Fifo(q) => q.front_mut(),
            Levels::Priority(levels) => levels.iter_mut().rev().find_map(|q| q.front_mut()),
        }
    }

    /// Takes the next message to deliver.
    pub(crate) fn pop_front(&mut self) -> Option<QueuedMessage> {
        let m = match &mut self.levels {
            Levels::Fifo(q) => {
                let m = pop_and_shrink(q);
                if q.is_empty() {
                    if let Some(tail) = &mut self.tail {
                        q.extend(tail.pop_front());
                    }
                }
                m
            }
            Levels::Priority(levels) => levels.iter_mut().rev().find_map(pop_and_shrink),
        }?;
        self.count_out(&m);
        Some(m)
    }

    /// Takes every ready message (purge, delete); the lists' room goes with them.
    pub(crate) fn take_all(&mut self) -> Vec<QueuedMessage> {
        self.len = 0;
        self.bytes = 0;
        match &mut self.levels {
            Levels::Fifo(q) => {
                let mut all = Vec::from(std::mem::take(q));
                if let Some(mut tail) = self.tail.take() {
                    all.extend(tail.take_all());
                }
                all
            }
            Levels::Priority(levels) => levels
                .iter_mut()
                .rev()
                .flat_map(|q| Vec::from(std::mem::take(q)))
                .collect(),
        }
    }

    /// Room for this many messages, all levels together (tests).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        match &self.levels {
            Levels::Fifo(q) => q.capacity() + self.tail.as_ref().map_or(0, |t| t.capacity()),
            Levels::Priority(levels) => levels.iter().map(VecDeque::capacity).sum(),
        }
    }

    fn count_in(&mut self, m: &QueuedMessage) {
        self.len += 1;
        self.bytes += m.message.body_size() as u64;
    }

    fn count_out(&mut self, m: &QueuedMessage) {
        self.len -= 1;
        self.bytes -= m.message.body_size() as u64;
    }
}

/// Below this many slots a list keeps its room (40 bytes a slot).
const KEEP_CAPACITY: usize = 1024;

/// Pops the front and halves the room once a quarter of it is in use: a deep queue that drained
/// gives its memory back (a `VecDeque` never shrinks by itself; 1 M messages hold 40 MB of
/// slots). Amortized O(1): each halving moves at most a quarter of the slots it frees.
fn pop_and_shrink(q: &mut VecDeque<QueuedMessage>) -> Option<QueuedMessage> {
    let m = q.pop_front()?;
    if q.capacity() > KEEP_CAPACITY && q.len() < q.capacity() / 4 {
        q.shrink_to(q.capacity() / 2);
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use bytes::Bytes;
    use std::sync::Arc;
    use warren_protocol::{BasicProperties, ShortStr};

    fn msg(seq: u64, priority: Option<u8>) -> QueuedMessage {
        let properties = BasicProperties {
            priority,
            ..Default::default()
        };
        let m = Message::new(
            ShortStr::empty(),
            ShortStr::empty(),
            properties,
            Bytes::from(vec![0u8; 3]),
        );
        QueuedMessage::new(seq, Arc::new(m))
    }

    fn order(list: &mut ReadyList) -> Vec<u64> {
        std::iter::from_fn(|| list.pop_front())
            .map(|m| m.seq)
            .collect()
    }

    #[test]
    fn higher_priority_first_fifo_within_a_level_and_above_max_is_max() {
        let mut l = ReadyList::new(Some(5));
        for (seq, p) in [
            (0, None),
            (1, Some(5)),
            (2, Some(1)),
            (3, Some(200)),
            (4, Some(0)),
        ] {
            l.push_back(msg(seq, p));
        }
        assert_eq!(l.len(), 5);
        assert_eq!(l.bytes(), 15);
        assert_eq!(order(&mut l), vec![1, 3, 2, 0, 4]);
        assert_eq!(l.bytes(), 0);
    }

    #[test]
    fn requeue_goes_back_to_its_place_within_its_priority() {
        let mut l = ReadyList::new(Some(2));
        for (seq, p) in [(0, Some(2)), (1, Some(2)), (2, Some(0)), (3, Some(2))] {
            l.push_back(msg(seq, p));
        }
        let first = l.pop_front().expect("a message");
        let second = l.pop_front().expect("a message");
        l.insert_by_seq(second);
        l.insert_by_seq(first);
        assert_eq!(order(&mut l), vec![0, 1, 3, 2]);
    }

    #[test]
    fn a_drained_list_gives_its_room_back() {
        for max_priority in [None, Some(3)] {
            let mut l = ReadyList::new(max_priority);
            for seq in 0..100_000 {
                l.push_back(msg(seq, Some((seq % 4) as u8)));
            }
            assert!(l.capacity() >= 100_000);
            while l.len() > 10 {
                l.pop_front();
            }
            assert!(
                l.capacity() <= 4 * KEEP_CAPACITY,
                "{max_priority:?}: {} slots kept for 10 messages",
                l.capacity()
            );
            assert_eq!(l.len(), 10);
            assert_eq!(l.take_all().len(), 10);
            assert_eq!(l.capacity(), 0);
        }
    }
}
