//! Message deduplication, the interface of the community plugin rabbitmq-message-deduplication
//! (also LavinMQ's): a message's `x-deduplication-header` header names its id; a message whose
//! id is in the cache is dropped.
//!
//! - The exchange type `x-message-deduplication` (routes as fanout) drops duplicates before
//!   routing; `x-cache-size` (required), `x-cache-ttl` (ms) and `x-cache-persistence`
//!   (`memory`/`disk`) are its arguments.
//! - A queue declared with `x-message-deduplication: true` (optional `x-cache-size`,
//!   `x-cache-ttl`) does not enqueue a duplicate (the publisher's confirm is still an ack).
//!
//! Durability: a durable exchange with `x-cache-persistence: disk`, and every durable
//! deduplicating queue, journals each id it remembers (and settles it when forgotten), with the
//! wall-clock time its TTL ends ([`EXPIRES_AT`]); after a restart the cache holds the same ids,
//! each expiring when it would have without the restart (vhost/persistence.rs).
//!
//! A message may carry its own `x-cache-ttl` header, overriding the cache's TTL for its id.
//! Messages without the id header are never checked.

use crate::ids::{DurableQueueId, MessageId};
use crate::message::Message;
use crate::store::Store;
use crate::wall_clock;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use warren_protocol::{FieldTable, FieldValue};

/// The exchange type's name, and the queue argument turning deduplication on.
pub const TYPE_NAME: &str = "x-message-deduplication";
/// The queue argument (a boolean).
pub const X_MESSAGE_DEDUPLICATION: &str = "x-message-deduplication";
/// Most ids the cache keeps; the oldest go first.
pub const X_CACHE_SIZE: &str = "x-cache-size";
/// Milliseconds an id stays in the cache (argument, or per-message header).
pub const X_CACHE_TTL: &str = "x-cache-ttl";
/// `memory` or `disk` (exchange argument).
pub const X_CACHE_PERSISTENCE: &str = "x-cache-persistence";
/// The message header naming its id.
pub const X_DEDUPLICATION_HEADER: &str = "x-deduplication-header";

/// A queue's cache size when it names none: a bound on what a publisher can make the broker
/// remember.
pub const DEFAULT_QUEUE_CACHE_SIZE: usize = 1_000_000;

/// An integer argument as the plugin reads it: an integer, or a string of digits.
fn positive(v: &FieldValue) -> Option<u64> {
    let n = match v {
        FieldValue::LongStr(text) => std::str::from_utf8(text).ok()?.trim().parse::<i64>().ok()?,
        other => other.as_i64()?,
    };
    u64::try_from(n).ok().filter(|n| *n > 0)
}

/// The exchange type's argument checks, with the plugin's 406 texts.
pub fn validate_exchange(arguments: &FieldTable) -> Result<(), &'static str> {
    if arguments.get(X_CACHE_SIZE).and_then(positive).is_none() {
        return Err(
            "Missing or invalid argument, 'x-cache-size' must be an integer greater than 0",
        );
    }
    if arguments
        .get(X_CACHE_TTL)
        .is_some_and(|v| positive(v).is_none())
    {
        return Err("Invalid argument, 'x-cache-ttl' must be an integer greater than 0");
    }
    match arguments.get(X_CACHE_PERSISTENCE).map(|v| v.as_str()) {
        None | Some(Some("disk" | "memory")) => Ok(()),
        Some(_) => Err("Invalid argument, 'x-cache-persistence' must be either 'disk' or 'memory'"),
    }
}

/// The cache an exchange or queue declared with `arguments` uses (size, TTL); a queue without
/// a size gets [`DEFAULT_QUEUE_CACHE_SIZE`].
pub fn cache_for(arguments: &FieldTable) -> DedupCache {
    let size = arguments
        .get(X_CACHE_SIZE)
        .and_then(positive)
        .map_or(DEFAULT_QUEUE_CACHE_SIZE, |n| {
            usize::try_from(n).unwrap_or(usize::MAX)
        });
    let ttl = arguments
        .get(X_CACHE_TTL)
        .and_then(positive)
        .map(Duration::from_millis);
    DedupCache::new(size, ttl)
}

/// Whether a queue's arguments turn deduplication on.
pub fn queue_wants_it(arguments: &FieldTable) -> bool {
    matches!(
        arguments.get(X_MESSAGE_DEDUPLICATION),
        Some(FieldValue::Bool(true))
    )
}

/// The id of a message with `headers`, as bytes (a string's bytes; any other value's text).
fn id_of(headers: &FieldTable) -> Option<Vec<u8>> {
    Some(match headers.get(X_DEDUPLICATION_HEADER)? {
        FieldValue::LongStr(b) => b.to_vec(),
        other => format!("{other:?}").into_bytes(),
    })
}

