//! A stream's append-only log: segment files in the stream's directory, the active one last,
//! and in memory only a small index per segment (offset → file position and first timestamp
//! of each chunk). Appends write through to the active segment under the log's lock; readers
//! ([`Cursor`]) take a snapshot of where to read under the lock and read the file without it,
//! a buffer at a time, so a stream of any length costs memory for its index only.
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
    /// Bytes of whole records written (readers read no further).
    pub(super) len: u64,
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
    encode: BytesMut,
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
}

impl Cursor {
    /// A cursor reading from `offset` on.
    pub fn at(offset: u64) -> Self {
        Cursor {
            next: offset,
            segment: None,
            file: None,
            pos: 0,
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
            let seg = super::recovery::scan(dir, first)?;
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
                encode: BytesMut::new(),
            }),
        };
        log.apply_retention(&mut log.state.lock());
        info!(dir = %dir.display(), next_offset, "stream recovered");
        Ok(log)
    }

    /// Appends `message`; `sync` gets the written segment file and returns the journal
    /// sequence number of the fsync that covers it (`synced` is the last one done), which is
    /// returned for the publisher's confirm. Write errors stop the broker (confirms may wait).
    pub fn append(
        &self,
        message: &Message,
        synced: u64,
        sync: impl FnOnce(Arc<File>) -> Option<u64>,
    ) -> Option<u64> {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let timestamp = now_ms();
        let mut chunk_start = st.chunk_messages == 0
            || st.chunk_messages >= CHUNK_MAX_MESSAGES
            || st.chunk_bytes >= CHUNK_MAX_BYTES
            || st.chunk_sync.is_some_and(|s| synced >= s);
        st.encode.clear();
        segment::encode(
            &mut st.encode,
            st.next_offset,
            timestamp,
            chunk_start,
            message,
        );
        let active_len = st.segments.back().map_or(0, |s| s.len);
        if active_len > 0 && active_len + st.encode.len() as u64 > self.config.segment_size {
            self.roll(st);
            if !chunk_start {
                chunk_start = true;
                st.encode.clear();
                segment::encode(&mut st.encode, st.next_offset, timestamp, true, message);
            }
        }
        if let Err(e) = (&*st.active).write_all(&st.encode) {
            tracing::error!(dir = %self.dir.display(), error = %e, "stream write failed; stopping the broker");
            std::process::abort();
        }
        let n = st.encode.len() as u64;
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
        let seq = sync(st.active.clone());
        if st.chunk_sync.is_none() {
            st.chunk_sync = seq;
        }
        seq
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
                (seg.path.clone(), seg.len, at + 1 < st.segments.len())
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
    loop {
        let mut buf = vec![0u8; want];
        file.read_exact_at(&mut buf, cursor.pos).map_err(io(path))?;
        let buf = Bytes::from(buf);
        let mut at = 0;
        while at < buf.len() {
            match segment::decode(&buf.slice(at..)) {
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
            log.append(&message(i), 0, |_| Some(1));
        }
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
    fn retention_drops_whole_old_segments() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = StreamConfig {
            max_bytes: Some(1000),
            ..config(300)
        };
        let log = Log::open(dir.path(), cfg).expect("opens");
        for i in 0..100 {
            log.append(&message(i), 0, |_| Some(1));
        }
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
            log.append(&message(i), 0, |_| Some(1));
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
