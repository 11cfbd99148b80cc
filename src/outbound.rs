//! A connection's outbound path: frames are encoded straight into one shared buffer (by the
//! connection task for replies, by queues for deliveries) and a writer task flushes it to the
//! socket in large writes. The buffer is bounded by credit, not by a channel capacity: queues stop
//! delivering to a connection whose buffer is over [`HIGH_WATER`] and are kicked again when the
//! writer drains it, and the reader stops reading while it is congested.
//!
//! A leaf module: it knows frames and bytes, not channels or queues. connection/ owns the writer
//! task, channel/ queues deliveries and replies; whoever skipped a congested connection registers
//! as a [`DrainWaiter`] and is called back after a flush.
//!
//! Writer wakeups are batched ([`WakeBatch`]): while a connection task handles the frames of one
//! read, the frames it queues on any connection (a fanout publish reaches many) only mark that
//! connection's writer as owed a wakeup, and each such writer is woken once when the batch
//! ends, not once per message. Waking a writer per delivery made the idle runtime worker wake,
//! steal that writer, write one message and sleep again, over and over: the context switches
//! of issue 16 (12.5 per 1,000 deliveries in fanout-10). A buffer past [`WAKE_AT`] wakes its
//! writer at once, so a long batch still streams out.
use crate::stats::ConnectionCounters;
use bytes::BytesMut;
use parking_lot::Mutex;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use warren_protocol::{encode_content, encode_heartbeat, encode_method, BasicProperties, Method};

/// Above this many unflushed bytes the connection takes no more deliveries.
pub const HIGH_WATER: usize = 1024 * 1024;

/// Inside a [`WakeBatch`], a buffer holding this much wakes its writer at once anyway.
pub const WAKE_AT: usize = 64 * 1024;

/// The room a buffer takes at the first frame queued after the writer went idle and released
/// it: a burst of small frames starts here instead of growing from nothing.
const WRITE_START: usize = 1024;

/// An idle writer releases buffers up to this size (what handshakes and replies use); a
/// connection whose bursts grew a buffer past it keeps it, so a busy consumer neither takes a
/// fresh buffer per burst nor copies its bursts again while one regrows.
const KEEP_ABOVE: usize = WRITE_START;

thread_local! {
    /// The writers owed a wakeup by the batch open on this thread (`None`: no batch open).
    static OWED: RefCell<Option<Vec<Arc<Notify>>>> = const { RefCell::new(None) };
}

/// Defers writer wakeups on this thread until it is dropped (see the module doc). Open one
/// around synchronous work only (no `.await` inside: the task could move to another thread).
/// Nested batches are part of the outermost one.
pub struct WakeBatch {
    outermost: bool,
}

impl WakeBatch {
    /// Starts deferring writer wakeups on this thread.
    #[inline]
    pub fn begin() -> Self {
        let outermost = OWED.with(|owed| {
            let mut owed = owed.borrow_mut();
            if owed.is_some() {
                return false;
            }
            *owed = Some(Vec::new());
            true
        });
        WakeBatch { outermost }
    }
}

impl Drop for WakeBatch {
    fn drop(&mut self) {
        if !self.outermost {
            return;
        }
        if let Some(owed) = OWED.with(|owed| owed.borrow_mut().take()) {
            for writer in owed {
                writer.notify_one();
            }
        }
    }
}

/// Remembers `writer` as owed a wakeup when a batch is open on this thread; `false` when none
/// is (wake it now).
#[inline]
fn owe_wakeup(writer: &Arc<Notify>) -> bool {
    OWED.with(|owed| match owed.borrow_mut().as_mut() {
        Some(list) => {
            list.push(writer.clone());
            true
        }
        None => false,
    })
}

#[inline]
fn in_batch() -> bool {
    OWED.with(|owed| owed.borrow().is_some())
}

/// Something that stopped sending to this connection because it was congested (a queue with
/// ready messages) and wants to be called once the writer drained the buffer.
pub trait DrainWaiter: Send + Sync {
    /// The buffer was flushed: try again (called on the writer task, with no lock held).
    fn drained(self: Arc<Self>);
}

