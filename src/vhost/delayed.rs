//! Held messages of `x-delayed-message` exchanges (exchange/delayed.rs): publishing to one with
//! a positive `x-delay` parks the message; one task per exchange routes each when it is due,
//! through the ordinary pipeline (vhost/publish.rs).

use super::VHost;
use crate::exchange::delayed::{delay_of, Delayed};
use crate::exchange::Exchange;
use crate::ids::JournalSeq;
use crate::message::Message;
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
        let journal_seq = delayed.journal(&message);
        delayed.hold(Instant::now() + delay, message);
        self.start_delay_timer(exchange, delayed);
        journal_seq
    }

    /// A held message recovered from the journal: its delay starts again now (the journal
    /// keeps no publish time), so it is routed late rather than early, and never lost.
    pub(crate) fn hold_recovered(&self, exchange: &Arc<Exchange>, message: Arc<Message>) {
        let Some(delayed) = exchange.delayed.as_ref() else {
            return;
        };
        let delay = delay_of(&message).unwrap_or_default();
        delayed.hold(Instant::now() + delay, message);
        self.start_delay_timer(exchange, delayed);
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
