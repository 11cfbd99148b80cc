//! basic.qos, consume, cancel, get, ack, nack, reject and recover.

use super::declare::generated_name;
use super::delivery::Unacked;
use super::{requeue_grouped, Channel};
use crate::error::{AmqpError, AmqpResult};
use crate::ids::DeliveryTag;
use crate::queue::args::consumer_priority;
use crate::queue::{ConsumeError, Consumer, ConsumerSink};
use crate::vhost::DIRECT_REPLY_TO;
use std::sync::Arc;
use warren_protocol::{basic, Method};

impl Channel {
    pub(super) fn basic_qos(&mut self, m: basic::Qos) -> AmqpResult<()> {
        if m.prefetch_size != 0 {
            // RabbitMQ refuses a byte-based prefetch the same way.
            return Err(AmqpError::not_implemented(format!(
                "prefetch_size!=0 ({})",
                m.prefetch_size
            )));
        }
        self.shared.set_prefetch(m.prefetch_count, m.global);
        self.reply(basic::QosOk {});
        self.kick_consumed_queues();
        Ok(())
    }

    pub(super) fn basic_consume(&mut self, m: basic::Consume) -> AmqpResult<()> {
        // RabbitMQ checks the tag before the queue.
        if self.shared.has_consumer(&m.consumer_tag) {
            return Err(AmqpError::not_allowed(format!(
                "attempt to reuse consumer tag '{}'",
                m.consumer_tag
            )));
        }
        let queue = if m.queue.as_str() == DIRECT_REPLY_TO {
            self.reply_queue_for_consume(&m)?
        } else {
            self.queue_for_use(crate::auth::Access::Read, &m.queue)?
        };
        self.check_stream_consume(&queue, &m)?;
        let tag = if m.consumer_tag.is_empty() {
            generated_name("amq.ctag-")
        } else {
            m.consumer_tag
        };
        let priority = consumer_priority(&m.arguments).map_err(|e| {
            AmqpError::precondition_failed(e.text(&queue.name, &self.ctx.vhost.name))
        })?;
        if !m.no_ack {
            self.note_consumer_timeout(&queue);
        }
        self.shared
            .add_consumer(tag.clone(), queue.clone(), m.no_ack);
        let sink: Arc<dyn ConsumerSink> = self.shared.clone();
        let consumer = Consumer {
            tag: tag.clone(),
            sink,
            no_ack: m.no_ack,
            exclusive: m.exclusive,
            priority,
            arguments: m.arguments.clone(),
        };
        // consume-ok goes out before the queue can deliver, as clients expect, and only once the
        // queue accepted the consumer.
        let consume_ok = (!m.no_wait).then(|| {
            Method::from(basic::ConsumeOk {
                consumer_tag: tag.clone(),
            })
        });
        let (outbound, channel) = (&self.ctx.outbound, self.id);
        let on_added = || {
            if let Some(ok) = &consume_ok {
                outbound.send_method(channel, ok);
            }
        };
        match queue.add_consumer(consumer, on_added) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.shared.remove_consumer(&tag);
                Err(match e {
                    ConsumeError::ExclusiveInUse => AmqpError::access_refused(format!(
                        "queue '{}' in vhost '{}' in exclusive use",
                        queue.name, self.ctx.vhost.name
                    )),
                    ConsumeError::Deleted => AmqpError::not_found(format!(
                        "no queue '{}' in vhost '{}'",
                        queue.name, self.ctx.vhost.name
                    )),
                })
            }
        }
    }

    pub(super) fn basic_cancel(&mut self, m: basic::Cancel) -> AmqpResult<()> {
        if let Some(queue) = self.shared.remove_consumer(&m.consumer_tag) {
            let sink: Arc<dyn ConsumerSink> = self.shared.clone();
            if queue.remove_consumer(&sink, &m.consumer_tag) {
                self.ctx.vhost.remove_queue(&queue);
            }
        }
        if !m.no_wait {
            self.reply(basic::CancelOk {
                consumer_tag: m.consumer_tag,
            });
        }
        Ok(())
    }

    pub(super) fn basic_get(&mut self, m: basic::Get) -> AmqpResult<()> {
        let queue = self.queue_for_use(crate::auth::Access::Read, &m.queue)?;
        self.refuse_on_stream(&queue, "basic.get")?;
        if queue.queue_type() == crate::queue::QueueType::Quorum
            && queue.args().single_active_consumer
        {
            // rabbit_channel (3.10): `{error, {unsupported, single_active_consumer}}`.
            return Err(AmqpError::resource_locked(format!(
                "cannot obtain access to locked queue '{}' in vhost '{}'. basic.get operations \
                 are not supported by quorum queues with single active consumer",
                queue.name, self.ctx.vhost.name
            )));
        }
        let Some((msg, message_count)) = queue.get(m.no_ack) else {
            self.shared.count(1, |c| &c.get_empty);
            self.reply(basic::GetEmpty {
                reserved_1: Default::default(),
            });
            return Ok(());
        };
        let message = msg.message.clone();
        let redelivered = msg.redelivered;
        // Only a quorum queue's basic.get carries extra headers (x-delivery-count, even 0, as
        // RabbitMQ 3.10): copy just then.
        let counted = queue
            .queue_type()
            .shows_delivery_count()
            .then(|| msg.counted_properties());
        self.shared.count_delivery(true, m.no_ack, redelivered);
        if self.shared.trace.is_on() {
            self.shared.trace.deliver(&queue, &msg);
        }
        if !m.no_ack {
            self.note_consumer_timeout(&queue);
        }
        let delivery_tag = self.shared.record_get(queue, msg, m.no_ack);
        let get_ok = Method::BasicGetOk(basic::GetOk {
            delivery_tag: delivery_tag.0,
            redelivered,
            exchange: message.exchange().clone(),
            routing_key: message.routing_key().clone(),
            message_count,
        });
        self.ctx.outbound.send_content(
            self.id,
            &get_ok,
            counted.as_ref().unwrap_or(&message.properties),
            &message.body,
        );
        Ok(())
    }

    pub(super) fn basic_ack(&mut self, tag: u64, multiple: bool) -> AmqpResult<()> {
        self.settle(tag, multiple, None)
    }

    pub(super) fn basic_nack(&mut self, tag: u64, multiple: bool, requeue: bool) -> AmqpResult<()> {
        self.settle(tag, multiple, Some(requeue))
    }

    /// Settles deliveries: `requeue` None = ack, Some(true) = requeue, Some(false) = drop.
    /// Inside a transaction the tags are checked now but the deliveries are only held until
    /// tx.commit, still counting against prefetch, as RabbitMQ does.
    fn settle(&mut self, tag: u64, multiple: bool, requeue: Option<bool>) -> AmqpResult<()> {
        let taken = self
            .shared
            .take(DeliveryTag(tag), multiple)
            .map_err(|unknown| {
                AmqpError::precondition_failed(format!("unknown delivery tag {}", unknown.0))
            })?;
        if requeue.is_some() {
            if let Some(u) = taken
                .iter()
                .find(|u| u.queue.queue_type() == crate::queue::QueueType::Stream)
            {
                return self.refuse_stream_reject(&u.queue);
            }
        }
        if let Some(tx) = &mut self.tx {
            tx.acks.push((taken, requeue));
            return Ok(());
        }
        self.apply_settle(taken, requeue);
        Ok(())
    }

    /// Frees the credit of settled deliveries and requeues or drops them.
    pub(super) fn apply_settle(&mut self, settled: Vec<Unacked>, requeue: Option<bool>) {
        self.shared.release(&settled);
        match requeue {
            Some(true) => requeue_grouped(settled),
            // Rejected without requeue: dead-lettered (reason `rejected`) when the queue says so.
            Some(false) => {
                for u in settled {
                    u.queue.reject(std::iter::once(u.msg));
                }
            }
            None => {
                self.shared.count(settled.len() as u64, |c| &c.acked);
                for u in settled {
                    u.queue.settle(std::iter::once(u.msg));
                }
            }
        }
        self.kick_consumed_queues();
    }

    pub(super) fn basic_recover(&mut self, requeue: bool, reply: bool) -> AmqpResult<()> {
        if !requeue {
            // RabbitMQ does not offer redelivery to the same consumer: connection.close 540
            // "NOT_IMPLEMENTED - requeue=false" (same result with pika against RabbitMQ 3.10).
            return Err(AmqpError::not_implemented("requeue=false"));
        }
        // recover-ok goes first: lapin drops every delivery it still buffers when recover-ok
        // arrives, so redeliveries sent before it would be lost to the application. RabbitMQ's
        // redeliveries also follow its recover-ok.
        if reply {
            self.reply(basic::RecoverOk {});
        }
        self.requeue_unacked();
        Ok(())
    }
}
