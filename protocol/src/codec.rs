//! Primitive readers and writers, and the errors a decode can end in.
//!
//! `Reader` parses a complete, already-buffered frame payload with nom's `complete` parsers: running
//! out of bytes inside a payload is a syntax error, because the frame layer has already checked the
//! frame's length. Strings and byte arrays are slices of the frame's `Bytes`, never copies.

use crate::field::{Decimal, FieldTable, FieldValue, LongStr, ShortStr};
use crate::generated::ReplyCode;
use bytes::{BufMut, Bytes, BytesMut};
use nom::number::complete as num;

/// Nested tables and arrays deeper than this are refused, so a hostile frame cannot exhaust the
/// decoder's stack (RabbitMQ has no documented limit; no real header nests this deep).
pub const MAX_NESTING: usize = 32;

/// Why bytes could not be decoded. Each kind knows the reply code the broker must close with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A frame whose payload is larger than the negotiated `frame_max` (RabbitMQ's allowance: the
    /// 8 bytes of header and frame-end are not counted).
    #[error("frame payload of {payload} bytes is larger than frame_max {frame_max}")]
    FrameTooLarge {
        /// The payload size the frame header declares.
        payload: u32,
        /// The negotiated limit.
        frame_max: u32,
    },
    /// The octet after the payload was not 0xCE.
    #[error("frame does not end with 0xCE (found 0x{0:02x})")]
    BadFrameEnd(u8),
    /// A frame type other than method, header, body or heartbeat.
    #[error("unknown frame type {0}")]
    UnknownFrameType(u8),
    /// A heartbeat frame on a channel other than 0.
    #[error("heartbeat frame on channel {0}; heartbeats belong to channel 0")]
    HeartbeatOnChannel(u16),
    /// A method id the protocol does not define.
    #[error("unknown method: class {class_id}, method {method_id}")]
    UnknownMethod {
        /// Class id on the wire.
        class_id: u16,
        /// Method id on the wire.
        method_id: u16,
    },
    /// A payload whose fields could not be read as the spec says.
    #[error("{0}")]
    Syntax(String),
}

impl DecodeError {
    /// The reply code the broker closes the connection with.
    pub fn reply_code(&self) -> ReplyCode {
        match self {
            DecodeError::FrameTooLarge { .. }
            | DecodeError::BadFrameEnd(_)
            | DecodeError::UnknownFrameType(_)
            | DecodeError::HeartbeatOnChannel(_) => ReplyCode::FrameError,
            DecodeError::UnknownMethod { .. } => ReplyCode::NotImplemented,
            DecodeError::Syntax(_) => ReplyCode::SyntaxError,
        }
    }

    fn syntax(what: impl Into<String>) -> Self {
        DecodeError::Syntax(what.into())
    }
}

/// A cursor over one complete frame payload.
pub(crate) struct Reader<'a> {
    owner: &'a Bytes,
    rest: &'a [u8],
    context: &'static str,
}

type NomResult<'a, T> = nom::IResult<&'a [u8], T, nom::error::Error<&'a [u8]>>;

impl<'a> Reader<'a> {
    /// Reads `payload`; `context` names what is being read for error texts ("basic.publish").
    pub(crate) fn new(owner: &'a Bytes, context: &'static str) -> Self {
        Reader {
            owner,
            rest: owner,
            context,
        }
    }

    pub(crate) fn set_context(&mut self, context: &'static str) {
        self.context = context;
    }

