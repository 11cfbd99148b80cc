//! basic.publish and its content frames, mandatory returns, publisher confirms and transactions.

use super::delivery::Unacked;
use super::Channel;
use crate::auth::Access;
use crate::error::Refusal;
use crate::error::{AmqpError, AmqpResult};
use crate::exchange::{sender_selected, Exchange, ExchangeKind};
use crate::ids::JournalSeq;
use crate::message::{Body, Message};
use crate::outbound::Outbound;
use crate::queue::args::parse_expiration;
use crate::vhost::PublishError;
use bytes::Bytes;
use std::collections::VecDeque;
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
    /// The body bytes so far, as the memory alarm counts them (until this is dropped).
    counted: crate::alarm::AssemblingBytes,
}

/// Publisher confirm state (confirm.select was received).
#[derive(Default)]
pub(super) struct Confirms {
    /// Sequence number of the last publish seen.
    published: u64,
    /// Highest sequence number already confirmed (acked or nacked) to the client.
    acked: u64,
    /// Publishes some queue refused (x-overflow reject-publish), oldest first: they are nacked,
    /// never acked (RabbitMQ nacks a publish that at least one queue rejected).
    rejected: VecDeque<u64>,
    /// Publishes whose confirm waits for the journal: (publish sequence number, journal
    /// sequence number), oldest first. A persistent message in a durable queue is confirmed
    /// only once its record is on disk.
    on_disk: VecDeque<(u64, JournalSeq)>,
}

impl Confirms {
    /// Counts a routed publish; `journal_seq` when its confirm must wait for the disk,
    /// `rejected` when a queue refused it.
    pub(super) fn routed(&mut self, journal_seq: Option<JournalSeq>, rejected: bool) {
        self.published += 1;
        if let Some(seq) = journal_seq {
            self.on_disk.push_back((self.published, seq));
        }
        if rejected {
            self.rejected.push_back(self.published);
        }
    }

    /// Whether some confirm waits for the journal.
    pub(super) fn is_waiting_for_disk(&self) -> bool {
        !self.on_disk.is_empty()
    }

    /// Confirms everything confirmable: all publishes up to the first one whose journal
    /// record is not yet synced (`synced`). Runs of accepted publishes go out as one basic.ack
    /// and runs of rejected ones as one basic.nack (`multiple` when several), in order, so a
    /// `multiple` ack never covers a rejected publish.
    /// Returns how many publishes it acked (nacks are not counted as confirmed).
    pub(super) fn flush(&mut self, channel: u16, outbound: &Outbound, synced: JournalSeq) -> u64 {
        while self.on_disk.front().is_some_and(|(_, seq)| *seq <= synced) {
            self.on_disk.pop_front();
        }
        let upto = self
            .on_disk
            .front()
            .map_or(self.published, |(publish, _)| publish - 1);
        if upto <= self.acked {
            return 0;
        }
        let mut acked = 0;
        let mut done = self.acked;
        while let Some(first) = self.rejected.front().copied().filter(|r| *r <= upto) {
            if first - 1 > done {
                send_confirm(channel, outbound, true, first - 1, done);
                acked += first - 1 - done;
                done = first - 1;
            }
            let mut last = first;
            self.rejected.pop_front();
            while self.rejected.front() == Some(&(last + 1)) && last < upto {
                last += 1;
                self.rejected.pop_front();
            }
            send_confirm(channel, outbound, false, last, done);
            done = last;
        }
        if upto > done {
            send_confirm(channel, outbound, true, upto, done);
            acked += upto - done;
        }
        self.acked = upto;
        acked
    }
}

