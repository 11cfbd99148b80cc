//! A published message: one `Arc` shared by every queue it is routed to, never copied.

use crate::ids::MessageId;
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
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

impl From<BasicProperties> for Properties {
    fn from(p: BasicProperties) -> Self {
        Properties((!p.is_empty()).then(|| Box::new(p)))
    }
}

/// What a publisher sent, as every queue and consumer sees it.
#[derive(Debug)]
pub struct Message {
    /// Exchange it was published to.
    pub exchange: ShortStr,
    /// Routing key it was published with.
    pub routing_key: ShortStr,
    /// Properties from the content header.
    pub properties: Properties,
    /// The body: a slice of the publisher's read buffer when it came in one frame.
    pub body: Bytes,
    /// Journal id, set once when a persistent message is written for durable queues.
    pub persist_id: OnceLock<MessageId>,
    /// For a stub whose body stays on disk (a deep durable queue): the body's real length.
    paged_len: Option<usize>,
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
    /// A message as published (not yet journaled).
    pub fn new(
        exchange: ShortStr,
        routing_key: ShortStr,
        properties: BasicProperties,
        body: Bytes,
    ) -> Self {
        LIVE_MESSAGE_BYTES.fetch_add(body.len() as u64 + MESSAGE_OVERHEAD, Ordering::Relaxed);
        Message {
            exchange,
            routing_key,
            properties: properties.into(),
            body,
            persist_id: OnceLock::new(),
            paged_len: None,
        }
    }

    /// Journaled message `id` whose `body_len`-byte body is on disk only (see [`Message::stub`]).
    pub fn paged(
        exchange: ShortStr,
        routing_key: ShortStr,
        properties: BasicProperties,
        body_len: usize,
        id: MessageId,
    ) -> Self {
        let mut m = Self::new(exchange, routing_key, properties, Bytes::new());
        m.paged_len = Some(body_len);
        let _ = m.persist_id.set(id);
        m
    }

    /// Bytes this message counts for in queue length limits (the body, as RabbitMQ counts).
    pub fn body_size(&self) -> usize {
        self.paged_len.unwrap_or(self.body.len())
    }

    /// The same journaled message without its body, which stays on disk until the message
    /// nears the head of its queue (`None` if the message is not journaled).
    pub fn stub(&self) -> Option<Message> {
        let id = *self.persist_id.get()?;
        // Fresh copies only: a stub must not hold slices of the publisher's read buffer, or it
        // would pin that whole buffer in memory. It keeps what the queue looks at before the
        // body is read back (priority, expiration); the rest comes back from the journal.
        let properties = BasicProperties {
            priority: self.properties.priority,
            expiration: self
                .properties
                .expiration
                .as_deref()
                .map(ShortStr::truncated),
            ..BasicProperties::default()
        };
        let (exchange, routing_key) = (
            ShortStr::truncated(&self.exchange),
            ShortStr::truncated(&self.routing_key),
        );
        Some(Message::paged(
            exchange,
            routing_key,
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