    fn run<T>(
        &mut self,
        what: &str,
        parser: impl FnOnce(&'a [u8]) -> NomResult<'a, T>,
    ) -> Result<T, DecodeError> {
        match parser(self.rest) {
            Ok((rest, value)) => {
                self.rest = rest;
                Ok(value)
            }
            Err(_) => Err(DecodeError::syntax(format!(
                "{}: payload ends inside {what}",
                self.context
            ))),
        }
    }

    pub(crate) fn octet(&mut self) -> Result<u8, DecodeError> {
        self.run("an octet", num::be_u8)
    }

    pub(crate) fn short(&mut self) -> Result<u16, DecodeError> {
        self.run("a short", num::be_u16)
    }

    pub(crate) fn long(&mut self) -> Result<u32, DecodeError> {
        self.run("a long", num::be_u32)
    }

    pub(crate) fn longlong(&mut self) -> Result<u64, DecodeError> {
        self.run("a longlong", num::be_u64)
    }

    fn slice(&mut self, len: usize, what: &str) -> Result<Bytes, DecodeError> {
        let taken = self.run(what, nom::bytes::complete::take(len))?;
        Ok(self.owner.slice_ref(taken))
    }

    pub(crate) fn shortstr(&mut self) -> Result<ShortStr, DecodeError> {
        let len = self.octet()?;
        let bytes = self.slice(len.into(), "a shortstr")?;
        ShortStr::from_utf8(bytes).ok_or_else(|| {
            DecodeError::syntax(format!("{}: shortstr is not valid UTF-8", self.context))
        })
    }

    pub(crate) fn longstr(&mut self) -> Result<LongStr, DecodeError> {
        let len = self.long()?;
        self.slice(len as usize, "a longstr")
    }

    pub(crate) fn table(&mut self) -> Result<FieldTable, DecodeError> {
        self.table_at(0)
    }

    fn table_at(&mut self, depth: usize) -> Result<FieldTable, DecodeError> {
        let len = self.long()?;
        let body = self.slice(len as usize, "a field table")?;
        let mut inner = Reader {
            owner: &body,
            rest: &body,
            context: self.context,
        };
        let mut entries = Vec::new();
        while !inner.rest.is_empty() {
            let key = inner.shortstr()?;
            let value = inner.value(depth)?;
            entries.push((key, value));
        }
        Ok(FieldTable(entries))
    }

    fn array_at(&mut self, depth: usize) -> Result<Vec<FieldValue>, DecodeError> {
        let len = self.long()?;
        let body = self.slice(len as usize, "a field array")?;
        let mut inner = Reader {
            owner: &body,
            rest: &body,
            context: self.context,
        };
        let mut values = Vec::new();
        while !inner.rest.is_empty() {
            values.push(inner.value(depth)?);
        }
        Ok(values)
    }

    fn value(&mut self, depth: usize) -> Result<FieldValue, DecodeError> {
        let letter = self.octet()?;
        Ok(match letter {
            b't' => FieldValue::Bool(self.octet()? != 0),
            b'b' => FieldValue::I8(self.run("an i8", num::be_i8)?),
            b'B' => FieldValue::U8(self.octet()?),
            b's' => FieldValue::I16(self.run("an i16", num::be_i16)?),
            b'u' => FieldValue::U16(self.short()?),
            b'I' => FieldValue::I32(self.run("an i32", num::be_i32)?),
            b'i' => FieldValue::U32(self.long()?),
            b'l' => FieldValue::I64(self.run("an i64", num::be_i64)?),
            b'L' => FieldValue::I64Upper(self.run("an i64", num::be_i64)?),
            b'f' => FieldValue::F32(self.run("an f32", num::be_f32)?),
            b'd' => FieldValue::F64(self.run("an f64", num::be_f64)?),
            b'D' => FieldValue::Decimal(Decimal {
                scale: self.octet()?,
                value: self.long()?,
            }),
            b'S' => FieldValue::LongStr(self.longstr()?),
            b'x' => FieldValue::ByteArray(self.longstr()?),
            b'T' => FieldValue::Timestamp(self.longlong()?),
            b'V' => FieldValue::Void,
            b'A' | b'F' if depth >= MAX_NESTING => {
                return Err(DecodeError::syntax(format!(
                    "{}: field tables/arrays nested deeper than {MAX_NESTING} levels",
                    self.context
                )))
            }
            b'A' => FieldValue::Array(self.array_at(depth + 1)?),
            b'F' => FieldValue::Table(self.table_at(depth + 1)?),
            other => {
                return Err(DecodeError::syntax(format!(
                    "{}: unknown field value type {:?} (0x{other:02x})",
                    self.context,
                    char::from(other)
                )))
            }
        })
    }

    /// Ends the read: bytes left over mean the payload did not match the method's fields.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::syntax(format!(
                "{}: {} unexpected bytes after the last field",
                self.context,
                self.rest.len()
            )))
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

