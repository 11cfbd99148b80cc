//! What the generator counts and checks: rates, latency, duplicates, payload integrity, and the
//! CPU time and RSS of itself and of the broker under test.

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Body prefix: send time (8 bytes, ns since the epoch), sequence number (6), producer id (2).
pub const HEADER_LEN: usize = 16;

pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The byte at `index` of message `seq` from `producer`: what integrity checks expect.
pub fn pattern_byte(producer: u16, seq: u64, index: usize) -> u8 {
    (seq as u8).wrapping_mul(31) ^ (producer as u8) ^ (index as u8)
}

/// Fills a body for message `seq` of `producer`.
pub fn fill_body(body: &mut [u8], producer: u16, seq: u64) {
    body[0..8].copy_from_slice(&now_nanos().to_be_bytes());
    body[8..14].copy_from_slice(&seq.to_be_bytes()[2..8]);
    body[14..16].copy_from_slice(&producer.to_be_bytes());
    for (i, b) in body.iter_mut().enumerate().skip(HEADER_LEN) {
        *b = pattern_byte(producer, seq, i);
    }
}

/// What a received body says about itself.
pub struct Stamp {
    pub sent_nanos: u64,
    pub seq: u64,
    pub producer: u16,
}

/// Reads a body's prefix and checks the rest; `None` if it is corrupt.
pub fn check_body(body: &[u8], expected_len: usize) -> Option<Stamp> {
    if body.len() != expected_len || body.len() < HEADER_LEN {
        return None;
    }
    let sent_nanos = u64::from_be_bytes(body[0..8].try_into().ok()?);
    let mut seq_bytes = [0u8; 8];
    seq_bytes[2..8].copy_from_slice(&body[8..14]);
    let seq = u64::from_be_bytes(seq_bytes);
    let producer = u16::from_be_bytes(body[14..16].try_into().ok()?);
    let intact = body
        .iter()
        .enumerate()
        .skip(HEADER_LEN)
        .all(|(i, b)| *b == pattern_byte(producer, seq, i));
    intact.then_some(Stamp {
        sent_nanos,
        seq,
        producer,
    })
}

/// Shared counters of one run.
pub struct Counters {
    pub published: AtomicU64,
    pub confirmed: AtomicU64,
    pub consumed: AtomicU64,
    pub duplicates: AtomicU64,
    pub corrupt: AtomicU64,
    /// Latency in microseconds since the last progress line.
    pub window: Mutex<Histogram<u64>>,
    /// Latency in microseconds over the whole run.
    pub total: Mutex<Histogram<u64>>,
    /// Per producer: how many copies of each sequence number arrived.
    seen: Vec<Mutex<Vec<u8>>>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

impl Counters {
    pub fn new(producers: usize) -> Self {
        Counters {
            published: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            window: Mutex::new(histogram()),
            total: Mutex::new(histogram()),
            seen: (0..producers).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }

    /// Records one delivery; `copies` is how many queues each message reaches.
    pub fn record(&self, body: &[u8], expected_len: usize, copies: u8, latencies: &mut Vec<u64>) {
        self.consumed.fetch_add(1, Ordering::Relaxed);
        let Some(stamp) = check_body(body, expected_len) else {
            self.corrupt.fetch_add(1, Ordering::Relaxed);
            return;
        };
        latencies.push(now_nanos().saturating_sub(stamp.sent_nanos) / 1000);
        let Some(seen) = self.seen.get(stamp.producer as usize) else {
            self.corrupt.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut seen = seen.lock();
        let i = stamp.seq as usize;
        if seen.len() <= i {
            seen.resize(i + 1 + 4096, 0);
        }
        seen[i] = seen[i].saturating_add(1);
        if seen[i] > copies {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Moves a consumer's batch of latencies into the histograms.
    pub fn flush_latencies(&self, latencies: &mut Vec<u64>) {
        if latencies.is_empty() {
            return;
        }
        let mut w = self.window.lock();
        let mut t = self.total.lock();
        for l in latencies.drain(..) {
            let l = l.max(1);
            let _ = w.record(l);
            let _ = t.record(l);
        }
    }
}

/// CPU seconds (user + system) of a process, from /proc (Linux).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux this runs on.
    100.0
}

/// Resident set size in KiB, from /proc (Linux).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Voluntary context switches of all of a process's threads (the sum of
/// `voluntary_ctxt_switches` over `/proc/PID/task/*/status`, Linux): how often its threads
/// blocked, i.e. went to sleep waiting for a wakeup. Threads that ended meanwhile are not counted.
pub fn voluntary_context_switches(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_round_trip_and_corruption() {
        let mut body = vec![0u8; 64];
        fill_body(&mut body, 3, 123_456);
        let stamp = check_body(&body, 64).expect("intact");
        assert_eq!((stamp.seq, stamp.producer), (123_456, 3));
        body[40] ^= 1;
        assert!(check_body(&body, 64).is_none());
    }

    #[test]
    fn duplicates_are_counted_beyond_expected_copies() {
        let c = Counters::new(1);
        let mut body = vec![0u8; 16];
        fill_body(&mut body, 0, 5);
        let mut lat = Vec::new();
        c.record(&body, 16, 1, &mut lat);
        assert_eq!(c.duplicates.load(Ordering::Relaxed), 0);
        c.record(&body, 16, 1, &mut lat);
        assert_eq!(c.duplicates.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn context_switches_of_a_sleeping_process_are_counted() {
        // Another process, not this one: the test harness's threads come and go, and the sum
        // over this process's tasks shrinks when one exits.
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep runs");
        std::thread::sleep(std::time::Duration::from_millis(200));
        let switches = voluntary_context_switches(child.id());
        let _ = child.kill();
        let _ = child.wait();
        let switches = switches.expect("/proc is readable");
        assert!(
            switches >= 1,
            "a sleeping process gave up the CPU: {switches}"
        );
        assert_eq!(voluntary_context_switches(u32::MAX), None);
    }
}