/// On a journaled id: when its TTL ends, in wall-clock milliseconds since the Unix epoch.
pub const EXPIRES_AT: &str = "x-cache-expires-at";

/// A durable deduplicating queue journals each id it remembers under a journal id of this
/// name (see [`CACHE_QUEUE_PREFIX`]).
pub const QUEUE_CACHE_PREFIX: &str = "amq.dedup-queue-cache/";

/// The journal's name for the cache of deduplicating queue `queue`.
pub fn queue_cache_name(queue: &str) -> String {
    format!("{QUEUE_CACHE_PREFIX}{queue}")
}

/// A durable exchange with `x-cache-persistence: disk` journals each id it remembers as a tiny
/// message under a journal id of this name (a prefix no client may declare as a queue); a
/// restart gives them back to the exchange's cache.
pub const CACHE_QUEUE_PREFIX: &str = "amq.dedup-cache/";

/// The journal's name for the cache of deduplication exchange `exchange`.
pub fn cache_queue_name(exchange: &str) -> String {
    format!("{CACHE_QUEUE_PREFIX}{exchange}")
}

/// Whether an exchange's arguments ask for its cache on disk.
pub fn wants_disk(arguments: &FieldTable) -> bool {
    arguments.get(X_CACHE_PERSISTENCE).and_then(|v| v.as_str()) == Some("disk")
}

/// Recently seen ids: at most `size`, each until its TTL runs out.
pub struct DedupCache {
    size: usize,
    ttl: Option<Duration>,
    state: Mutex<CacheState>,
    /// Where remembered ids are journaled (disk persistence), if anywhere.
    journal: OnceLock<(Arc<Store>, DurableQueueId)>,
}

#[derive(Default)]
struct CacheState {
    /// id → (insertion number, expiry, its journal record when on disk).
    entries: HashMap<Vec<u8>, (u64, Option<Instant>, Option<MessageId>)>,
    /// (id, insertion number), oldest first; an item whose number no longer matches its
    /// entry is stale (the id expired and came back) and is skipped.
    order: VecDeque<(Vec<u8>, u64)>,
    inserted: u64,
}

impl DedupCache {
    /// An empty cache of at most `size` ids (at least 1), each kept for `ttl` (or until evicted).
    pub fn new(size: usize, ttl: Option<Duration>) -> Self {
        DedupCache {
            size: size.max(1),
            ttl,
            state: Mutex::default(),
            journal: OnceLock::new(),
        }
    }

    /// Journals remembered ids under `id` from now on (disk persistence).
    pub fn attach_journal(&self, store: Arc<Store>, id: DurableQueueId) {
        let _ = self.journal.set((store, id));
    }

    /// An id recovered from the journal (its record is `record`): remembered again until the
    /// time its TTL ends (its [`EXPIRES_AT`] header; `now` is `now_ms` on the wall clock); one
    /// already expired is forgotten. An id journaled before expiry times were written down gets
    /// its whole TTL again from `now`.
    pub fn recover(&self, message: &Message, record: MessageId, now: Instant, now_ms: u64) {
        let Some(headers) = message.properties.headers.as_ref() else {
            return self.settle(vec![record]);
        };
        let Some(id) = id_of(headers) else {
            return self.settle(vec![record]);
        };
        let expires = match headers.get(EXPIRES_AT).and_then(FieldValue::as_i64) {
            Some(at) => {
                let at = u64::try_from(at).unwrap_or(0);
                if at <= now_ms {
                    return self.settle(vec![record]);
                }
                Some(wall_clock::instant_of(at, now, now_ms))
            }
            None => headers
                .get(X_CACHE_TTL)
                .and_then(positive)
                .map(Duration::from_millis)
                .or(self.ttl)
                .map(|t| now + t),
        };
        let gone = self
            .state
            .lock()
            .insert(id, expires, Some(record), self.size);
        self.settle(gone);
    }

    /// Whether ids are journaled (a durable cache).
    pub fn is_journaled(&self) -> bool {
        self.journal.get().is_some()
    }

    /// Writes a remembered id down (disk persistence): a body-less persistent message whose
    /// headers are the id and its TTL.
    fn journal_id(&self, id: &[u8], ttl: Option<Duration>) -> Option<MessageId> {
        let (store, queue) = self.journal.get()?;
        let mut headers = FieldTable::new();
        headers.insert(
            X_DEDUPLICATION_HEADER.into(),
            FieldValue::LongStr(Bytes::copy_from_slice(id)),
        );
        if let Some(ttl) = ttl {
            let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
            headers.insert(X_CACHE_TTL.into(), FieldValue::I64(ms));
            let at = wall_clock::ms_after(wall_clock::now_ms(), ttl);
            let at = i64::try_from(at).unwrap_or(i64::MAX);
            headers.insert(EXPIRES_AT.into(), FieldValue::I64(at));
        }
        let properties = warren_protocol::BasicProperties {
            headers: Some(headers),
            delivery_mode: Some(2),
            ..Default::default()
        };
        let message = Message::new(
            warren_protocol::ShortStr::empty(),
            warren_protocol::ShortStr::empty(),
            properties,
            Bytes::new(),
        );
        store.publish(&message, vec![*queue]);
        message.persist_id.get()
    }

