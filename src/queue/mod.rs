//! A queue: its ready messages in order, its consumers, and dispatch between them.
//!
//! Publishers push inline on their own task and dispatch happens right there when a consumer has
//! credit; the queue never writes to a socket itself but hands each delivery to the consumer's
//! [`ConsumerSink`] (a channel), which decides whether it has room.
//! Lock order: queue state → the sink's own locks (see `src/vhost.rs`).

use crate::message::Message;
use crate::store::Store;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use warren_protocol::{FieldTable, ShortStr};

/// A message waiting in (or delivered from) one queue.
#[derive(Clone, Debug)]
pub struct QueuedMessage {
    /// Position in the queue: requeued messages go back to where this says.
    pub seq: u64,
    /// The shared message.
    pub message: Arc<Message>,
    /// Whether it was delivered before.
    pub redelivered: bool,
}

/// Where a queue hands deliveries: implemented by a channel, which owns delivery tags, prefetch
/// credit and the connection's outbound buffer.
pub trait ConsumerSink: Send + Sync {
    /// Delivers `msg` to consumer `tag` if it has credit; `false` means "not now".
    fn try_deliver(
        &self,
        tag: &ShortStr,
        no_ack: bool,
        queue: &Arc<Queue>,
        msg: &QueuedMessage,
    ) -> bool;
    /// The queue went away: tell the client (basic.cancel) and forget the consumer.
    fn cancelled_by_server(&self, tag: &ShortStr);
}

/// One consumer of this queue.
#[derive(Clone)]
pub struct Consumer {
    /// Consumer tag, unique on its channel.
    pub tag: ShortStr,
    /// The channel that receives deliveries.
    pub sink: Arc<dyn ConsumerSink>,
    /// Deliveries need no acknowledgement.
    pub no_ack: bool,
    /// basic.consume exclusive: no other consumer may join.
    pub exclusive: bool,
}

/// Why a consumer could not be added.
#[derive(Debug, PartialEq, Eq)]
pub enum ConsumeError {
    /// An exclusive consumer asked for a queue that has consumers, or the queue has one.
    ExclusiveInUse,
    /// The queue was deleted meanwhile.
    Deleted,
}

#[derive(Default)]
struct QueueState {
    ready: VecDeque<QueuedMessage>,
    next_seq: u64,
    consumers: VecDeque<Consumer>,
    /// Auto-delete applies only once a queue has had a consumer (spec: queue.declare auto-delete).
    had_consumer: bool,
}

/// What queue.declare said about a queue, to compare redeclares with.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueOptions {
    /// Survives a broker restart.
    pub durable: bool,
    /// Deleted when its last consumer goes.
    pub auto_delete: bool,
    /// Owning connection, for exclusive queues.
    pub exclusive_owner: Option<u64>,
    /// x-arguments as declared.
    pub arguments: FieldTable,
}

/// A queue.
pub struct Queue {
    /// Queue name.
    pub name: ShortStr,
    /// Declared options.
    pub options: QueueOptions,
    state: Mutex<QueueState>,
    deleted: AtomicBool,
    /// The store and this queue's id in it, for durable queues (set once, when declared or
    /// restored).
    journal: OnceLock<(Arc<Store>, u32)>,
}

impl Queue {
    /// A new, empty queue.
    pub fn new(name: ShortStr, options: QueueOptions) -> Arc<Self> {
        Arc::new(Queue {
            name,
            options,
            state: Mutex::new(QueueState::default()),
            deleted: AtomicBool::new(false),
            journal: OnceLock::new(),
        })
    }

    /// Makes this a journaled queue: persistent messages in it survive restarts.
    pub fn attach_journal(&self, store: Arc<Store>, id: u32) {
        let _ = self.journal.set((store, id));
    }

    /// This queue's id in the journal, if it is durable.
    pub fn journal_id(&self) -> Option<u32> {
        self.journal.get().map(|(_, id)| *id)
    }

    /// Puts back a message recovered from the journal, in publish order.
    pub fn push_recovered(self: &Arc<Self>, message: Arc<Message>, redelivered: bool) {
        let mut st = self.state.lock();
        let seq = st.next_seq;
        st.next_seq += 1;
        st.ready.push_back(QueuedMessage { seq, message, redelivered });
    }

    /// Whether the queue was deleted (a binding or delivery may still hold it).
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Appends a message and delivers what consumers can take.
    pub fn push(self: &Arc<Self>, message: Arc<Message>) {
        let mut st = self.state.lock();
        let seq = st.next_seq;
        st.next_seq += 1;
        st.ready.push_back(QueuedMessage {
            seq,
            message,
            redelivered: false,
        });
        self.dispatch_locked(&mut st);
    }

    /// Puts messages back where they were, marked redelivered, and delivers again.
    pub fn requeue(self: &Arc<Self>, messages: impl IntoIterator<Item = QueuedMessage>) {
        if self.is_deleted() {
            return;
        }
        let mut st = self.state.lock();
        for mut m in messages {
            m.redelivered = true;
            let at = st.ready.partition_point(|r| r.seq < m.seq);
            st.ready.insert(at, m);
        }
        self.dispatch_locked(&mut st);
    }

