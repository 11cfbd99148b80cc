//! The queue's timer: a tokio task that exists only while the queue has a deadline — the head
//! message's expiry, or the moment the queue will have been unused for its `x-expires` period.
//! It sleeps until then, expires what is due, and sleeps again; with no deadline left it ends,
//! and the next change that sets one starts a new task. It holds only a `Weak` to its queue and
//! also ends when the queue is deleted or dropped. Queues without TTLs or `x-expires` never
//! start one.
//!
//! x-expires ("unused" in RabbitMQ's words): no consumers, and no basic.get or queue.declare
//! (passive ones too: checked with pika against RabbitMQ 3.10.8) for the whole period; publishing
//! does not count. The queue is then deleted like queue.delete would, its messages not
//! dead-lettered.

use super::{Backend, Queue, QueueState};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
// The tokio clock (the same as std's outside tests), so timer tests can run on paused time.
use tokio::sync::Notify;
use tokio::time::Instant;

/// Wakes a queue's timer task.
#[derive(Default)]
pub(crate) struct Timer {
    wake: Arc<Notify>,
    started: AtomicBool,
}

impl Queue {
    /// Records a use of the queue for `x-expires` (declare, basic.get, consumer changes).
    pub fn touch(&self) {
        if self.args().expires.is_some() {
            match &self.backend {
                Backend::Classic(c) => c.touch(),
                Backend::Quorum(qq) => qq.touch(),
                Backend::Stream(_) => {}
            }
        }
    }

    /// After a change that may bring the next deadline forward (lock held): wakes the timer
    /// if it would otherwise sleep past it.
    pub(super) fn reschedule(self: &Arc<Self>, st: &mut QueueState) {
        let Some(next) = self.next_deadline(st) else {
            return;
        };
        if st.timer_at.is_some_and(|at| at <= next) {
            return;
        }
        st.timer_at = Some(next);
        self.wake_timer();
    }

    fn next_deadline(&self, st: &QueueState) -> Option<Instant> {
        match (Self::head_expiry(st), self.unused_deadline(st)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When the queue counts as unused for its whole `x-expires` period.
    fn unused_deadline(&self, st: &QueueState) -> Option<Instant> {
        let ms = self.args().expires?;
        if !st.consumers.is_empty() {
            return None;
        }
        st.last_used?.checked_add(Duration::from_millis(ms))
    }

    fn wake_timer(self: &Arc<Self>) {
        if self.timer.started.swap(true, Ordering::AcqRel) {
            self.timer.wake.notify_one();
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(run(Arc::downgrade(self), self.timer.wake.clone()));
            }
            // No runtime (a unit test): nothing expires by time, only on access.
            Err(_) => self.timer.started.store(false, Ordering::Release),
        }
    }

    /// Stops the timer task (the queue was deleted).
    pub(super) fn stop_timer(&self) {
        self.timer.wake.notify_one();
    }

    /// One timer tick: expires what is due. Returns the next deadline, or `None` when the task
    /// should end (no deadline left, or the queue was deleted or expired).
    fn on_timer(self: &Arc<Self>) -> Option<Instant> {
        if self.is_deleted() {
            return None;
        }
        let now = Instant::now();
        let mut dead = super::dead_letter::DeadLetters::new();
        let (next, unused) = {
            let mut st = match &self.backend {
                Backend::Classic(c) => c.state.lock(),
                // Quorum queues run their own expiry timer (quorum/mod.rs) and never start this.
                Backend::Quorum(_) | Backend::Stream(_) => return None,
            };
            self.expire_head(&mut st, now, &mut dead);
            let unused = self.unused_deadline(&st).is_some_and(|at| at <= now);
            st.timer_at = if unused {
                None
            } else {
                self.next_deadline(&st)
            };
            if st.timer_at.is_none() {
                // Under the state lock: a `reschedule` after this starts a new task instead of
                // waking this one, which is ending.
                self.timer.started.store(false, Ordering::Release);
            }
            (st.timer_at, unused)
        };
        self.publish_dead_letters(dead);
        if unused {
            if let Some(owner) = self.owner.as_ref().and_then(Weak::upgrade) {
                tracing::debug!(queue = %self.name, "queue expired (x-expires)");
                owner.expire_queue(self);
            }
            return None;
        }
        next
    }
}

async fn run(queue: Weak<Queue>, wake: Arc<Notify>) {
    loop {
        let Some(at) = queue.upgrade().and_then(|q| q.on_timer()) else {
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = wake.notified() => {}
        }
    }
}
