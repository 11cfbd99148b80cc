//! Where every live message's publish record is, and which durable queues still hold it: the
//! journal writer's bookkeeping, also read by whoever pages a body back in.
//!
//! A deep durable queue keeps a million messages' bodies on disk, so this map is most of what a
//! paged-out message costs (issue 16: ≤ 64 B of bookkeeping per paged message). Two hash maps
//! did it before (the writer's `HashMap<u64, Location>` with two `Vec`s per entry, and a
//! `DashMap` index for readers): ~150 B per message. Journal ids are handed out in publish
//! order and most messages are settled roughly in that order, so the live ids of a deep queue
//! are a dense run: they are kept in fixed chunks of [`CHUNK`] ids, each a boxed array of
//! 20-byte [`Slot`]s indexed by `id % CHUNK` (no per-entry allocation, no hashing):
//!
//! - the common case, one queue and a delivery count, is inline in the slot;
//! - a message in several queues, or delivered from a queue it does not name inline, keeps its
//!   queues and deliveries in the small `extra` map (fanout to durable queues; rare);
//! - a chunk that thins out below [`THIN`] live ids (a few old messages left behind by a queue
//!   that was drained) moves them to the `sparse` map and frees its array, so one old message
//!   cannot pin 20 KiB; a chunk with none left is freed, and freed chunks at the front are
//!   dropped. The newest chunk is never freed or thinned: publishes and settles at the tail of
//!   the log would otherwise allocate and free it over and over.
//!
//! Ids may arrive slightly out of order (publishers take ids before they queue their records);
//! an id whose chunk was already thinned or dropped goes to `sparse` as well.

use std::collections::{HashMap, VecDeque};

/// Ids per chunk: 1,024 slots of 20 bytes, one 20 KiB allocation (a jemalloc size class).
pub(super) const CHUNK: u64 = 1024;
/// A chunk (other than the newest) with fewer live ids than this moves them to `sparse`.
const THIN: u32 = 64;
/// `Slot::deliveries` of a message whose queues and deliveries are in `extra`.
const IN_EXTRA: u32 = u32::MAX;

/// Where a live message's record is, packed; `len == 0` marks a vacant slot (no record is empty).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
struct Slot {
    segment: u32,
    offset: u32,
    len: u32,
    /// The one durable queue holding it (unless `deliveries == IN_EXTRA`).
    queue: u32,
    /// How often it was delivered from `queue`, or `IN_EXTRA`.
    deliveries: u32,
}

/// Queues and deliveries of a message that does not fit a slot.
#[derive(Debug, Default)]
struct Extra {
    queues: Vec<u32>,
    /// One entry per delivery, naming the queue it was delivered from.
    delivered: Vec<u32>,
}

#[derive(Default)]
struct Chunk {
    /// `None` once freed (empty, or thinned out into `sparse`).
    slots: Option<Box<[Slot]>>,
    live: u32,
}

/// A live message as the writer hands it over (recovery, compaction).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
    pub queues: Vec<u32>,
    pub delivered: Vec<u32>,
}

/// The live messages, by journal id (see the module doc).
#[derive(Default)]
pub(super) struct LiveMap {
    /// Chunk `first_chunk + i` holds ids `(first_chunk + i) * CHUNK ..`.
    first_chunk: u64,
    chunks: VecDeque<Chunk>,
    sparse: HashMap<u64, Slot>,
    extra: HashMap<u64, Extra>,
    len: usize,
}

impl LiveMap {
    /// How many messages are live.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Where message `id`'s record is: (segment, offset, length).
    pub fn get(&self, id: u64) -> Option<(u64, u64, u32)> {
        self.slot(id)
            .map(|s| (u64::from(s.segment), u64::from(s.offset), s.len))
    }

