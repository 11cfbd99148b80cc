//! Recovery of one stream segment at startup: every record's checksum and offset is checked and
//! the segment's chunk index rebuilt, reading a buffer at a time. A torn tail (a crash
//! mid-write, never confirmed) is cut off; anything else stops startup naming the file and the
//! byte offset (`StoreError::Corrupt`), as the message journal does.

use super::log::{io, Chunk, Segment};
use super::segment::{self, DecodeError};
use crate::store::StoreError;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::Path;
use tracing::warn;

/// Bytes recovery reads at a time.
const SCAN_BUFFER: usize = 1024 * 1024;

/// Checks every record of segment `first` and rebuilds its chunk index; cuts off a torn tail.
/// Returns the segment and the offset after its last record.
pub(super) fn scan(dir: &Path, first: u64) -> Result<(Segment, u64), StoreError> {
    let path = segment::path(dir, first);
    let mut file = File::open(&path).map_err(io(&path))?;
    let mut seg = Segment {
        first_offset: first,
        path: path.clone(),
        len: 0,
        written: 0,
        chunks: Vec::new(),
        last_timestamp: 0,
    };
    let mut next = first;
    let mut buf: Vec<u8> = Vec::with_capacity(SCAN_BUFFER);
    let mut start = 0usize; // where unparsed bytes begin in buf
    let mut eof = false;
    loop {
        if !eof && buf.len() - start < SCAN_BUFFER {
            buf.drain(..start);
            start = 0;
            let have = buf.len();
            buf.resize(have + SCAN_BUFFER, 0);
            let n = file.read(&mut buf[have..]).map_err(io(&path))?;
            buf.truncate(have + n);
            eof = n == 0;
            if !eof {
                continue;
            }
        }
        if start == buf.len() {
            break;
        }
        match segment::check(&buf[start..]) {
            Ok((len, offset, timestamp, chunk_start)) => {
                if offset != next {
                    return Err(StoreError::Corrupt {
                        path,
                        offset: seg.len,
                        reason: "stream record offset out of sequence",
                    });
                }
                if chunk_start || seg.chunks.is_empty() {
                    seg.chunks.push(Chunk {
                        first_offset: offset,
                        pos: seg.len,
                        timestamp,
                    });
                }
                seg.last_timestamp = timestamp;
                seg.len += len as u64;
                next += 1;
                start += len;
            }
            Err(DecodeError::Truncated) if eof => {
                warn!(file = %path.display(), offset = seg.len, "cutting off a torn stream record at the end of a segment");
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(&path))?;
                f.set_len(seg.len).map_err(io(&path))?;
                break;
            }
            Err(DecodeError::Truncated) => {
                // A record longer than what is buffered: read more.
                let have = buf.len();
                buf.resize(have + SCAN_BUFFER, 0);
                let n = file.read(&mut buf[have..]).map_err(io(&path))?;
                buf.truncate(have + n);
                eof = n == 0;
            }
            Err(DecodeError::Corrupt(reason)) => {
                return Err(StoreError::Corrupt {
                    path,
                    offset: seg.len,
                    reason,
                })
            }
        }
    }
    Ok((seg, next))
}
