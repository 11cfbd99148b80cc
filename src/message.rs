//! A published message: one `Arc` shared by every queue it is routed to, never copied.

use bytes::Bytes;
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
}

impl Message {
    /// Bytes this message counts for in queue length limits (the body, as RabbitMQ counts).
    pub fn body_size(&self) -> usize {
        self.body.len()
    }
}
