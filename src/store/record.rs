//! Journal records: how a publish, a delivery and a settle are laid out on disk, each with a
//! CRC32C so recovery can tell a torn tail from corruption.
//!
//! ```text
//! magic 0xA7 | kind u8 | payload length u32 | crc32c(kind ‖ payload) u32 | payload
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};
use warren_protocol::{decode_frame, encode_header, ContentHeader, Frame, ShortStr};

/// First byte of every record.
pub const MAGIC: u8 = 0xA7;
/// Bytes before the payload.
pub const RECORD_HEADER: usize = 10;
/// A record longer than this is garbage, not a message (bodies are capped far below).
pub const MAX_PAYLOAD: u32 = 512 * 1024 * 1024;

const PUBLISH: u8 = 1;
const SETTLE: u8 = 2;
const DELIVERED: u8 = 3;
/// A publish record for more durable queues than a u16 counts: the same layout with a u32
/// queue count. Records for up to 65,535 queues keep the old layout, so journals written
/// before this kind existed still read back.
const PUBLISH_WIDE: u8 = 4;

/// A journal entry.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// A persistent message and the durable queues it is in (stored once for all of them).
    Publish {
        /// Message id, increasing in publish order.
        id: u64,
        /// Durable queue ids still holding it.
        queues: Vec<u32>,
        /// Whether it was delivered before (set on copies made by compaction).
        delivered: bool,
        /// Exchange it was published to.
        exchange: ShortStr,
        /// Routing key.
        routing_key: ShortStr,
        /// Content header (properties) as a header frame.
        header: Bytes,
        /// The body.
        body: Bytes,
    },
    /// Message `id` left queue `queue` for good.
    Settle {
        /// Message id.
        id: u64,
        /// Durable queue id.
        queue: u32,
    },
    /// Message `id` was delivered from `queue` (comes back redelivered after a crash).
    Delivered {
        /// Message id.
        id: u64,
        /// Durable queue id.
        queue: u32,
    },
}

/// Why bytes at some offset are not a record.
#[derive(Debug, PartialEq, Eq)]
pub enum RecordError {
    /// Fewer bytes than the record needs: a torn write at the end of a segment.
    Truncated,
    /// The bytes are there but wrong (bad magic, length, checksum or layout).
    Corrupt(&'static str),
}

impl Record {
    /// Appends the record to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_u8(MAGIC);
        out.put_u8(self.kind());
        out.put_u32(0);
        out.put_u32(0);
        let payload_start = out.len();
        match self {
            Record::Publish {
                id,
                queues,
                delivered,
                exchange,
                routing_key,
                header,
                body,
            } => {
                out.put_u64(*id);
                out.put_u8(u8::from(*delivered));
                match u16::try_from(queues.len()) {
                    Ok(n) => out.put_u16(n),
                    // A queue count past u32 cannot happen: journal ids are u32.
                    Err(_) => out.put_u32(u32::try_from(queues.len()).unwrap_or(u32::MAX)),
                }
                queues.iter().for_each(|q| out.put_u32(*q));
                put_str(out, exchange);
                put_str(out, routing_key);
                out.put_u32(header.len() as u32);
                out.put_slice(header);
                out.put_u32(body.len() as u32);
                out.put_slice(body);
            }
            Record::Settle { id, queue } | Record::Delivered { id, queue } => {
                out.put_u64(*id);
                out.put_u32(*queue);
            }
        }
        let len = (out.len() - payload_start) as u32;
        out[start + 2..start + 6].copy_from_slice(&len.to_be_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&[self.kind()]), &out[payload_start..]);
        out[start + 6..start + 10].copy_from_slice(&crc.to_be_bytes());
    }

    fn kind(&self) -> u8 {
        match self {
            Record::Publish { queues, .. } if queues.len() > usize::from(u16::MAX) => PUBLISH_WIDE,
            Record::Publish { .. } => PUBLISH,
            Record::Settle { .. } => SETTLE,
            Record::Delivered { .. } => DELIVERED,
        }
    }

    /// Decodes the record at the start of `buf` (a whole segment's bytes, shared); returns it
    /// and its length.
    pub fn decode(buf: &Bytes) -> Result<(Record, usize), RecordError> {
        if buf.len() < RECORD_HEADER {
            return Err(RecordError::Truncated);
        }
        if buf[0] != MAGIC {
            return Err(RecordError::Corrupt("bad magic byte"));
        }
        let kind = buf[1];
        let len = u32::from_be_bytes([buf[2], buf[3], buf[4], buf[5]]);
        let crc = u32::from_be_bytes([buf[6], buf[7], buf[8], buf[9]]);
        if len > MAX_PAYLOAD {
            return Err(RecordError::Corrupt("impossible record length"));
        }
        let end = RECORD_HEADER + len as usize;
        if buf.len() < end {
            return Err(RecordError::Truncated);
        }
        let payload = buf.slice(RECORD_HEADER..end);
        if crc32c::crc32c_append(crc32c::crc32c(&[kind]), &payload) != crc {
            return Err(RecordError::Corrupt("checksum mismatch"));
        }
        let record =
            decode_payload(kind, payload).ok_or(RecordError::Corrupt("bad record layout"))?;
        Ok((record, end))
    }
}

fn put_str(out: &mut BytesMut, s: &str) {
    out.put_u8(s.len() as u8);
    out.put_slice(s.as_bytes());
}