struct Pending {
    buf: BytesMut,
    /// A batch open on some thread will wake the writer for what is in `buf` (cleared when
    /// the writer takes the buffer): later frames of any batch need not ask again.
    wake_owed: bool,
    /// Queues that skipped this connection because it was congested: kicked after a flush.
    waiting: Vec<Weak<dyn DrainWaiter>>,
}

impl Pending {
    /// A buffer released by an idle writer takes [`WRITE_START`] bytes for its first frame.
    #[inline]
    fn take_room(&mut self) {
        if self.buf.capacity() == 0 {
            self.buf.reserve(WRITE_START);
        }
    }
}

/// The outbound buffer of one connection.
pub struct Outbound {
    pending: Mutex<Pending>,
    wake_writer: Arc<Notify>,
    drained: Notify,
    closed: AtomicBool,
    frame_max: AtomicU32,
    /// The connection's counters: the writer adds what it wrote (one add per write).
    counters: Arc<ConnectionCounters>,
}

/// Frames being queued under one lock ([`Outbound::batch`]).
pub struct Batch<'a> {
    buf: &'a mut BytesMut,
    frame_max: u32,
}

impl Batch<'_> {
    /// Whether the buffer is over the high-water mark: take no more deliveries.
    pub fn is_full(&self) -> bool {
        self.buf.len() >= HIGH_WATER
    }

    /// Queues a content-carrying method with its header and body frames.
    pub fn content(
        &mut self,
        channel: u16,
        method: &Method,
        properties: &BasicProperties,
        body: &[u8],
    ) {
        encode_content(channel, method, properties, body, self.frame_max, self.buf);
    }
}

impl Outbound {
    /// An empty outbound path; `frame_max` applies to body frames until tune-ok changes it.
    /// Bytes written are counted in `counters`.
    pub fn new(frame_max: u32, counters: Arc<ConnectionCounters>) -> Arc<Self> {
        Arc::new(Outbound {
            pending: Mutex::new(Pending {
                // Grows with use (an idle connection keeps next to nothing).
                buf: BytesMut::new(),
                wake_owed: false,
                waiting: Vec::new(),
            }),
            wake_writer: Arc::new(Notify::new()),
            drained: Notify::new(),
            closed: AtomicBool::new(false),
            frame_max: AtomicU32::new(frame_max),
            counters,
        })
    }

    /// Sets the negotiated frame_max for body frames.
    pub fn set_frame_max(&self, frame_max: u32) {
        self.frame_max.store(frame_max, Ordering::Relaxed);
    }

