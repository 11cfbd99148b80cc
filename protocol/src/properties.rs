//! The content header frame and the 14 basic properties with their flag word.

use crate::codec::{DecodeError, Reader, Writer};
use crate::field::{FieldTable, ShortStr};

/// Message properties of the `basic` class; `None` means "absent" (its flag bit is clear).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BasicProperties {
    /// MIME content type.
    pub content_type: Option<ShortStr>,
    /// MIME content encoding.
    pub content_encoding: Option<ShortStr>,
    /// Application headers.
    pub headers: Option<FieldTable>,
    /// 1 = transient, 2 = persistent.
    pub delivery_mode: Option<u8>,
    /// Priority, 0 to 9 in the spec (RabbitMQ allows up to 255).
    pub priority: Option<u8>,
    /// Application correlation identifier.
    pub correlation_id: Option<ShortStr>,
    /// Address to reply to.
    pub reply_to: Option<ShortStr>,
    /// Per-message TTL in milliseconds, as a string.
    pub expiration: Option<ShortStr>,
    /// Application message identifier.
    pub message_id: Option<ShortStr>,
    /// Seconds since the epoch.
    pub timestamp: Option<u64>,
    /// Message type name (spec field `type`).
    pub kind: Option<ShortStr>,
    /// Creating user id (RabbitMQ validates it against the connection's user).
    pub user_id: Option<ShortStr>,
    /// Creating application id.
    pub app_id: Option<ShortStr>,
    /// Deprecated cluster id.
    pub cluster_id: Option<ShortStr>,
}

// Flag bits, highest first, in field order (spec: basic class, property flags).
const CONTENT_TYPE: u16 = 1 << 15;
const CONTENT_ENCODING: u16 = 1 << 14;
const HEADERS: u16 = 1 << 13;
const DELIVERY_MODE: u16 = 1 << 12;
const PRIORITY: u16 = 1 << 11;
const CORRELATION_ID: u16 = 1 << 10;
const REPLY_TO: u16 = 1 << 9;
const EXPIRATION: u16 = 1 << 8;
const MESSAGE_ID: u16 = 1 << 7;
const TIMESTAMP: u16 = 1 << 6;
const KIND: u16 = 1 << 5;
const USER_ID: u16 = 1 << 4;
const APP_ID: u16 = 1 << 3;
const CLUSTER_ID: u16 = 1 << 2;
/// Bit 0 says another flag word follows.
const CONTINUATION: u16 = 1;

impl BasicProperties {
    /// No property set (usable in `const` and `static` items).
    pub const NONE: BasicProperties = BasicProperties {
        content_type: None,
        content_encoding: None,
        headers: None,
        delivery_mode: None,
        priority: None,
        correlation_id: None,
        reply_to: None,
        expiration: None,
        message_id: None,
        timestamp: None,
        kind: None,
        user_id: None,
        app_id: None,
        cluster_id: None,
    };

    /// Whether no property is set.
    pub fn is_empty(&self) -> bool {
        self.flags() == 0
    }

    /// Whether the message is persistent (delivery mode 2).
    pub fn is_persistent(&self) -> bool {
        self.delivery_mode == Some(2)
    }

    /// The same properties holding no slice of the frame they were decoded from: strings and
    /// tables are re-read from one fresh, exact-size copy of their encoding (a message kept in
    /// a queue must not keep its publisher's whole read buffer alive). Properties without
    /// strings or tables (the common case) are only cloned.
    pub fn detached(&self) -> BasicProperties {
        if !self.may_hold_slices() {
            return self.clone();
        }
        let mut buf = bytes::BytesMut::new();
        self.encode(&mut Writer { buf: &mut buf });
        let owner = buf.freeze();
        let mut r = Reader::new(&owner, "properties");
        // Reading back what was just written cannot fail; keep the original if it did.
        BasicProperties::decode(&mut r).unwrap_or_else(|_| self.clone())
    }

    /// [`BasicProperties::detached`], by value: properties without strings or tables (the
    /// common case) are moved, not copied.
    pub fn into_detached(self) -> BasicProperties {
        if !self.may_hold_slices() {
            self
        } else {
            self.detached()
        }
    }

    /// Whether a string or table is set (what may point into the frame the properties were
    /// decoded from); delivery mode, priority and timestamp are plain numbers.
    pub fn may_hold_slices(&self) -> bool {
        self.flags() & !(DELIVERY_MODE | PRIORITY | TIMESTAMP) != 0
    }

