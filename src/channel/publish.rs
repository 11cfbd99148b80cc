//! basic.publish and its content frames, mandatory returns, publisher confirms and transactions.

use super::delivery::Unacked;
use super::Channel;
use crate::connection::writer::Outbound;
use crate::error::{AmqpError, AmqpResult};
use crate::message::Message;
use crate::vhost::DeclareError;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use warren_protocol::{
    basic, class_id, confirm, tx, BasicProperties, ContentHeader, Method, ReplyCode, ShortStr,
};

/// A basic.publish waiting for its header and body frames.
pub(super) struct ContentInProgress {
    publish: basic::Publish,
    header: Option<ContentHeader>,
    /// Body frames so far. One frame's payload is kept as is (no copy); more are joined.
    body: Vec<Bytes>,
    received: u64,
}

/// Publisher confirm state (confirm.select was received).
#[derive(Default)]
pub(super) struct Confirms {
    /// Sequence number of the last publish seen.
    published: u64,
    /// Highest sequence number already acked to the client.
    acked: u64,
}

impl Confirms {
    /// Acks everything confirmed since the last flush in one frame (`multiple` when several).
    pub(super) fn flush(&mut self, channel: u16, outbound: &Outbound) {
        if self.published > self.acked {
            let ack = basic::Ack {
                delivery_tag: self.published,
                multiple: self.published - self.acked > 1,
            };
            outbound.send_method(channel, &ack.into());
            self.acked = self.published;
        }
    }
}

/// Work a transaction holds until tx.commit.
#[derive(Default)]
pub(super) struct TxBuffer {
    publishes: Vec<(Arc<Message>, bool)>,
    /// Deliveries settled inside the transaction, taken off the channel's unacked list (so a
    /// second ack of the same tag is refused at once, as RabbitMQ does) with None = ack /
    /// Some(requeue) = nack or reject.
    pub(super) acks: Vec<(Vec<Unacked>, Option<bool>)>,
}

impl TxBuffer {
    /// The deliveries settled but not committed: they go back to their queues when the
    /// channel closes (RabbitMQ requeues them too; checked with pika).
    pub(super) fn take_settled(&mut self) -> Vec<Unacked> {
        self.acks.drain(..).flat_map(|(taken, _)| taken).collect()
    }
}

impl Channel {
    pub(super) fn basic_publish(&mut self, m: basic::Publish) -> AmqpResult<()> {
        self.content = Some(ContentInProgress {
            publish: m,
            header: None,
            body: Vec::new(),
            received: 0,
        });
        Ok(())
    }

    pub(super) fn content_header(&mut self, header: ContentHeader) -> AmqpResult<()> {
        let Some(content) = &mut self.content else {
            return Err(AmqpError::unexpected_frame(
                "unexpected content header: no basic.publish before it",
            ));
        };
        if content.header.is_some() {
            return Err(AmqpError::unexpected_frame(
                "expected content body, got non content body frame instead",
            ));
        }
        if header.class_id != class_id::BASIC {
            return Err(AmqpError::unexpected_frame(format!(
                "content header for class {} after basic.publish",
                header.class_id
            )));
        }
        let max = self.ctx.config.max_message_size;
        if header.body_size > max {
            self.content = None;
            return Err(AmqpError::precondition_failed(format!(
                "message size {} is larger than configured max size {max}",
                header.body_size
            ))
            .with_method(basic::Publish::CLASS_ID, basic::Publish::METHOD_ID));
        }
        let done = header.body_size == 0;
        content.header = Some(header);
        if done {
            self.finish_publish()?;
        }
        Ok(())
    }

    pub(super) fn content_body(&mut self, payload: Bytes) -> AmqpResult<()> {
        let Some(content) = &mut self.content else {
            return Err(AmqpError::unexpected_frame(
                "unexpected content body: no basic.publish before it",
            ));
        };
        let Some(header) = &content.header else {
            return Err(AmqpError::unexpected_frame(
                "expected content header for class 60, got non content header frame instead",
            ));
        };
        content.received += payload.len() as u64;
        if content.received > header.body_size {
            return Err(AmqpError::unexpected_frame(format!(
                "content body is larger than the {} bytes its header announced",
                header.body_size
            )));
        }
        let done = content.received == header.body_size;
        content.body.push(payload);
        if done {
            self.finish_publish()?;
        }
        Ok(())
    }

