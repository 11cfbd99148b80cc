//! A stream's append-only log: segment files in the stream's directory, the active one last,
//! and in memory only a small index per segment (offset → file position and first timestamp
//! of each chunk). Appends encode into a pending buffer under the log's lock; the journal's
//! writer thread writes that buffer out with one `write` per group commit and fdatasyncs it
//! ([`Log::write_out`]), so a batch of appends costs one system call, not one per message.
//! Readers ([`Cursor`]) see only what was written: they take a snapshot of where to read under
//! the lock and read the file without it, a buffer at a time, so a stream of any length costs
//! memory for its index only.
//!
//! Recovery scans every segment's records (checksums, offsets in sequence): a torn tail is cut
//! off (a crash mid-write; never confirmed), anything else stops startup naming the file and
//! byte offset, as the message journal does. Retention (`x-max-length-bytes`, `x-max-age`)
//! drops whole old segments, when a segment rolls over (as RabbitMQ) and at startup.

use super::args::{OffsetSpec, StreamConfig};
use super::segment::{self, DecodeError, StoredMessage};
use crate::message::Message;
use crate::store::StoreError;
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::{info, warn};

/// A chunk ends after this many messages or bytes even while its fsync is pending.
const CHUNK_MAX_MESSAGES: u32 = 4096;
const CHUNK_MAX_BYTES: u64 = 1024 * 1024;

/// Where a chunk starts.
#[derive(Clone, Copy, Debug)]
pub(super) struct Chunk {
    pub(super) first_offset: u64,
    pub(super) pos: u64,
    pub(super) timestamp: i64,
}

/// One segment file.
pub(super) struct Segment {
    pub(super) first_offset: u64,
    pub(super) path: PathBuf,
    /// Bytes of whole records appended (written or pending).
    pub(super) len: u64,
    /// Bytes written to the file (readers read no further).
    pub(super) written: u64,
    pub(super) chunks: Vec<Chunk>,
    /// Timestamp of its newest message (for `x-max-age`).
    pub(super) last_timestamp: i64,
}

struct State {
    /// Oldest first; the last is the one appended to.
    segments: VecDeque<Segment>,
    active: Arc<File>,
    next_offset: u64,
    total_bytes: u64,
    /// The current chunk: messages, bytes, and the journal sequence number of its first
    /// message's fsync (once that fsync is done, the next message starts a new chunk: a chunk is
    /// what was appended while one group commit was pending, like RabbitMQ's osiris batches).
    chunk_messages: u32,
    chunk_bytes: u64,
    chunk_sync: Option<u64>,
    /// Appended records not yet written, per segment file, oldest first (more than one only
    /// when a segment rolled over since the last write-out).
    pending: Vec<Pending>,
    /// The sequence number of the write-out already requested and not yet started: appends
    /// meanwhile ride on it instead of asking again.
    requested: Option<u64>,
}

/// Records waiting to be written to one segment file.
struct Pending {
    segment: u64,
    file: Arc<File>,
    bytes: BytesMut,
}

/// A stream's log (see the module doc).
pub struct Log {
    dir: PathBuf,
    config: StreamConfig,
    state: Mutex<State>,
}

/// A reader's place in the log.
pub struct Cursor {
    /// The next offset it wants.
    pub next: u64,
    segment: Option<u64>,
    file: Option<File>,
    pos: u64,
    /// Read buffers handed out before, each kept to be reused once every message sliced from
    /// it was dropped (acked): replaying allocates (and page-faults) no fresh buffer per read.
    spare: VecDeque<BytesMut>,
}

/// Read buffers a cursor keeps for reuse (enough for a prefetch window of 1 KiB messages).
const SPARE_BUFFERS: usize = 8;

impl Cursor {
    /// A buffer of `len` bytes: a spare one whose messages are all gone, else a new one.
    fn buffer(&mut self, len: usize) -> BytesMut {
        let mut buf = match self.spare.iter_mut().position(|b| b.try_reclaim(len)) {
            Some(at) => self.spare.remove(at).unwrap_or_default(),
            None => BytesMut::with_capacity(len),
        };
        buf.resize(len, 0);
        buf
    }

