//! Message rates (`*_details.rate`) from counter samples: one background task samples every
//! object's counters every [`SAMPLE_INTERVAL`] and publishes the last two samples of each in one
//! immutable table, swapped in whole ([`arc_swap`]). The data path never sees any of this: the
//! sampler only reads the atomics it already bumps, and readers never wait for the sampler.
//!
//! A rate is the change between the last two samples over the time between them, as RabbitMQ's
//! management plugin reports by default (its 5 s sample interval). An object first seen in a
//! round started since the previous one, with its counters at zero: its first rate covers what it
//! did since (a new channel's publishes show at once). Everything has rate 0 in the first round.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::ids::ConnectionId;
use crate::stats::MessageStats;

/// RabbitMQ's `collect_statistics_interval` default.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// What is sampled of one object: its message counters, its queue depth, and a connection's
/// socket bytes. An exchange's `publish_in` is sampled as `messages.published`, its
/// `publish_out` as `messages.routed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    pub messages: MessageStats,
    pub ready: u64,
    pub unacked: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// The last two samples of one object.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    pub previous: Sample,
    pub last: Sample,
    /// Seconds between them (0 when the object was sampled once).
    pub seconds: f64,
}

impl Window {
    /// Per second, between the last two samples, of any sampled value (depths may fall: negative).
    pub fn rate(&self, value: impl Fn(&Sample) -> u64) -> f64 {
        if self.seconds <= 0.0 {
            return 0.0;
        }
        (value(&self.last) as f64 - value(&self.previous) as f64) / self.seconds
    }
}

/// Which object a window belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Overview,
    Vhost(String),
    Queue { vhost: String, name: String },
    Exchange { vhost: String, name: String },
    Connection(ConnectionId),
    Channel(ConnectionId, u16),
}

/// The published windows, replaced whole at each sample.
#[derive(Default)]
pub struct RateBook {
    table: ArcSwap<Table>,
}

#[derive(Default)]
pub struct Table {
    at: Option<Instant>,
    windows: HashMap<Key, Window>,
    /// Queues' windows by vhost and name, apart: a listing of 10,000 queues looks each up by
    /// `&str`, with no key to allocate.
    queues: HashMap<String, HashMap<String, Window>>,
}

impl Table {
    /// The window of `key`; the default (all rates 0) when it was never sampled.
    pub fn window(&self, key: &Key) -> Window {
        match key {
            Key::Queue { vhost, name } => self.queue(vhost, name),
            _ => self.windows.get(key).copied().unwrap_or_default(),
        }
    }

    /// The window of the queue `name` of `vhost`.
    pub fn queue(&self, vhost: &str, name: &str) -> Window {
        self.queues
            .get(vhost)
            .and_then(|queues| queues.get(name))
            .copied()
            .unwrap_or_default()
    }
}

impl RateBook {
    /// The window of `key`; the default (all rates 0) when it was never sampled.
    pub fn window(&self, key: &Key) -> Window {
        self.table.load().window(key)
    }

    /// Every window as of the last sample, for reading many (one load for a whole listing).
    pub fn table(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// Records one round of samples taken at `at`; objects absent from it are forgotten.
    /// Only the sampler task calls this.
    pub fn record(&self, at: Instant, samples: Vec<(Key, Sample)>) {
        let old = self.table.load();
        let seconds = old
            .at
            .map_or(0.0, |then| at.duration_since(then).as_secs_f64());
        let mut table = Table {
            at: Some(at),
            ..Table::default()
        };
        for (key, last) in samples {
            // An object first seen now started from zero.
            let previous = old.window(&key).last;
            let window = Window {
                previous,
                last,
                seconds,
            };
            match key {
                Key::Queue { vhost, name } => {
                    table.queues.entry(vhost).or_default().insert(name, window);
                }
                key => {
                    table.windows.insert(key, window);
                }
            }
        }
        self.table.store(Arc::new(table));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(n: u64, ready: u64) -> Sample {
        Sample {
            messages: MessageStats {
                published: n,
                ..MessageStats::default()
            },
            ready,
            ..Sample::default()
        }
    }

    #[test]
    fn rate_is_the_change_between_the_last_two_samples_per_second() {
        let book = RateBook::default();
        let t0 = Instant::now();
        let key = Key::Vhost("/".into());
        book.record(t0, vec![(key.clone(), published(100, 10))]);
        assert_eq!(book.window(&key).rate(|s| s.messages.published), 0.0);
        book.record(t0 + SAMPLE_INTERVAL, vec![(key.clone(), published(150, 5))]);
        let w = book.window(&key);
        assert_eq!(w.rate(|s| s.messages.published), 10.0);
        assert_eq!(w.rate(|s| s.ready), -1.0);
        // A new object started from zero since the last round; one that is gone is forgotten.
        let other = Key::Overview;
        book.record(
            t0 + 2 * SAMPLE_INTERVAL,
            vec![(other.clone(), published(7, 0))],
        );
        assert_eq!(
            book.window(&other).rate(|s| s.messages.published),
            7.0 / 5.0
        );
        assert_eq!(book.window(&key), Window::default());
    }

    #[test]
    fn queue_windows_are_found_by_vhost_and_name() {
        let book = RateBook::default();
        let t0 = Instant::now();
        let key = |name: &str| Key::Queue {
            vhost: "/".into(),
            name: name.into(),
        };
        book.record(t0, vec![(key("a"), published(10, 0))]);
        book.record(
            t0 + SAMPLE_INTERVAL,
            vec![(key("a"), published(20, 0)), (key("b"), published(5, 0))],
        );
        let table = book.table();
        assert_eq!(table.queue("/", "a").rate(|s| s.messages.published), 2.0);
        assert_eq!(table.queue("/", "b").rate(|s| s.messages.published), 1.0);
        assert_eq!(table.window(&key("a")), table.queue("/", "a"));
        assert_eq!(table.queue("other", "a"), Window::default());
    }
}