    /// The last body frame arrived: route the message (or hold it for tx.commit).
    fn finish_publish(&mut self) -> AmqpResult<()> {
        let Some(ContentInProgress {
            publish,
            header: Some(header),
            body,
            ..
        }) = self.content.take()
        else {
            return Err(AmqpError::internal(
                "publish finished without a content header",
            ));
        };
        let body = join(body);
        self.check_user_id(&header.properties)?;
        let message = Arc::new(Message {
            exchange: publish.exchange,
            routing_key: publish.routing_key,
            properties: header.properties,
            body,
        });
        if self.tx.is_none() {
            self.route(message, publish.mandatory)?;
            // Counted once routed, not at basic.publish: a confirm flushed while the body is
            // still arriving would ack a message the broker does not have yet.
            if let Some(c) = &mut self.confirms {
                c.published += 1;
            }
            return Ok(());
        }
        // The exchange must exist at publish time even inside a transaction.
        self.ctx
            .vhost
            .exchange(&message.exchange)
            .map_err(|e| self.publish_err(e))?;
        if let Some(tx) = &mut self.tx {
            tx.publishes.push((message, publish.mandatory));
        }
        Ok(())
    }

    fn publish_err(&self, e: DeclareError) -> AmqpError {
        AmqpError::from_declare(e, &self.ctx.vhost.name)
            .with_method(basic::Publish::CLASS_ID, basic::Publish::METHOD_ID)
    }

    /// RabbitMQ refuses a user-id property that is not the connection's user.
    fn check_user_id(&self, properties: &BasicProperties) -> AmqpResult<()> {
        match &properties.user_id {
            Some(u) if u.as_str() != self.ctx.user => Err(AmqpError::precondition_failed(format!(
                "user_id property set to '{u}' but authenticated user was '{}'",
                self.ctx.user
            ))
            .with_method(basic::Publish::CLASS_ID, basic::Publish::METHOD_ID)),
            _ => Ok(()),
        }
    }

    fn route(&mut self, message: Arc<Message>, mandatory: bool) -> AmqpResult<()> {
        let vhost = &self.ctx.vhost;
        let exchange = vhost
            .exchange(&message.exchange)
            .map_err(|e| self.publish_err(e))?;
        if exchange.options.internal {
            return Err(self.publish_err(DeclareError::Internal(exchange.name.clone())));
        }
        let queues = vhost.route(&exchange, &message);
        if queues.is_empty() && mandatory {
            let ret = Method::BasicReturn(basic::Return {
                reply_code: ReplyCode::NoRoute.code(),
                reply_text: ShortStr::from("NO_ROUTE"),
                exchange: message.exchange.clone(),
                routing_key: message.routing_key.clone(),
            });
            self.ctx
                .outbound
                .send_content(self.id, &ret, &message.properties, &message.body);
        }
        for q in queues {
            q.push(message.clone());
        }
        Ok(())
    }

    pub(super) fn confirm_select(&mut self, m: confirm::Select) -> AmqpResult<()> {
        if self.tx.is_some() {
            return Err(AmqpError::precondition_failed(
                "cannot switch from tx to confirm mode",
            ));
        }
        if self.confirms.is_none() {
            self.confirms = Some(Confirms::default());
        }
        if !m.nowait {
            self.reply(confirm::SelectOk {});
        }
        Ok(())
    }

    pub(super) fn tx_select(&mut self) -> AmqpResult<()> {
        if self.confirms.is_some() {
            return Err(AmqpError::precondition_failed(
                "cannot switch from confirm to tx mode",
            ));
        }
        if self.tx.is_none() {
            self.tx = Some(TxBuffer::default());
        }
        self.reply(tx::SelectOk {});
        Ok(())
    }

    pub(super) fn tx_commit(&mut self) -> AmqpResult<()> {
        let Some(mut tx) = self.tx.replace(TxBuffer::default()) else {
            return Err(AmqpError::precondition_failed(
                "channel is not transactional",
            ));
        };
        for (message, mandatory) in std::mem::take(&mut tx.publishes) {
            if let Err(e) = self.route(message, mandatory) {
                // The channel closes; closing requeues the deliveries the transaction held.
                self.tx = Some(tx);
                return Err(e);
            }
        }
        for (settled, requeue) in tx.acks {
            self.apply_settle(settled, requeue);
        }
        self.reply(tx::CommitOk {});
        Ok(())
    }

    pub(super) fn tx_rollback(&mut self) -> AmqpResult<()> {
        let Some(tx) = self.tx.replace(TxBuffer::default()) else {
            return Err(AmqpError::precondition_failed(
                "channel is not transactional",
            ));
        };
        // Settled deliveries become outstanding again (RabbitMQ: they can be acked anew).
        for (taken, _) in tx.acks {
            self.shared.restore(taken);
        }
        self.reply(tx::RollbackOk {});
        Ok(())
    }
}

/// One body frame's bytes as they are; several joined once.
fn join(mut parts: Vec<Bytes>) -> Bytes {
    match parts.len() {
        0 => Bytes::new(),
        1 => parts.pop().unwrap_or_default(),
        _ => {
            let mut all = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
            parts.iter().for_each(|p| all.extend_from_slice(p));
            all.freeze()
        }
    }
}
