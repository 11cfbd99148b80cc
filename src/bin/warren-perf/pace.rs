//! Precise pacing for rate-limited producers (latency runs).
//!
//! tokio's timer has a 1 ms resolution: a producer that sleeps on it sends in bursts (ten
//! messages at once every millisecond at 10k msg/s), and a burst's last message waits behind the
//! other nine in the broker and in the consumer, which is queueing the generator made, not the
//! broker's latency. A paced producer instead runs on a thread of its own and sleeps with a
//! 1 µs timer slack (`PR_SET_TIMERSLACK`) until shortly before each message is due, then spins
//! the last few microseconds: messages leave evenly spaced, one per write.

use std::time::{Duration, Instant};

/// When each message of one producer is due: `rate` per second from `started`.
pub struct Pacer {
    started: Instant,
    nanos_per_message: f64,
    /// Spin (instead of sleeping) this close to a message's due time.
    spin: Duration,
}

impl Pacer {
    /// Sets the calling thread's timer slack to 1 µs (the default, 50 µs, would let a sleep
    /// overshoot by that much); call on the thread that will wait.
    pub fn new(rate_per_second: f64, spin: Duration) -> Self {
        let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1_000));
        Pacer {
            started: Instant::now(),
            nanos_per_message: 1e9 / rate_per_second.max(1e-3),
            spin,
        }
    }

    /// When message `seq` (0-based) is due.
    pub fn due(&self, seq: u64) -> Instant {
        self.started + Duration::from_nanos((seq as f64 * self.nanos_per_message) as u64)
    }

    /// How many messages are due by now, counting from 0.
    pub fn due_count(&self) -> u64 {
        (self.started.elapsed().as_nanos() as f64 / self.nanos_per_message) as u64 + 1
    }

    /// Blocks the calling thread until message `seq` is due (returns at once if it is late).
    pub fn wait_for(&self, seq: u64) {
        let due = self.due(seq);
        loop {
            let now = Instant::now();
            if now >= due {
                return;
            }
            let left = due - now;
            if left > self.spin {
                std::thread::sleep(left - self.spin);
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_released_evenly_not_in_bursts() {
        // 20k msg/s: one every 50 µs; tokio's timer would release them 20 at a time.
        let pacer = Pacer::new(20_000.0, Duration::from_micros(20));
        let mut sent = Vec::new();
        for seq in 0..200 {
            pacer.wait_for(seq);
            sent.push(Instant::now());
        }
        for (seq, at) in sent.iter().enumerate() {
            assert!(*at >= pacer.due(seq as u64), "message {seq} left early");
        }
        let took = sent[199] - pacer.due(0);
        assert!(took >= Duration::from_micros(199 * 50), "{took:?}");
        // How evenly they left depends on the machine's load (a preempted thread catches up);
        // that no message leaves before its time, evenly scheduled, is the pacer's part.
        assert_eq!(pacer.due(100) - pacer.due(99), Duration::from_micros(50));
    }

    #[test]
    fn due_count_follows_the_rate() {
        let pacer = Pacer::new(1_000.0, Duration::ZERO);
        assert_eq!(pacer.due_count(), 1);
        assert_eq!(pacer.due(3) - pacer.due(2), Duration::from_millis(1));
    }
}
