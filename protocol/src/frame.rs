//! The frame layer: protocol header, the four frame types, frame-end, and `frame_max`.
//!
//! `decode_frame` reads the 7-byte frame header with nom's streaming parsers and checks the size
//! against `frame_max` before any payload is buffered; a short buffer means "read more"
//! (`Ok(None)`), never an error.

use crate::codec::{DecodeError, Reader, Writer};
use crate::generated::Method;
use crate::properties::{BasicProperties, ContentHeader};
use bytes::{BufMut, Bytes, BytesMut};
use nom::number::streaming::{be_u16, be_u32, be_u8};

/// The octet that ends every frame.
pub const FRAME_END: u8 = 0xCE;
/// Frame header: type (1) + channel (2) + size (4).
pub const FRAME_HEADER_SIZE: usize = 7;
/// Bytes a frame adds around its payload: header plus frame-end.
pub const FRAME_OVERHEAD: usize = FRAME_HEADER_SIZE + 1;
/// The smallest `frame_max` a peer may negotiate (spec constant frame-min-size).
pub const FRAME_MIN_SIZE: u32 = 4096;
/// The most `decode_frame` reserves at once for an incomplete frame: RabbitMQ's default
/// `frame_max` (128 KiB), so a frame within it is read into one allocation.
pub const MAX_RESERVE: usize = 128 * 1024;

const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_HEARTBEAT: u8 = 8;

/// `AMQP\0\0\x09\x01`: the header a 0-9-1 client opens with, and what a broker answers to any
/// other header before closing the socket (spec section 4.2.2).
pub const PROTOCOL_HEADER: [u8; 8] = *b"AMQP\x00\x00\x09\x01";

/// What a peer sent as its first eight bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolHeader {
    /// AMQP 0-9-1.
    Amqp091,
    /// Anything else: another AMQP version, or not AMQP at all.
    Unsupported([u8; 8]),
}

/// Reads the protocol header; `Ok(None)` while fewer than 8 bytes have arrived.
pub fn decode_protocol_header(buf: &[u8]) -> Option<ProtocolHeader> {
    let header: [u8; 8] = buf.get(..8)?.try_into().ok()?;
    Some(if header == PROTOCOL_HEADER {
        ProtocolHeader::Amqp091
    } else {
        ProtocolHeader::Unsupported(header)
    })
}

/// One AMQP frame.
// Header carries the whole content header inline: boxing it would cost an allocation per
// published message on the hot path, while a frame is built and moved once.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// A method frame.
    Method {
        /// Channel number.
        channel: u16,
        /// The method and its arguments.
        method: Method,
    },
    /// A content header frame.
    Header {
        /// Channel number.
        channel: u16,
        /// Class, body size and properties.
        header: ContentHeader,
    },
    /// A content body frame: a slice of the read buffer, never copied.
    Body {
        /// Channel number.
        channel: u16,
        /// Body bytes.
        payload: Bytes,
    },
    /// A heartbeat (always channel 0).
    Heartbeat,
}

impl Frame {
    /// The channel the frame belongs to.
    pub fn channel(&self) -> u16 {
        match self {
            Frame::Method { channel, .. }
            | Frame::Header { channel, .. }
            | Frame::Body { channel, .. } => *channel,
            Frame::Heartbeat => 0,
        }
    }
}

struct RawHeader {
    kind: u8,
    channel: u16,
    size: u32,
}

fn raw_header(input: &[u8]) -> nom::IResult<&[u8], RawHeader> {
    let (input, kind) = be_u8(input)?;
    let (input, channel) = be_u16(input)?;
    let (input, size) = be_u32(input)?;
    Ok((
        input,
        RawHeader {
            kind,
            channel,
            size,
        },
    ))
}