    /// Settles the journal records of forgotten ids.
    fn settle(&self, gone: Vec<MessageId>) {
        if let Some((store, queue)) = self.journal.get() {
            for record in gone {
                store.settle(record, *queue);
            }
        }
    }

    /// Whether a message with `headers` is a duplicate of one seen within the window; if it
    /// is not, its id is remembered from now on. Messages without an id are never duplicates.
    pub fn is_duplicate(&self, headers: Option<&FieldTable>, now: Instant) -> bool {
        let Some(headers) = headers else {
            return false;
        };
        let Some(id) = id_of(headers) else {
            return false;
        };
        let ttl = headers
            .get(X_CACHE_TTL)
            .and_then(positive)
            .map(Duration::from_millis)
            .or(self.ttl);
        let mut st = self.state.lock();
        if let Some((_, expires, _)) = st.entries.get(&id) {
            if expires.is_none_or(|t| t > now) {
                return true;
            }
        }
        let record = self.journal_id(&id, ttl);
        let gone = st.insert(id, ttl.map(|t| now + t), record, self.size);
        drop(st);
        self.settle(gone);
        false
    }

    /// How many ids are remembered (expired ones included until they are evicted or seen).
    pub fn len(&self) -> usize {
        self.state.lock().entries.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl CacheState {
    /// Remembers `id`; returns the journal records of the ids it replaced or evicted.
    fn insert(
        &mut self,
        id: Vec<u8>,
        expires: Option<Instant>,
        record: Option<MessageId>,
        size: usize,
    ) -> Vec<MessageId> {
        let mut gone = Vec::new();
        while self.entries.len() >= size && !self.entries.contains_key(&id) {
            let Some((old, n)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&old).is_some_and(|(m, _, _)| *m == n) {
                gone.extend(self.entries.remove(&old).and_then(|(_, _, r)| r));
            }
        }
        self.inserted += 1;
        let n = self.inserted;
        if let Some((_, _, Some(old))) = self.entries.insert(id.clone(), (n, expires, record)) {
            gone.push(old);
        }
        self.order.push_back((id, n));
        if self.order.len() > 2 * size.max(16) {
            let entries = &self.entries;
            self.order
                .retain(|(id, n)| entries.get(id).is_some_and(|(m, _, _)| m == n));
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn headers(id: &'static str) -> FieldTable {
        let mut t = FieldTable::new();
        t.insert(
            X_DEDUPLICATION_HEADER.into(),
            FieldValue::LongStr(Bytes::from_static(id.as_bytes())),
        );
        t
    }

    #[test]
    fn an_id_is_a_duplicate_until_it_expires_or_is_evicted() {
        let cache = DedupCache::new(2, Some(Duration::from_millis(100)));
        let t0 = Instant::now();
        assert!(!cache.is_duplicate(Some(&headers("a")), t0));
        assert!(cache.is_duplicate(Some(&headers("a")), t0 + Duration::from_millis(50)));
        assert!(!cache.is_duplicate(Some(&headers("a")), t0 + Duration::from_millis(100)));
        assert!(!cache.is_duplicate(Some(&headers("b")), t0 + Duration::from_millis(100)));
        // Full (a, b): c evicts the oldest, a.
        assert!(!cache.is_duplicate(Some(&headers("c")), t0 + Duration::from_millis(100)));
        assert_eq!(cache.len(), 2);
        assert!(!cache.is_duplicate(Some(&headers("a")), t0 + Duration::from_millis(101)));
        assert!(!cache.is_duplicate(None, t0));
        assert!(!cache.is_duplicate(Some(&FieldTable::new()), t0));
    }

    #[test]
    fn the_plugin_texts_for_bad_exchange_arguments() {
        let mut args = FieldTable::new();
        assert!(validate_exchange(&args)
            .unwrap_err()
            .contains("'x-cache-size' must be"));
        args.insert(X_CACHE_SIZE.into(), FieldValue::I32(10));
        assert_eq!(validate_exchange(&args), Ok(()));
        args.insert(X_CACHE_TTL.into(), FieldValue::I32(-1));
        assert!(validate_exchange(&args)
            .unwrap_err()
            .contains("'x-cache-ttl' must be"));
        args.insert(X_CACHE_TTL.into(), FieldValue::I32(1000));
        args.insert(
            X_CACHE_PERSISTENCE.into(),
            FieldValue::LongStr(Bytes::from_static(b"tape")),
        );
        assert!(validate_exchange(&args)
            .unwrap_err()
            .contains("either 'disk' or 'memory'"));
    }
}
