//! The message journal: append-only segment files written by one group-commit thread.
//!
//! Callers hand encoded records to [`Journal::append`] and get a sequence number; the writer
//! thread takes everything queued, writes it, calls `fdatasync` once, and then publishes the
//! highest sequence number that is on disk ([`Journal::synced`]). Whatever arrives during an
//! fsync joins the next batch: no timers. A failed write or fsync stops the broker.
//!
//! Segments are zero-filled ahead of use: once the current segment is half full, a helper
//! thread writes the next one full of zeros (`NNN.prealloc`, synced) and the writer renames it
//! into place when it rolls over. Writing into blocks that already exist leaves fdatasync no
//! file size or extent to commit: on this project's VM a sync of a 110 KB batch took ~0.1 ms
//! that way against 2–7 ms for a growing file while other processes kept the ext4 journal busy
//! (issue 16). Replay reads a run of zeros up to the end of a segment as its unused tail.
//!
//! Settle records (a message acknowledged) need not be on disk before anything is answered:
//! one lost in a crash means a redelivery, which at-least-once delivery allows (RabbitMQ does
//! not sync acks either). So they neither wake the writer one by one nor cost an fdatasync of
//! their own: they wait in the submitter and go out in front of the next other record, or at
//! the latest [`SETTLE_DELAY`] after the first of them (one wakeup); a batch of nothing but
//! settles is written without a sync, and the next synced batch makes it durable. With one
//! publisher and an acking consumer this halves the writer's wakeups and fdatasyncs per
//! confirm window (issue 16).
//!
//! The thread also keeps each live message's place, deletes segments from the oldest on once
//! all their messages are settled, and copies the few live messages of an old segment forward
//! so that one slow queue cannot pin the whole log.

mod live;

