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

use crate::message::{Body, Message, Route, INLINE_MAX};
use crate::store::record::{header_bytes, parse_header};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
/// of it, no copy); returns it and its length. `route` is the previous record's route, shared
/// when this one has the same exchange and routing key (a replay's run of records mostly
/// does: no allocation per message for them).
pub fn decode(
    buf: &Bytes,
    route: &mut Option<Arc<Route>>,
) -> Result<(StoredMessage, usize), DecodeError> {
    let (len, offset, _, _) = check(buf)?;
    let mut p = buf.slice(HEADER_LEN..len);
    let short = |p: &mut Bytes| -> Result<Bytes, DecodeError> {
        if p.is_empty() {
            return Err(DecodeError::Corrupt("bad payload"));
        }
        let n = usize::from(p.get_u8());
        if p.len() < n {
            return Err(DecodeError::Corrupt("bad payload"));
        }
        Ok(p.split_to(n))
    };
    let exchange = short(&mut p)?;
    let routing_key = short(&mut p)?;
    let route = match route {
        Some(r)
            if r.exchange.as_str().as_bytes() == exchange.as_ref()
                && r.routing_key.as_str().as_bytes() == routing_key.as_ref() =>
        {
            r.clone()
        }
        _ => {
            let fresh = Route::new(
                &String::from_utf8_lossy(&exchange),
                &String::from_utf8_lossy(&routing_key),
            );
            *route = Some(fresh.clone());
            fresh
        }
    };
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
    // `parse_header` decoded the properties from their own copy of the header frame: they
    // hold nothing of the read buffer, so they need no detaching.
    // A body longer than an inline one stays a slice of the read buffer (no copy per
    // delivery); the cursor reuses the buffer once every delivery sliced from it is settled.
    let body = if p.len() > INLINE_MAX {
        Body::Shared(p)
    } else {
        Body::copied(&p)
    };
    let message = Message::with_own_properties(route, properties, body);
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
    fn properties_come_back_with_the_offset_header_and_hold_nothing_of_the_read_buffer() {
        let mut headers = FieldTable::new();
        headers.insert(
            ShortStr::from_static("k"),
            FieldValue::LongStr(Bytes::from_static(b"v")),
        );
        for headers in [None, Some(headers)] {
            let properties = warren_protocol::BasicProperties {
                content_type: Some(ShortStr::from_static("text/plain")),
                delivery_mode: Some(2),
                headers: headers.clone(),
                ..Default::default()
            };
            let sent = Message::new(
                ShortStr::from_static("x"),
                ShortStr::from_static("rk"),
                properties.clone(),
                Bytes::from_static(b"hello"),
            );
            let mut out = BytesMut::new();
            encode(&mut out, 42, 1, true, &sent);
            let buf = out.freeze();
            let (m, _) = decode(&buf, &mut None).expect("decodes");
            let mut expected = properties;
            expected.headers.get_or_insert_with(FieldTable::new).insert(
                ShortStr::from_static(super::super::args::X_STREAM_OFFSET),
                FieldValue::I64(42),
            );
            assert_eq!(*m.message.properties, expected);
            let content_type = m.message.properties.content_type.as_ref().expect("set");
            assert!(!buf.as_ptr_range().contains(&content_type.as_str().as_ptr()));
        }
    }

    #[test]
    fn a_record_round_trips_and_damage_is_told_from_a_torn_tail() {
        let mut out = BytesMut::new();
        encode(&mut out, 7, 1234, true, &message(b"hello"));
        let bytes = out.freeze();
        let (m, len) = decode(&bytes, &mut None).expect("decodes");
        assert_eq!(len, bytes.len());
        assert_eq!(m.offset, 7);
        assert_eq!(
            check(&bytes).map(|(_, _, ts, start)| (ts, start)),
            Ok((1234, true))
        );
        assert_eq!(&m.message.body[..], b"hello");
        assert_eq!(m.message.routing_key().as_str(), "rk");
        assert_eq!(check(&bytes[..len - 1]), Err(DecodeError::Truncated));
        // A following record on the same route shares it; another route gets its own.
        let mut route = Some(m.message.route().clone());
        let (same, _) = decode(&bytes, &mut route).expect("decodes");
        assert!(Arc::ptr_eq(same.message.route(), m.message.route()));
        let mut other = BytesMut::new();
        let elsewhere = Message::new(
            ShortStr::from_static("x"),
            ShortStr::from_static("rk2"),
            Default::default(),
            Bytes::from_static(b"hello"),
        );
        encode(&mut other, 8, 1235, false, &elsewhere);
        let (next, _) = decode(&other.freeze(), &mut route).expect("decodes");
        assert_eq!(next.message.routing_key().as_str(), "rk2");
        assert!(!Arc::ptr_eq(next.message.route(), m.message.route()));
        assert!(Arc::ptr_eq(
            next.message.route(),
            route.as_ref().expect("cached")
        ));
        let mut bad = bytes.to_vec();
        bad[len - 1] ^= 1;
        assert_eq!(check(&bad), Err(DecodeError::Corrupt("checksum mismatch")));
    }
}
