//! exchange.* and queue.* methods: declare, delete, bind, unbind, purge.

use super::Channel;
use crate::error::Refusal;
use crate::error::{AmqpError, AmqpResult};
use crate::exchange::{ExchangeKind, ExchangeOptions};
use crate::queue::{Queue, QueueOptions};
use crate::vhost::{DeclareError, DIRECT_REPLY_TO};
use rand::distributions::{Alphanumeric, DistString};
use std::sync::Arc;
use warren_protocol::{exchange, queue, ShortStr};

impl Channel {
    fn declare_err(&self, e: impl Refusal) -> AmqpError {
        e.reply(&self.ctx.vhost.name)
    }

    /// An empty queue name means the last queue declared on this channel (spec: queue-name).
    fn resolve_queue_name(&self, name: &ShortStr) -> AmqpResult<ShortStr> {
        if !name.is_empty() {
            return Ok(name.clone());
        }
        self.last_queue
            .clone()
            .ok_or_else(|| AmqpError::not_found("no previously declared queue"))
    }

    /// The named queue, if this connection may use it (405 for another's exclusive queue).
    pub(super) fn queue_for_use(&self, name: &ShortStr) -> AmqpResult<Arc<Queue>> {
        let name = self.resolve_queue_name(name)?;
        self.ctx
            .vhost
            .queue_for(&name, self.ctx.id)
            .map_err(|e| self.declare_err(e))
    }

    pub(super) fn exchange_declare(&mut self, m: exchange::Declare) -> AmqpResult<()> {
        let vhost = &self.ctx.vhost;
        if m.passive {
            if m.exchange.is_empty() {
                // RabbitMQ refuses even a passive declare of the default exchange (403).
                return Err(self.declare_err(DeclareError::DefaultExchange));
            }
            vhost
                .exchange(&m.exchange)
                .map_err(|e| self.declare_err(e))?;
        } else {
            let kind = ExchangeKind::from_name(&m.kind).ok_or_else(|| {
                self.declare_err(DeclareError::UnknownExchangeType(m.kind.to_string()))
            })?;
            let options = ExchangeOptions {
                kind,
                durable: m.durable,
                auto_delete: m.auto_delete,
                internal: m.internal,
                arguments: m.arguments,
            };
            vhost
                .declare_exchange(m.exchange, &m.kind, options)
                .map_err(|e| self.declare_err(e))?;
        }
        if !m.no_wait {
            self.reply_once_durable(exchange::DeclareOk {});
        }
        Ok(())
    }

    pub(super) fn exchange_delete(&mut self, m: exchange::Delete) -> AmqpResult<()> {
        self.ctx
            .vhost
            .delete_exchange(&m.exchange, m.if_unused)
            .map_err(|e| self.declare_err(e))?;
        if !m.no_wait {
            self.reply_once_durable(exchange::DeleteOk {});
        }
        Ok(())
    }

    pub(super) fn exchange_bind(&mut self, m: exchange::Bind) -> AmqpResult<()> {
        self.ctx
            .vhost
            .bind_exchange(&m.source, &m.destination, m.routing_key, m.arguments)
            .map_err(|e| self.declare_err(e))?;
        if !m.no_wait {
            self.reply_once_durable(exchange::BindOk {});
        }
        Ok(())
    }

    pub(super) fn exchange_unbind(&mut self, m: exchange::Unbind) -> AmqpResult<()> {
        self.ctx
            .vhost
            .unbind_exchange(&m.source, &m.destination, &m.routing_key, &m.arguments)
            .map_err(|e| self.declare_err(e))?;
        if !m.no_wait {
            self.reply_once_durable(exchange::UnbindOk {});
        }
        Ok(())
    }

    pub(super) fn queue_declare(&mut self, m: queue::Declare) -> AmqpResult<()> {
        if m.queue.starts_with(DIRECT_REPLY_TO) {
            let ok = self.declare_reply_to(m.queue)?;
            if !m.no_wait {
                self.reply(ok);
            }
            return Ok(());
        }
        let vhost = &self.ctx.vhost;
        let q = if m.passive {
            // No "last declared queue" shortcut here: RabbitMQ answers a passive declare of ""
            // with 404 "no queue ''" (checked with pika against 3.10.8).
            vhost
                .queue_for(&m.queue, self.ctx.id)
                .map_err(|e| self.declare_err(e))?
        } else {
            let server_named = m.queue.is_empty();
            let name = if server_named {
                generated_name("amq.gen-")
            } else {
                m.queue
            };
            let options = QueueOptions {
                durable: m.durable,
                auto_delete: m.auto_delete,
                exclusive_owner: m.exclusive.then_some(self.ctx.id),
                arguments: m.arguments,
            };
            vhost
                .declare_queue(name, server_named, options)
                .map_err(|e| self.declare_err(e))?
        };
        // A declare, passive or not, renews an x-expires lease (as in RabbitMQ).
        q.touch();
        self.last_queue = Some(q.name.clone());
        if !m.no_wait {
            let ok = queue::DeclareOk {
                queue: q.name.clone(),
                message_count: q.message_count(),
                consumer_count: q.consumer_count(),
            };
            self.reply_once_durable(ok);
        }
        Ok(())
    }

    pub(super) fn queue_bind(&mut self, m: queue::Bind) -> AmqpResult<()> {
        let name = self.resolve_queue_name(&m.queue)?;
        // Spec (queue.bind routing-key): an empty queue name and an empty routing key bind
        // with the last declared queue's name as the key.
        let routing_key = if m.routing_key.is_empty() && m.queue.is_empty() {
            name.clone()
        } else {
            m.routing_key
        };
        self.ctx
            .vhost
            .bind_queue(&m.exchange, &name, self.ctx.id, routing_key, m.arguments)
            .map_err(|e| self.declare_err(e))?;
        if !m.no_wait {
            self.reply_once_durable(queue::BindOk {});
        }
        Ok(())
    }

    pub(super) fn queue_unbind(&mut self, m: queue::Unbind) -> AmqpResult<()> {
        let name = self.resolve_queue_name(&m.queue)?;
        self.ctx
            .vhost
            .unbind_queue(
                &m.exchange,
                &name,
                self.ctx.id,
                &m.routing_key,
                &m.arguments,
            )
            .map_err(|e| self.declare_err(e))?;
        self.reply_once_durable(queue::UnbindOk {});
        Ok(())
    }

    pub(super) fn queue_purge(&mut self, m: queue::Purge) -> AmqpResult<()> {
        let q = self.queue_for_use(&m.queue)?;
        let message_count = q.purge();
        if !m.no_wait {
            self.reply(queue::PurgeOk { message_count });
        }
        Ok(())
    }

    pub(super) fn queue_delete(&mut self, m: queue::Delete) -> AmqpResult<()> {
        let name = self.resolve_queue_name(&m.queue)?;
        let message_count = self
            .ctx
            .vhost
            .delete_queue(&name, self.ctx.id, m.if_unused, m.if_empty)
            .map_err(|e| self.declare_err(e))?;
        if !m.no_wait {
            self.reply_once_durable(queue::DeleteOk { message_count });
        }
        Ok(())
    }
}

/// `amq.gen-` / `amq.ctag-` followed by 22 random characters, like RabbitMQ's names.
pub(super) fn generated_name(prefix: &str) -> ShortStr {
    let suffix = Alphanumeric.sample_string(&mut rand::thread_rng(), 22);
    ShortStr::truncated(&format!("{prefix}{suffix}"))
}