use super::record::{Record, RecordError};
use super::StoreError;
use crate::message::Message;
use bytes::{Bytes, BytesMut};
use live::LiveMap;
use parking_lot::{Condvar, Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use tokio::sync::watch;
use tracing::{error, info, warn};
use warren_protocol::ShortStr;

/// Segments roll over past this size.
pub const SEGMENT_SIZE: u64 = 64 * 1024 * 1024;
/// An old segment with at most this many live messages is compacted (copied forward).
const COMPACT_LIVE_MAX: usize = 4096;
/// Batches the oldest segment must go unchanged before it is compacted.
const STAGNANT_BATCHES: u32 = 64;
/// Most bytes written in one batch before it is synced.
const BATCH_MAX: usize = 8 * 1024 * 1024;
/// Settles wait at most this long for another record to travel with.
pub const SETTLE_DELAY: std::time::Duration = std::time::Duration::from_millis(20);
/// More settles than this waiting are sent at once.
const SETTLES_HELD_MAX: usize = 4096;

/// Where a live message's record is, and which durable queues still hold it.
#[derive(Clone, Debug)]
pub struct Location {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
    pub queues: Vec<u32>,
    pub delivered: Vec<u32>,
    /// Body length (known after replay; recovered messages start with their body on disk).
    pub body_len: u32,
}

/// Where each live message's publish record is and which queues hold it ([`LiveMap`]): kept by
/// the writer (one write lock per batch: filled once the record is on disk, updated by
/// compaction, cleared when settled), read by whoever pages a body back in.
type Index = Arc<RwLock<LiveMap>>;

enum Command {
    Append {
        seq: u64,
        bytes: BytesMut,
        effect: Effect,
    },
    /// Write out and fdatasync another log (a stream's segment) in this batch, before `seq`
    /// counts as synced: stream confirms ride on the journal's group commit.
    SyncFile {
        seq: u64,
        target: Arc<dyn SyncTarget>,
    },
    /// Settles are held in the submitter: send them within [`SETTLE_DELAY`].
    SettlesHeld,
    Stop,
}

/// A log outside the journal (a stream) whose appends wait in memory until the journal's writer
/// thread writes them out with one `write` per batch and fdatasyncs them, before the batch's
/// sequence numbers count as synced.
pub trait SyncTarget: Send + Sync {
    /// Writes what was appended since the last call and makes it durable.
    fn write_and_sync(&self) -> std::io::Result<()>;
}

/// What a record changes in the writer's bookkeeping.
pub enum Effect {
    Publish { id: u64, queues: Vec<u32> },
    Settle { id: u64, queue: u32 },
    Delivered { id: u64, queue: u32 },
}

/// The highest sequence number whose bookkeeping (the [`Index`]) the writer applied, for
/// readers that look for a record still on its way to disk.
#[derive(Default)]
struct Applied {
    /// (sequence number, whether the writer stopped).
    state: Mutex<(u64, bool)>,
    grew: Condvar,
}

impl Applied {
    fn advance(&self, seq: u64) {
        let mut state = self.state.lock();
        state.0 = state.0.max(seq);
        self.grew.notify_all();
    }

    fn stop(&self) {
        self.state.lock().1 = true;
        self.grew.notify_all();
    }

    /// Blocks until records up to `seq` are applied (or the writer stopped). At most one batch
    /// (one write and fsync) away: the writer applies each batch right after syncing it.
    fn wait_for(&self, seq: u64) {
        let mut state = self.state.lock();
        while state.0 < seq && !state.1 {
            self.grew.wait(&mut state);
        }
    }
}

struct Submitter {
    next_seq: u64,
    tx: mpsc::Sender<Command>,
    /// Settle records not yet sent, in sequence order (see the module doc).
    settles: Vec<Command>,
    /// The writer was told (`SettlesHeld`) and will send the held settles by its deadline.
    settles_timer: bool,
}

impl Submitter {
    /// Sends the held settles (before anything appended after them: the writer applies
    /// records in sequence order).
    fn send_settles(&mut self) {
        for cmd in self.settles.drain(..) {
            let _ = self.tx.send(cmd);
        }
    }
}

/// Handle to the journal; cheap to share behind an `Arc`.
pub struct Journal {
    dir: PathBuf,
    index: Index,
    submit: Arc<Mutex<Submitter>>,
    synced: watch::Receiver<u64>,
    applied: Arc<Applied>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// fsync latency and batch sizes, counted by the writer once per batch.
    stats: Arc<crate::stats::JournalStats>,
}

impl Journal {
    /// Starts the writer on `dir`, continuing from recovered state (`live`, `segments`).
    pub fn start(
        dir: &Path,
        live: HashMap<u64, Location>,
        segments: Vec<u64>,
    ) -> Result<Self, StoreError> {
        Self::start_with_segment_size(dir, live, segments, SEGMENT_SIZE)
    }

    /// [`Journal::start`] with another segment size (tests use small ones).
    pub fn start_with_segment_size(
        dir: &Path,
        live: HashMap<u64, Location>,
        segments: Vec<u64>,
        segment_size: u64,
    ) -> Result<Self, StoreError> {
        let next_segment = segments.last().map_or(1, |s| s + 1);
        let (tx, rx) = mpsc::channel();
        let (synced_tx, synced) = watch::channel(0);
        // In id order: the map keeps runs of ids in arrays.
        let mut ids: Vec<u64> = live.keys().copied().collect();
        ids.sort_unstable();
        let mut map = LiveMap::default();
        let mut live = live;
        for id in ids {
            if let Some(l) = live.remove(&id) {
                map.restore(
                    id,
                    live::Entry {
                        segment: l.segment,
                        offset: l.offset,
                        len: l.len,
                        queues: l.queues,
                        delivered: l.delivered,
                    },
                );
            }
        }
        let index: Index = Arc::new(RwLock::new(map));
        let mut writer = Writer::new(
            dir.to_path_buf(),
            next_segment,
            segments,
            segment_size,
            index.clone(),
        )?;
        let stats = writer.stats.clone();
        let applied = Arc::new(Applied::default());
        let applied_by_writer = applied.clone();
        let submit = Arc::new(Mutex::new(Submitter {
            next_seq: 1,
            tx,
            settles: Vec::new(),
            settles_timer: false,
        }));
        let submit_by_writer = submit.clone();
        let thread = std::thread::Builder::new()
            .name("warren-journal".into())
            .spawn(move || {
                writer.run(rx, &submit_by_writer, synced_tx, &applied_by_writer);
                applied_by_writer.stop();
            })
            .map_err(|e| StoreError::Io(dir.to_path_buf(), e))?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            index,
            submit,
            synced,
            applied,
            thread: Mutex::new(Some(thread)),
            stats,
        })
    }

    /// The writer's fsync latency and batch sizes so far.
    pub fn stats(&self) -> &crate::stats::JournalStats {
        &self.stats
    }

    /// Queues a record for the next batch; returns its sequence number.
    pub fn append(&self, record: &Record, effect: Effect) -> u64 {
        let mut bytes = BytesMut::new();
        record.encode(&mut bytes);
        let mut s = self.submit.lock();
        let seq = s.next_seq;
        s.next_seq += 1;
        let cmd = Command::Append { seq, bytes, effect };
        if matches!(
            cmd,
            Command::Append {
                effect: Effect::Settle { .. },
                ..
            }
        ) {
            if !s.settles_timer {
                s.settles_timer = true;
                let _ = s.tx.send(Command::SettlesHeld);
            }
            s.settles.push(cmd);
            if s.settles.len() >= SETTLES_HELD_MAX {
                s.send_settles();
            }
            return seq;
        }
        s.send_settles();
        // A send fails only after the writer stopped, which happens on shutdown or a failed
        // fsync (which aborts the process): nothing left to confirm either way.
        let _ = s.tx.send(cmd);
        seq
    }

    /// Asks for `target` to be written out and fdatasynced with the next batch; returns the
    /// sequence number that is synced once it is.
    pub fn sync_file(&self, target: Arc<dyn SyncTarget>) -> u64 {
        let mut s = self.submit.lock();
        // Held settles have lower sequence numbers: they go first, so `synced` never passes
        // a record that is not written.
        s.send_settles();
        let seq = s.next_seq;
        s.next_seq += 1;
        let _ = s.tx.send(Command::SyncFile { seq, target });
        seq
    }

    /// The highest sequence number on disk, and a way to wait for it to grow.
    pub fn synced(&self) -> watch::Receiver<u64> {
        self.synced.clone()
    }

    /// Reads message `id`'s publish record back (a paged-out body is needed again); `None` if
    /// it is not in the journal. A record still on its way to disk is waited for (the writer
    /// signals each applied batch; no polling); one moved by compaction meanwhile is looked up
    /// again. Call with no lock held: this reads a file.
    pub fn read(&self, id: u64) -> Option<Record> {
        let mut tried = None;
        loop {
            let found = self.index.read().get(id);
            let loc = match found {
                Some(loc) => loc,
                None if tried.is_none() => {
                    // Appended (its id exists) but maybe not written yet: wait until everything
                    // appended so far is applied, then look once more.
                    let appended = {
                        let mut s = self.submit.lock();
                        s.send_settles();
                        s.next_seq - 1
                    };
                    self.applied.wait_for(appended);
                    tried = Some((0, 0, 0));
                    self.index.read().get(id)?
                }
                None => return None,
            };
            if tried == Some(loc) {
                return None;
            }
            if let Some(record) = read_record(&self.dir, loc) {
                return Some(record);
            }
            // Moved by compaction (and its old segment deleted) meanwhile: look it up again.
            tried = Some(loc);
        }
    }

    /// Flushes what is queued and stops the writer.
    pub fn stop(&self) {
        {
            let mut s = self.submit.lock();
            s.send_settles();
            let _ = s.tx.send(Command::Stop);
        }
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.stop();
    }
}

