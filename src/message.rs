//! A published message: one `Arc` shared by every queue it is routed to, never copied, and
//! holding nothing of the frames it came in (see [`Body`] and [`Route`]).

mod body;
mod route_cache;

pub use body::{Body, INLINE_MAX, KEEP_SLICE_FROM};
pub use route_cache::RouteCache;

use crate::ids::MessageId;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use warren_protocol::{BasicProperties, ShortStr};

/// A message's properties, boxed only when some are set: most messages carry none or few, and
/// the 14 optional fields take ~370 bytes inline, which a deep queue pays per message. Reads go
/// through `Deref` as if it were the `BasicProperties` itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Properties(Option<Box<BasicProperties>>);

impl std::ops::Deref for Properties {
    type Target = BasicProperties;
    fn deref(&self) -> &BasicProperties {
        self.0.as_deref().unwrap_or(&BasicProperties::NONE)
    }
}

impl Properties {
    /// `properties` as a published message keeps them: no box when none is set (the common
    /// case), and strings or tables copied out of the frame they were decoded from (see
    /// [`BasicProperties::detached`]). Built in place: the ~370-byte struct is moved once, into
    /// its box, or not at all (issue 16: the detaching step by value cost 1p/1c two moves and
    /// the empty struct's drop per publish).
    #[inline]
    pub fn detached(properties: BasicProperties) -> Properties {
        if properties.is_empty() {
            // Every field is `None`: nothing to free, so skip the drop glue's 14 checks.
            std::mem::forget(properties);
            return Properties(None);
        }
        let mut boxed = Box::new(properties);
        if boxed.may_hold_slices() {
            *boxed = boxed.detached();
        }
        Properties(Some(boxed))
    }
}

impl From<BasicProperties> for Properties {
    fn from(p: BasicProperties) -> Self {
        Properties((!p.is_empty()).then(|| Box::new(p)))
    }
}

/// Where a message was published: its exchange and routing key, copied out of the frame they
/// came in and shared by every message a channel publishes with the same pair in a row.
#[derive(Debug, PartialEq)]
pub struct Route {
    /// Exchange it was published to.
    pub exchange: ShortStr,
    /// Routing key it was published with.
    pub routing_key: ShortStr,
}

impl Route {
    /// Fresh copies of `exchange` and `routing_key` (never slices of a read buffer).
    pub fn new(exchange: &str, routing_key: &str) -> Arc<Route> {
        Arc::new(Route {
            exchange: shared_copy(exchange),
            routing_key: shared_copy(routing_key),
        })
    }

    /// Whether this is the route `exchange`/`routing_key`.
    pub fn is(&self, exchange: &str, routing_key: &str) -> bool {
        *self.routing_key == *routing_key && *self.exchange == *exchange
    }
}

/// A copy of `s` whose clones only count references: each delivery clones the exchange and the
/// routing key into its basic.deliver, and the first clone of a fresh copy would allocate.
fn shared_copy(s: &str) -> ShortStr {
    let copy = ShortStr::truncated(s);
    drop(copy.clone());
    copy
}

/// A persistent message's journal id, set once when it is journaled (0 = not journaled; the
/// store's ids start at 1). An atomic, not a `OnceLock`: 8 bytes instead of 16 in every message.
#[derive(Debug, Default)]
pub struct PersistId(AtomicU64);