    /// Records message `id` at `segment`/`offset` for `queues`, forgetting its deliveries
    /// (compaction re-journals them after the copy). Returns the segment of the record it
    /// replaces, if it was live already (a copy made by compaction).
    pub fn insert(
        &mut self,
        id: u64,
        segment: u64,
        offset: u64,
        len: u32,
        queues: Vec<u32>,
    ) -> Option<u64> {
        // Segments roll over at 64 MiB (`SEGMENT_SIZE`), so a record starts below 4 GiB, and
        // 2^32 segments of 64 MiB are 256 PiB of log.
        let mut slot = Slot {
            segment: segment as u32,
            offset: offset as u32,
            len: len.max(1),
            queue: 0,
            deliveries: 0,
        };
        self.extra.remove(&id);
        match queues.as_slice() {
            [queue] => slot.queue = *queue,
            _ => {
                slot.deliveries = IN_EXTRA;
                self.extra.insert(
                    id,
                    Extra {
                        queues,
                        delivered: Vec::new(),
                    },
                );
            }
        }
        let (old, dense) = match self.slot_mut(id, true) {
            Some(s) => (std::mem::replace(s, slot), true),
            None => (self.sparse.insert(id, slot).unwrap_or_default(), false),
        };
        if old.len > 0 {
            return Some(u64::from(old.segment));
        }
        self.len += 1;
        if dense {
            if let Some(chunk) = self.chunk_mut(id) {
                chunk.live += 1;
            }
        }
        None
    }

    /// Message `id` left `queue`; returns its record's segment if no queue holds it any more
    /// (it is gone from the map then).
    pub fn settle(&mut self, id: u64, queue: u32) -> Option<u64> {
        let slot = self.slot_mut(id, false)?;
        if slot.deliveries == IN_EXTRA {
            let segment = u64::from(slot.segment);
            let extra = self.extra.get_mut(&id)?;
            extra.queues.retain(|q| *q != queue);
            if !extra.queues.is_empty() {
                return None;
            }
            self.extra.remove(&id);
            self.remove(id);
            return Some(segment);
        }
        if slot.queue != queue {
            return None;
        }
        let segment = u64::from(slot.segment);
        self.remove(id);
        Some(segment)
    }

    /// Message `id` was delivered from `queue`.
    pub fn delivered(&mut self, id: u64, queue: u32) {
        let Some(slot) = self.slot_mut(id, false) else {
            return;
        };
        if slot.deliveries != IN_EXTRA {
            if slot.queue == queue && slot.deliveries < IN_EXTRA - 1 {
                slot.deliveries += 1;
                return;
            }
            let (inline_queue, count) = (slot.queue, slot.deliveries);
            slot.deliveries = IN_EXTRA;
            self.extra.insert(
                id,
                Extra {
                    queues: vec![inline_queue],
                    delivered: vec![inline_queue; count as usize],
                },
            );
        }
        if let Some(extra) = self.extra.get_mut(&id) {
            extra.delivered.push(queue);
        }
    }

    /// Every live message whose record is in `segment`, in id order within chunks.
    pub fn in_segment(&self, segment: u64) -> Vec<(u64, Entry)> {
        let mut found = Vec::new();
        for (i, chunk) in self.chunks.iter().enumerate() {
            let Some(slots) = &chunk.slots else { continue };
            let base = (self.first_chunk + i as u64) * CHUNK;
            for (k, slot) in slots.iter().enumerate() {
                if slot.len > 0 && u64::from(slot.segment) == segment {
                    found.push((base + k as u64, self.entry(base + k as u64, slot)));
                }
            }
        }
        for (id, slot) in &self.sparse {
            if u64::from(slot.segment) == segment {
                found.push((*id, self.entry(*id, slot)));
            }
        }
        found
    }