fn read_record(dir: &Path, (segment, offset, len): (u64, u64, u32)) -> Option<Record> {
    use std::os::unix::fs::FileExt;
    let file = File::open(segment_path(dir, segment)).ok()?;
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, offset).ok()?;
    Record::decode(&Bytes::from(buf)).ok().map(|(r, _)| r)
}

pub fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:010}.seg"))
}

struct Writer {
    dir: PathBuf,
    file: File,
    segment: u64,
    offset: u64,
    /// Live message count per segment, oldest first (the current one included).
    segments: BTreeMap<u64, usize>,
    segment_size: u64,
    index: Index,
    /// The oldest segment and its live count at the last batch, and for how many batches
    /// neither changed: only a stagnant oldest segment is compacted (a queue being drained in
    /// order empties it soon anyway, and copying would be wasted writes).
    oldest_seen: (u64, usize),
    oldest_stagnant_batches: u32,
    /// The current segment ends in a batch written without a sync (settles only).
    unsynced: bool,
    /// The next segment being zero-filled by a helper thread: (its number, the file when done).
    next: Option<(u64, mpsc::Receiver<std::io::Result<File>>)>,
    stats: Arc<crate::stats::JournalStats>,
}

impl Writer {
    fn new(
        dir: PathBuf,
        segment: u64,
        old: Vec<u64>,
        segment_size: u64,
        index: Index,
    ) -> Result<Self, StoreError> {
        let mut segments: BTreeMap<u64, usize> = old.into_iter().map(|s| (s, 0)).collect();
        for segment in index.read().segments() {
            *segments.entry(segment).or_default() += 1;
        }
        segments.insert(segment, 0);
        remove_leftover_preallocations(&dir);
        let file = create_segment(&dir, segment)?;
        let mut w = Writer {
            dir,
            file,
            segment,
            offset: 0,
            segments,
            segment_size,
            index,
            oldest_seen: (0, 0),
            oldest_stagnant_batches: 0,
            unsynced: false,
            next: None,
            stats: Default::default(),
        };
        w.delete_settled_segments();
        Ok(w)
    }