fn get_bytes(p: &mut Bytes, len: usize) -> Option<Bytes> {
    (p.remaining() >= len).then(|| p.split_to(len))
}

fn get_str(p: &mut Bytes) -> Option<ShortStr> {
    let len = *p.first()? as usize;
    p.advance(1);
    let bytes = get_bytes(p, len)?;
    ShortStr::from_utf8(bytes)
}

fn get_u32(p: &mut Bytes) -> Option<u32> {
    (p.remaining() >= 4).then(|| p.get_u32())
}

fn decode_payload(kind: u8, mut p: Bytes) -> Option<Record> {
    if p.remaining() < 12 {
        return None;
    }
    let id = p.get_u64();
    let record = match kind {
        PUBLISH | PUBLISH_WIDE => {
            let delivered = p.get_u8() != 0;
            let n = if kind == PUBLISH {
                if p.remaining() < 2 {
                    return None;
                }
                usize::from(p.get_u16())
            } else {
                get_u32(&mut p)? as usize
            };
            // Never trust a count for an allocation: each queue id takes 4 bytes.
            if n > p.remaining() / 4 {
                return None;
            }
            let mut queues = Vec::with_capacity(n);
            for _ in 0..n {
                queues.push(get_u32(&mut p)?);
            }
            let exchange = get_str(&mut p)?;
            let routing_key = get_str(&mut p)?;
            let header_len = get_u32(&mut p)? as usize;
            let header = get_bytes(&mut p, header_len)?;
            let body_len = get_u32(&mut p)? as usize;
            let body = get_bytes(&mut p, body_len)?;
            Record::Publish {
                id,
                queues,
                delivered,
                exchange,
                routing_key,
                header,
                body,
            }
        }
        SETTLE => Record::Settle {
            id,
            queue: p.get_u32(),
        },
        DELIVERED => Record::Delivered {
            id,
            queue: p.get_u32(),
        },
        _ => return None,
    };
    p.is_empty().then_some(record)
}

/// A content header as stored in a publish record (a whole header frame).
pub fn header_bytes(header: &ContentHeader) -> Bytes {
    let mut out = BytesMut::new();
    encode_header(0, header, &mut out);
    out.freeze()
}

/// The content header stored by [`header_bytes`].
pub fn parse_header(bytes: &Bytes) -> Option<ContentHeader> {
    let mut buf = BytesMut::from(&bytes[..]);
    match decode_frame(&mut buf, 0) {
        Ok(Some(Frame::Header { header, .. })) => Some(header),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_protocol::BasicProperties;

    fn publish() -> Record {
        let header = ContentHeader {
            class_id: 60,
            weight: 0,
            body_size: 5,
            properties: BasicProperties {
                delivery_mode: Some(2),
                ..Default::default()
            },
        };
        Record::Publish {
            id: 42,
            queues: vec![1, 7],
            delivered: false,
            exchange: "x".into(),
            routing_key: "rk".into(),
            header: header_bytes(&header),
            body: Bytes::from_static(b"hello"),
        }
    }

    #[test]
    fn records_round_trip() {
        for r in [
            publish(),
            Record::Settle { id: 42, queue: 7 },
            Record::Delivered { id: 1, queue: 2 },
        ] {
            let mut out = BytesMut::new();
            r.encode(&mut out);
            let bytes = out.freeze();
            assert_eq!(Record::decode(&bytes), Ok((r, bytes.len())));
        }
    }

    /// A message routed to more durable queues than a u16 counts keeps all of them (the count
    /// was once truncated to u16, and recovery then stopped at a corrupt record).
    #[test]
    fn publish_to_more_than_65535_queues_round_trips() {
        let Record::Publish {
            id,
            delivered,
            exchange,
            routing_key,
            header,
            body,
            ..
        } = publish()
        else {
            unreachable!()
        };
        for n in [65_535u32, 65_536, 70_000] {
            let r = Record::Publish {
                id,
                queues: (1..=n).collect(),
                delivered,
                exchange: exchange.clone(),
                routing_key: routing_key.clone(),
                header: header.clone(),
                body: body.clone(),
            };
            let mut out = BytesMut::new();
            r.encode(&mut out);
            let bytes = out.freeze();
            let expected_kind = if n > 65_535 { PUBLISH_WIDE } else { PUBLISH };
            assert_eq!(bytes[1], expected_kind, "{n} queues");
            assert_eq!(Record::decode(&bytes), Ok((r, bytes.len())), "{n} queues");
        }
    }

    #[test]
    fn every_prefix_is_truncated_and_every_bit_flip_is_caught() {
        let mut out = BytesMut::new();
        publish().encode(&mut out);
        let bytes = out.freeze();
        for len in 0..bytes.len() {
            assert_eq!(
                Record::decode(&bytes.slice(..len)).map(|_| ()),
                Err(RecordError::Truncated),
                "prefix {len}"
            );
        }
        for i in 0..bytes.len() {
            let mut flipped = bytes.to_vec();
            flipped[i] ^= 0x10;
            let r = Record::decode(&Bytes::from(flipped));
            assert!(r.is_err(), "flip at byte {i} went unnoticed");
        }
    }

    #[test]
    fn stored_header_parses_back() {
        let Record::Publish { header, .. } = publish() else {
            unreachable!()
        };
        assert_eq!(
            parse_header(&header).map(|h| h.properties.delivery_mode),
            Some(Some(2))
        );
    }
}
