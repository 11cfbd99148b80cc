//! basic.publish and its content frames, mandatory returns, publisher confirms and transactions.

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
    /// (delivery tag, multiple, None = ack / Some(requeue) = nack).
    pub(super) acks: Vec<(u64, bool, Option<bool>)>,
}

impl Channel {
    pub(super) fn basic_publish(&mut self, m: basic::Publish) -> AmqpResult<()> {
        if let Some(c) = &mut self.confirms {
            c.published += 1;
        }
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
            return self.route(message, publish.mandatory);
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
        let Some(tx) = self.tx.replace(TxBuffer::default()) else {
            return Err(AmqpError::precondition_failed(
                "channel is not transactional",
            ));
        };
        for (message, mandatory) in tx.publishes {
            self.route(message, mandatory)?;
        }
        for (tag, multiple, requeue) in tx.acks {
            self.settle(tag, multiple, requeue)?;
        }
        self.reply(tx::CommitOk {});
        Ok(())
    }

    pub(super) fn tx_rollback(&mut self) -> AmqpResult<()> {
        if self.tx.replace(TxBuffer::default()).is_none() {
            return Err(AmqpError::precondition_failed(
                "channel is not transactional",
            ));
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
