//! Held messages of `x-delayed-message` exchanges (exchange/delayed.rs): publishing to one with
//! a positive `x-delay` parks the message; one task per exchange routes each when it is due,
//! through the ordinary pipeline (vhost/publish.rs).

use super::VHost;
use crate::exchange::delayed::{delay_of, due_at_of, Delayed};
use crate::exchange::Exchange;
use crate::ids::JournalSeq;
use crate::message::Message;
use crate::wall_clock;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

impl VHost {
    /// Holds `message` on the delayed `exchange` for `delay` (journaled first when it is
    /// persistent and the exchange durable: the returned position is what its confirm waits
    /// for), starting the exchange's timer task on the first message.
    pub(super) fn hold_delayed(
        &self,
        exchange: &Arc<Exchange>,
        delayed: &Delayed,
        message: Arc<Message>,
        delay: Duration,
    ) -> Option<JournalSeq> {
        let now = Instant::now();
        let due_ms = wall_clock::ms_after(wall_clock::now_ms(), delay);
        let (message, journal_seq) = delayed.journal(message, due_ms);
        delayed.hold(now + delay, message);
        self.start_delay_timer(exchange, delayed);
        journal_seq
    }

    fn start_delay_timer(&self, exchange: &Arc<Exchange>, delayed: &Delayed) {
        // Without a runtime (unit tests) nothing routes held messages.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            if delayed.start_once() {
                runtime.spawn(route_when_due(self.me.clone(), Arc::downgrade(exchange)));
            }
        }
    }
}

/// Held messages recovered from the journal, each with its vhost and exchange: each is held
/// until the due time its journaled copy carries (wall clock), so a restart does not restart
/// its delay; those already due are routed at once, in due order. (One journaled before due
/// times were written down is held for its whole delay again: late, never lost.)
pub(super) fn hold_all_recovered(mut held: Vec<(Arc<VHost>, Arc<Exchange>, Arc<Message>)>) {
    let (now, now_ms) = (Instant::now(), wall_clock::now_ms());
    let due_ms = |m: &Message| {
        due_at_of(m)
            .unwrap_or_else(|| wall_clock::ms_after(now_ms, delay_of(m).unwrap_or_default()))
    };
    // Due order first: those already due all map to about `now`, and then go in this order.
    held.sort_by_cached_key(|(_, _, m)| due_ms(m));
    for (vhost, exchange, message) in held {
        let Some(delayed) = exchange.delayed.as_ref() else {
            continue;
        };
        let due = wall_clock::instant_of(due_ms(&message), now, now_ms);
        delayed.hold(due, message);
        vhost.start_delay_timer(&exchange, delayed);
    }
}

/// One delayed exchange's timer: routes what is due, then sleeps until the next due time (or
/// until an earlier message arrives); ends when the exchange is deleted or gone.
async fn route_when_due(vhost: Weak<VHost>, exchange: Weak<Exchange>) {
    loop {
        let next = {
            let (Some(vhost), Some(exchange)) = (vhost.upgrade(), exchange.upgrade()) else {
                return;
            };
            let Some(delayed) = exchange.delayed.as_ref() else {
                return;
            };
            if delayed.is_closed() {
                return;
            }
            for held in delayed.take_due(Instant::now()) {
                // As the plugin: no basic.return for what reached no queue.
                let _ = vhost.route_now(&exchange, Delayed::routable_copy(&held));
                delayed.settle(&held);
            }
            delayed.next_due()
        };
        // The exchange stays alive while its task waits; deleting it closes its held
        // messages, which wakes the wait and ends the task.
        let Some(exchange) = exchange.upgrade() else {
            return;
        };
        if let Some(delayed) = exchange.delayed.as_ref() {
            delayed.sleep(next).await;
        }
    }
}
