//! A queue's consumers and which one gets the next message:
//!
//! - consumer priorities (`x-priority` on basic.consume): consumers of a higher priority get
//!   every message while one of them has credit; lower ones only when all higher ones are
//!   blocked. Round-robin among consumers of equal priority.
//! - single active consumer (`x-single-active-consumer`): only the first consumer in
//!   subscription order receives; when it goes (cancel, channel or connection closed) the next
//!   one takes over. Consumer priorities do not reorder it (RabbitMQ 3.10 classic queues).
//!
//! Kept as groups of equal priority, highest first, each a ring rotated on every offer: with no
//! priorities there is one group and choosing a consumer costs what plain round-robin does.

use super::{Consumer, ConsumerSink, Queue, QueuedMessage};
use std::collections::VecDeque;
use std::sync::Arc;
use warren_protocol::ShortStr;

struct Group {
    priority: i64,
    members: VecDeque<Consumer>,
}

/// The consumers of one queue.
#[derive(Default)]
pub(crate) struct Consumers {
    /// Highest priority first; a single group under single-active-consumer.
    groups: Vec<Group>,
    single_active: bool,
    len: usize,
}

impl Consumers {
    /// No consumers yet.
    pub(crate) fn new(single_active: bool) -> Self {
        Consumers {
            groups: Vec::new(),
            single_active,
            len: 0,
        }
    }

    /// Number of consumers (all of them, active or waiting).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every consumer.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Consumer> {
        self.groups.iter().flat_map(|g| g.members.iter())
    }

    /// Adds a consumer behind the others of its priority (or of all, under single-active).
    pub(crate) fn add(&mut self, consumer: Consumer) {
        self.len += 1;
        let priority = if self.single_active {
            0
        } else {
            consumer.priority
        };
        let at = self.groups.partition_point(|g| g.priority > priority);
        match self.groups.get_mut(at) {
            Some(g) if g.priority == priority => g.members.push_back(consumer),
            _ => self.groups.insert(
                at,
                Group {
                    priority,
                    members: VecDeque::from([consumer]),
                },
            ),
        }
    }

    /// Removes consumer `tag` of `sink`.
    pub(crate) fn remove(&mut self, sink: &Arc<dyn ConsumerSink>, tag: &ShortStr) {
        for g in &mut self.groups {
            g.members
                .retain(|c| !(c.tag == *tag && Arc::ptr_eq(&c.sink, sink)));
        }
        self.groups.retain(|g| !g.members.is_empty());
        self.len = self.groups.iter().map(|g| g.members.len()).sum();
    }

    /// Takes them all (queue deleted).
    pub(crate) fn take_all(&mut self) -> Vec<Consumer> {
        self.len = 0;
        self.groups.drain(..).flat_map(|g| g.members).collect()
    }

    /// Offers `msg` to the consumers in turn; returns the taker's `no_ack`, or `None` when no
    /// consumer can take it now.
    pub(crate) fn offer(&mut self, queue: &Arc<Queue>, msg: &QueuedMessage) -> Option<bool> {
        if self.single_active {
            let c = self.groups.first()?.members.front()?;
            return c
                .sink
                .try_deliver(&c.tag, c.no_ack, queue, msg)
                .then_some(c.no_ack);
        }
        for g in &mut self.groups {
            for _ in 0..g.members.len() {
                let taken = {
                    let c = g.members.front()?;
                    c.sink
                        .try_deliver(&c.tag, c.no_ack, queue, msg)
                        .then_some(c.no_ack)
                };
                g.members.rotate_left(1);
                if taken.is_some() {
                    return taken;
                }
            }
        }
        None
    }
}