    /// Freezes what `buf` read and keeps its storage for reuse.
    fn keep(&mut self, mut buf: BytesMut) -> Bytes {
        let read = buf.split().freeze();
        if self.spare.len() >= SPARE_BUFFERS {
            self.spare.pop_front();
        }
        self.spare.push_back(buf);
        read
    }
}

impl Cursor {
    /// A cursor reading from `offset` on.
    pub fn at(offset: u64) -> Self {
        Cursor {
            next: offset,
            segment: None,
            file: None,
            pos: 0,
            spare: VecDeque::new(),
        }
    }
}

/// Unix time in ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Io(path.to_path_buf(), e)
}

impl Log {
    /// Opens (creating if needed) the log in `dir` and recovers its segments.
    pub fn open(dir: &Path, config: StreamConfig) -> Result<Log, StoreError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut firsts: Vec<u64> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| segment::first_offset_of(&e.file_name().to_string_lossy()))
            .collect();
        firsts.sort_unstable();
        let mut segments = VecDeque::new();
        let mut next_offset = firsts.first().copied().unwrap_or(0);
        for first in firsts {
            if first != next_offset {
                return Err(StoreError::Corrupt {
                    path: segment::path(dir, first),
                    offset: 0,
                    reason: "stream segment does not continue the previous one",
                });
            }
            let mut seg = super::recovery::scan(dir, first)?;
            seg.0.written = seg.0.len;
            next_offset = seg.1;
            segments.push_back(seg.0);
        }
        if segments.is_empty() {
            segments.push_back(new_segment(dir, next_offset)?);
        }
        let active_path = segments.back().map(|s| s.path.clone()).unwrap_or_default();
        let active = OpenOptions::new()
            .append(true)
            .open(&active_path)
            .map_err(io(&active_path))?;
        let total_bytes = segments.iter().map(|s| s.len).sum();
        let log = Log {
            dir: dir.to_path_buf(),
            config,
            state: Mutex::new(State {
                segments,
                active: Arc::new(active),
                next_offset,
                total_bytes,
                chunk_messages: 0,
                chunk_bytes: 0,
                chunk_sync: None,
                pending: Vec::new(),
                requested: None,
            }),
        };
        log.apply_retention(&mut log.state.lock());
        info!(dir = %dir.display(), next_offset, "stream recovered");
        Ok(log)
    }

    /// Appends `message` to the pending buffer; `request` asks the journal's writer for a
    /// write-out ([`Log::write_out`]) and returns the sequence number that is synced after it;
    /// it is called only when no write-out is already requested (`synced` is the last sequence
    /// number done). Returns the sequence number the publisher's confirm waits for.
    pub fn append(
        &self,
        message: &Message,
        synced: u64,
        request: impl FnOnce() -> Option<u64>,
    ) -> Option<u64> {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let timestamp = now_ms();
        let mut chunk_start = st.chunk_messages == 0
            || st.chunk_messages >= CHUNK_MAX_MESSAGES
            || st.chunk_bytes >= CHUNK_MAX_BYTES
            || st.chunk_sync.is_some_and(|s| synced >= s);
        let (segment, active_len) = st
            .segments
            .back()
            .map_or((0, 0), |s| (s.first_offset, s.len));
        let mut n = encode_pending(st, segment, timestamp, chunk_start, message);
        if active_len > 0 && active_len + n > self.config.segment_size {
            // Over the segment size: take it back and put it first in a new segment.
            if let Some(p) = st.pending.last_mut() {
                let keep = p.bytes.len() - n as usize;
                p.bytes.truncate(keep);
            }
            self.roll(st);
            chunk_start = true;
            let segment = st.segments.back().map_or(0, |s| s.first_offset);
            n = encode_pending(st, segment, timestamp, true, message);
        }
        let offset = st.next_offset;
        if let Some(seg) = st.segments.back_mut() {
            if chunk_start {
                seg.chunks.push(Chunk {
                    first_offset: offset,
                    pos: seg.len,
                    timestamp,
                });
            }
            seg.len += n;
            seg.last_timestamp = timestamp;
        }
        st.next_offset += 1;
        st.total_bytes += n;
        if chunk_start {
            st.chunk_messages = 0;
            st.chunk_bytes = 0;
            st.chunk_sync = None;
        }
        st.chunk_messages += 1;
        st.chunk_bytes += n;
        let seq = match st.requested {
            Some(seq) => Some(seq),
            None => {
                let seq = request();
                st.requested = seq;
                seq
            }
        };
        if st.chunk_sync.is_none() {
            st.chunk_sync = seq;
        }
        seq
    }

    /// Writes the pending appends out (one `write` per segment file) and fdatasyncs them;
    /// `on_written` runs once readers can see them (before the fsync: readers may deliver what
    /// is written; confirms wait for the fsync). Called by the journal's writer thread, the only
    /// writer of segment files, with no lock held during the system calls.
    pub fn write_out(&self, on_written: impl FnOnce()) -> std::io::Result<()> {
        let pending = {
            let mut st = self.state.lock();
            st.requested = None;
            std::mem::take(&mut st.pending)
        };
        if pending.is_empty() {
            return Ok(());
        }
        for p in &pending {
            (&*p.file).write_all(&p.bytes)?;
        }
        {
            let mut st = self.state.lock();
            for p in &pending {
                if let Some(seg) = st
                    .segments
                    .iter_mut()
                    .rev()
                    .find(|s| s.first_offset == p.segment)
                {
                    seg.written += p.bytes.len() as u64;
                }
            }
        }
        on_written();
        for p in &pending {
            p.file.sync_data()?;
        }
        Ok(())
    }

    /// Starts a new segment and drops old ones retention no longer keeps.
    fn roll(&self, st: &mut State) {
        match new_segment(&self.dir, st.next_offset).and_then(|seg| {
            let file = OpenOptions::new()
                .append(true)
                .open(&seg.path)
                .map_err(io(&seg.path))?;
            Ok((seg, file))
        }) {
            Ok((seg, file)) => {
                st.segments.push_back(seg);
                st.active = Arc::new(file);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot create a stream segment; stopping the broker");
                std::process::abort();
            }
        }
        self.apply_retention(st);
    }

    /// Drops whole old segments past `x-max-length-bytes` or `x-max-age` (never the active one).
    fn apply_retention(&self, st: &mut State) {
        let oldest_allowed = self
            .config
            .max_age
            .map(|age| now_ms() - age.as_millis() as i64);
        while st.segments.len() > 1 {
            let Some(oldest) = st.segments.front() else {
                break;
            };
            let too_big = self
                .config
                .max_bytes
                .is_some_and(|max| st.total_bytes > max);
            let too_old = oldest_allowed.is_some_and(|t| oldest.last_timestamp < t);
            if !too_big && !too_old {
                break;
            }
            if let Some(seg) = st.segments.pop_front() {
                st.total_bytes -= seg.len;
                if let Err(e) = std::fs::remove_file(&seg.path) {
                    warn!(file = %seg.path.display(), error = %e, "could not delete an old stream segment");
                }
                info!(file = %seg.path.display(), "stream retention dropped a segment");
            }
        }
    }

    /// Messages kept (the first kept offset up to the last).
    pub fn message_count(&self) -> u64 {
        let st = self.state.lock();
        st.next_offset
            - st.segments
                .front()
                .map_or(st.next_offset, |s| s.first_offset)
    }

    /// Bytes of the segments kept.
    pub fn bytes(&self) -> u64 {
        self.state.lock().total_bytes
    }

    /// The offset after the last message.
    #[cfg(test)]
    pub fn next_offset(&self) -> u64 {
        self.state.lock().next_offset
    }

    /// The offset a consumer starting at `spec` reads first.
    pub fn start_of(&self, spec: OffsetSpec) -> u64 {
        let st = self.state.lock();
        let first = st
            .segments
            .front()
            .map_or(st.next_offset, |s| s.first_offset);
        let mut chunks = st.segments.iter().flat_map(|s| s.chunks.iter());
        match spec {
            OffsetSpec::First => first,
            OffsetSpec::Next => st.next_offset,
            OffsetSpec::Last => st
                .segments
                .iter()
                .rev()
                .find_map(|s| s.chunks.last())
                .map_or(st.next_offset, |c| c.first_offset),
            OffsetSpec::Offset(n) => n.max(first),
            OffsetSpec::Timestamp(t) => chunks
                .find(|c| c.timestamp >= t)
                .map_or(st.next_offset, |c| c.first_offset),
        }
    }

    /// Reads the messages at `cursor` on, about `max_bytes` of them (at least one whole
    /// record), from the file with no lock held; empty when the cursor is at the end.
    pub fn read(
        &self,
        cursor: &mut Cursor,
        max_bytes: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        loop {
            let (path, end, sealed) = {
                let st = self.state.lock();
                if cursor.next >= st.next_offset {
                    return Ok(Vec::new());
                }
                let here = cursor
                    .segment
                    .and_then(|first| st.segments.iter().position(|s| s.first_offset == first));
                let at = match here {
                    Some(at) => at,
                    None => {
                        // New cursor, or its segment was dropped by retention: find its place.
                        let first = st.segments.front().map_or(0, |s| s.first_offset);
                        cursor.next = cursor.next.max(first);
                        let at = st
                            .segments
                            .iter()
                            .rposition(|s| s.first_offset <= cursor.next)
                            .unwrap_or(0);
                        let seg = &st.segments[at];
                        let chunk = seg
                            .chunks
                            .partition_point(|c| c.first_offset <= cursor.next);
                        cursor.pos = chunk.checked_sub(1).map_or(0, |c| seg.chunks[c].pos);
                        cursor.segment = Some(seg.first_offset);
                        cursor.file = None;
                        at
                    }
                };
                let seg = &st.segments[at];
                let sealed = at + 1 < st.segments.len() && seg.written == seg.len;
                (seg.path.clone(), seg.written, sealed)
            };
            if cursor.pos >= end {
                if !sealed {
                    return Ok(Vec::new());
                }
                // On to the next segment, which starts where this one ended.
                cursor.segment = Some(cursor.next);
                cursor.file = None;
                cursor.pos = 0;
                let st = self.state.lock();
                if !st
                    .segments
                    .iter()
                    .any(|s| Some(s.first_offset) == cursor.segment)
                {
                    cursor.segment = None;
                }
                continue;
            }
            let file = match cursor.file.take() {
                Some(file) => file,
                None => File::open(&path).map_err(io(&path))?,
            };
            let out = read_records(&file, &path, cursor, end, max_bytes);
            cursor.file = Some(file);
            let out = out?;
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }

    /// Deletes the log's files (the stream was deleted).
    pub fn remove(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            warn!(dir = %self.dir.display(), error = %e, "could not delete a stream's files");
        }
    }
}

