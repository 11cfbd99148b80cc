//! The stream queue type (`x-queue-type: stream`): an append-only log on disk (log.rs,
//! segment.rs) that consumers read from their own positions; acks release prefetch credit and
//! move a tracked position, they never remove messages.
//!
//! Publishing appends to the log's pending buffer under its lock and asks the journal's writer
//! (once per batch, not per message) to write the buffer out and fsync the segment with its next
//! group commit; the publisher's confirm waits for that sequence number like any journaled
//! publish (`vhost/publish.rs`), and consumers are woken once the batch is written. Each consumer has a task (consumer.rs) that reads
//! the segment files a buffer at a time from its own offset and hands messages to the
//! channel's sink while it has credit; appends, acks and drained connections wake it.
//!
//! As RabbitMQ 3.10+ over AMQP 0-9-1: durable only, consumers need a per-consumer prefetch and
//! manual acks, `x-stream-offset` picks the start, each delivery carries `x-stream-offset`;
//! basic.get, queue.purge and nack/reject are 540s (channel/stream.rs). Beyond 3.10: server-side
//! offset tracking (tracking.rs) and 3.13's filtering (`x-stream-filter-value` /
//! `x-stream-filter`, exact here: a consumer gets only what passes its filter).

pub mod args;
mod consumer;
mod log;
mod recovery;
mod segment;
mod tracking;

use super::{ConsumeError, Consumer, ConsumerSink, Queue, QueuedMessage};
use crate::ids::{DurableQueueId, JournalSeq};
use crate::message::Message;
use crate::store::journal::SyncTarget;
use crate::store::{Store, StoreError};
use args::StreamConfig;
use consumer::StreamConsumer;
use log::Log;
use parking_lot::Mutex;
use std::sync::{Arc, OnceLock};
use tracking::Offsets;
use warren_protocol::{FieldTable, ShortStr};

pub(super) use args::{validate_arguments, COMPARED_ARGUMENTS};

/// A stream's log and stored consumer positions, once it is attached to the store.
struct Attached {
    log: Arc<Log>,
    offsets: Arc<Offsets>,
    store: Arc<Store>,
    writer: Arc<dyn SyncTarget>,
}

type Consumers = Arc<Mutex<Vec<Arc<StreamConsumer>>>>;

/// What the journal's writer thread calls to write a stream's appends out and fsync them.
struct LogWriter {
    log: Arc<Log>,
    consumers: Consumers,
}

impl SyncTarget for LogWriter {
    fn write_and_sync(&self) -> std::io::Result<()> {
        self.log.write_out(|| wake_all(&self.consumers))
    }
}

fn wake_all(consumers: &Consumers) {
    for c in consumers.lock().iter() {
        c.wake();
    }
}

/// What a stream holds beside the shared [`Queue`] fields.
pub(super) struct StreamQueue {
    config: StreamConfig,
    attached: OnceLock<Attached>,
    /// Why the log could not be opened (a corrupt segment): startup stops with it.
    open_error: Mutex<Option<StoreError>>,
    consumers: Consumers,
}

impl StreamQueue {
    pub(super) fn new(arguments: &FieldTable) -> Self {
        StreamQueue {
            config: StreamConfig::of(arguments),
            attached: OnceLock::new(),
            open_error: Mutex::new(None),
            consumers: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Opens the stream's log in the store's data directory (declare, or restore at startup).
    pub(super) fn attach(&self, store: &Arc<Store>, id: DurableQueueId) {
        let dir = store.stream_dir(id);
        match Log::open(&dir, self.config) {
            Ok(log) => {
                let offsets = Arc::new(Offsets::load(&dir));
                let log = Arc::new(log);
                let writer = Arc::new(LogWriter {
                    log: log.clone(),
                    consumers: self.consumers.clone(),
                });
                let _ = self.attached.set(Attached {
                    log,
                    offsets,
                    store: store.clone(),
                    writer,
                });
            }
            Err(e) => {
                tracing::error!(error = %e, "a stream's log cannot be opened");
                *self.open_error.lock() = Some(e);
            }
        }
    }

    pub(super) fn take_open_error(&self) -> Option<StoreError> {
        self.open_error.lock().take()
    }

    /// Appends a published message; returns the journal sequence number its confirm waits for.
    pub(super) fn append(&self, message: &Message) -> Option<JournalSeq> {
        let Some(a) = self.attached.get() else {
            tracing::warn!("a message for a stream without a log was dropped");
            return None;
        };
        let synced = *a.store.synced().borrow();
        let seq = a.log.append(message, synced, || {
            Some(a.store.sync_file(a.writer.clone()).0)
        });
        seq.map(JournalSeq)
    }

    /// Credit freed or a connection drained: consumers look again.
    pub(super) fn dispatch(&self) {
        wake_all(&self.consumers);
    }

    pub(super) fn add_consumer(
        &self,
        q: &Arc<Queue>,
        consumer: Consumer,
        arguments: &FieldTable,
        on_added: impl FnOnce(),
    ) -> Result<(), ConsumeError> {
        let Some(a) = self.attached.get() else {
            return Err(ConsumeError::Deleted);
        };
        let mut consumers = self.consumers.lock();
        if q.is_deleted() {
            return Err(ConsumeError::Deleted);
        }
        let start = consumer::Start::of(arguments, &a.log, &a.offsets);
        let c = Arc::new(StreamConsumer::new(
            consumer.tag,
            consumer.sink,
            start.tracking.clone(),
        ));
        consumers.push(c.clone());
        drop(consumers);
        on_added();
        consumer::spawn(q.clone(), a.log.clone(), a.offsets.clone(), c, start);
        Ok(())
    }

    pub(super) fn remove_consumer(&self, sink: &Arc<dyn ConsumerSink>, tag: &ShortStr) -> bool {
        let mut consumers = self.consumers.lock();
        if let Some(at) = consumers.iter().position(|c| c.is(sink, tag)) {
            consumers.remove(at).stop();
        }
        false
    }

    /// Acknowledged deliveries: only tracked positions move.
    pub(super) fn settle(&self, messages: impl IntoIterator<Item = QueuedMessage>) -> u64 {
        let consumers = self.consumers.lock();
        let mut n = 0;
        for m in messages {
            n += 1;
            for c in consumers.iter() {
                if c.acked(&m) {
                    break;
                }
            }
        }
        n
    }

    pub(super) fn message_count(&self) -> u32 {
        self.attached.get().map_or(0, |a| {
            u32::try_from(a.log.message_count()).unwrap_or(u32::MAX)
        })
    }

    pub(super) fn consumer_count(&self) -> u32 {
        self.consumers.lock().len() as u32
    }

    pub(super) fn gauges(&self) -> (u64, u64, u64) {
        let (messages, bytes) = self
            .attached
            .get()
            .map_or((0, 0), |a| (a.log.message_count(), a.log.bytes()));
        (messages, bytes, u64::from(self.consumer_count()))
    }

    /// The stream was deleted: its consumers are cancelled and its files removed.
    pub(super) fn delete(&self, q: &Queue) -> (u32, Vec<Consumer>) {
        let count = self.message_count();
        let consumers: Vec<Arc<StreamConsumer>> = {
            let mut cs = self.consumers.lock();
            q.deleted.store(true, std::sync::atomic::Ordering::Release);
            std::mem::take(&mut *cs)
        };
        if let Some(a) = self.attached.get() {
            a.log.remove();
        }
        let cancelled = consumers
            .iter()
            .map(|c| {
                c.stop();
                c.as_consumer()
            })
            .collect();
        (count, cancelled)
    }
}