    /// Delivers ready messages to consumers with credit, round-robin.
    pub fn dispatch(self: &Arc<Self>) {
        let mut st = self.state.lock();
        self.dispatch_locked(&mut st);
    }

    fn dispatch_locked(self: &Arc<Self>, st: &mut QueueState) {
        let mut refused = 0;
        while refused < st.consumers.len() {
            let Some(msg) = st.ready.front() else { return };
            let c = &st.consumers[0];
            let no_ack = c.no_ack;
            let delivered = c.sink.try_deliver(&c.tag, no_ack, self, msg);
            st.consumers.rotate_left(1);
            if delivered {
                if let Some(sent) = st.ready.pop_front() {
                    if no_ack {
                        self.remove_for_good(std::iter::once(sent));
                    } else {
                        self.journal_delivery(&sent);
                    }
                }
                refused = 0;
            } else {
                refused += 1;
            }
        }
    }

    /// basic.get: the first ready message and how many remain. With `no_ack` the message
    /// leaves the queue for good; otherwise the channel settles it later.
    pub fn get(&self, no_ack: bool) -> Option<(QueuedMessage, u32)> {
        let mut st = self.state.lock();
        let msg = st.ready.pop_front()?;
        if no_ack {
            self.remove_for_good(std::iter::once(msg.clone()));
        } else {
            self.journal_delivery(&msg);
        }
        Some((msg, st.ready.len() as u32))
    }

    /// Delivered messages that were acknowledged, or rejected without requeue: they leave the
    /// queue for good.
    pub fn settle(&self, messages: impl IntoIterator<Item = QueuedMessage>) {
        self.remove_for_good(messages);
    }

    /// The one place where messages leave this queue for good (ack, no-ack delivery, reject
    /// without requeue, purge, delete — and expiry, overflow and dead-lettering as they come):
    /// every such path must end here, because this is where a durable queue tells its journal
    /// that the message is settled.
    fn remove_for_good(&self, messages: impl IntoIterator<Item = QueuedMessage>) {
        let Some((store, queue)) = self.journal.get() else { return };
        for m in messages {
            if let Some(id) = m.message.persist_id.get() {
                store.settle(*id, *queue);
            }
        }
    }

    /// A journaled message went out to a consumer that must ack it: after a crash it comes
    /// back with redelivered=true.
    fn journal_delivery(&self, m: &QueuedMessage) {
        if let (Some((store, queue)), Some(id)) = (self.journal.get(), m.message.persist_id.get()) {
            if !m.redelivered {
                store.delivered(*id, *queue);
            }
        }
    }

    /// Adds a consumer and starts delivering to it. `on_added` runs once the consumer is
    /// accepted and before its first delivery, so basic.consume-ok goes out only for a consumer
    /// that exists and always ahead of its deliveries (RabbitMQ sends just the channel.close
    /// when an exclusive consume is refused).
    pub fn add_consumer(
        self: &Arc<Self>,
        consumer: Consumer,
        on_added: impl FnOnce(),
    ) -> Result<(), ConsumeError> {
        let mut st = self.state.lock();
        if self.is_deleted() {
            return Err(ConsumeError::Deleted);
        }
        if st.consumers.iter().any(|c| c.exclusive)
            || (consumer.exclusive && !st.consumers.is_empty())
        {
            return Err(ConsumeError::ExclusiveInUse);
        }
        on_added();
        st.consumers.push_back(consumer);
        st.had_consumer = true;
        self.dispatch_locked(&mut st);
        Ok(())
    }

    /// Removes consumer `tag` of `sink`; returns whether the queue should now auto-delete.
    pub fn remove_consumer(&self, sink: &Arc<dyn ConsumerSink>, tag: &ShortStr) -> bool {
        let mut st = self.state.lock();
        st.consumers
            .retain(|c| !(c.tag == *tag && Arc::ptr_eq(&c.sink, sink)));
        self.options.auto_delete && st.had_consumer && st.consumers.is_empty()
    }

    /// Ready messages (what queue.declare-ok reports).
    pub fn message_count(&self) -> u32 {
        self.state.lock().ready.len() as u32
    }

    /// Active consumers.
    pub fn consumer_count(&self) -> u32 {
        self.state.lock().consumers.len() as u32
    }

    /// Drops every ready message; returns how many.
    pub fn purge(&self) -> u32 {
        let mut st = self.state.lock();
        let n = st.ready.len() as u32;
        self.remove_for_good(st.ready.drain(..));
        n
    }

    /// Marks the queue deleted, drops its messages and cancels its consumers (basic.cancel).
    /// Returns how many ready messages it held.
    pub fn mark_deleted(&self) -> u32 {
        let (count, consumers) = {
            let mut st = self.state.lock();
            self.deleted.store(true, Ordering::Release);
            let count = st.ready.len() as u32;
            self.remove_for_good(st.ready.drain(..));
            (count, std::mem::take(&mut st.consumers))
        };
        for c in consumers {
            c.sink.cancelled_by_server(&c.tag);
        }
        count
    }
}