/// Reads whole records from `file` at `cursor.pos` (up to `end`), skipping offsets before
/// `cursor.next`, and advances the cursor.
fn read_records(
    file: &File,
    path: &Path,
    cursor: &mut Cursor,
    end: u64,
    max_bytes: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    let mut want = max_bytes.min((end - cursor.pos) as usize);
    let mut out = Vec::new();
    let mut route = None;
    loop {
        let mut buf = cursor.buffer(want);
        let read = file.read_exact_at(&mut buf, cursor.pos).map_err(io(path));
        let buf = cursor.keep(buf);
        read?;
        let mut at = 0;
        while at < buf.len() {
            match segment::decode(&buf.slice(at..), &mut route) {
                Ok((m, len)) => {
                    at += len;
                    if m.offset >= cursor.next {
                        cursor.next = m.offset + 1;
                        out.push(m);
                    }
                }
                Err(DecodeError::Truncated) => break,
                Err(DecodeError::Corrupt(reason)) => {
                    return Err(StoreError::Corrupt {
                        path: path.to_path_buf(),
                        offset: cursor.pos + at as u64,
                        reason,
                    })
                }
            }
        }
        cursor.pos += at as u64;
        if at > 0 || cursor.pos >= end {
            return Ok(out);
        }
        // One record longer than the buffer: read exactly it.
        let mut head = [0u8; segment::HEADER_LEN];
        file.read_exact_at(&mut head, cursor.pos)
            .map_err(io(path))?;
        let payload = u32::from_be_bytes([head[2], head[3], head[4], head[5]]) as usize;
        want = (segment::HEADER_LEN + payload).min((end - cursor.pos) as usize);
    }
}