    fn flags(&self) -> u16 {
        let bit = |present: bool, flag: u16| if present { flag } else { 0 };
        bit(self.content_type.is_some(), CONTENT_TYPE)
            | bit(self.content_encoding.is_some(), CONTENT_ENCODING)
            | bit(self.headers.is_some(), HEADERS)
            | bit(self.delivery_mode.is_some(), DELIVERY_MODE)
            | bit(self.priority.is_some(), PRIORITY)
            | bit(self.correlation_id.is_some(), CORRELATION_ID)
            | bit(self.reply_to.is_some(), REPLY_TO)
            | bit(self.expiration.is_some(), EXPIRATION)
            | bit(self.message_id.is_some(), MESSAGE_ID)
            | bit(self.timestamp.is_some(), TIMESTAMP)
            | bit(self.kind.is_some(), KIND)
            | bit(self.user_id.is_some(), USER_ID)
            | bit(self.app_id.is_some(), APP_ID)
            | bit(self.cluster_id.is_some(), CLUSTER_ID)
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let flags = r.short()?;
        if flags & CONTINUATION != 0 {
            // The basic class has 14 properties: a second flag word may only hold zeros.
            let more = r.short()?;
            if more != 0 {
                return Err(DecodeError::Syntax(
                    "content header: unknown property flags in a continuation word".into(),
                ));
            }
        }
        if flags & 0b10 != 0 {
            return Err(DecodeError::Syntax(
                "content header: property flag bit 1 is not defined".into(),
            ));
        }
        let has = |flag: u16| flags & flag != 0;
        let mut p = BasicProperties::default();
        if has(CONTENT_TYPE) {
            p.content_type = Some(r.shortstr()?);
        }
        if has(CONTENT_ENCODING) {
            p.content_encoding = Some(r.shortstr()?);
        }
        if has(HEADERS) {
            p.headers = Some(r.table()?);
        }
        if has(DELIVERY_MODE) {
            p.delivery_mode = Some(r.octet()?);
        }
        if has(PRIORITY) {
            p.priority = Some(r.octet()?);
        }
        if has(CORRELATION_ID) {
            p.correlation_id = Some(r.shortstr()?);
        }
        if has(REPLY_TO) {
            p.reply_to = Some(r.shortstr()?);
        }
        if has(EXPIRATION) {
            p.expiration = Some(r.shortstr()?);
        }
        if has(MESSAGE_ID) {
            p.message_id = Some(r.shortstr()?);
        }
        if has(TIMESTAMP) {
            p.timestamp = Some(r.longlong()?);
        }
        if has(KIND) {
            p.kind = Some(r.shortstr()?);
        }
        if has(USER_ID) {
            p.user_id = Some(r.shortstr()?);
        }
        if has(APP_ID) {
            p.app_id = Some(r.shortstr()?);
        }
        if has(CLUSTER_ID) {
            p.cluster_id = Some(r.shortstr()?);
        }
        Ok(p)
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.short(self.flags());
        let strs = |w: &mut Writer<'_>, s: &Option<ShortStr>| {
            if let Some(s) = s {
                w.shortstr(s);
            }
        };
        strs(w, &self.content_type);
        strs(w, &self.content_encoding);
        if let Some(h) = &self.headers {
            w.table(h);
        }
        if let Some(v) = self.delivery_mode {
            w.octet(v);
        }
        if let Some(v) = self.priority {
            w.octet(v);
        }
        strs(w, &self.correlation_id);
        strs(w, &self.reply_to);
        strs(w, &self.expiration);
        strs(w, &self.message_id);
        if let Some(v) = self.timestamp {
            w.longlong(v);
        }
        strs(w, &self.kind);
        strs(w, &self.user_id);
        strs(w, &self.app_id);
        strs(w, &self.cluster_id);
    }
}

/// The payload of a content header frame.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContentHeader {
    /// Class of the content: 60 (basic) for every method that carries content.
    pub class_id: u16,
    /// Unused, always 0.
    pub weight: u16,
    /// Total size of the body frames that follow.
    pub body_size: u64,
    /// The message properties.
    pub properties: BasicProperties,
}

impl ContentHeader {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let class_id = r.short()?;
        let weight = r.short()?;
        let body_size = r.longlong()?;
        let properties = BasicProperties::decode(r)?;
        Ok(ContentHeader {
            class_id,
            weight,
            body_size,
            properties,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.short(self.class_id);
        w.short(self.weight);
        w.longlong(self.body_size);
        self.properties.encode(w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::FieldValue;
    use bytes::{Bytes, BytesMut};

    #[test]
    fn detached_properties_point_into_no_frame() {
        let mut headers = FieldTable::new();
        headers.insert("k".into(), FieldValue::LongStr(Bytes::from_static(b"v")));
        let original = BasicProperties {
            content_type: Some("text/plain".into()),
            headers: Some(headers),
            delivery_mode: Some(2),
            app_id: Some("app".into()),
            ..Default::default()
        };
        let mut frame = BytesMut::new();
        original.encode(&mut Writer { buf: &mut frame });
        frame.resize(64 * 1024, 0);
        let frame = frame.freeze();
        let decoded = BasicProperties::decode(&mut Reader::new(&frame, "test")).expect("valid");
        let inside = |s: &str| frame.as_ptr_range().contains(&s.as_ptr());
        assert!(inside(decoded.content_type.as_deref().expect("set")));

        let detached = decoded.detached();
        assert_eq!(detached, original);
        assert!(!inside(detached.content_type.as_deref().expect("set")));
        assert!(!inside(detached.app_id.as_deref().expect("set")));
        let Some(FieldValue::LongStr(v)) = detached.headers.as_ref().and_then(|h| h.get("k"))
        else {
            panic!("header k")
        };
        assert!(!frame.as_ptr_range().contains(&v.as_ptr()));
    }
}