    fn run(
        &mut self,
        rx: mpsc::Receiver<Command>,
        submit: &Mutex<Submitter>,
        synced: watch::Sender<u64>,
        applied: &Applied,
    ) {
        let mut batch = BytesMut::new();
        let mut effects = Vec::new();
        let mut targets: Vec<Arc<dyn SyncTarget>> = Vec::new();
        // When held settles must be sent (a `SettlesHeld` came and no record took them yet).
        let mut settles_due: Option<std::time::Instant> = None;
        loop {
            let first = match settles_due {
                None => match rx.recv() {
                    Ok(cmd) => cmd,
                    Err(_) => return,
                },
                Some(due) => {
                    match rx.recv_timeout(due.saturating_duration_since(std::time::Instant::now()))
                    {
                        Ok(cmd) => cmd,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            settles_due = None;
                            let mut s = submit.lock();
                            s.send_settles();
                            s.settles_timer = false;
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            };
            let mut stop = false;
            let mut last_seq = 0;
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Stop => stop = true,
                    Command::SyncFile { seq, target } => {
                        last_seq = seq;
                        if !targets
                            .iter()
                            .any(|t| std::ptr::addr_eq(Arc::as_ptr(t), Arc::as_ptr(&target)))
                        {
                            targets.push(target);
                        }
                    }
                    Command::SettlesHeld => {
                        settles_due.get_or_insert_with(|| std::time::Instant::now() + SETTLE_DELAY);
                    }
                    Command::Append { seq, bytes, effect } => {
                        last_seq = seq;
                        if self.offset + (batch.len() + bytes.len()) as u64 > self.segment_size
                            && self.offset + batch.len() as u64 > 0
                        {
                            self.write_and_sync(&mut batch, &mut effects, true);
                            self.roll();
                        }
                        effects.push((
                            effect,
                            self.offset + batch.len() as u64,
                            bytes.len() as u32,
                        ));
                        batch.extend_from_slice(&bytes);
                    }
                }
                if !stop && batch.len() < BATCH_MAX {
                    next = rx.try_recv().ok();
                }
            }
            self.write_and_sync(&mut batch, &mut effects, stop);
            for target in targets.drain(..) {
                if let Err(e) = target.write_and_sync() {
                    error!(error = %e, "stream segment write or fsync failed; stopping the broker");
                    std::process::abort();
                }
            }
            if last_seq > 0 {
                applied.advance(last_seq);
                synced.send_replace(last_seq);
            }
            self.delete_settled_segments();
            self.compact_oldest();
            if stop {
                self.sync_settles();
                return;
            }
        }
    }

    /// Writes and fdatasyncs the batch, then applies its bookkeeping. A batch of nothing but
    /// settles is not synced (see the module doc); the next synced batch covers it.
    /// `force_sync`: sync even so (a segment about to be left behind, a clean stop).
    fn write_and_sync(
        &mut self,
        batch: &mut BytesMut,
        effects: &mut Vec<(Effect, u64, u32)>,
        force_sync: bool,
    ) {
        if batch.is_empty() {
            return;
        }
        let needs_sync = force_sync
            || effects
                .iter()
                .any(|(effect, _, _)| !matches!(effect, Effect::Settle { .. }));
        let written = self.file.write_all_at(batch, self.offset);
        let result = if needs_sync {
            let syncing = std::time::Instant::now();
            let synced = written.and_then(|()| self.file.sync_data());
            self.stats
                .fsync_micros
                .observe(syncing.elapsed().as_micros() as u64);
            synced
        } else {
            written
        };
        self.unsynced = !needs_sync;
        self.stats.batch_records.observe(effects.len() as u64);
        if let Err(e) = result {
            // Confirms may already wait on this batch: continuing could lose confirmed data.
            error!(segment = self.segment, error = %e, "journal write or fsync failed; stopping the broker");
            std::process::abort();
        }
        self.offset += batch.len() as u64;
        batch.clear();
        if self.next.is_none() && self.offset >= self.segment_size / 2 {
            self.prepare_next();
        }
        // One write lock for the whole batch.
        let index = self.index.clone();
        let mut live = index.write();
        for (effect, offset, len) in effects.drain(..) {
            self.apply(&mut live, effect, offset, len);
        }
    }