    fn append(&self, encode: impl FnOnce(&mut BytesMut)) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let defer = in_batch();
        {
            let mut p = self.pending.lock();
            p.take_room();
            encode(&mut p.buf);
            if defer && p.buf.len() < WAKE_AT {
                if p.wake_owed {
                    return;
                }
                p.wake_owed = owe_wakeup(&self.wake_writer);
                if p.wake_owed {
                    return;
                }
            }
        }
        self.wake_writer.notify_one();
    }

    /// Queues one method frame.
    pub fn send_method(&self, channel: u16, method: &Method) {
        self.append(|buf| encode_method(channel, method, buf));
    }

    /// Queues a content-carrying method with its header and body frames.
    pub fn send_content(
        &self,
        channel: u16,
        method: &Method,
        properties: &BasicProperties,
        body: &[u8],
    ) {
        let frame_max = self.frame_max.load(Ordering::Relaxed);
        self.append(|buf| encode_content(channel, method, properties, body, frame_max, buf));
    }

    /// Queues many content frames under one lock and one wake of the writer (a stream consumer
    /// delivering a read buffer's messages). Once [`Batch::is_full`] says so the caller stops,
    /// and `waiter` is called back after the writer drained the buffer.
    pub fn batch<W: DrainWaiter + 'static>(
        &self,
        waiter: &Arc<W>,
        fill: impl FnOnce(&mut Batch<'_>),
    ) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let mut p = self.pending.lock();
        p.take_room();
        let before = p.buf.len();
        let mut batch = Batch {
            buf: &mut p.buf,
            frame_max: self.frame_max.load(Ordering::Relaxed),
        };
        fill(&mut batch);
        if p.buf.len() >= HIGH_WATER {
            let ptr = Arc::as_ptr(waiter).cast::<()>();
            if !p.waiting.iter().any(|w| w.as_ptr().cast::<()>() == ptr) {
                let weak: Weak<dyn DrainWaiter> = Arc::downgrade(waiter) as Weak<W>;
                p.waiting.push(weak);
            }
        }
        let wrote = p.buf.len() > before;
        drop(p);
        if wrote {
            self.wake_writer.notify_one();
        }
    }

    /// Queues a heartbeat.
    pub fn send_heartbeat(&self) {
        self.append(encode_heartbeat);
    }

    /// Whether deliveries should wait; if so, `waiter` is remembered and called after a flush.
    pub fn is_congested_for<W: DrainWaiter + 'static>(&self, waiter: &Arc<W>) -> bool {
        let mut p = self.pending.lock();
        if p.buf.len() < HIGH_WATER {
            return false;
        }
        let ptr = Arc::as_ptr(waiter).cast::<()>();
        if !p.waiting.iter().any(|w| w.as_ptr().cast::<()>() == ptr) {
            let weak: Weak<dyn DrainWaiter> = Arc::downgrade(waiter) as Weak<W>;
            p.waiting.push(weak);
        }
        true
    }

    /// Whether the buffer is over the high-water mark.
    pub fn is_congested(&self) -> bool {
        self.pending.lock().buf.len() >= HIGH_WATER
    }

    /// Waits until the writer has flushed below the high-water mark (or the connection closed).
    pub async fn wait_drained(&self) {
        loop {
            let drained = self.drained.notified();
            if !self.is_congested() || self.closed.load(Ordering::Relaxed) {
                return;
            }
            drained.await;
        }
    }

    /// Stops accepting frames; the writer flushes what is pending and ends.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.wake_writer.notify_one();
        self.drained.notify_waiters();
    }

    /// The writer task: flushes the buffer whenever something was queued, until closed; then
    /// hands the socket back so the caller decides when to shut it.
    pub async fn run_writer<W: AsyncWrite + Unpin>(
        self: Arc<Self>,
        mut socket: W,
    ) -> std::io::Result<W> {
        let mut spare = BytesMut::new();
        loop {
            let (waiting, closed) = {
                let mut p = self.pending.lock();
                std::mem::swap(&mut p.buf, &mut spare);
                p.wake_owed = false;
                (
                    std::mem::take(&mut p.waiting),
                    self.closed.load(Ordering::Relaxed),
                )
            };
            if !spare.is_empty() {
                // The flush is free on TCP; TLS may keep the tail of a write in its buffer
                // until flushed.
                let result = match socket.write_all(&spare).await {
                    Ok(()) => socket.flush().await,
                    Err(e) => Err(e),
                };
                if result.is_ok() {
                    crate::stats::bump_by(&self.counters.bytes_out, spare.len() as u64);
                    crate::stats::bump(&self.counters.writes);
                }
                spare.clear();
                if let Err(e) = result {
                    self.close();
                    return Err(e);
                }
            }
            self.drained.notify_waiters();
            if !waiting.is_empty() {
                // Queues resuming deliveries to their consumers' connections: one wakeup each.
                let _batch = WakeBatch::begin();
                for waiter in waiting.iter().filter_map(Weak::upgrade) {
                    waiter.drained();
                }
            }
            if closed {
                socket.flush().await?;
                return Ok(socket);
            }
            if self.release_if_idle(&mut spare) {
                self.wake_writer.notified().await;
            }
        }
    }

    /// When nothing is pending, releases both buffers (those up to [`KEEP_ABOVE`]) and says
    /// so: an idle connection holds none while its writer waits (10,000 idle connections held
    /// 20,000, each as large as the connection's largest write). The next frame queued takes a
    /// fresh one.
    fn release_if_idle(&self, spare: &mut BytesMut) -> bool {
        let mut p = self.pending.lock();
        if !p.buf.is_empty() {
            return false;
        }
        let pending = if p.buf.capacity() <= KEEP_ABOVE {
            std::mem::take(&mut p.buf)
        } else {
            BytesMut::new()
        };
        drop(p);
        drop(pending);
        if spare.capacity() <= KEEP_ABOVE {
            *spare = BytesMut::new();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    async fn readable_within(rx: &mut tokio::io::DuplexStream, wait: Duration) -> usize {
        let mut buf = vec![0u8; 4 * WAKE_AT];
        tokio::time::timeout(wait, rx.read(&mut buf))
            .await
            .map_or(0, |r| r.expect("reads"))
    }

    /// Once the writer flushed everything and waits, the connection holds no buffer; frames
    /// queued after that still go out, in order.
    #[tokio::test]
    async fn an_idle_writer_holds_no_buffers_and_still_writes_what_comes_next() {
        let (tx, mut rx) = tokio::io::duplex(1 << 20);
        let out = Outbound::new(131_072, Arc::new(ConnectionCounters::default()));
        let writer = tokio::spawn(out.clone().run_writer(tx));
        let method = Method::BasicDeliver(warren_protocol::basic::Deliver::default());
        let mut expected = BytesMut::new();
        for round in 0..3u8 {
            let body = vec![round; 500];
            out.send_content(1, &method, &BasicProperties::default(), &body);
            encode_content(
                1,
                &method,
                &BasicProperties::default(),
                &body,
                131_072,
                &mut expected,
            );
            let mut got = vec![0u8; expected.len()];
            tokio::time::timeout(Duration::from_secs(5), rx.read_exact(&mut got))
                .await
                .expect("written in time")
                .expect("reads");
            assert!(
                got[..] == expected[..],
                "round {round}: the frames arrived changed"
            );
            expected.clear();
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(
                out.pending.lock().buf.capacity(),
                0,
                "round {round}: kept a buffer"
            );
        }
        out.close();
        writer.await.expect("joins").expect("writer ends");
    }

    /// Inside a batch the writer is not woken per frame but once when the batch ends; a buffer
    /// past WAKE_AT wakes it at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_wakes_the_writer_once_at_its_end_or_at_wake_at() {
        let (tx, mut rx) = tokio::io::duplex(16 * WAKE_AT);
        let out = Outbound::new(131_072, Arc::new(ConnectionCounters::default()));
        let writer = tokio::spawn(out.clone().run_writer(tx));
        // Let the writer reach its wait (its first pass takes whatever is queued, woken or not).
        tokio::time::sleep(Duration::from_millis(50)).await;
        let body = [1u8; 16];
        let method = Method::BasicDeliver(warren_protocol::basic::Deliver::default());
        {
            let _batch = WakeBatch::begin();
            for _ in 0..10 {
                out.send_content(1, &method, &BasicProperties::default(), &body);
            }
            // The writer runs on another worker, free to write if it had been woken.
            std::thread::sleep(Duration::from_millis(50));
            let nested = WakeBatch::begin();
            drop(nested);
            std::thread::sleep(Duration::from_millis(20));
            assert_eq!(
                readable_within(&mut rx, Duration::from_millis(1)).await,
                0,
                "woken before the batch ended"
            );
        }
        assert!(readable_within(&mut rx, Duration::from_secs(5)).await > 0);
        {
            let _batch = WakeBatch::begin();
            let big = vec![2u8; WAKE_AT];
            out.send_content(1, &method, &BasicProperties::default(), &big);
            std::thread::sleep(Duration::from_millis(50));
            // Read on this thread while the batch is still open: the big frame is on its way.
            assert!(readable_within(&mut rx, Duration::from_secs(5)).await > 0);
        }
        out.close();
        writer.await.expect("joins").expect("writer ends");
    }
}