/// Encodes `message` at the end of the pending bytes for `segment`; returns the record's length.
fn encode_pending(
    st: &mut State,
    segment: u64,
    timestamp: i64,
    chunk_start: bool,
    message: &Message,
) -> u64 {
    if st.pending.last().is_none_or(|p| p.segment != segment) {
        st.pending.push(Pending {
            segment,
            file: st.active.clone(),
            bytes: BytesMut::with_capacity(64 * 1024),
        });
    }
    let Some(p) = st.pending.last_mut() else {
        return 0;
    };
    let before = p.bytes.len();
    segment::encode(
        &mut p.bytes,
        st.next_offset,
        timestamp,
        chunk_start,
        message,
    );
    (p.bytes.len() - before) as u64
}

impl Drop for Log {
    /// Appends not yet written out (none were confirmed) still reach the file on a clean stop.
    fn drop(&mut self) {
        if let Err(e) = self.write_out(|| {}) {
            warn!(dir = %self.dir.display(), error = %e, "could not write a stream's last appends");
        }
    }
}

fn new_segment(dir: &Path, first_offset: u64) -> Result<Segment, StoreError> {
    let path = segment::path(dir, first_offset);
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io(&path))?;
    // The new name must survive a crash before anything in it is confirmed.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(Segment {
        first_offset,
        path,
        len: 0,
        written: 0,
        chunks: Vec::new(),
        last_timestamp: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_protocol::ShortStr;

    fn config(segment_size: u64) -> StreamConfig {
        StreamConfig {
            max_bytes: None,
            max_age: None,
            segment_size,
        }
    }

    fn message(i: u32) -> Message {
        Message::new(
            ShortStr::empty(),
            ShortStr::from_static("s"),
            Default::default(),
            Bytes::from(format!("m{i}")),
        )
    }

    fn read_all(log: &Log, from: u64) -> Vec<u64> {
        let mut cursor = Cursor::at(from);
        let mut out = Vec::new();
        loop {
            let batch = log.read(&mut cursor, 100).expect("reads");
            if batch.is_empty() {
                return out;
            }
            out.extend(batch.iter().map(|m| m.offset));
        }
    }

    #[test]
    fn appends_roll_over_read_back_and_recover() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = Log::open(dir.path(), config(300)).expect("opens");
        for i in 0..50 {
            log.append(&message(i), 0, || Some(1));
        }
        log.write_out(|| {}).expect("writes");
        let segments = std::fs::read_dir(dir.path()).expect("dir").count();
        assert!(segments > 3, "rolled over: {segments} segments");
        assert_eq!(read_all(&log, 0), (0..50).collect::<Vec<_>>());
        assert_eq!(read_all(&log, 42), (42..50).collect::<Vec<_>>());
        drop(log);
        let log = Log::open(dir.path(), config(300)).expect("reopens");
        assert_eq!(log.next_offset(), 50);
        assert_eq!(read_all(&log, 10).len(), 40);
        assert_eq!(log.start_of(OffsetSpec::First), 0);
        assert_eq!(log.start_of(OffsetSpec::Next), 50);
    }

    #[test]
    fn appends_share_one_write_out_and_readers_see_only_what_was_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = Log::open(dir.path(), config(1 << 20)).expect("opens");
        let mut requests = 0;
        for i in 0..3 {
            let seq = log.append(&message(i), 0, || {
                requests += 1;
                Some(7)
            });
            assert_eq!(seq, Some(7));
        }
        assert_eq!(requests, 1, "one write-out request for the whole batch");
        assert!(read_all(&log, 0).is_empty(), "nothing written yet");
        let mut woken = false;
        log.write_out(|| woken = true).expect("writes");
        assert!(woken);
        assert_eq!(read_all(&log, 0), vec![0, 1, 2]);
        let seq = log.append(&message(3), 0, || Some(8));
        assert_eq!(seq, Some(8), "after a write-out the next append asks again");
    }

    #[test]
    fn a_cursor_reuses_its_read_buffer_once_the_messages_are_gone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = Log::open(dir.path(), config(1 << 20)).expect("opens");
        for i in 0..20 {
            // Bodies longer than an inline one: they are slices of the read buffer.
            let long = Message::new(
                ShortStr::empty(),
                ShortStr::from_static("s"),
                Default::default(),
                Bytes::from(format!("message number {i:>20}")),
            );
            log.append(&long, 0, || Some(1));
        }
        log.write_out(|| {}).expect("writes");
        let mut cursor = Cursor::at(0);
        let first = log.read(&mut cursor, 64).expect("reads");
        let body_at = first[0].message.body.as_ptr();
        drop(first);
        let mut again = Cursor::at(0);
        std::mem::swap(&mut again.spare, &mut cursor.spare);
        let second = log.read(&mut again, 64).expect("reads");
        assert_eq!(
            second[0].message.body.as_ptr(),
            body_at,
            "same storage reused"
        );
        let held = log.read(&mut again, 64).expect("reads");
        assert_ne!(
            held[0].message.body.as_ptr(),
            body_at,
            "in use: a new buffer"
        );
    }

    #[test]
    fn retention_drops_whole_old_segments() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = StreamConfig {
            max_bytes: Some(1000),
            ..config(300)
        };
        let log = Log::open(dir.path(), cfg).expect("opens");
        for i in 0..100 {
            log.append(&message(i), 0, || Some(1));
        }
        log.write_out(|| {}).expect("writes");
        assert!(log.bytes() <= 1000 + 300, "{} bytes kept", log.bytes());
        let first = log.start_of(OffsetSpec::First);
        assert!(first > 0, "old segments went");
        assert_eq!(read_all(&log, 0).first(), Some(&first));
    }

    #[test]
    fn a_corrupt_record_stops_recovery_naming_file_and_offset_but_a_torn_tail_does_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = Log::open(dir.path(), config(1 << 20)).expect("opens");
        for i in 0..3 {
            log.append(&message(i), 0, || Some(1));
        }
        drop(log);
        let path = segment::path(dir.path(), 0);
        let mut bytes = std::fs::read(&path).expect("segment");
        let whole = bytes.len();
        bytes.extend_from_slice(&[0x5E, 0, 0]); // a torn record
        std::fs::write(&path, &bytes).expect("write");
        let log = Log::open(dir.path(), config(1 << 20)).expect("torn tail is cut off");
        assert_eq!(log.next_offset(), 3);
        drop(log);
        assert_eq!(
            std::fs::metadata(&path).expect("meta").len() as usize,
            whole
        );
        let mut bytes = std::fs::read(&path).expect("segment");
        let second = whole / 3;
        bytes[second + 30] ^= 0xFF;
        std::fs::write(&path, &bytes).expect("write");
        match Log::open(dir.path(), config(1 << 20)) {
            Err(StoreError::Corrupt {
                path: p, offset, ..
            }) => {
                assert_eq!(p, path);
                assert_eq!(offset as usize, second);
            }
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("a corrupt segment must stop recovery"),
        }
    }
}
