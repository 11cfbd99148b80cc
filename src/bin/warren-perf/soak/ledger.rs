//! The soak's exactly-once checker: every published message's fate by (producer, sequence).
//!
//! A confirmed message must be delivered once. A second delivery is allowed only when the broker
//! flags it `redelivered` (a consumer's channel closed with it unacknowledged); one without the
//! flag is an unexplained duplicate. A confirmed message not delivered within a grace period is
//! overdue ("lost so far"); one still undelivered after the final drain is lost.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Delivery count of a sequence number (saturating), in the low bits of its state byte.
const COUNT_MASK: u8 = 0x7f;
/// The broker confirmed it.
const CONFIRMED: u8 = 0x80;

/// What one delivery was.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    First,
    /// Delivered before and flagged redelivered: allowed.
    Redelivered,
    /// Delivered before without the redelivered flag: a broker bug.
    UnexplainedDuplicate,
}

/// One producer's messages.
#[derive(Default)]
struct Producer {
    /// Per sequence number: [`CONFIRMED`] | delivery count.
    state: Vec<u8>,
    /// Confirmed and not yet delivered, with when the confirm came.
    pending: BTreeMap<u64, Instant>,
}

impl Producer {
    fn slot(&mut self, seq: u64) -> &mut u8 {
        let i = seq as usize;
        if self.state.len() <= i {
            self.state.resize(i + 1 + 4096, 0);
        }
        &mut self.state[i]
    }
}

/// Every producer's messages (the soak locks one producer's part at a time).
pub struct Ledger {
    producers: Vec<parking_lot::Mutex<Producer>>,
}

/// Totals at the end (or now).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Confirmed and never delivered.
    pub undelivered: u64,
    /// Of those, confirmed longer ago than the grace.
    pub overdue: u64,
}

impl Ledger {
    pub fn new(producers: usize) -> Self {
        Ledger {
            producers: (0..producers).map(|_| Default::default()).collect(),
        }
    }

    /// The broker confirmed `seq` of `producer` at `at`. Returns false for an unknown producer.
    pub fn confirm(&self, producer: u16, seq: u64, at: Instant) -> bool {
        let Some(p) = self.producers.get(producer as usize) else {
            return false;
        };
        let mut p = p.lock();
        let slot = p.slot(seq);
        *slot |= CONFIRMED;
        if *slot & COUNT_MASK == 0 {
            p.pending.insert(seq, at);
        }
        true
    }

    /// A consumer got `seq` of `producer`; `None` for an unknown producer (a corrupt stamp).
    pub fn deliver(&self, producer: u16, seq: u64, redelivered: bool) -> Option<Delivery> {
        let mut p = self.producers.get(producer as usize)?.lock();
        let slot = p.slot(seq);
        let before = *slot & COUNT_MASK;
        *slot = (*slot & CONFIRMED) | (before + 1).min(COUNT_MASK);
        if before == 0 {
            p.pending.remove(&seq);
            Some(Delivery::First)
        } else if redelivered {
            Some(Delivery::Redelivered)
        } else {
            Some(Delivery::UnexplainedDuplicate)
        }
    }

    /// Confirmed-but-undelivered messages now, and how many of them were confirmed more than
    /// `grace` before `now`.
    pub fn tally(&self, now: Instant, grace: Duration) -> Tally {
        let mut t = Tally::default();
        for p in &self.producers {
            let p = p.lock();
            t.undelivered += p.pending.len() as u64;
            t.overdue += p
                .pending
                .values()
                .filter(|at| now.saturating_duration_since(**at) > grace)
                .count() as u64;
        }
        t
    }

    /// Up to `n` (producer, seq) of confirmed-but-undelivered messages, for the report.
    pub fn some_undelivered(&self, n: usize) -> Vec<(u16, u64)> {
        let mut out = Vec::new();
        for (i, p) in self.producers.iter().enumerate() {
            out.extend(p.lock().pending.keys().map(|s| (i as u16, *s)));
            if out.len() >= n {
                break;
            }
        }
        out.truncate(n);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_and_a_duplicated_message_are_caught() {
        let ledger = Ledger::new(2);
        let t0 = Instant::now();
        for seq in 0..6 {
            assert!(ledger.confirm(0, seq, t0));
        }
        for seq in [0, 1, 2, 4, 5] {
            assert_eq!(ledger.deliver(0, seq, false), Some(Delivery::First));
        }
        // A redelivery after a consumer's channel closed is allowed, a silent second copy not.
        assert_eq!(ledger.deliver(0, 2, true), Some(Delivery::Redelivered));
        assert_eq!(
            ledger.deliver(0, 1, false),
            Some(Delivery::UnexplainedDuplicate)
        );
        // Seq 3 was confirmed and never delivered.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(
            ledger.tally(later, Duration::from_secs(5)),
            Tally {
                undelivered: 1,
                overdue: 1
            }
        );
        assert_eq!(ledger.tally(later, Duration::from_secs(60)).overdue, 0);
        assert_eq!(ledger.some_undelivered(10), vec![(0, 3)]);
        assert_eq!(ledger.deliver(0, 3, false), Some(Delivery::First));
        assert_eq!(ledger.tally(later, Duration::ZERO), Tally::default());
    }

    #[test]
    fn a_delivery_may_overtake_its_confirm() {
        let ledger = Ledger::new(1);
        assert_eq!(ledger.deliver(0, 7, false), Some(Delivery::First));
        ledger.confirm(0, 7, Instant::now());
        assert_eq!(ledger.tally(Instant::now(), Duration::ZERO).undelivered, 0);
    }

    #[test]
    fn an_unknown_producer_is_refused() {
        let ledger = Ledger::new(1);
        assert!(!ledger.confirm(3, 0, Instant::now()));
        assert_eq!(ledger.deliver(3, 0, false), None);
    }
}
