//! The consumer timeout (RabbitMQ 3.12+): a delivery left unacknowledged longer than its queue's
//! `x-consumer-timeout` (else the broker's `consumer_timeout`) closes its channel with 406, and
//! the channel's close requeues it.
//!
//! Nothing is recorded per delivery: the connection task calls [`AckClock::check`] every
//! [`AckClock::period`], and each call notes the channel's next delivery tag with the time
//! (a checkpoint). A delivery whose tag is below a checkpoint's tag was made before that
//! checkpoint's time, so its age is at least `now - that time`. A timeout is seen at most
//! about two periods late; the period is a quarter of the smallest timeout in use, at most
//! a minute (RabbitMQ checks once a minute, on its channel tick).

use crate::error::AmqpError;
use crate::ids::DeliveryTag;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The longest wait between two checks (RabbitMQ's channel tick).
const MAX_PERIOD: Duration = Duration::from_secs(60);
/// The shortest wait between two checks, whatever the timeout.
const MIN_PERIOD: Duration = Duration::from_millis(20);

/// One channel's checkpoints.
#[derive(Default)]
pub struct AckClock {
    /// (time, the channel's next delivery tag then), oldest first.
    checkpoints: VecDeque<(Instant, DeliveryTag)>,
    /// The smallest timeout among the queues this channel took deliveries from, in ms.
    smallest_ms: Option<u64>,
}

impl AckClock {
    /// This channel consumes from (or got from) a queue whose deliveries time out after `ms`.
    pub fn note_timeout(&mut self, ms: u64) {
        self.smallest_ms = Some(self.smallest_ms.map_or(ms, |s| s.min(ms)));
    }

    /// How often the connection should call [`AckClock::check`]; `None` when no timeout applies.
    pub fn period(&self) -> Option<Duration> {
        let ms = self.smallest_ms?;
        Some((Duration::from_millis(ms) / 4).clamp(MIN_PERIOD, MAX_PERIOD))
    }

    /// Records a checkpoint and returns the 406 that closes the channel when an outstanding
    /// delivery is past its timeout. `outstanding` lists (tag, timeout in ms) of the
    /// unacknowledged deliveries, oldest first; it is read only while deliveries are old
    /// enough to matter.
    pub fn check(
        &mut self,
        channel: u16,
        now: Instant,
        next_tag: DeliveryTag,
        outstanding: impl IntoIterator<Item = (DeliveryTag, Option<u64>)>,
    ) -> Result<(), AmqpError> {
        let mut oldest = None;
        for (tag, timeout_ms) in outstanding {
            if timeout_ms.is_some() {
                oldest.get_or_insert(tag);
            }
            // The first checkpoint taken after this delivery: it is at least this old.
            let Some(&(made_before, _)) = self.checkpoints.iter().find(|(_, t)| *t > tag) else {
                break; // this delivery and every later one came after the last checkpoint
            };
            let age = now.saturating_duration_since(made_before);
            if let Some(ms) = timeout_ms {
                if age >= Duration::from_millis(ms) {
                    return Err(timed_out(channel, ms));
                }
            }
            if self
                .smallest_ms
                .is_some_and(|s| age < Duration::from_millis(s))
            {
                break; // the rest are younger still, and no timeout is shorter
            }
        }
        // Checkpoints no outstanding delivery needs any more go: only the first one after the
        // oldest outstanding delivery that can time out is read.
        let oldest = oldest.unwrap_or(next_tag);
        while self.checkpoints.len() > 1 && self.checkpoints[1].1 <= oldest {
            self.checkpoints.pop_front();
        }
        if self.checkpoints.back().is_none_or(|(_, t)| *t < next_tag) {
            self.checkpoints.push_back((now, next_tag));
        }
        Ok(())
    }
}

/// RabbitMQ's words (rabbit_channel:evaluate_consumer_timeout), with class and method 0.
fn timed_out(channel: u16, ms: u64) -> AmqpError {
    AmqpError::precondition_failed(format!(
        "delivery acknowledgement on channel {channel} timed out. Timeout value used: {ms} ms. \
         This timeout value can be configured, see consumers doc guide to learn more"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_times_out_only_after_a_checkpoint_past_it_is_old_enough() {
        let mut clock = AckClock::default();
        clock.note_timeout(100);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        // Tag 1 delivered before the first check at t0.
        let out = || vec![(DeliveryTag(1), Some(100))];
        assert!(clock.check(3, t0, DeliveryTag(2), out()).is_ok());
        assert!(clock.check(3, ms(60), DeliveryTag(2), out()).is_ok());
        let e = clock.check(3, ms(100), DeliveryTag(2), out()).unwrap_err();
        assert!(
            e.reply_text().contains(
                "delivery acknowledgement on channel 3 timed out. Timeout value used: 100 ms."
            ),
            "{}",
            e.reply_text()
        );
    }

    #[test]
    fn deliveries_after_the_last_checkpoint_are_not_timed_out() {
        let mut clock = AckClock::default();
        clock.note_timeout(10);
        let t0 = Instant::now();
        assert!(clock.check(1, t0, DeliveryTag(1), []).is_ok());
        // Tag 1 came after the checkpoint at t0 (its next tag was 1): no checkpoint proves its age.
        let late = t0 + Duration::from_secs(5);
        assert!(clock
            .check(1, late, DeliveryTag(2), [(DeliveryTag(1), Some(10))])
            .is_ok());
        assert!(clock
            .check(
                1,
                late + Duration::from_millis(10),
                DeliveryTag(2),
                [(DeliveryTag(1), Some(10))]
            )
            .is_err());
    }

    #[test]
    fn no_timeout_means_never() {
        let mut clock = AckClock::default();
        assert_eq!(clock.period(), None);
        let t0 = Instant::now();
        assert!(clock
            .check(1, t0, DeliveryTag(5), [(DeliveryTag(1), None)])
            .is_ok());
        assert!(clock
            .check(
                1,
                t0 + Duration::from_secs(3600),
                DeliveryTag(5),
                [(DeliveryTag(1), None)]
            )
            .is_ok());
    }
}