    fn apply(&mut self, live: &mut LiveMap, effect: Effect, offset: u64, len: u32) {
        match effect {
            Effect::Publish { id, queues } => {
                if let Some(old) = live.insert(id, self.segment, offset, len, queues) {
                    self.release(old);
                }
                *self.segments.entry(self.segment).or_default() += 1;
            }
            Effect::Settle { id, queue } => {
                if let Some(segment) = live.settle(id, queue) {
                    self.release(segment);
                }
            }
            Effect::Delivered { id, queue } => live.delivered(id, queue),
        }
    }

    fn release(&mut self, segment: u64) {
        if let Some(n) = self.segments.get_mut(&segment) {
            *n = n.saturating_sub(1);
        }
    }

    /// Syncs settles written without a sync (before a segment is left behind, and on stop):
    /// only the last segment may end in records that are not on disk.
    fn sync_settles(&mut self) {
        if std::mem::take(&mut self.unsynced) {
            if let Err(e) = self.file.sync_data() {
                error!(segment = self.segment, error = %e, "journal fsync failed; stopping the broker");
                std::process::abort();
            }
        }
    }

    /// Starts zero-filling the next segment on a helper thread.
    fn prepare_next(&mut self) {
        let (tx, rx) = mpsc::channel();
        let (dir, segment, size) = (self.dir.clone(), self.segment + 1, self.segment_size);
        let spawned = std::thread::Builder::new()
            .name("warren-journal-prealloc".into())
            .spawn(move || {
                let _ = tx.send(zero_filled_segment(&dir, segment, size));
            });
        if spawned.is_ok() {
            self.next = Some((segment, rx));
        }
    }

    /// The zero-filled next segment renamed into place, if it was prepared (waits for it if
    /// it is still being written: it was started half a segment ago).
    fn take_prepared(&mut self) -> Option<File> {
        let (segment, rx) = self.next.take()?;
        let prepared = prealloc_path(&self.dir, segment);
        match rx.recv() {
            Ok(Ok(file)) if segment == self.segment => {
                let path = segment_path(&self.dir, segment);
                match std::fs::rename(&prepared, &path) {
                    Ok(()) => {
                        if let Ok(d) = File::open(&self.dir) {
                            let _ = d.sync_all();
                        }
                        Some(file)
                    }
                    Err(e) => {
                        warn!(path = %prepared.display(), error = %e, "cannot use a zero-filled journal segment");
                        None
                    }
                }
            }
            Ok(Err(e)) => {
                warn!(path = %prepared.display(), error = %e, "cannot zero-fill a journal segment");
                let _ = std::fs::remove_file(&prepared);
                None
            }
            _ => {
                let _ = std::fs::remove_file(&prepared);
                None
            }
        }
    }

    fn roll(&mut self) {
        self.sync_settles();
        self.segment += 1;
        self.offset = 0;
        if let Some(file) = self.take_prepared() {
            self.file = file;
            self.segments.insert(self.segment, 0);
            return;
        }
        match create_segment(&self.dir, self.segment) {
            Ok(file) => self.file = file,
            Err(e) => {
                error!(error = %e, "cannot create a journal segment; stopping the broker");
                std::process::abort();
            }
        }
        self.segments.insert(self.segment, 0);
    }

    /// Deletes segments from the oldest on while they hold no live message. Only from the
    /// oldest: a newer segment may hold the settle records of an older one's messages.
    fn delete_settled_segments(&mut self) {
        while let Some((&oldest, &live)) = self.segments.first_key_value() {
            if oldest == self.segment || live > 0 {
                return;
            }
            self.segments.remove(&oldest);
            let path = segment_path(&self.dir, oldest);
            if let Err(e) = std::fs::remove_file(&path) {
                warn!(path = %path.display(), error = %e, "could not delete a settled journal segment");
            }
        }
    }

