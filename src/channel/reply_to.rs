//! Direct reply-to, RabbitMQ's RPC shortcut: a client consumes (no-ack) from the pseudo-queue
//! `amq.rabbitmq.reply-to`, publishes requests with that reply-to, and the broker rewrites it to
//! `amq.rabbitmq.reply-to.<token>`, a name the default exchange routes straight to that
//! consumer. Behind the consumer is a queue known only to the vhost's reply-to map (see
//! `VHost::add_reply_queue`); it dies with the consumer, after which replies find no route.
//!
//! Reply codes and texts follow RabbitMQ 3.10's `rabbit_channel` (checked with pika against
//! 3.10.8).

use super::declare::generated_name;
use super::Channel;
use crate::error::{AmqpError, AmqpResult};
use crate::queue::Queue;
use crate::vhost::{DIRECT_REPLY_TO, REPLY_TO_PREFIX};
use std::sync::Arc;
use warren_protocol::{basic, queue, BasicProperties, ShortStr};

impl Channel {
    /// basic.consume of [`DIRECT_REPLY_TO`] (the caller checked the consumer tag): the queue
    /// behind this channel's reply consumer. One per channel, and it cannot acknowledge.
    pub(super) fn reply_queue_for_consume(&mut self, m: &basic::Consume) -> AmqpResult<Arc<Queue>> {
        if !m.no_ack {
            return Err(AmqpError::precondition_failed(
                "reply consumer cannot acknowledge",
            ));
        }
        if self.live_reply_queue().is_some() {
            return Err(AmqpError::precondition_failed("reply consumer already set"));
        }
        let name = generated_name(REPLY_TO_PREFIX);
        let q = self.ctx.vhost.add_reply_queue(name, self.ctx.id);
        self.reply_queue = Some(q.clone());
        Ok(q)
    }

    /// The queue of this channel's reply consumer, unless it was cancelled.
    fn live_reply_queue(&self) -> Option<&Arc<Queue>> {
        self.reply_queue.as_ref().filter(|q| !q.is_deleted())
    }

    /// basic.publish: a reply-to of [`DIRECT_REPLY_TO`] becomes this channel's reply name;
    /// without a reply consumer on the channel the publish is refused (406).
    pub(super) fn set_direct_reply_to(&self, properties: &mut BasicProperties) -> AmqpResult<()> {
        if properties.reply_to.as_deref() != Some(DIRECT_REPLY_TO) {
            return Ok(());
        }
        match self.live_reply_queue() {
            Some(q) => {
                properties.reply_to = Some(q.name.clone());
                Ok(())
            }
            None => Err(
                AmqpError::precondition_failed("fast reply consumer does not exist")
                    .with_method(basic::Publish::CLASS_ID, basic::Publish::METHOD_ID),
            ),
        }
    }

    /// queue.declare, passive or not, of a name starting with [`DIRECT_REPLY_TO`]: the
    /// pseudo-queue itself and the names of live reply consumers exist (0 messages, 1
    /// consumer, as RabbitMQ answers); any other such name is 404.
    pub(super) fn declare_reply_to(&mut self, name: ShortStr) -> AmqpResult<queue::DeclareOk> {
        let exists = name.as_str() == DIRECT_REPLY_TO
            || (name.starts_with(REPLY_TO_PREFIX) && self.ctx.vhost.reply_queue(&name).is_some());
        if !exists {
            return Err(AmqpError::not_found(format!(
                "no queue '{name}' in vhost '{}'",
                self.ctx.vhost.name
            )));
        }
        self.last_queue = Some(name.clone());
        Ok(queue::DeclareOk {
            queue: name,
            message_count: 0,
            consumer_count: 1,
        })
    }
}