    /// The segment of every live message's record (recovery counts them per segment).
    pub fn segments(&self) -> impl Iterator<Item = u64> + '_ {
        let dense = self
            .chunks
            .iter()
            .filter_map(|c| c.slots.as_deref())
            .flatten()
            .filter(|s| s.len > 0);
        dense
            .chain(self.sparse.values())
            .map(|s| u64::from(s.segment))
    }

    /// Every live message (tests).
    #[cfg(test)]
    pub fn entries(&self) -> Vec<(u64, Entry)> {
        let mut all = Vec::with_capacity(self.len);
        for (i, chunk) in self.chunks.iter().enumerate() {
            let Some(slots) = &chunk.slots else { continue };
            let base = (self.first_chunk + i as u64) * CHUNK;
            for (k, slot) in slots.iter().enumerate() {
                if slot.len > 0 {
                    all.push((base + k as u64, self.entry(base + k as u64, slot)));
                }
            }
        }
        all.extend(self.sparse.iter().map(|(id, s)| (*id, self.entry(*id, s))));
        all
    }

    /// Puts back a recovered message with its earlier deliveries.
    pub fn restore(&mut self, id: u64, entry: Entry) {
        let segment = entry.segment;
        self.insert(id, segment, entry.offset, entry.len, entry.queues);
        for queue in entry.delivered {
            self.delivered(id, queue);
        }
    }

    /// Bytes of memory this map holds (chunk arrays, the chunk list, both side maps).
    #[cfg(test)]
    pub fn heap_bytes(&self) -> usize {
        let arrays = self.chunks.iter().filter(|c| c.slots.is_some()).count();
        arrays * CHUNK as usize * std::mem::size_of::<Slot>()
            + self.chunks.capacity() * std::mem::size_of::<Chunk>()
            + self.sparse.capacity() * (8 + std::mem::size_of::<Slot>())
            + self.extra.capacity() * (8 + std::mem::size_of::<Extra>())
    }

    fn entry(&self, id: u64, slot: &Slot) -> Entry {
        let (queues, delivered) = if slot.deliveries == IN_EXTRA {
            self.extra
                .get(&id)
                .map(|e| (e.queues.clone(), e.delivered.clone()))
                .unwrap_or_default()
        } else {
            (vec![slot.queue], vec![slot.queue; slot.deliveries as usize])
        };
        Entry {
            segment: u64::from(slot.segment),
            offset: u64::from(slot.offset),
            len: slot.len,
            queues,
            delivered,
        }
    }

    fn slot(&self, id: u64) -> Option<&Slot> {
        let dense = id
            .checked_div(CHUNK)
            .and_then(|c| c.checked_sub(self.first_chunk))
            .and_then(|i| self.chunks.get(i as usize))
            .and_then(|c| c.slots.as_ref())
            .map(|slots| &slots[(id % CHUNK) as usize])
            .filter(|s| s.len > 0);
        dense.or_else(|| self.sparse.get(&id))
    }

    fn chunk_mut(&mut self, id: u64) -> Option<&mut Chunk> {
        let i = (id / CHUNK).checked_sub(self.first_chunk)?;
        self.chunks.get_mut(i as usize)
    }

    /// The slot for `id`: its live one (dense or sparse), or with `create` a vacant dense one
    /// where a new id belongs (`None`: it belongs in `sparse`).
    fn slot_mut(&mut self, id: u64, create: bool) -> Option<&mut Slot> {
        let chunk_no = id / CHUNK;
        let at = (id % CHUNK) as usize;
        if !self.sparse.is_empty() && self.sparse.contains_key(&id) {
            return if create {
                None
            } else {
                self.sparse.get_mut(&id)
            };
        }
        if self.chunks.is_empty() {
            if !create {
                return None;
            }
            self.first_chunk = chunk_no;
        }
        let i = chunk_no.checked_sub(self.first_chunk)? as usize;
        if i >= self.chunks.len() {
            if !create {
                return None;
            }
            // A new newest chunk: the old newest may be freed now if nothing is left in it.
            if let Some(last) = self.chunks.back_mut() {
                if last.live == 0 {
                    last.slots = None;
                }
            }
            self.chunks.resize_with(i + 1, Chunk::default);
        }
        let newest = i + 1 == self.chunks.len();
        let chunk = &mut self.chunks[i];
        if chunk.slots.is_none() {
            // A freed chunk takes a new id only as the newest (late ids of older ones go to
            // `sparse`: one would otherwise pin a whole array).
            if !create || !newest {
                return None;
            }
            chunk.slots = Some(vec![Slot::default(); CHUNK as usize].into_boxed_slice());
        }
        let slot = &mut chunk.slots.as_mut()?[at];
        if slot.len == 0 && !create {
            return None;
        }
        Some(slot)
    }

    /// Removes live message `id` (dense or sparse), freeing or thinning its chunk.
    fn remove(&mut self, id: u64) {
        if self.sparse.remove(&id).is_some() {
            self.len -= 1;
            if self.sparse.is_empty() {
                self.sparse = HashMap::new();
            }
            return;
        }
        let newest =
            (id / CHUNK + 1).checked_sub(self.first_chunk) == Some(self.chunks.len() as u64);
        let mut len = self.len;
        let Some(chunk) = self.chunk_mut(id) else {
            return;
        };
        let Some(slots) = chunk.slots.as_mut() else {
            return;
        };
        slots[(id % CHUNK) as usize] = Slot::default();
        chunk.live -= 1;
        len -= 1;
        if newest {
            self.len = len;
            return;
        }
        if chunk.live == 0 {
            chunk.slots = None;
        } else if chunk.live < THIN {
            let base = (id / CHUNK) * CHUNK;
            let slots = chunk.slots.take().unwrap_or_default();
            chunk.live = 0;
            self.sparse.extend(
                slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.len > 0)
                    .map(|(k, s)| (base + k as u64, *s)),
            );
        }
        self.len = len;
        while self
            .chunks
            .front()
            .is_some_and(|c| c.slots.is_none() && self.chunks.len() > 1)
        {
            self.chunks.pop_front();
            self.first_chunk += 1;
        }
        if self.chunks.len() * 4 < self.chunks.capacity() && self.chunks.capacity() > 64 {
            self.chunks.shrink_to(self.chunks.capacity() / 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(segment: u64, queues: &[u32]) -> Entry {
        Entry {
            segment,
            offset: 100,
            len: 50,
            queues: queues.to_vec(),
            delivered: Vec::new(),
        }
    }

    #[test]
    fn a_slot_is_20_bytes_and_a_chunk_one_20_kib_array() {
        assert_eq!(std::mem::size_of::<Slot>(), 20);
        assert_eq!(CHUNK as usize * std::mem::size_of::<Slot>(), 20 * 1024);
    }

    #[test]
    fn a_million_single_queue_messages_cost_at_most_21_bytes_each() {
        let mut map = LiveMap::default();
        for id in 1..=1_000_000u64 {
            assert_eq!(map.insert(id, id / 60_000, id * 7, 1100, vec![3]), None);
        }
        assert_eq!(map.len(), 1_000_000);
        assert_eq!(
            map.get(777_777),
            Some((777_777 / 60_000, 777_777 * 7, 1100))
        );
        let per_message = map.heap_bytes() as f64 / 1e6;
        assert!(per_message <= 21.0, "{per_message} B per message");
    }

    #[test]
    fn settles_deliveries_and_several_queues() {
        let mut map = LiveMap::default();
        map.insert(1, 1, 0, 10, vec![5]);
        map.insert(2, 1, 10, 10, vec![5, 6]);
        map.delivered(1, 5);
        map.delivered(1, 5);
        map.delivered(2, 6);
        assert_eq!(map.entries().len(), 2);
        let one = &map
            .in_segment(1)
            .into_iter()
            .find(|(id, _)| *id == 1)
            .unwrap()
            .1;
        assert_eq!(
            (one.queues.clone(), one.delivered.clone()),
            (vec![5], vec![5, 5])
        );
        // Delivered from a queue it does not hold inline: kept exactly, in `extra`.
        map.delivered(1, 9);
        let one = &map
            .in_segment(1)
            .into_iter()
            .find(|(id, _)| *id == 1)
            .unwrap()
            .1;
        assert_eq!(one.delivered, vec![5, 5, 9]);
        assert_eq!(map.settle(1, 7), None, "not in that queue");
        assert_eq!(map.settle(1, 5), Some(1), "gone from its only queue");
        assert_eq!(map.get(1), None);
        assert_eq!(map.settle(2, 5), None, "still in queue 6");
        assert_eq!(map.get(2), Some((1, 10, 10)));
        assert_eq!(map.settle(2, 6), Some(1));
        assert_eq!(map.len(), 0);
        assert!(map.extra.is_empty());
    }

    #[test]
    fn a_copy_replaces_the_record_and_forgets_deliveries() {
        let mut map = LiveMap::default();
        map.insert(7, 1, 0, 10, vec![2]);
        map.delivered(7, 2);
        assert_eq!(map.insert(7, 4, 80, 10, vec![2]), Some(1));
        assert_eq!(map.len(), 1);
        assert_eq!(map.get(7), Some((4, 80, 10)));
        assert_eq!(map.entries()[0].1.delivered, Vec::<u32>::new());
    }

    #[test]
    fn old_messages_left_behind_move_to_the_sparse_map_and_free_their_chunks() {
        let mut map = LiveMap::default();
        let n = 100 * CHUNK;
        for id in 0..n {
            map.insert(id, 1, id, 10, vec![1]);
        }
        // Every message but one in 500 is settled (a drained queue; a slow one keeps a few).
        for id in 0..n {
            if id % 500 != 0 {
                assert_eq!(map.settle(id, 1), Some(1));
            }
        }
        let kept: Vec<u64> = (0..n).filter(|id| id % 500 == 0).collect();
        assert_eq!(map.len(), kept.len());
        for id in &kept {
            assert_eq!(map.get(*id), Some((1, *id, 10)), "id {id}");
        }
        let arrays = map.chunks.iter().filter(|c| c.slots.is_some()).count();
        assert!(
            arrays <= 1,
            "only the newest chunk keeps its array: {arrays}"
        );
        assert!(
            map.heap_bytes() < 40 * 1024 + kept.len() * 64,
            "{} bytes for {} messages",
            map.heap_bytes(),
            kept.len()
        );
        // Late ids and copies of sparse ones land in the sparse map too, and settle from there.
        assert_eq!(map.insert(kept[3], 2, 0, 10, vec![1]), Some(1));
        assert_eq!(map.get(kept[3]), Some((2, 0, 10)));
        for id in &kept {
            assert!(map.settle(*id, 1).is_some(), "id {id}");
        }
        assert_eq!(map.len(), 0);
        assert!(map.sparse.is_empty());
        assert_eq!(map.entries(), Vec::new());
    }

    #[test]
    fn ids_out_of_order_and_restore() {
        let mut map = LiveMap::default();
        for id in [5000u64, 4999, 6000, 3, 2048] {
            map.insert(id, 1, id, 10, vec![1]);
        }
        for id in [5000u64, 4999, 6000, 3, 2048] {
            assert_eq!(map.get(id), Some((1, id, 10)), "id {id}");
        }
        let mut restored = LiveMap::default();
        let mut e = entry(2, &[1, 4]);
        e.delivered = vec![4, 1, 4];
        restored.restore(9, e.clone());
        restored.restore(
            10,
            Entry {
                delivered: vec![3, 3],
                ..entry(2, &[3])
            },
        );
        let mut all = restored.entries();
        all.sort_by_key(|(id, _)| *id);
        assert_eq!(all[0], (9, e));
        assert_eq!(all[1].1.delivered, vec![3, 3]);
    }
}