    /// Copies the few live messages of the oldest segment to the current one, so the oldest
    /// can go (ARCHITECTURE §5: one old message must not pin the log).
    fn compact_oldest(&mut self) {
        let Some((&oldest, &live)) = self.segments.first_key_value() else {
            return;
        };
        if (oldest, live) == self.oldest_seen {
            self.oldest_stagnant_batches += 1;
        } else {
            self.oldest_seen = (oldest, live);
            self.oldest_stagnant_batches = 0;
        }
        if oldest == self.segment
            || live == 0
            || live > COMPACT_LIVE_MAX
            || self.segments.len() < 3
            || self.oldest_stagnant_batches < STAGNANT_BATCHES
        {
            return;
        }
        let bytes = match std::fs::read(segment_path(&self.dir, oldest)) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                return warn!(segment = oldest, error = %e, "cannot read a segment to compact it")
            }
        };
        let mut batch = BytesMut::new();
        let mut effects = Vec::new();
        let moving = self.index.read().in_segment(oldest);
        for (id, loc) in moving {
            let start = loc.offset as usize;
            let Some(slice) = bytes.get(start..start + loc.len as usize) else {
                continue;
            };
            let Ok((
                Record::Publish {
                    exchange,
                    routing_key,
                    header,
                    body,
                    ..
                },
                _,
            )) = Record::decode(&bytes.slice_ref(slice))
            else {
                continue;
            };
            let copy = Record::Publish {
                id,
                queues: loc.queues.clone(),
                delivered: false,
                exchange,
                routing_key,
                header,
                body,
            };
            let at = self.offset + batch.len() as u64;
            let before = batch.len();
            copy.encode(&mut batch);
            effects.push((
                Effect::Publish {
                    id,
                    queues: loc.queues,
                },
                at,
                (batch.len() - before) as u32,
            ));
            // Each earlier delivery is copied too, per queue, so delivery counts (quorum
            // queues' x-delivery-count and delivery limits) survive compaction exactly.
            for queue in loc.delivered {
                let at = self.offset + batch.len() as u64;
                let before = batch.len();
                Record::Delivered { id, queue }.encode(&mut batch);
                effects.push((
                    Effect::Delivered { id, queue },
                    at,
                    (batch.len() - before) as u32,
                ));
            }
        }
        info!(
            segment = oldest,
            messages = effects.len(),
            "compacting the oldest journal segment"
        );
        self.write_and_sync(&mut batch, &mut effects, false);
        self.delete_settled_segments();
    }
}

fn create_segment(dir: &Path, segment: u64) -> Result<File, StoreError> {
    let path = segment_path(dir, segment);
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::Io(path.clone(), e))?;
    // Make the new file's directory entry durable too.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(file)
}

fn prealloc_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:010}.prealloc"))
}

/// Writes segment `segment` full of zeros (`size` bytes) under its `.prealloc` name, synced.
/// The zeros go out with `O_DIRECT` where the file system takes it: copying 64 MiB through the
/// page cache cost as much CPU as the journal's own writes (a sixth of the broker's samples in
/// a persistent run), and would push useful pages out.
fn zero_filled_segment(dir: &Path, segment: u64, size: u64) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = prealloc_path(dir, segment);
    const ALIGN: usize = 4096;
    const CHUNK: usize = 1 << 20;
    let direct = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
        .open(&path);
    if let Ok(file) = direct {
        let buf = vec![0u8; CHUNK + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
        let zeros = &buf[start..start + CHUNK];
        if size.is_multiple_of(ALIGN as u64) && fill(&file, zeros, size).is_ok() {
            file.sync_all()?;
            // Reopened without O_DIRECT: the journal's own writes are not block-aligned.
            return OpenOptions::new().write(true).open(&path);
        }
    }
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)?;
    fill(&file, &vec![0u8; CHUNK], size)?;
    file.sync_all()?;
    Ok(file)
}

