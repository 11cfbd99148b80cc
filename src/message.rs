//! A published message: one `Arc` shared by every queue it is routed to, never copied.

use bytes::Bytes;
use std::sync::OnceLock;
use warren_protocol::{BasicProperties, ShortStr};

/// What a publisher sent, as every queue and consumer sees it.
#[derive(Debug)]
pub struct Message {
    /// Exchange it was published to.
    pub exchange: ShortStr,
    /// Routing key it was published with.
    pub routing_key: ShortStr,
    /// Properties from the content header.
    pub properties: BasicProperties,
    /// The body: a slice of the publisher's read buffer when it came in one frame.
    pub body: Bytes,
    /// Journal id, set once when a persistent message is written for durable queues.
    pub persist_id: OnceLock<u64>,
}

impl Message {
    /// A message as published (not yet journaled).
    pub fn new(exchange: ShortStr, routing_key: ShortStr, properties: BasicProperties, body: Bytes) -> Self {
        Message { exchange, routing_key, properties, body, persist_id: OnceLock::new() }
    }

    /// A message read back from the journal at startup.
    pub fn recovered(exchange: ShortStr, routing_key: ShortStr, properties: BasicProperties, body: Bytes) -> Self {
        Self::new(exchange, routing_key, properties, body)
    }

    /// Bytes this message counts for in queue length limits (the body, as RabbitMQ counts).
    pub fn body_size(&self) -> usize {
        self.body.len()
    }
}