impl PersistId {
    /// The journal id, if the message was journaled.
    pub fn get(&self) -> Option<MessageId> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            id => Some(MessageId(id)),
        }
    }

    /// Records the journal id; a second call keeps the first id.
    pub fn set(&self, id: MessageId) {
        let _ = self
            .0
            .compare_exchange(0, id.0, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// What a publisher sent, as every queue and consumer sees it. 64 bytes, so with its `Arc`
/// counts a message of up to [`body::INLINE_MAX`] body bytes is one 80-byte allocation.
#[derive(Debug)]
pub struct Message {
    route: Arc<Route>,
    /// Properties from the content header.
    pub properties: Properties,
    /// The body (see [`Body`]: small ones inline, never a small slice of a read buffer).
    pub body: Body,
    /// Journal id, set once when a persistent message is written for durable queues.
    pub persist_id: PersistId,
    /// For a stub whose body stays on disk (a deep durable queue): the body's real length.
    paged_len: Option<u32>,
}

/// Bytes held by live messages in this process (bodies plus a fixed overhead each): what the
/// memory alarm compares with its watermark. Counted here, where every message is born and
/// dropped, so no queue, channel or exit path can forget to account for one.
static LIVE_MESSAGE_BYTES: AtomicU64 = AtomicU64::new(0);

/// What a message costs beyond its body (struct, Arc, queue entry), roughly.
const MESSAGE_OVERHEAD: u64 = 192;

/// Bytes held by live messages (see [`LIVE_MESSAGE_BYTES`]).
pub fn live_message_bytes() -> u64 {
    LIVE_MESSAGE_BYTES.load(Ordering::Relaxed)
}

impl Message {
    /// A message as published (not yet journaled); `exchange`, `routing_key` and properties
    /// are copied and a small `body` too, so the message holds no slice of a read buffer.
    pub fn new(
        exchange: ShortStr,
        routing_key: ShortStr,
        properties: BasicProperties,
        body: impl Into<Body>,
    ) -> Self {
        Self::with_route(Route::new(&exchange, &routing_key), properties, body.into())
    }

    /// A message on a shared `route` (the publish path: one route per run of publishes);
    /// `properties` are copied out of their frame when they hold strings or tables.
    pub fn with_route(route: Arc<Route>, properties: BasicProperties, body: Body) -> Self {
        Self::with_properties(route, Properties::detached(properties), body)
    }

    /// A message whose `properties` already hold no slice of a frame or shared read buffer
    /// (decoded from their own exact copy, as a stream record's are): no detaching copy, which
    /// would encode and decode them once more per message.
    pub fn with_own_properties(route: Arc<Route>, properties: BasicProperties, body: Body) -> Self {
        Self::with_properties(route, properties.into(), body)
    }

    #[inline]
    fn with_properties(route: Arc<Route>, properties: Properties, body: Body) -> Self {
        LIVE_MESSAGE_BYTES.fetch_add(body.len() as u64 + MESSAGE_OVERHEAD, Ordering::Relaxed);
        Message {
            route,
            properties,
            body,
            persist_id: PersistId::default(),
            paged_len: None,
        }
    }

    /// Exchange it was published to.
    pub fn exchange(&self) -> &ShortStr {
        &self.route.exchange
    }

    /// Routing key it was published with.
    pub fn routing_key(&self) -> &ShortStr {
        &self.route.routing_key
    }

    /// The exchange and routing key, shared.
    pub fn route(&self) -> &Arc<Route> {
        &self.route
    }

    /// Journaled message `id` whose `body_len`-byte body is on disk only (see [`Message::stub`]).
    pub fn paged(
        route: Arc<Route>,
        properties: BasicProperties,
        body_len: usize,
        id: MessageId,
    ) -> Self {
        let mut m = Self::with_route(route, properties, Body::EMPTY);
        m.paged_len = Some(u32::try_from(body_len).unwrap_or(u32::MAX));
        m.persist_id.set(id);
        m
    }

    /// Bytes this message counts for in queue length limits (the body, as RabbitMQ counts).
    pub fn body_size(&self) -> usize {
        self.paged_len.map_or(self.body.len(), |n| n as usize)
    }

    /// The same journaled message without its body, which stays on disk until the message
    /// nears the head of its queue (`None` if the message is not journaled).
    pub fn stub(&self) -> Option<Message> {
        let id = self.persist_id.get()?;
        // It keeps what the queue looks at before the body is read back (priority,
        // expiration); the rest comes back from the journal. The route is shared (it holds
        // no read buffer).
        let properties = BasicProperties {
            priority: self.properties.priority,
            expiration: self.properties.expiration.clone(),
            ..BasicProperties::default()
        };
        Some(Message::paged(
            self.route.clone(),
            properties,
            self.body_size(),
            id,
        ))
    }

    /// Whether the body is on disk only (see [`Message::stub`]).
    pub fn is_paged(&self) -> bool {
        self.paged_len.is_some()
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        LIVE_MESSAGE_BYTES.fetch_sub(self.body.len() as u64 + MESSAGE_OVERHEAD, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn a_message_with_a_small_body_is_one_80_byte_allocation() {
        // 64 bytes + the Arc's two counts = jemalloc's 80-byte size class, body included.
        assert_eq!(std::mem::size_of::<Message>(), 64);
    }

    #[test]
    fn a_published_message_holds_nothing_of_its_frames() {
        let frame = Bytes::from(vec![b'x'; 64 * 1024]);
        let inside = |p: *const u8| frame.as_ptr_range().contains(&p);
        let exchange = ShortStr::from_utf8(frame.slice(0..5)).expect("utf-8");
        let routing_key = ShortStr::from_utf8(frame.slice(5..10)).expect("utf-8");
        let properties = BasicProperties {
            content_type: ShortStr::from_utf8(frame.slice(10..20)),
            ..Default::default()
        };
        let m = Message::new(exchange, routing_key, properties, frame.slice(20..36));
        assert_eq!(
            (m.exchange().as_str(), m.routing_key().as_str()),
            ("xxxxx", "xxxxx")
        );
        assert!(!inside(m.exchange().as_ptr()));
        assert!(!inside(m.routing_key().as_ptr()));
        assert!(!inside(
            m.properties.content_type.as_deref().expect("set").as_ptr()
        ));
        assert!(!inside(m.body.as_ptr()));
        assert_eq!(&m.body[..], &frame[20..36]);
    }

    #[test]
    fn a_stub_shares_the_route_and_keeps_the_length() {
        let m = Message::new(
            "ex".into(),
            "rk".into(),
            BasicProperties::default(),
            Bytes::from(vec![1u8; 100]),
        );
        m.persist_id.set(MessageId(7));
        m.persist_id.set(MessageId(8));
        let stub = m.stub().expect("journaled");
        assert!(Arc::ptr_eq(stub.route(), m.route()));
        assert_eq!((stub.body_size(), stub.is_paged()), (100, true));
        assert_eq!(stub.persist_id.get(), Some(MessageId(7)));
    }
}
