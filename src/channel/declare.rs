//! exchange.* and queue.* methods: declare, delete, bind, unbind, purge.

use super::Channel;
use crate::auth::{Access, ResourceKind};
use crate::error::Refusal;
use crate::error::{AmqpError, AmqpResult};
use crate::exchange::{ExchangeKind, ExchangeOptions, ALTERNATE_EXCHANGE};
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

    /// The named queue, if the user has `access` to it (403, checked first: RabbitMQ answers
    /// 403 rather than 404 for a queue the user may not see) and this connection may use it
    /// (405 for another's exclusive queue).
    pub(super) fn queue_for_use(
        &mut self,
        access: Access,
        name: &ShortStr,
    ) -> AmqpResult<Arc<Queue>> {
        let name = self.resolve_queue_name(name)?;
        self.access.check_queue(access, &name)?;
        self.ctx
            .vhost
            .queue_for(&name, self.ctx.id)
            .map_err(|e| self.declare_err(e))
    }

    /// Read on `exchange` for a binding's topic permission, when it is a topic exchange (a
    /// missing one is left to the binding's own 404, as RabbitMQ).
    fn check_topic_binding(&mut self, exchange: &str, binding_key: &str) -> AmqpResult<()> {
        if let Ok(x) = self.ctx.vhost.exchange(exchange) {
            if x.routing_kind() == ExchangeKind::Topic {
                self.access
                    .check_topic(Access::Read, exchange, binding_key)?;
            }
        }
        Ok(())
    }

    /// A binding's resource checks, RabbitMQ's `binding_action`: write on the destination, read
    /// on the source, then the source's topic permission. The default exchange is left to the
    /// vhost's own refusal.
    fn check_binding(
        &mut self,
        source: &str,
        destination: &str,
        destination_kind: ResourceKind,
        binding_key: &str,
    ) -> AmqpResult<()> {
        if source.is_empty() || destination.is_empty() {
            return Ok(());
        }
        match destination_kind {
            ResourceKind::Queue => self.access.check_queue(Access::Write, destination)?,
            ResourceKind::Exchange => self.access.check_exchange(Access::Write, destination)?,
        }
        self.access.check_exchange(Access::Read, source)?;
        self.check_topic_binding(source, binding_key)
    }

    pub(super) fn exchange_declare(&mut self, m: exchange::Declare) -> AmqpResult<()> {
        if m.passive {
            if m.exchange.is_empty() {
                // RabbitMQ refuses even a passive declare of the default exchange (403).
                return Err(self.declare_err(DeclareError::DefaultExchange));
            }
            self.access.check_any(ResourceKind::Exchange, &m.exchange)?;
        } else if !m.exchange.is_empty() {
            // RabbitMQ: configure on the exchange; with an alternate exchange, also read on
            // this one and write on the alternate (a non-string argument is the vhost's 406).
            self.access.check_exchange(Access::Configure, &m.exchange)?;
            let alternate = m.arguments.get(ALTERNATE_EXCHANGE).and_then(|v| v.as_str());
            if let Some(alternate) = alternate {
                self.access.check_exchange(Access::Read, &m.exchange)?;
                self.access.check_exchange(Access::Write, alternate)?;
            }
        }
        let vhost = &self.ctx.vhost;
        if m.passive {
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
        if !m.exchange.is_empty() {
            self.access.check_exchange(Access::Configure, &m.exchange)?;
        }
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
        self.check_binding(
            &m.source,
            &m.destination,
            ResourceKind::Exchange,
            &m.routing_key,
        )?;
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
        self.check_binding(
            &m.source,
            &m.destination,
            ResourceKind::Exchange,
            &m.routing_key,
        )?;
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
        let q = if m.passive {
            // No "last declared queue" shortcut here: RabbitMQ answers a passive declare of ""
            // with 404 "no queue ''" (checked with pika against 3.10.8).
            self.access.check_any(ResourceKind::Queue, &m.queue)?;
            self.ctx
                .vhost
                .queue_for(&m.queue, self.ctx.id)
                .map_err(|e| self.declare_err(e))?
        } else {
            let server_named = m.queue.is_empty();
            let name = if server_named {
                generated_name("amq.gen-")
            } else {
                m.queue
            };
            // RabbitMQ refuses a reserved `amq.` name before checking permissions.
            if server_named || !name.starts_with("amq.") {
                self.access.check_queue(Access::Configure, &name)?;
                // A dead-letter exchange needs read on the queue and write on the exchange
                // (`""` is checked as `amq.default`); a non-string argument is the vhost's 406.
                let dlx = m
                    .arguments
                    .get("x-dead-letter-exchange")
                    .and_then(|v| v.as_str());
                if let Some(dlx) = dlx {
                    self.access.check_queue(Access::Read, &name)?;
                    self.access.check_exchange(Access::Write, dlx)?;
                }
            }
            // The vhost's `max-queues` counts only queues that would be new.
            let vhost = &self.ctx.vhost;
            if vhost.queue(&name).is_err() {
                self.ctx
                    .access
                    .check_queue_limit(&vhost.name, &name, vhost.queue_count())?;
            }
            let options = QueueOptions {
                durable: m.durable,
                auto_delete: m.auto_delete,
                exclusive_owner: m.exclusive.then_some(self.ctx.id),
                arguments: m.arguments,
            };
            self.ctx
                .vhost
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
        self.check_binding(&m.exchange, &name, ResourceKind::Queue, &routing_key)?;
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
        self.check_binding(&m.exchange, &name, ResourceKind::Queue, &m.routing_key)?;
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
        let q = self.queue_for_use(Access::Read, &m.queue)?;
        self.refuse_on_stream(&q, "queue.purge")?;
        let message_count = q.purge();
        if !m.no_wait {
            self.reply(queue::PurgeOk { message_count });
        }
        Ok(())
    }

    pub(super) fn queue_delete(&mut self, m: queue::Delete) -> AmqpResult<()> {
        let name = self.resolve_queue_name(&m.queue)?;
        self.access.check_queue(Access::Configure, &name)?;
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