/// Decodes one frame from the front of `buf`, removing its bytes.
///
/// `frame_max` is the negotiated maximum frame size (0 = no limit). Like RabbitMQ's reader, a frame
/// may be up to [`FRAME_OVERHEAD`] bytes larger: the limit applies to the *payload*, because
/// clients such as amqpstorm and rabbitpy split bodies into payloads of exactly `frame_max`
/// bytes. What the broker sends stays within `frame_max` ([`encode_content`]). Returns `Ok(None)`
/// when `buf` holds only part of a frame; the caller reads more and calls again. Bytes of the
/// returned frame's body are shared with `buf`'s allocation.
pub fn decode_frame(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Frame>, DecodeError> {
    let header = match raw_header(buf) {
        Ok((_, header)) => header,
        Err(_) => return Ok(None), // only Incomplete is possible: every byte value is valid here
    };
    if frame_max != 0 && header.size > frame_max {
        return Err(DecodeError::FrameTooLarge {
            payload: header.size,
            frame_max,
        });
    }
    let size = FRAME_OVERHEAD as u64 + u64::from(header.size);
    if !matches!(
        header.kind,
        FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT
    ) {
        return Err(DecodeError::UnknownFrameType(header.kind));
    }
    let size = size as usize;
    if buf.len() < size {
        // Room for the rest of the frame, but never a huge block on the word of a 7-byte header
        // (with frame_max 0, one header could otherwise make us allocate 4 GiB): the buffer
        // grows as the bytes actually arrive.
        buf.reserve((size - buf.len()).min(MAX_RESERVE));
        return Ok(None);
    }
    let end = buf[size - 1];
    if end != FRAME_END {
        return Err(DecodeError::BadFrameEnd(end));
    }
    let frame = buf.split_to(size).freeze();
    let payload = frame.slice(FRAME_HEADER_SIZE..size - 1);
    decode_payload(header.kind, header.channel, payload).map(Some)
}

fn decode_payload(kind: u8, channel: u16, payload: Bytes) -> Result<Frame, DecodeError> {
    match kind {
        FRAME_METHOD => {
            let mut r = Reader::new(&payload, "method frame");
            let class_id = r.short()?;
            let method_id = r.short()?;
            r.set_context(Method::name_of(class_id, method_id).unwrap_or("method frame"));
            let method = Method::decode_args(class_id, method_id, &mut r)?;
            r.finish()?;
            Ok(Frame::Method { channel, method })
        }
        FRAME_HEADER => {
            let mut r = Reader::new(&payload, "content header");
            let header = ContentHeader::decode(&mut r)?;
            r.finish()?;
            Ok(Frame::Header { channel, header })
        }
        FRAME_BODY => Ok(Frame::Body { channel, payload }),
        _ if channel != 0 => Err(DecodeError::HeartbeatOnChannel(channel)),
        _ => {
            let r = Reader::new(&payload, "heartbeat");
            if r.is_empty() {
                Ok(Frame::Heartbeat)
            } else {
                Err(DecodeError::Syntax("heartbeat frame with a payload".into()))
            }
        }
    }
}

/// Appends one frame of `kind` whose payload `body` writes, filling in the size afterwards.
fn put_frame(out: &mut BytesMut, kind: u8, channel: u16, body: impl FnOnce(&mut Writer<'_>)) {
    out.put_u8(kind);
    out.put_u16(channel);
    let at = out.len();
    out.put_u32(0);
    body(&mut Writer { buf: out });
    let size = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&size.to_be_bytes());
    out.put_u8(FRAME_END);
}

/// Appends a method frame.
pub fn encode_method(channel: u16, method: &Method, out: &mut BytesMut) {
    put_frame(out, FRAME_METHOD, channel, |w| {
        w.short(method.class_id());
        w.short(method.method_id());
        method.encode_args(w);
    });
}

/// Appends a content header frame.
pub fn encode_header(channel: u16, header: &ContentHeader, out: &mut BytesMut) {
    put_frame(out, FRAME_HEADER, channel, |w| header.encode(w));
}

/// Appends one body frame holding `payload` (the caller keeps it within `frame_max`).
pub fn encode_body(channel: u16, payload: &[u8], out: &mut BytesMut) {
    out.reserve(payload.len() + FRAME_OVERHEAD);
    out.put_u8(FRAME_BODY);
    out.put_u16(channel);
    out.put_u32(payload.len() as u32);
    out.put_slice(payload);
    out.put_u8(FRAME_END);
}

/// Appends a heartbeat frame.
pub fn encode_heartbeat(out: &mut BytesMut) {
    out.put_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
}

/// Appends a content-carrying method, its header and as many body frames as `frame_max` needs.
pub fn encode_content(
    channel: u16,
    method: &Method,
    properties: &BasicProperties,
    body: &[u8],
    frame_max: u32,
    out: &mut BytesMut,
) {
    encode_method(channel, method, out);
    // The header written field by field: no copy of the properties (and their headers table)
    // per message, which a `ContentHeader` value would need.
    let class_id = method.class_id();
    put_frame(out, FRAME_HEADER, channel, |w| {
        w.short(class_id);
        w.short(0);
        w.longlong(body.len() as u64);
        properties.encode(w);
    });
    let chunk = if frame_max == 0 {
        usize::MAX
    } else {
        (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1)
    };
    for piece in body.chunks(chunk) {
        encode_body(channel, piece, out);
    }
}

/// Appends any frame.
pub fn encode_frame(frame: &Frame, out: &mut BytesMut) {
    match frame {
        Frame::Method { channel, method } => encode_method(*channel, method, out),
        Frame::Header { channel, header } => encode_header(*channel, header, out),
        Frame::Body { channel, payload } => encode_body(*channel, payload, out),
        Frame::Heartbeat => encode_heartbeat(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generated::{basic, channel};

    fn frame_bytes(frame: &Frame) -> BytesMut {
        let mut out = BytesMut::new();
        encode_frame(frame, &mut out);
        out
    }

    #[test]
    fn every_prefix_of_a_frame_is_incomplete() {
        let frame = Frame::Method {
            channel: 3,
            method: basic::Qos {
                prefetch_count: 10,
                ..Default::default()
            }
            .into(),
        };
        let bytes = frame_bytes(&frame);
        for len in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..len]);
            assert_eq!(decode_frame(&mut buf, 0), Ok(None), "prefix of {len} bytes");
            assert_eq!(buf.len(), len, "an incomplete frame consumes nothing");
        }
        let mut buf = bytes.clone();
        assert_eq!(decode_frame(&mut buf, 0), Ok(Some(frame)));
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_frame_is_refused_from_its_header_alone() {
        let header = [FRAME_BODY, 0, 1, 0, 1, 0, 0]; // 65,536-byte payload, none of it buffered
        let mut buf = BytesMut::from(&header[..]);
        let err = decode_frame(&mut buf, 4096).unwrap_err();
        assert_eq!(err.reply_code(), crate::ReplyCode::FrameError);
    }

    #[test]
    fn payload_of_frame_max_is_accepted_one_more_is_not() {
        // amqpstorm and rabbitpy send frames of frame_max + 8 bytes; RabbitMQ accepts them.
        let payload = vec![1u8; 4096];
        let mut buf = BytesMut::new();
        encode_body(1, &payload, &mut buf);
        assert_eq!(buf.len(), 4096 + FRAME_OVERHEAD);
        assert!(matches!(
            decode_frame(&mut buf, 4096),
            Ok(Some(Frame::Body { .. }))
        ));
        let mut buf = BytesMut::new();
        encode_body(1, &[1u8; 4097], &mut buf);
        assert_eq!(
            decode_frame(&mut buf, 4096),
            Err(DecodeError::FrameTooLarge {
                payload: 4097,
                frame_max: 4096
            })
        );
    }

    #[test]
    fn wrong_frame_end_is_a_frame_error() {
        let mut bytes = frame_bytes(&Frame::Method {
            channel: 1,
            method: channel::Open::default().into(),
        });
        let last = bytes.len() - 1;
        bytes[last] = 0;
        assert_eq!(
            decode_frame(&mut bytes, 0),
            Err(DecodeError::BadFrameEnd(0))
        );
    }

    #[test]
    fn trailing_bytes_in_a_method_payload_are_a_syntax_error() {
        let mut bytes = frame_bytes(&Frame::Method {
            channel: 1,
            method: channel::Open::default().into(),
        });
        // Grow the payload by one byte inside the frame.
        let size = u32::from_be_bytes([bytes[3], bytes[4], bytes[5], bytes[6]]) + 1;
        bytes[3..7].copy_from_slice(&size.to_be_bytes());
        let end = bytes.len() - 1;
        bytes[end] = 0x00;
        bytes.put_u8(FRAME_END);
        let err = decode_frame(&mut bytes, 0).unwrap_err();
        assert_eq!(err.reply_code(), crate::ReplyCode::SyntaxError, "{err}");
    }

    #[test]
    fn unknown_method_is_not_implemented() {
        let mut out = BytesMut::new();
        put_frame(&mut out, FRAME_METHOD, 1, |w| {
            w.short(60);
            w.short(999);
        });
        let err = decode_frame(&mut out, 0).unwrap_err();
        assert_eq!(
            err,
            DecodeError::UnknownMethod {
                class_id: 60,
                method_id: 999
            }
        );
        assert_eq!(err.reply_code(), crate::ReplyCode::NotImplemented);
    }

    #[test]
    fn body_split_over_frame_max() {
        let body = vec![7u8; 10_000];
        let mut out = BytesMut::new();
        let publish: Method = basic::Publish::default().into();
        encode_content(
            1,
            &publish,
            &BasicProperties::default(),
            &body,
            4096,
            &mut out,
        );
        let mut bodies = Vec::new();
        while let Some(frame) = decode_frame(&mut out, 4096).expect("valid frames") {
            if let Frame::Body { payload, .. } = frame {
                bodies.push(payload.len());
            }
        }
        assert_eq!(bodies, vec![4088, 4088, 1824]);
    }

    #[test]
    fn protocol_header() {
        assert_eq!(decode_protocol_header(b"AMQP\x00\x00"), None);
        assert_eq!(
            decode_protocol_header(b"AMQP\x00\x00\x09\x01"),
            Some(ProtocolHeader::Amqp091)
        );
        assert!(matches!(
            decode_protocol_header(b"AMQP\x01\x01\x00\x0a"),
            Some(ProtocolHeader::Unsupported(_))
        ));
    }
}