/// basic.ack (`ack`) or basic.nack of every publish in `(done, upto]`.
fn send_confirm(channel: u16, outbound: &Outbound, ack: bool, upto: u64, done: u64) {
    let multiple = upto - done > 1;
    let method: Method = if ack {
        basic::Ack {
            delivery_tag: upto,
            multiple,
        }
        .into()
    } else {
        basic::Nack {
            delivery_tag: upto,
            multiple,
            requeue: false,
        }
        .into()
    };
    outbound.send_method(channel, &method);
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
        if m.immediate {
            // RabbitMQ dropped `immediate` (and 313 NO_CONSUMERS) in 3.0 and closes the
            // connection instead of ignoring the flag; checked with pika against 3.10.8.
            return Err(AmqpError::not_implemented("immediate=true"));
        }
        self.content = Some(ContentInProgress {
            publish: m,
            header: None,
            body: Vec::new(),
            received: 0,
            counted: Default::default(),
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
        content.counted.add(payload.len());
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
        let body = Body::from_frames(body);
        // RabbitMQ's order of checks: exchange, internal, direct reply-to, user-id, CC/BCC;
        // inside a transaction too (checked with pika against 3.10.8).
        // Write on the exchange before its existence (403 beats 404); a cache hit per publish.
        self.access
            .check_exchange(Access::Write, &publish.exchange)
            .map_err(|e| {
                AmqpError::from(e).with_method(basic::Publish::CLASS_ID, basic::Publish::METHOD_ID)
            })?;
        let exchange = self.publish_exchange(&publish.exchange)?;
        if exchange.routing_kind() == ExchangeKind::Topic {
            self.access
                .check_topic(Access::Write, &publish.exchange, &publish.routing_key)
                .map_err(|e| {
                    AmqpError::from(e)
                        .with_method(basic::Publish::CLASS_ID, basic::Publish::METHOD_ID)
                })?;
        }
        let mut properties = header.properties;
        self.set_direct_reply_to(&mut properties)?;
        self.check_user_id(&properties)?;
        check_expiration(&properties)?;
        sender_selected::check(properties.headers.as_ref()).map_err(|e| {
            AmqpError::from(e).with_method(basic::Publish::CLASS_ID, basic::Publish::METHOD_ID)
        })?;
        self.ctx.stats.message_sizes.observe(body.len() as u64);
        let route = self
            .last_route
            .route_of(&publish.exchange, &publish.routing_key);
        let message = Arc::new(Message::with_route(route, properties, body));
        self.shared.count(1, |c| &c.published);
        if self.confirms.is_some() {
            self.shared.count(1, |c| &c.published_confirm);
        }
        if self.tx.is_none() {
            let (journal_seq, rejected) = self.route_to(&exchange, message, publish.mandatory);
            // Counted once routed, not at basic.publish: a confirm flushed while the body is
            // still arriving would ack a message the broker does not have yet.
            if let Some(c) = &mut self.confirms {
                c.routed(journal_seq, rejected);
            }
            return Ok(());
        }
        if let Some(tx) = &mut self.tx {
            tx.publishes.push((message, publish.mandatory));
        }
        Ok(())
    }

    fn publish_err(&self, e: impl Refusal) -> AmqpError {
        e.reply(&self.ctx.vhost.name)
            .with_method(basic::Publish::CLASS_ID, basic::Publish::METHOD_ID)
    }

    /// RabbitMQ refuses a user-id property that is not the connection's user, unless the user
    /// has the `impersonator` tag.
    fn check_user_id(&self, properties: &BasicProperties) -> AmqpResult<()> {
        match &properties.user_id {
            Some(u) => self.access.check_user_id(u.as_str()).map_err(|e| {
                AmqpError::from(e).with_method(basic::Publish::CLASS_ID, basic::Publish::METHOD_ID)
            }),
            None => Ok(()),
        }
    }

    /// The exchange a publish names, if it exists and is not internal.
    fn publish_exchange(&self, name: &str) -> AmqpResult<Arc<Exchange>> {
        let exchange = self
            .ctx
            .vhost
            .exchange(name)
            .map_err(|e| self.publish_err(e))?;
        if exchange.options.internal {
            return Err(self.publish_err(PublishError::Internal(exchange.name.clone())));
        }
        Ok(exchange)
    }

    /// Routes and enqueues a message held by a transaction (its exchange may be gone by now).
    fn route(&mut self, message: Arc<Message>, mandatory: bool) -> AmqpResult<Option<JournalSeq>> {
        let exchange = self.publish_exchange(message.exchange())?;
        Ok(self.route_to(&exchange, message, mandatory).0)
    }

    /// Publishes through the vhost's pipeline and sends basic.return for an unroutable
    /// mandatory message; returns the journal sequence number its confirm must wait for when
    /// it was journaled, and whether some queue refused it (x-overflow reject-publish).
    fn route_to(
        &mut self,
        exchange: &Arc<Exchange>,
        message: Arc<Message>,
        mandatory: bool,
    ) -> (Option<JournalSeq>, bool) {
        let vhost = &self.ctx.vhost;
        let published = vhost.publish_traced(exchange, message, &self.shared.trace.origin);
        self.publish_tally.count(exchange, published.routed);
        match (&published.unroutable, mandatory) {
            (None, _) => self.shared.count(1, |c| &c.routed),
            (Some(_), true) => self.shared.count(1, |c| &c.unroutable_returned),
            (Some(_), false) => self.shared.count(1, |c| &c.unroutable_dropped),
        }
        if let (Some(message), true) = (&published.unroutable, mandatory) {
            let ret = Method::BasicReturn(basic::Return {
                reply_code: ReplyCode::NoRoute.code(),
                reply_text: ShortStr::from("NO_ROUTE"),
                exchange: message.exchange().clone(),
                routing_key: message.routing_key().clone(),
            });
            self.ctx
                .outbound
                .send_content(self.id, &ret, &message.properties, &message.body);
        }
        (published.journal_seq, published.refused)
    }

    pub(super) fn confirm_select(&mut self, m: confirm::Select) -> AmqpResult<()> {
        if self.tx.is_some() {
            return Err(AmqpError::precondition_failed(
                "cannot switch from tx to confirm mode",
            ));
        }
        if self.confirms.is_none() {
            self.confirms = Some(Confirms::default());
            self.shared.set_mode(true);
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
            self.shared.set_mode(false);
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
        let mut journal_seq = None;
        for (message, mandatory) in std::mem::take(&mut tx.publishes) {
            match self.route(message, mandatory) {
                Ok(seq) => journal_seq = journal_seq.max(seq),
                Err(e) => {
                    // The channel closes; closing requeues the deliveries the transaction held.
                    self.tx = Some(tx);
                    return Err(e);
                }
            }
        }
        for (settled, requeue) in tx.acks {
            self.apply_settle(settled, requeue);
        }
        match journal_seq {
            // Like a confirm, commit-ok promises the persistent messages are on disk.
            Some(seq) => self.commits_waiting_for_disk.push_back(seq),
            None if self.commits_waiting_for_disk.is_empty() => self.reply(tx::CommitOk {}),
            // Keep replies in commit order behind one still waiting for the disk.
            None => self.commits_waiting_for_disk.push_back(JournalSeq(0)),
        }
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

/// RabbitMQ validates a message's `expiration` at publish (`check_expiration_header`): 406
/// `invalid expiration '<value>': <reason>` (texts checked with pika against 3.10.8).
fn check_expiration(properties: &BasicProperties) -> AmqpResult<()> {
    let Some(expiration) = &properties.expiration else {
        return Ok(());
    };
    parse_expiration(expiration).map(drop).map_err(|e| {
        AmqpError::precondition_failed(format!("invalid expiration '{expiration}': {}", e.0))
            .with_method(basic::Publish::CLASS_ID, basic::Publish::METHOD_ID)
    })
}