/// Writes `zeros` over `file` up to `size` bytes.
fn fill(file: &File, zeros: &[u8], size: u64) -> std::io::Result<()> {
    let mut at = 0;
    while at < size {
        let n = (size - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// A zero-filled segment that was never renamed into place (the broker stopped first).
fn remove_leftover_preallocations(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(".prealloc"))
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// What recovery found in the journal.
pub struct Replayed {
    /// Live messages by id (publish order): stubs whose bodies stay on disk, and where they are.
    pub messages: BTreeMap<u64, (Message, Location)>,
    /// Segment numbers that exist, oldest first.
    pub segments: Vec<u64>,
}

/// Reads every segment in order. A torn record at the very end is cut off; a bad record
/// anywhere else stops recovery with the file and offset.
pub fn replay(dir: &Path) -> Result<Replayed, StoreError> {
    let mut segments: Vec<u64> = std::fs::read_dir(dir)
        .map_err(|e| StoreError::Io(dir.to_path_buf(), e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
        .collect();
    segments.sort_unstable();
    let mut messages: BTreeMap<u64, (Message, Location)> = BTreeMap::new();
    let total = segments.len();
    for (n, &segment) in segments.iter().enumerate() {
        let path = segment_path(dir, segment);
        let bytes = Bytes::from(std::fs::read(&path).map_err(|e| StoreError::Io(path.clone(), e))?);
        let mut offset = 0usize;
        while offset < bytes.len() {
            // The unused, zero-filled tail of a preallocated segment (no record starts with
            // a zero byte).
            if bytes[offset..].iter().all(|b| *b == 0) {
                break;
            }
            match Record::decode(&bytes.slice(offset..)) {
                Ok((record, len)) => {
                    apply_replayed(&mut messages, record, segment, offset as u64, len as u32);
                    offset += len;
                }
                Err(e) => {
                    let last = n + 1 == total;
                    if last && !has_valid_record_after(&bytes, offset + 1) {
                        warn!(path = %path.display(), offset, ?e, "cutting off a torn record at the end of the journal");
                        truncate(&path, offset as u64)?;
                        break;
                    }
                    let reason = match e {
                        RecordError::Truncated => "record runs past the end of the segment",
                        RecordError::Corrupt(why) => why,
                    };
                    return Err(StoreError::Corrupt {
                        path,
                        offset: offset as u64,
                        reason,
                    });
                }
            }
        }
        info!(
            segment = n + 1,
            of = total,
            live_messages = messages.len(),
            "journal segment recovered"
        );
    }
    Ok(Replayed { messages, segments })
}

fn apply_replayed(
    messages: &mut BTreeMap<u64, (Message, Location)>,
    record: Record,
    segment: u64,
    offset: u64,
    len: u32,
) {
    match record {
        Record::Publish {
            id,
            queues,
            delivered,
            exchange,
            routing_key,
            header,
            body,
        } => {
            let delivered = if delivered {
                queues.clone()
            } else {
                Vec::new()
            };
            let loc = Location {
                segment,
                offset,
                len,
                queues,
                delivered,
                body_len: body.len() as u32,
            };
            // Straight to the stub the queue will hold: no copy of the header or the body is
            // kept, so recovery holds one segment in memory at a time and leaves no litter.
            let Some(header) = super::record::parse_header(&header) else {
                // Checksummed, so written by Warren itself: a bug, never a torn write.
                return error!(
                    id,
                    segment,
                    offset,
                    "a journal record's content header does not parse; skipping it"
                );
            };
            let properties = warren_protocol::BasicProperties {
                priority: header.properties.priority,
                expiration: header
                    .properties
                    .expiration
                    .as_deref()
                    .map(ShortStr::truncated),
                ..Default::default()
            };
            let stub = Message::paged(
                crate::message::Route::new(&exchange, &routing_key),
                properties,
                body.len(),
                crate::ids::MessageId(id),
            );
            messages.insert(id, (stub, loc));
        }
        Record::Settle { id, queue } => {
            if let Some((_, loc)) = messages.get_mut(&id) {
                loc.queues.retain(|q| *q != queue);
                if loc.queues.is_empty() {
                    messages.remove(&id);
                }
            }
        }
        Record::Delivered { id, queue } => {
            if let Some((_, loc)) = messages.get_mut(&id) {
                loc.delivered.push(queue);
            }
        }
    }
}

/// Whether any whole, checksummed record starts after `from` (then the damage is not a torn
/// tail but corruption in the middle).
fn has_valid_record_after(bytes: &Bytes, from: usize) -> bool {
    (from..bytes.len())
        .any(|i| bytes[i] == super::record::MAGIC && Record::decode(&bytes.slice(i..)).is_ok())
}

fn truncate(path: &Path, len: u64) -> Result<(), StoreError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| StoreError::Io(path.to_path_buf(), e))?;
    file.set_len(len)
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::Io(path.to_path_buf(), e))
}

#[cfg(test)]
mod tests;
