//! AMQP value types: short and long strings, field tables, field arrays and their values.
//!
//! Type letters follow RabbitMQ's parser (`rabbit_binary_parser`), not the 0-9-1 spec text: `s` is a
//! signed 16-bit integer, `l` a signed 64-bit integer, `x` a byte array, `L` (which pika writes for
//! integers of 2^63 and more) is read as a signed 64-bit integer too, and there is no `U`. A table keeps its entries
//! in wire order (duplicates included) so that decoding and encoding again gives the same bytes:
//! headers pass through the broker untouched, whatever client wrote them.

use bytes::Bytes;
use bytestring::ByteString;
use std::fmt;

/// A `longstr`: up to 2^32-1 arbitrary bytes, shared with the buffer it was read from.
pub type LongStr = Bytes;

/// A `shortstr`: at most 255 bytes of UTF-8, cheap to clone (it shares the frame's buffer).
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShortStr(ByteString);

/// The longest a `shortstr` may be on the wire.
pub const SHORTSTR_MAX: usize = 255;

impl ShortStr {
    /// An empty string.
    pub const fn empty() -> Self {
        ShortStr(ByteString::from_static(""))
    }

    /// A string from a `'static` literal; longer than 255 bytes is a bug in the caller.
    pub const fn from_static(s: &'static str) -> Self {
        assert!(
            s.len() <= SHORTSTR_MAX,
            "shortstr literal longer than 255 bytes"
        );
        ShortStr(ByteString::from_static(s))
    }

    /// A string, if it fits in 255 bytes.
    pub fn try_new(s: impl Into<ByteString>) -> Option<Self> {
        let s = s.into();
        (s.len() <= SHORTSTR_MAX).then_some(ShortStr(s))
    }

    /// A string cut to its first 255 bytes (at a character boundary), for texts the broker writes.
    pub fn truncated(s: &str) -> Self {
        let mut end = s.len().min(SHORTSTR_MAX);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        ShortStr(ByteString::from(&s[..end]))
    }

    /// A string from bytes, if they are UTF-8 and at most 255 long (no copy).
    pub fn from_utf8(bytes: Bytes) -> Option<Self> {
        if bytes.len() > SHORTSTR_MAX {
            return None;
        }
        ByteString::try_from(bytes).ok().map(ShortStr)
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::ops::Deref for ShortStr {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for ShortStr {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl From<&'static str> for ShortStr {
    /// Literal strings; longer than 255 bytes is a bug in the caller and is cut.
    fn from(s: &'static str) -> Self {
        if s.len() <= SHORTSTR_MAX {
            ShortStr(ByteString::from_static(s))
        } else {
            ShortStr::truncated(s)
        }
    }
}

impl PartialEq<str> for ShortStr {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for ShortStr {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

/// An AMQP decimal: `value / 10^scale`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Decimal {
    /// Number of decimal digits after the point.
    pub scale: u8,
    /// The unscaled value.
    pub value: u32,
}

/// One value in a field table or field array, tagged by its RabbitMQ type letter.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue {
    /// `t`
    Bool(bool),
    /// `b`
    I8(i8),
    /// `B`
    U8(u8),
    /// `s` (RabbitMQ: signed 16-bit)
    I16(i16),
    /// `u`
    U16(u16),
    /// `I`
    I32(i32),
    /// `i`
    U32(u32),
    /// `l` (RabbitMQ: signed 64-bit)
    I64(i64),
    /// `L`: RabbitMQ reads it as signed 64-bit like `l`, and keeps the letter, so the value is
    /// delivered back as the client wrote it (pika writes `L` for integers from 2^63 up: read
    /// the bits as `u64` for its meaning).
    I64Upper(i64),
    /// `f`
    F32(f32),
    /// `d`
    F64(f64),
    /// `D`
    Decimal(Decimal),
    /// `S`
    LongStr(LongStr),
    /// `x`
    ByteArray(Bytes),
    /// `A`
    Array(Vec<FieldValue>),
    /// `T` (seconds since the epoch)
    Timestamp(u64),
    /// `F`
    Table(FieldTable),
    /// `V`
    Void,
}

impl FieldValue {
    /// The type letter on the wire.
    pub fn type_letter(&self) -> u8 {
        match self {
            FieldValue::Bool(_) => b't',
            FieldValue::I8(_) => b'b',
            FieldValue::U8(_) => b'B',
            FieldValue::I16(_) => b's',
            FieldValue::U16(_) => b'u',
            FieldValue::I32(_) => b'I',
            FieldValue::U32(_) => b'i',
            FieldValue::I64(_) => b'l',
            FieldValue::I64Upper(_) => b'L',
            FieldValue::F32(_) => b'f',
            FieldValue::F64(_) => b'd',
            FieldValue::Decimal(_) => b'D',
            FieldValue::LongStr(_) => b'S',
            FieldValue::ByteArray(_) => b'x',
            FieldValue::Array(_) => b'A',
            FieldValue::Timestamp(_) => b'T',
            FieldValue::Table(_) => b'F',
            FieldValue::Void => b'V',
        }
    }

    /// The value as an integer, whatever integer type the client chose (clients differ: pika
    /// writes `l`, amqplib `I` or `l`, lapin whatever the user picked).
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            FieldValue::I8(v) => v.into(),
            FieldValue::U8(v) => v.into(),
            FieldValue::I16(v) => v.into(),
            FieldValue::U16(v) => v.into(),
            FieldValue::I32(v) => v.into(),
            FieldValue::U32(v) => v.into(),
            FieldValue::I64(v) | FieldValue::I64Upper(v) => v,
            FieldValue::Timestamp(v) => i64::try_from(v).ok()?,
            _ => return None,
        })
    }

    /// The value as a string, if it is a long string holding UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FieldValue::LongStr(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The value as a bool, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            FieldValue::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

impl From<&str> for FieldValue {
    fn from(s: &str) -> Self {
        FieldValue::LongStr(Bytes::copy_from_slice(s.as_bytes()))
    }
}

/// A field table: named values in wire order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldTable(pub Vec<(ShortStr, FieldValue)>);

impl FieldTable {
    /// An empty table.
    pub fn new() -> Self {
        FieldTable(Vec::new())
    }

    /// The first value under `key`.
    pub fn get(&self, key: &str) -> Option<&FieldValue> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v)
    }

    /// Sets `key`, replacing every earlier value under it.
    pub fn insert(&mut self, key: ShortStr, value: FieldValue) {
        self.0.retain(|(k, _)| *k != key);
        self.0.push((key, value));
    }

    /// Removes every value under `key`, returning the first.
    pub fn remove(&mut self, key: &str) -> Option<FieldValue> {
        let pos = self.0.iter().position(|(k, _)| k.as_str() == key)?;
        let (_, v) = self.0.remove(pos);
        self.0.retain(|(k, _)| k.as_str() != key);
        Some(v)
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The entries in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&ShortStr, &FieldValue)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl FromIterator<(ShortStr, FieldValue)> for FieldTable {
    fn from_iter<I: IntoIterator<Item = (ShortStr, FieldValue)>>(iter: I) -> Self {
        FieldTable(iter.into_iter().collect())
    }
}