/// Decodes a field table from `bytes`, which start with the table's 4-byte size: how AMQPLAIN's
/// SASL response is read (a table written without its size, to which the caller prefixes one).
pub fn decode_field_table(bytes: &Bytes) -> Result<FieldTable, DecodeError> {
    let mut r = Reader::new(bytes, "field table");
    let table = r.table()?;
    r.finish()?;
    Ok(table)
}

/// Appends a field table with its 4-byte size.
pub fn encode_field_table(table: &FieldTable, out: &mut BytesMut) {
    Writer { buf: out }.table(table);
}

/// Appends AMQP primitives to a buffer.
pub(crate) struct Writer<'a> {
    pub(crate) buf: &'a mut BytesMut,
}

impl Writer<'_> {
    pub(crate) fn octet(&mut self, v: u8) {
        self.buf.put_u8(v);
    }

    pub(crate) fn short(&mut self, v: u16) {
        self.buf.put_u16(v);
    }

    pub(crate) fn long(&mut self, v: u32) {
        self.buf.put_u32(v);
    }

    pub(crate) fn longlong(&mut self, v: u64) {
        self.buf.put_u64(v);
    }

    pub(crate) fn shortstr(&mut self, s: &ShortStr) {
        // ShortStr's constructors keep it within 255 bytes.
        self.buf.put_u8(s.len() as u8);
        self.buf.put_slice(s.as_bytes());
    }

    pub(crate) fn longstr(&mut self, s: &[u8]) {
        self.buf.put_u32(s.len() as u32);
        self.buf.put_slice(s);
    }

    /// Writes a size placeholder, runs `body`, then fills in the size.
    fn sized(&mut self, body: impl FnOnce(&mut Self)) {
        let at = self.buf.len();
        self.buf.put_u32(0);
        body(self);
        let size = (self.buf.len() - at - 4) as u32;
        self.buf[at..at + 4].copy_from_slice(&size.to_be_bytes());
    }

    pub(crate) fn table(&mut self, table: &FieldTable) {
        self.sized(|w| {
            for (key, value) in table.iter() {
                w.shortstr(key);
                w.value(value);
            }
        });
    }

    fn value(&mut self, value: &FieldValue) {
        self.buf.put_u8(value.type_letter());
        match value {
            FieldValue::Bool(v) => self.buf.put_u8(u8::from(*v)),
            FieldValue::I8(v) => self.buf.put_i8(*v),
            FieldValue::U8(v) => self.buf.put_u8(*v),
            FieldValue::I16(v) => self.buf.put_i16(*v),
            FieldValue::U16(v) => self.buf.put_u16(*v),
            FieldValue::I32(v) => self.buf.put_i32(*v),
            FieldValue::U32(v) => self.buf.put_u32(*v),
            FieldValue::I64(v) | FieldValue::I64Upper(v) => self.buf.put_i64(*v),
            FieldValue::F32(v) => self.buf.put_f32(*v),
            FieldValue::F64(v) => self.buf.put_f64(*v),
            FieldValue::Decimal(d) => {
                self.buf.put_u8(d.scale);
                self.buf.put_u32(d.value);
            }
            FieldValue::LongStr(b) | FieldValue::ByteArray(b) => self.longstr(b),
            FieldValue::Array(values) => self.sized(|w| values.iter().for_each(|v| w.value(v))),
            FieldValue::Timestamp(v) => self.buf.put_u64(*v),
            FieldValue::Table(t) => self.table(t),
            FieldValue::Void => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_table(bytes: &[u8]) -> Result<FieldTable, DecodeError> {
        let owner = Bytes::copy_from_slice(bytes);
        let mut r = Reader::new(&owner, "test");
        let t = r.table()?;
        r.finish()?;
        Ok(t)
    }

    #[test]
    fn rabbitmq_reads_s_as_signed_16_and_l_as_signed_64() {
        let bytes = [
            0, 0, 0, 16, 1, b'a', b's', 0xff, 0xfe, 1, b'b', b'l', 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xfd,
        ];
        let mut framed = bytes.to_vec();
        framed[3] = (bytes.len() - 4) as u8;
        let t = decode_table(&framed).expect("valid table");
        assert_eq!(t.get("a"), Some(&FieldValue::I16(-2)));
        assert_eq!(t.get("b"), Some(&FieldValue::I64(-3)));
    }

    #[test]
    fn every_letter_rabbitmq_reads_round_trips_unchanged() {
        // One value per letter `rabbit_binary_parser` knows, in a table and in an array.
        let values: &[(u8, &[u8])] = &[
            (b't', &[1]),
            (b'b', &[0x80]),
            (b'B', &[0xff]),
            (b's', &[0xff, 0xfe]),
            (b'u', &[0xff, 0xfe]),
            (b'I', &[0x80, 0, 0, 1]),
            (b'i', &[0xff, 0, 0, 1]),
            (b'l', &[0x80, 0, 0, 0, 0, 0, 0, 1]),
            (b'L', &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]),
            (b'f', &[0x3f, 0x80, 0, 0]),
            (b'd', &[0x3f, 0xf0, 0, 0, 0, 0, 0, 0]),
            (b'D', &[2, 0, 0, 0x30, 0x39]),
            (b'S', &[0, 0, 0, 2, b'h', b'i']),
            (b'x', &[0, 0, 0, 2, 0, 0xff]),
            (b'T', &[0, 0, 0, 0, 0x65, 0, 0, 0]),
            (b'V', &[]),
            (b'A', &[0, 0, 0, 2, b'b', 7]),
            (b'F', &[0, 0, 0, 4, 1, b'k', b'B', 9]),
        ];
        let mut entries = Vec::new();
        let mut array = Vec::new();
        for (letter, bytes) in values {
            entries.extend_from_slice(&[1, *letter, *letter]);
            entries.extend_from_slice(bytes);
            array.push(*letter);
            array.extend_from_slice(bytes);
        }
        entries.extend_from_slice(&[1, b'a', b'A']);
        entries.extend_from_slice(&(array.len() as u32).to_be_bytes());
        entries.extend_from_slice(&array);
        let mut wire = (entries.len() as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(&entries);

        let table = decode_table(&wire).expect("every letter RabbitMQ knows");
        assert_eq!(table.get("L"), Some(&FieldValue::I64Upper(-2)));
        assert_eq!(table.get("L").and_then(FieldValue::as_i64), Some(-2));
        let mut out = BytesMut::new();
        encode_field_table(&table, &mut out);
        assert_eq!(&out[..], &wire[..], "same letters, same bytes");
    }

    #[test]
    fn unknown_type_letter_is_a_syntax_error() {
        let err = decode_table(&[0, 0, 0, 3, 1, b'k', b'Z']).unwrap_err();
        assert_eq!(err.reply_code(), ReplyCode::SyntaxError);
        assert!(
            err.to_string().contains("unknown field value type 'Z'"),
            "{err}"
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        // 10,000 nested arrays, each one holding the next.
        let depth = 10_000usize;
        let mut bytes = Vec::new();
        let mut sizes = Vec::new();
        for level in 0..depth {
            sizes.push((depth - level - 1) * 5);
        }
        bytes.extend_from_slice(&((depth * 5 + 2) as u32).to_be_bytes());
        bytes.extend_from_slice(&[1, b'k']);
        for size in sizes {
            bytes.push(b'A');
            bytes.extend_from_slice(&(size as u32).to_be_bytes());
        }
        let err = decode_table(&bytes).unwrap_err();
        assert!(err.to_string().contains("nested deeper"), "{err}");
    }

    #[test]
    fn table_longer_than_payload_is_a_syntax_error() {
        let err = decode_table(&[0, 0, 0, 9, 1, b'k', b'V']).unwrap_err();
        assert_eq!(err.reply_code(), ReplyCode::SyntaxError);
    }
}
