//! What a channel refuses or requires for streams, with RabbitMQ 3.10.8's codes and texts
//! (measured with pika, shared/RABBITMQ-FACTS.md): consumers need a per-consumer prefetch
//! (406, checked first) and manual acks (540); basic.get, queue.purge and nack/reject are
//! 540s; a consumer's `x-stream-offset`, filter and tracking name must make sense (406 — where
//! RabbitMQ 3.10.8 crashes the connection with 541 on a nonsense offset).

use super::Channel;
use crate::error::{AmqpError, AmqpResult};
use crate::queue::stream::args::{parse_offset, tracking_name, Filter, X_STREAM_OFFSET};
use crate::queue::{Queue, QueueType};
use warren_protocol::basic;

impl Channel {
    /// `'queue 'Q' in vhost 'V''`-style name RabbitMQ's stream texts use (`rabbit_misc:rs/1`).
    fn stream_name(&self, queue: &Queue) -> String {
        format!("queue '{}' in vhost '{}'", queue.name, self.ctx.vhost.name)
    }

    /// basic.consume on a stream: the checks before the consumer is added.
    pub(super) fn check_stream_consume(&self, queue: &Queue, m: &basic::Consume) -> AmqpResult<()> {
        if queue.queue_type() != QueueType::Stream {
            return Ok(());
        }
        let name = self.stream_name(queue);
        if self.shared.consumer_prefetch() == 0 {
            return Err(AmqpError::precondition_failed(format!(
                "consumer prefetch count is not set for '{name}'"
            )));
        }
        if m.no_ack {
            return Err(AmqpError::not_implemented(format!(
                "automatic acknowledgement not supported by stream queues {name}"
            )));
        }
        let bad = |reason: String| {
            AmqpError::precondition_failed(format!("{reason} for consumer of {name}"))
        };
        parse_offset(m.arguments.get(X_STREAM_OFFSET), 0).map_err(bad)?;
        Filter::parse(&m.arguments).map_err(bad)?;
        tracking_name(&m.arguments).map_err(bad)?;
        Ok(())
    }

    /// basic.get and queue.purge on a stream: 540 (`what` is the method's name).
    pub(super) fn refuse_on_stream(&self, queue: &Queue, what: &str) -> AmqpResult<()> {
        if queue.queue_type() != QueueType::Stream {
            return Ok(());
        }
        Err(AmqpError::not_implemented(format!(
            "{what} not supported by stream queues {}",
            self.stream_name(queue)
        )))
    }

    /// basic.nack / basic.reject of a stream delivery: 540.
    pub(super) fn refuse_stream_reject(&self, queue: &Queue) -> AmqpResult<()> {
        self.refuse_on_stream(queue, "basic.nack and basic.reject")
    }
}
