//! Helpers shared by the integration tests: equality that compares floats by their bits (so a NaN
//! in a header table equals itself), and a decoder loop that keeps each frame's original bytes.

#![allow(dead_code)] // each test crate uses its own subset

use bytes::{Bytes, BytesMut};
use warren_protocol::generated::FieldMut;
use warren_protocol::{
    decode_frame, encode_frame, BasicProperties, ContentHeader, DecodeError, FieldTable,
    FieldValue, Frame, Method,
};

/// Field values equal, floats compared bit for bit (NaN == NaN, 0.0 != -0.0).
pub fn value_eq(a: &FieldValue, b: &FieldValue) -> bool {
    match (a, b) {
        (FieldValue::F32(x), FieldValue::F32(y)) => x.to_bits() == y.to_bits(),
        (FieldValue::F64(x), FieldValue::F64(y)) => x.to_bits() == y.to_bits(),
        (FieldValue::Array(x), FieldValue::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| value_eq(x, y))
        }
        (FieldValue::Table(x), FieldValue::Table(y)) => table_eq(x, y),
        _ => a == b,
    }
}

/// Tables equal entry by entry, in order, floats compared bit for bit.
pub fn table_eq(a: &FieldTable, b: &FieldTable) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b.iter())
            .all(|((ka, va), (kb, vb))| ka == kb && value_eq(va, vb))
}

fn field_eq(a: &FieldMut<'_>, b: &FieldMut<'_>) -> bool {
    match (a, b) {
        (FieldMut::Bit(x), FieldMut::Bit(y)) => **x == **y,
        (FieldMut::Octet(x), FieldMut::Octet(y)) => **x == **y,
        (FieldMut::Short(x), FieldMut::Short(y)) => **x == **y,
        (FieldMut::Long(x), FieldMut::Long(y)) => **x == **y,
        (FieldMut::LongLong(x), FieldMut::LongLong(y)) => **x == **y,
        (FieldMut::Timestamp(x), FieldMut::Timestamp(y)) => **x == **y,
        (FieldMut::ShortStr(x), FieldMut::ShortStr(y)) => **x == **y,
        (FieldMut::LongStr(x), FieldMut::LongStr(y)) => **x == **y,
        (FieldMut::Table(x), FieldMut::Table(y)) => table_eq(x, y),
        _ => false,
    }
}

/// Same method, every field equal (tables compared with [`table_eq`]).
pub fn method_eq(a: &Method, b: &Method) -> bool {
    if a.class_id() != b.class_id() || a.method_id() != b.method_id() {
        return false;
    }
    let (mut a, mut b) = (a.clone(), b.clone());
    let (fa, fb) = (a.fields_mut(), b.fields_mut());
    fa.len() == fb.len()
        && fa
            .iter()
            .zip(fb.iter())
            .all(|((na, x), (nb, y))| na == nb && field_eq(x, y))
}

/// Properties equal, the headers table compared with [`table_eq`].
pub fn properties_eq(a: &BasicProperties, b: &BasicProperties) -> bool {
    let headers_eq = match (&a.headers, &b.headers) {
        (Some(x), Some(y)) => table_eq(x, y),
        (None, None) => true,
        _ => false,
    };
    let strip = |p: &BasicProperties| BasicProperties {
        headers: None,
        ..p.clone()
    };
    headers_eq && strip(a) == strip(b)
}

pub fn header_eq(a: &ContentHeader, b: &ContentHeader) -> bool {
    a.class_id == b.class_id
        && a.weight == b.weight
        && a.body_size == b.body_size
        && properties_eq(&a.properties, &b.properties)
}

/// Frames equal, floats compared bit for bit.
pub fn frame_eq(a: &Frame, b: &Frame) -> bool {
    match (a, b) {
        (
            Frame::Method {
                channel: ca,
                method: ma,
            },
            Frame::Method {
                channel: cb,
                method: mb,
            },
        ) => ca == cb && method_eq(ma, mb),
        (
            Frame::Header {
                channel: ca,
                header: ha,
            },
            Frame::Header {
                channel: cb,
                header: hb,
            },
        ) => ca == cb && header_eq(ha, hb),
        (Frame::Body { .. }, Frame::Body { .. }) | (Frame::Heartbeat, Frame::Heartbeat) => a == b,
        _ => false,
    }
}

/// One frame's bytes.
pub fn encode(frame: &Frame) -> Bytes {
    let mut out = BytesMut::new();
    encode_frame(frame, &mut out);
    out.freeze()
}

/// A decoded frame and the bytes it was decoded from.
pub struct Decoded {
    pub frame: Frame,
    pub bytes: Bytes,
}

/// Decodes frames from the front of `buf` until it holds no whole frame; returns them with the
/// bytes each came from. `buf` keeps the bytes of a trailing partial frame.
pub fn decode_all(buf: &mut BytesMut, frame_max: u32) -> Result<Vec<Decoded>, DecodeError> {
    let mut frames = Vec::new();
    loop {
        let before = buf.clone().freeze();
        match decode_frame(buf, frame_max)? {
            Some(frame) => {
                let used = before.len() - buf.len();
                assert!(used >= 8, "a frame is at least 8 bytes, decode used {used}");
                frames.push(Decoded {
                    frame,
                    bytes: before.slice(..used),
                });
            }
            None => {
                assert_eq!(
                    &buf[..],
                    &before[..],
                    "Ok(None) must leave the buffer untouched"
                );
                return Ok(frames);
            }
        }
    }
}

/// Re-encodes a decoded frame and decodes that again: the bytes must be stable and the frame equal.
/// (The original bytes may differ from the re-encoding when they held things the codec normalises,
/// such as a `t` value other than 0/1 or unused high bits in a bit octet.)
pub fn assert_reencodes_stably(frame: &Frame) -> Result<(), String> {
    let first = encode(frame);
    let mut buf = BytesMut::from(&first[..]);
    let again = match decode_frame(&mut buf, 0) {
        Ok(Some(f)) => f,
        other => return Err(format!("re-encoded {frame:?} decodes as {other:?}")),
    };
    if !buf.is_empty() {
        return Err(format!("{} bytes left after re-decoding", buf.len()));
    }
    if !frame_eq(frame, &again) {
        return Err(format!(
            "re-decoded frame differs:\n{frame:?}\nvs\n{again:?}"
        ));
    }
    let second = encode(&again);
    if first != second {
        return Err(format!(
            "re-encoding is not stable:\n{}\nvs\n{}",
            hex::encode(&first),
            hex::encode(&second)
        ));
    }
    Ok(())
}
