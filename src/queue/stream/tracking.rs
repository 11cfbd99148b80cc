//! Server-side offset tracking: the last offset each named consumer has processed, kept in
//! the stream's directory (`offsets`, rewritten whole and renamed into place, so a crash leaves
//! the old or the new file). A consumer names itself with the basic.consume argument
//! `x-stream-offset-tracking-name`; its position is what it acknowledged with nothing
//! unacknowledged before it (out-of-order acks never skip a message), written at most every
//! [`STORE_EVERY`] while it acks and when it goes.
//!
//! File layout: per entry, name length u8, name, offset u64 (big-endian).

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::warn;

/// Tracking names one stream keeps at most: a client cannot grow the file (rewritten whole on
/// every store) without bound; a new name past this is not stored (logged).
pub const MAX_NAMES: usize = 10_000;

/// How often a consumer that keeps acking has its position written.
pub const STORE_EVERY: Duration = Duration::from_millis(200);

/// Stored positions of one stream, by consumer name.
pub struct Offsets {
    path: PathBuf,
    stored: Mutex<HashMap<String, u64>>,
}

impl Offsets {
    /// Loads the positions stored in `dir` (none if there is no file yet).
    pub fn load(dir: &Path) -> Offsets {
        let path = dir.join("offsets");
        let mut stored = HashMap::new();
        if let Ok(bytes) = std::fs::read(&path) {
            let mut at = 0;
            while at < bytes.len() {
                let n = usize::from(bytes[at]);
                let Some(entry) = bytes.get(at + 1..at + 1 + n + 8) else {
                    warn!(file = %path.display(), "stream offsets file ends early; later entries ignored");
                    break;
                };
                let name = String::from_utf8_lossy(&entry[..n]).into_owned();
                let mut offset = [0u8; 8];
                offset.copy_from_slice(&entry[n..]);
                stored.insert(name, u64::from_be_bytes(offset));
                at += 1 + n + 8;
            }
        }
        Offsets {
            path,
            stored: Mutex::new(stored),
        }
    }

    /// The stored position of `name`: the last offset it processed.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.stored.lock().get(name).copied()
    }

    /// Records `name`'s position and rewrites the file.
    pub fn store(&self, name: &str, offset: u64) {
        let mut stored = self.stored.lock();
        if stored.get(name) == Some(&offset) {
            return;
        }
        if !stored.contains_key(name) && stored.len() >= MAX_NAMES {
            warn!(file = %self.path.display(), name, "too many tracking names on one stream; this one is not stored");
            return;
        }
        stored.insert(name.to_owned(), offset);
        let mut bytes = Vec::with_capacity(stored.len() * 24);
        for (name, offset) in stored.iter() {
            let name = &name.as_bytes()[..name.len().min(255)];
            bytes.push(name.len() as u8);
            bytes.extend_from_slice(name);
            bytes.extend_from_slice(&offset.to_be_bytes());
        }
        let tmp = self.path.with_extension("tmp");
        if let Err(e) =
            std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, &self.path))
        {
            warn!(file = %self.path.display(), error = %e, "could not store stream consumer offsets");
        }
    }
}

/// A tracking consumer's deliveries awaiting ack, to know the position it has processed.
#[derive(Default)]
pub struct Outstanding {
    /// Delivered, unacknowledged offsets (with the identity of the delivered message, since
    /// another consumer may hold the same offset).
    unacked: BTreeMap<u64, usize>,
    /// The highest offset delivered.
    last_delivered: Option<u64>,
    /// The position changed since it was last stored.
    pub dirty: bool,
}

impl Outstanding {
    /// Offset `offset` went out as the message at address `id`.
    pub fn delivered(&mut self, offset: u64, id: usize) {
        self.unacked.insert(offset, id);
        self.last_delivered = Some(offset);
    }

    /// Offset `offset` was acknowledged; whether it was this consumer's delivery `id`.
    pub fn acked(&mut self, offset: u64, id: usize) -> bool {
        if self.unacked.get(&offset) == Some(&id) {
            self.unacked.remove(&offset);
            self.dirty = true;
            return true;
        }
        false
    }

    /// The last offset processed with nothing unacknowledged before it.
    pub fn position(&self) -> Option<u64> {
        match self.unacked.keys().next() {
            Some(first) => first.checked_sub(1),
            None => self.last_delivered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_survive_a_reload_and_out_of_order_acks_never_skip() {
        let dir = tempfile::tempdir().expect("temp dir");
        let offsets = Offsets::load(dir.path());
        assert_eq!(offsets.get("app"), None);
        offsets.store("app", 41);
        offsets.store("other", 7);
        let again = Offsets::load(dir.path());
        assert_eq!(again.get("app"), Some(41));
        assert_eq!(again.get("other"), Some(7));

        let mut o = Outstanding::default();
        for i in 10..15 {
            o.delivered(i, 1);
        }
        assert!(o.acked(12, 1));
        assert!(!o.acked(11, 2), "another consumer's delivery");
        assert_eq!(o.position(), Some(9));
        assert!(o.acked(10, 1) && o.acked(11, 1));
        assert_eq!(o.position(), Some(12));
        assert!(o.acked(13, 1) && o.acked(14, 1));
        assert_eq!(o.position(), Some(14));
    }
}
