//! Due times that survive a restart. A timer in memory runs on the monotonic clock
//! ([`Instant`]), which restarts with the process; what is written down for after a restart (a
//! delayed message's due time, a deduplication id's expiry) is wall-clock milliseconds since the
//! Unix epoch, turned back into an [`Instant`] when it is read.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch now (0 if the clock is set before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The wall-clock time `after` from `now_ms`, saturating.
pub fn ms_after(now_ms: u64, after: Duration) -> u64 {
    now_ms.saturating_add(u64::try_from(after.as_millis()).unwrap_or(u64::MAX))
}

/// The [`Instant`] of wall-clock time `at_ms`, given that `now` is `now_ms`: a time already
/// passed maps to the past (as far back as the monotonic clock reaches, else `now`), so it is
/// due at once.
pub fn instant_of(at_ms: u64, now: Instant, now_ms: u64) -> Instant {
    if at_ms >= now_ms {
        now.checked_add(Duration::from_millis(at_ms - now_ms))
            .unwrap_or(now + Duration::from_secs(u64::from(u32::MAX)))
    } else {
        now.checked_sub(Duration::from_millis(now_ms - at_ms))
            .unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wall_time_maps_to_the_matching_instant_and_a_past_one_is_due() {
        let now = Instant::now();
        let t = 1_700_000_000_000;
        assert_eq!(instant_of(t + 6_000, now, t), now + Duration::from_secs(6));
        assert_eq!(instant_of(t, now, t), now);
        assert!(instant_of(t - 1, now, t) <= now);
        assert_eq!(ms_after(t, Duration::from_millis(10)), t + 10);
        assert_eq!(ms_after(u64::MAX - 1, Duration::from_secs(5)), u64::MAX);
        assert!(now_ms() > t, "the test machine's clock is after 2023");
    }
}
