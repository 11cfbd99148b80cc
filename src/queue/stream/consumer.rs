//! One stream consumer: its own position, filter and optional tracking name, and the task that
//! reads the log from that position and delivers while the channel gives it credit.
//!
//! The task sleeps on a `Notify` (a permit is kept, so a wake between its last look and its
//! sleep is never lost) and is woken by appends, by freed credit (acks kick the queue's
//! `dispatch`) and by a drained connection. It reads a buffer of records at a time from the
//! segment files (page cache) with no lock held, so replaying a long stream keeps only that
//! buffer and the deliveries awaiting ack in memory.

use super::args::{self, Filter, OffsetSpec, X_STREAM_FILTER_VALUE, X_STREAM_OFFSET};
use super::log::{now_ms, Cursor, Log};
use super::tracking::{Offsets, Outstanding, STORE_EVERY};
use crate::queue::{Consumer, ConsumerSink, Queue, QueuedMessage};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;
use warren_protocol::{FieldTable, FieldValue, ShortStr};

/// Bytes read from a segment at a time.
const READ_BYTES: usize = 256 * 1024;

/// Where a new consumer starts, and what it keeps.
pub struct Start {
    offset: u64,
    filter: Filter,
    /// The tracking name, if any.
    pub tracking: Option<String>,
}

impl Start {
    /// From the consumer's arguments (validated by the channel: channel/stream.rs). A consumer
    /// with a tracking name and a stored position resumes after it; otherwise `x-stream-offset`.
    pub fn of(arguments: &FieldTable, log: &Log, offsets: &Offsets) -> Start {
        let tracking = args::tracking_name(arguments).ok().flatten();
        let stored = tracking.as_deref().and_then(|name| offsets.get(name));
        let offset = match stored {
            Some(processed) => log.start_of(OffsetSpec::Offset(processed + 1)),
            None => log.start_of(
                args::parse_offset(arguments.get(X_STREAM_OFFSET), now_ms())
                    .unwrap_or(OffsetSpec::Next),
            ),
        };
        Start {
            offset,
            filter: Filter::parse(arguments).unwrap_or_default(),
            tracking,
        }
    }
}

/// A consumer of a stream.
pub struct StreamConsumer {
    tag: ShortStr,
    sink: Arc<dyn ConsumerSink>,
    notify: Notify,
    stopped: AtomicBool,
    /// For a consumer with a tracking name: its deliveries awaiting ack.
    tracking: Option<(String, Mutex<Outstanding>)>,
}

impl StreamConsumer {
    pub fn new(tag: ShortStr, sink: Arc<dyn ConsumerSink>, tracking: Option<String>) -> Self {
        StreamConsumer {
            tag,
            sink,
            notify: Notify::new(),
            stopped: AtomicBool::new(false),
            tracking: tracking.map(|name| (name, Mutex::new(Outstanding::default()))),
        }
    }

    /// Whether this is consumer `tag` of `sink`.
    pub fn is(&self, sink: &Arc<dyn ConsumerSink>, tag: &ShortStr) -> bool {
        self.tag == *tag && std::ptr::addr_eq(Arc::as_ptr(&self.sink), Arc::as_ptr(sink))
    }

    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Ends its task (cancel, channel close, stream deleted).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// For basic.cancel by the server.
    pub fn as_consumer(&self) -> Consumer {
        Consumer {
            tag: self.tag.clone(),
            sink: self.sink.clone(),
            no_ack: false,
            exclusive: false,
            priority: 0,
            arguments: FieldTable::new(),
        }
    }

    /// `m` was acknowledged: whether it was this consumer's delivery.
    pub fn acked(&self, m: &QueuedMessage) -> bool {
        match &self.tracking {
            Some((_, o)) => o.lock().acked(m.seq, identity(m)),
            None => false,
        }
    }

    fn delivered(&self, m: &QueuedMessage) {
        if let Some((_, o)) = &self.tracking {
            o.lock().delivered(m.seq, identity(m));
        }
    }

    /// Writes the tracked position if it moved.
    fn store_position(&self, offsets: &Offsets) {
        if let Some((name, o)) = &self.tracking {
            let position = {
                let mut o = o.lock();
                if !o.dirty {
                    return;
                }
                o.dirty = false;
                o.position()
            };
            if let Some(p) = position {
                offsets.store(name, p);
            }
        }
    }

    fn tracking_dirty(&self) -> bool {
        self.tracking.as_ref().is_some_and(|(_, o)| o.lock().dirty)
    }
}

/// Which delivery a settled message is (each consumer reads its own copies).
fn identity(m: &QueuedMessage) -> usize {
    Arc::as_ptr(&m.message) as usize
}

/// Starts the consumer's task.
pub fn spawn(
    q: Arc<Queue>,
    log: Arc<Log>,
    offsets: Arc<Offsets>,
    c: Arc<StreamConsumer>,
    start: Start,
) {
    tokio::spawn(run(q, log, offsets, c, start));
}

async fn run(
    q: Arc<Queue>,
    log: Arc<Log>,
    offsets: Arc<Offsets>,
    c: Arc<StreamConsumer>,
    start: Start,
) {
    let mut cursor = Cursor::at(start.offset);
    let mut pending: VecDeque<QueuedMessage> = VecDeque::new();
    let mut last_store = std::time::Instant::now();
    loop {
        if c.stopped.load(Ordering::Acquire) || q.is_deleted() {
            break;
        }
        let mut at_end = false;
        if pending.is_empty() {
            match log.read(&mut cursor, READ_BYTES) {
                Ok(batch) => {
                    at_end = batch.is_empty();
                    for m in batch {
                        let value = m
                            .message
                            .properties
                            .headers
                            .as_ref()
                            .and_then(|h| h.get(X_STREAM_FILTER_VALUE))
                            .and_then(filter_bytes);
                        if start.filter.passes(value) {
                            pending.push_back(QueuedMessage::new(m.offset, Arc::new(m.message)));
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(queue = %q.name, error = %e, "a stream consumer cannot read the log; cancelling it");
                    q.remove_consumer(&c.sink, &c.tag);
                    c.sink.cancelled_by_server(&c.tag);
                    break;
                }
            }
        }
        c.sink
            .try_deliver_batch(&c.tag, &q, &mut pending, &mut |m: &QueuedMessage| {
                q.count_delivery(false, false, false);
                c.delivered(m);
            });
        if c.tracking_dirty() && last_store.elapsed() >= STORE_EVERY {
            c.store_position(&offsets);
            last_store = std::time::Instant::now();
        }
        if pending.is_empty() && !at_end {
            // More to read and credit left: go on, letting other tasks run between buffers.
            tokio::task::yield_now().await;
            continue;
        }
        if c.tracking_dirty() {
            let _ = tokio::time::timeout(STORE_EVERY, c.notify.notified()).await;
        } else {
            c.notify.notified().await;
        }
    }
    c.store_position(&offsets);
}

fn filter_bytes(v: &FieldValue) -> Option<&[u8]> {
    match v {
        FieldValue::LongStr(b) => Some(&b[..]),
        _ => None,
    }
}
