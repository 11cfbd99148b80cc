//! A connection's outbound path: frames are encoded straight into one shared buffer (by the
//! connection task for replies, by queues for deliveries) and a writer task flushes it to the
//! socket in large writes. The buffer is bounded by credit, not by a channel capacity: queues stop
//! delivering to a connection whose buffer is over [`HIGH_WATER`] and are kicked again when the
//! writer drains it, and the reader stops reading while it is congested.
//!
//! A leaf module: it knows frames and bytes, not channels or queues. connection/ owns the writer
//! task, channel/ queues deliveries and replies; whoever skipped a congested connection registers
//! as a [`DrainWaiter`] and is called back after a flush.
use crate::stats::ConnectionCounters;
use bytes::BytesMut;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use warren_protocol::{encode_content, encode_heartbeat, encode_method, BasicProperties, Method};

/// Above this many unflushed bytes the connection takes no more deliveries.
pub const HIGH_WATER: usize = 1024 * 1024;

/// Something that stopped sending to this connection because it was congested (a queue with
/// ready messages) and wants to be called once the writer drained the buffer.
pub trait DrainWaiter: Send + Sync {
    /// The buffer was flushed: try again (called on the writer task, with no lock held).
    fn drained(self: Arc<Self>);
}

struct Pending {
    buf: BytesMut,
    /// Queues that skipped this connection because it was congested: kicked after a flush.
    waiting: Vec<Weak<dyn DrainWaiter>>,
}

/// The outbound buffer of one connection.
pub struct Outbound {
    pending: Mutex<Pending>,
    wake_writer: Notify,
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
                buf: BytesMut::with_capacity(64 * 1024),
                waiting: Vec::new(),
            }),
            wake_writer: Notify::new(),
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
        encode(&mut self.pending.lock().buf);
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
        let mut spare = BytesMut::with_capacity(64 * 1024);
        loop {
            let (waiting, closed) = {
                let mut p = self.pending.lock();
                std::mem::swap(&mut p.buf, &mut spare);
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
                }
                spare.clear();
                if let Err(e) = result {
                    self.close();
                    return Err(e);
                }
            }
            self.drained.notify_waiters();
            for waiter in waiting.iter().filter_map(Weak::upgrade) {
                waiter.drained();
            }
            if closed {
                socket.flush().await?;
                return Ok(socket);
            }
            if self.pending.lock().buf.is_empty() {
                self.wake_writer.notified().await;
            }
        }
    }
}
