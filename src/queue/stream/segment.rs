//! One stream record on disk: a message with its offset and timestamp, checksummed so that
//! recovery can tell a torn tail (cut off by a crash: dropped) from corruption (startup stops).
//!
//! ```text
//! magic 0x5E | flags u8 | payload length u32 | crc32c(flags ‖ offset ‖ ts ‖ payload) u32
//!   | offset u64 | timestamp ms i64 | payload
//! payload = exchange (u8 len + bytes) | routing key (u8 len + bytes)
//!   | content header frame length u32 | content header frame | body
//! ```
//!
//! Segment files are named by their first offset (`00000000000000000000.seg`); a record whose
//! flags have [`CHUNK_START`] begins a chunk (the unit `last` and timestamps resolve to).

use crate::message::Message;
use crate::store::record::{header_bytes, parse_header};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::path::{Path, PathBuf};
use warren_protocol::{ContentHeader, FieldTable, FieldValue, ShortStr};

/// First byte of every record.
const MAGIC: u8 = 0x5E;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 26;
/// A payload longer than this is garbage, not a message.
const MAX_PAYLOAD: u32 = 512 * 1024 * 1024;
/// Flag: this record starts a chunk.
pub const CHUNK_START: u8 = 1;

/// A decoded record.
pub struct StoredMessage {
    /// The message's offset in the stream.
    pub offset: u64,
    /// The message (properties as published).
    pub message: Message,
}

/// Why bytes are not a record.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the record needs (a torn tail, or a read that stopped short).
    Truncated,
    /// The bytes are there but wrong.
    Corrupt(&'static str),
}

/// The file of the segment starting at `first_offset`.
pub fn path(dir: &Path, first_offset: u64) -> PathBuf {
    dir.join(format!("{first_offset:020}.seg"))
}

/// The first offset a segment file name stands for.
pub fn first_offset_of(name: &str) -> Option<u64> {
    name.strip_suffix(".seg")?.parse().ok()
}

/// Appends the record of `message` at `offset` to `out`.
pub fn encode(
    out: &mut BytesMut,
    offset: u64,
    timestamp: i64,
    chunk_start: bool,
    message: &Message,
) {
    let header = header_bytes(&ContentHeader {
        class_id: warren_protocol::class_id::BASIC,
        weight: 0,
        body_size: message.body.len() as u64,
        properties: warren_protocol::BasicProperties::clone(&message.properties),
    });
    let start = out.len();
    out.put_u8(MAGIC);
    out.put_u8(if chunk_start { CHUNK_START } else { 0 });
    out.put_u32(0);
    out.put_u32(0);
    out.put_u64(offset);
    out.put_i64(timestamp);
    let payload_start = out.len();
    out.put_u8(message.exchange().len() as u8);
    out.put_slice(message.exchange().as_str().as_bytes());
    out.put_u8(message.routing_key().len() as u8);
    out.put_slice(message.routing_key().as_str().as_bytes());
    out.put_u32(header.len() as u32);
    out.put_slice(&header);
    out.put_slice(&message.body);
    let payload_len = (out.len() - payload_start) as u32;
    out[start + 2..start + 6].copy_from_slice(&payload_len.to_be_bytes());
    let mut crc = crc32c::crc32c(&out[start + 1..start + 2]);
    crc = crc32c::crc32c_append(crc, &out[start + 10..]);
    out[start + 6..start + 10].copy_from_slice(&crc.to_be_bytes());
}

/// The length of the record at the start of `buf`, checked (magic, length, checksum), without
/// decoding its message: recovery's scan.
pub fn check(buf: &[u8]) -> Result<(usize, u64, i64, bool), DecodeError> {
    if buf.len() < HEADER_LEN {
        return Err(DecodeError::Truncated);
    }
    if buf[0] != MAGIC {
        return Err(DecodeError::Corrupt("bad magic byte"));
    }
    let payload_len = u32::from_be_bytes([buf[2], buf[3], buf[4], buf[5]]);
    if payload_len > MAX_PAYLOAD {
        return Err(DecodeError::Corrupt("impossible record length"));
    }
    let len = HEADER_LEN + payload_len as usize;
    if buf.len() < len {
        return Err(DecodeError::Truncated);
    }
    let stored = u32::from_be_bytes([buf[6], buf[7], buf[8], buf[9]]);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&buf[1..2]), &buf[10..len]);
    if crc != stored {
        return Err(DecodeError::Corrupt("checksum mismatch"));
    }
    let mut h = &buf[10..26];
    let offset = h.get_u64();
    let timestamp = h.get_i64();
    Ok((len, offset, timestamp, buf[1] & CHUNK_START != 0))
}

/// Decodes the record at the start of `buf` (a slice of a read buffer: the body stays a slice
/// of it, no copy); returns it and its length.
pub fn decode(buf: &Bytes) -> Result<(StoredMessage, usize), DecodeError> {
    let (len, offset, _, _) = check(buf)?;
    let mut p = buf.slice(HEADER_LEN..len);
    let short = |p: &mut Bytes| -> Result<ShortStr, DecodeError> {
        if p.is_empty() {
            return Err(DecodeError::Corrupt("bad payload"));
        }
        let n = usize::from(p.get_u8());
        if p.len() < n {
            return Err(DecodeError::Corrupt("bad payload"));
        }
        let s = p.split_to(n);
        Ok(ShortStr::truncated(&String::from_utf8_lossy(&s)))
    };
    let exchange = short(&mut p)?;
    let routing_key = short(&mut p)?;
    if p.len() < 4 {
        return Err(DecodeError::Corrupt("bad payload"));
    }
    let header_len = p.get_u32() as usize;
    if p.len() < header_len {
        return Err(DecodeError::Corrupt("bad payload"));
    }
    let mut properties = parse_header(&p.split_to(header_len))
        .ok_or(DecodeError::Corrupt("bad header"))?
        .properties;
    // Every delivery from a stream carries its offset (RabbitMQ: `x-stream-offset`, type `l`).
    properties
        .headers
        .get_or_insert_with(FieldTable::new)
        .insert(
            ShortStr::from_static(super::args::X_STREAM_OFFSET),
            FieldValue::I64(i64::try_from(offset).unwrap_or(i64::MAX)),
        );
    let message = Message::new(exchange, routing_key, properties, p);
    Ok((StoredMessage { offset, message }, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &'static [u8]) -> Message {
        Message::new(
            ShortStr::from_static("x"),
            ShortStr::from_static("rk"),
            Default::default(),
            Bytes::from_static(body),
        )
    }

    #[test]
    fn a_record_round_trips_and_damage_is_told_from_a_torn_tail() {
        let mut out = BytesMut::new();
        encode(&mut out, 7, 1234, true, &message(b"hello"));
        let bytes = out.freeze();
        let (m, len) = decode(&bytes).expect("decodes");
        assert_eq!(len, bytes.len());
        assert_eq!(m.offset, 7);
        assert_eq!(
            check(&bytes).map(|(_, _, ts, start)| (ts, start)),
            Ok((1234, true))
        );
        assert_eq!(&m.message.body[..], b"hello");
        assert_eq!(m.message.routing_key().as_str(), "rk");
        assert_eq!(check(&bytes[..len - 1]), Err(DecodeError::Truncated));
        let mut bad = bytes.to_vec();
        bad[len - 1] ^= 1;
        assert_eq!(check(&bad), Err(DecodeError::Corrupt("checksum mismatch")));
    }
}
