//! A virtual host: its exchanges, queues and bindings, and the rules of declare, delete and bind.
//! Never sees frames or sockets; channel/ turns its results into methods.
//!
//! Lock order (take them only in this order, never the reverse):
//!   the policy list (`RwLock`, `vhost/policies.rs`; held while a policy change is applied) →
//!   vhost maps (DashMap shard locks; never held across another lock: clone the `Arc` and drop
//!   the guard first) → exchange bindings (`RwLock`) → queue state (`Mutex`) → channel delivery
//!   state (`Mutex` in channel/) → connection outbound buffer (`Mutex` in src/outbound.rs).
//!   A queue never routes while holding its state lock: dead letters (expired, rejected,
//!   overflowed messages) are collected under it and routed through this vhost only after it is
//!   released (`queue/dead_letter.rs`, `vhost/dead_letter.rs`), so routing them starts again at
//!   the top of this order. The queue timer tasks (`queue/timer.rs`) hold no lock while waiting,
//!   and a queue releases its lock while it reads a paged-out body back from the journal.
//!
//! Every publish, whoever makes it, goes through [`VHost::publish`] (`vhost/publish.rs`).

use crate::exchange::sender_selected;
use crate::exchange::{
    BindError as InvalidBinding, Destination, Exchange, ExchangeKind, ExchangeOptions,
    ALTERNATE_EXCHANGE,
};
use crate::fields::{field_type_name, field_value_text};
use crate::ids::ConnectionId;
use crate::message::Message;
use crate::queue::kind::requested_type;
use crate::queue::{Queue, QueueOptions, QueueOwner};
use crate::stats::{
    Churn, ConnectionCounters, ConnectionStats, MessageCounters, MessageStats, SizeHistogram,
    SizeStats, VHostStats,
};
use crate::store::Store;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use std::sync::{Arc, OnceLock, Weak};
use warren_protocol::{FieldTable, FieldValue, ShortStr};

mod audit;
mod dead_letter;
mod delayed;
mod errors;
pub(crate) mod persistence;
pub mod policies;
mod publish;
#[cfg(test)]
mod timer_tests;
mod trace;

pub use errors::{BindError, DeclareError, DeleteError, LookupError, PublishError};
pub use publish::Published;
pub use trace::{TraceEvent, TraceOrigin, TRACE_EXCHANGE};

/// A virtual host.
pub struct VHost {
    /// Name, e.g. `/`.
    pub name: String,
    exchanges: DashMap<ShortStr, Arc<Exchange>>,
    queues: DashMap<ShortStr, Arc<Queue>>,
    /// Direct reply-to: generated `amq.rabbitmq.reply-to.<token>` names and the queue behind
    /// each consumer of `amq.rabbitmq.reply-to`. Only the default exchange routes to them.
    reply_queues: DashMap<ShortStr, Arc<Queue>>,
    /// Where durable definitions and persistent messages go (see `vhost/persistence.rs`).
    store: OnceLock<Arc<Store>>,
    /// This vhost, handed to its queues as their `QueueOwner` (dead letters, x-expires).
    me: Weak<VHost>,
    /// The counters of its open connections (registered at connection.open).
    connections: DashMap<ConnectionId, Arc<ConnectionCounters>>,
    /// What closed connections counted.
    closed_connections: MessageCounters,
    /// What the management API did (see [`VHost::api_counters`]).
    api_published: MessageCounters,
    /// Message sizes published on closed connections.
    closed_sizes: SizeHistogram,
    /// Channels opened and closed, queues declared, created and deleted here.
    pub churn: Churn,
    /// What deleted queues counted, by queue type name: with the live queues' counters, the
    /// per-queue-type totals of Prometheus' `rabbitmq_global_*` (changed per deletion only).
    deleted_queues: parking_lot::Mutex<Vec<(&'static str, MessageStats)>>,
    /// Set when the vhost is deleted: nothing more of it is written down.
    deleted: std::sync::atomic::AtomicBool,
    /// The firehose tracer is on (see `vhost/trace.rs`); read relaxed on every publish.
    /// Shared with its channels, which check it on every delivery.
    tracing: Arc<std::sync::atomic::AtomicBool>,
    /// Where traced events go while tracing is on.
    tracer: parking_lot::Mutex<Option<tokio::sync::mpsc::UnboundedSender<TraceEvent>>>,
    /// Policies and operator policies (`vhost/policies.rs`).
    policies: parking_lot::RwLock<Vec<Arc<crate::queue::policy::Policy>>>,
}

const DEFAULT_EXCHANGE: &str = "";

/// The pseudo-queue a client consumes from (no-ack) to get direct replies, and names as the
/// reply-to of its requests (RabbitMQ's direct reply-to).
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";
/// The start of the names that requests' reply-to is rewritten to, one per consuming channel.
pub const REPLY_TO_PREFIX: &str = "amq.rabbitmq.reply-to.";

impl VHost {
    /// A vhost with the default exchange and RabbitMQ's predeclared `amq.*` exchanges.
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new_cyclic(|me| Self::with_default_exchanges(name, me.clone()))
    }

    fn with_default_exchanges(name: &str, me: Weak<VHost>) -> Self {
        let vhost = VHost {
            name: name.to_owned(),
            exchanges: DashMap::new(),
            queues: DashMap::new(),
            reply_queues: DashMap::new(),
            store: OnceLock::new(),
            me,
            connections: DashMap::new(),
            closed_connections: MessageCounters::default(),
            api_published: MessageCounters::default(),
            closed_sizes: SizeHistogram::default(),
            churn: Churn::default(),
            deleted_queues: Default::default(),
            deleted: Default::default(),
            tracing: Default::default(),
            tracer: Default::default(),
            policies: Default::default(),
        };
        for (name, kind) in [
            (DEFAULT_EXCHANGE, ExchangeKind::Direct),
            ("amq.direct", ExchangeKind::Direct),
            ("amq.fanout", ExchangeKind::Fanout),
            ("amq.topic", ExchangeKind::Topic),
            ("amq.headers", ExchangeKind::Headers),
            ("amq.match", ExchangeKind::Headers),
        ] {
            let options = ExchangeOptions {
                kind,
                durable: true,
                auto_delete: false,
                internal: false,
                arguments: FieldTable::new(),
            };
            vhost.exchanges.insert(
                ShortStr::from(name),
                Exchange::new(ShortStr::from(name), options),
            );
        }
        // The firehose's exchange, as in every RabbitMQ vhost: clients may bind to it, only the
        // tracer publishes to it.
        let trace = ExchangeOptions {
            kind: ExchangeKind::Topic,
            durable: true,
            auto_delete: false,
            internal: true,
            arguments: FieldTable::new(),
        };
        vhost.exchanges.insert(
            ShortStr::from(TRACE_EXCHANGE),
            Exchange::new(ShortStr::from(TRACE_EXCHANGE), trace),
        );
        vhost
    }

    /// An exchange by name.
    pub fn exchange(&self, name: &str) -> Result<Arc<Exchange>, LookupError> {
        self.exchanges
            .get(name)
            .map(|e| e.clone())
            .ok_or_else(|| LookupError::ExchangeNotFound(ShortStr::truncated(name)))
    }

    /// How many queues it has (reply-to pseudo-queues not counted), for `max-queues`.
    pub fn queue_count(&self) -> u64 {
        self.queues.len() as u64
    }

    /// A queue by name.
    pub fn queue(&self, name: &str) -> Result<Arc<Queue>, LookupError> {
        self.queues
            .get(name)
            .map(|q| q.clone())
            .ok_or_else(|| LookupError::QueueNotFound(ShortStr::truncated(name)))
    }

    /// A queue by name, checking exclusive ownership against `connection`.
    pub fn queue_for(
        &self,
        name: &str,
        connection: ConnectionId,
    ) -> Result<Arc<Queue>, LookupError> {
        let q = self.queue(name)?;
        match q.options.exclusive_owner {
            Some(owner) if owner != connection => Err(LookupError::Locked(q.name.clone())),
            _ => Ok(q),
        }
    }

    /// The store, once attached (after restore at startup).
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.get()
    }

    /// Marks the vhost deleted (`Broker::delete_vhost`): its definitions are no longer written.
    pub fn mark_deleted(&self) {
        self.deleted
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether the vhost was deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Attaches the store: from now on durable changes are written down.
    pub fn attach_store(&self, store: Arc<Store>) {
        let _ = self.store.set(store);
    }

    /// exchange.declare (not passive): creates or checks equivalence.
    pub fn declare_exchange(
        &self,
        name: ShortStr,
        kind: &str,
        options: ExchangeOptions,
    ) -> Result<Arc<Exchange>, DeclareError> {
        if name.is_empty() {
            return Err(DeclareError::DefaultExchange);
        }
        match self.exchanges.entry(name.clone()) {
            Entry::Occupied(e) => {
                let existing = e.get().clone();
                drop(e);
                check_exchange_equivalent(&existing, kind, &options)?;
                Ok(existing)
            }
            Entry::Vacant(v) => {
                if name.starts_with("amq.") {
                    return Err(DeclareError::ReservedName {
                        what: "exchange",
                        name,
                    });
                }
                check_alternate_exchange(&name, &options.arguments)?;
                if options.kind == crate::exchange::ExchangeKind::DelayedMessage {
                    check_delayed_type(&options.arguments)?;
                }
                if options.kind == crate::exchange::ExchangeKind::MessageDeduplication {
                    crate::dedup::validate_exchange(&options.arguments)
                        .map_err(|text| DeclareError::BadArguments(text.into()))?;
                }
                let x = Exchange::new(name, options);
                v.insert(x.clone());
                self.persist_exchange(&x);
                self.apply_policies_to_exchange(&x);
                Ok(x)
            }
        }
    }

    /// Whether [`VHost::declare_exchange`] would succeed now, changing nothing.
    pub fn check_declare_exchange(
        &self,
        name: &str,
        kind: &str,
        options: &ExchangeOptions,
    ) -> Result<(), DeclareError> {
        let short = ShortStr::truncated(name);
        if name.is_empty() {
            return Err(DeclareError::DefaultExchange);
        }
        match self.exchange(name) {
            Ok(existing) => check_exchange_equivalent(&existing, kind, options),
            Err(_) if name.starts_with("amq.") => Err(DeclareError::ReservedName {
                what: "exchange",
                name: short,
            }),
            Err(_) => check_alternate_exchange(&short, &options.arguments),
        }
    }

    /// Whether [`VHost::declare_queue`] of a client-named queue would succeed now, changing
    /// nothing.
    pub fn check_declare_queue(
        &self,
        name: &str,
        options: &QueueOptions,
    ) -> Result<(), DeclareError> {
        let short = ShortStr::truncated(name);
        if name.starts_with("amq.") {
            return Err(DeclareError::ReservedName {
                what: "queue",
                name: short,
            });
        }
        match self.queue(name) {
            Ok(existing) => check_queue_equivalent(&existing, options),
            Err(_) => Queue::check_options(options)
                .map_err(|e| DeclareError::BadArguments(e.text(&short, &self.name))),
        }
    }

    /// exchange.delete.
    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<(), DeleteError> {
        if name.is_empty() {
            return Err(DeleteError::DefaultExchange);
        }
        if name.starts_with("amq.") {
            // RabbitMQ checks the prefix before looking the exchange up, so even a missing
            // `amq.nosuch` is refused this way.
            return Err(DeleteError::SystemExchange(ShortStr::truncated(name)));
        }
        let Ok(x) = self.exchange(name) else {
            return Ok(()); // RabbitMQ 3.x: deleting a missing exchange succeeds
        };
        if if_unused && x.has_bindings() {
            return Err(DeleteError::InUse {
                what: "exchange",
                name: x.name.clone(),
            });
        }
        self.exchanges.remove(name);
        if let Some(delayed) = &x.delayed {
            delayed.close();
        }
        self.forget_exchange(&x);
        self.remove_destination(&Destination::Exchange(x));
        Ok(())
    }

    /// queue.declare (not passive): creates or checks equivalence and ownership (the declaring
    /// connection is `options.exclusive_owner` for exclusive queues). Names the client chose may
    /// not start with `amq.`; `server_named` ones (`amq.gen-…`) do.
    pub fn declare_queue(
        &self,
        name: ShortStr,
        server_named: bool,
        options: QueueOptions,
    ) -> Result<Arc<Queue>, DeclareError> {
        // RabbitMQ checks the name before looking the queue up: redeclaring even an existing
        // `amq.gen-…` queue by name is refused (a passive declare of it is not).
        if name.starts_with("amq.") && !server_named {
            return Err(DeclareError::ReservedName {
                what: "queue",
                name,
            });
        }
        match self.queues.entry(name.clone()) {
            Entry::Occupied(e) => {
                let existing = e.get().clone();
                drop(e);
                // Exclusivity is compared strictly and first (rabbit_amqqueue:assert_equivalence):
                // another connection's queue, or an exclusive flag that differs from the first
                // declare, is 405 rather than 406.
                if existing.options.exclusive_owner != options.exclusive_owner {
                    return Err(DeclareError::Lookup(LookupError::Locked(name)));
                }
                check_queue_equivalent(&existing, &options)?;
                crate::stats::bump(&self.churn.queues_declared);
                Ok(existing)
            }
            Entry::Vacant(v) => {
                // Only a new queue's arguments are validated, as in RabbitMQ: a redeclare is
                // compared instead (checked with pika against 3.10.8).
                let owner: Weak<dyn QueueOwner> = self.me.clone();
                let q = Queue::try_new(name.clone(), options, owner)
                    .map_err(|e| DeclareError::BadArguments(e.text(&name, &self.name)))?;
                v.insert(q.clone());
                self.persist_queue(&q);
                crate::stats::bump(&self.churn.queues_declared);
                crate::stats::bump(&self.churn.queues_created);
                self.apply_policies_to_queue(&q);
                Ok(q)
            }
        }
    }

    /// queue.delete: returns the number of messages it held.
    pub fn delete_queue(
        &self,
        name: &str,
        connection: ConnectionId,
        if_unused: bool,
        if_empty: bool,
    ) -> Result<u32, DeleteError> {
        let Ok(q) = self.queue_for(name, connection) else {
            return match self.queue(name) {
                Ok(q) => Err(DeleteError::Lookup(LookupError::Locked(q.name.clone()))),
                Err(_) => Ok(0), // RabbitMQ 3.x: deleting a missing queue succeeds
            };
        };
        if (if_unused || if_empty) && q.queue_type() == crate::queue::QueueType::Quorum {
            // RabbitMQ 3.10-3.13 refuse both flags on quorum queues, if-unused first.
            let flag = if if_unused { "if-unused" } else { "if-empty" };
            let name = q.name.clone();
            return Err(DeleteError::QuorumConditional { flag, name });
        }
        if q.queue_type() == crate::queue::QueueType::Stream {
            // RabbitMQ 3.10.8 ignores if-empty/if-unused on a stream and answers 0 messages.
            self.remove_queue(&q);
            return Ok(0);
        }
        if if_unused && q.consumer_count() > 0 {
            return Err(DeleteError::InUse {
                what: "queue",
                name: q.name.clone(),
            });
        }
        if if_empty && q.message_count() > 0 {
            return Err(DeleteError::NotEmpty(q.name.clone()));
        }
        Ok(self.remove_queue(&q))
    }

    /// Removes a queue for good (delete, auto-delete, exclusive owner gone).
    pub fn remove_queue(&self, q: &Arc<Queue>) -> u32 {
        if q.name.starts_with(REPLY_TO_PREFIX)
            && self
                .reply_queues
                .remove_if(&q.name, |_, v| Arc::ptr_eq(v, q))
                .is_some()
        {
            return q.mark_deleted(); // bound nowhere, stored nowhere
        }
        if self
            .queues
            .remove_if(&q.name, |_, v| Arc::ptr_eq(v, q))
            .is_some()
        {
            self.forget_queue(q);
            self.count_deleted_queue(q);
        }
        self.remove_destination(&Destination::Queue(q.clone()));
        q.mark_deleted()
    }

    /// Drops every binding to a deleted destination, and auto-delete exchanges left unbound.
    fn remove_destination(&self, destination: &Destination) {
        let exchanges: Vec<Arc<Exchange>> =
            self.exchanges.iter().map(|e| e.value().clone()).collect();
        for x in exchanges {
            if x.unbind_all(destination) && x.options.auto_delete && !x.has_bindings() {
                self.auto_delete_exchange(&x);
            }
        }
    }

    fn auto_delete_exchange(&self, x: &Arc<Exchange>) {
        if self
            .exchanges
            .remove_if(&x.name, |_, v| Arc::ptr_eq(v, x))
            .is_some()
        {
            self.forget_exchange(x);
            self.remove_destination(&Destination::Exchange(x.clone()));
        }
    }

    /// The source of a bind: any exchange but the default one (403), which must exist (404).
    fn binding_source(&self, source: &str) -> Result<Arc<Exchange>, BindError> {
        if source.is_empty() {
            return Err(BindError::DefaultExchange);
        }
        Ok(self.exchange(source)?)
    }

    /// queue.bind. The exchange is looked up before the queue, so a bind naming neither
    /// reports the exchange, as RabbitMQ does.
    pub fn bind_queue(
        &self,
        source: &str,
        queue: &str,
        connection: ConnectionId,
        routing_key: ShortStr,
        arguments: FieldTable,
    ) -> Result<(), BindError> {
        let x = self.binding_source(source)?;
        let q = Destination::Queue(self.queue_for(queue, connection)?);
        self.bind_to(&x, q, routing_key, arguments)
    }

    /// Adds a binding and writes it down when both ends are durable.
    fn bind_to(
        &self,
        x: &Arc<Exchange>,
        destination: Destination,
        routing_key: ShortStr,
        arguments: FieldTable,
    ) -> Result<(), BindError> {
        let def = self.binding_def(x, &destination, &routing_key, &arguments);
        add_binding(x, destination, routing_key, arguments)?;
        self.persist_binding(def);
        Ok(())
    }

    /// exchange.bind: neither end may be the default exchange.
    pub fn bind_exchange(
        &self,
        source: &str,
        destination: &str,
        routing_key: ShortStr,
        arguments: FieldTable,
    ) -> Result<(), BindError> {
        if destination.is_empty() {
            return Err(BindError::DefaultExchange);
        }
        let x = self.binding_source(source)?;
        let d = Destination::Exchange(self.exchange(destination)?);
        self.bind_to(&x, d, routing_key, arguments)
    }

    /// queue.unbind. RabbitMQ 3.x answers unbind-ok whenever the binding does not exist, even
    /// when the exchange or the queue does not either (checked with pika against 3.10.8); only
    /// an existing binding checks that the queue is not another connection's exclusive queue.
    pub fn unbind_queue(
        &self,
        source: &str,
        queue: &str,
        connection: ConnectionId,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> Result<(), BindError> {
        if source.is_empty() {
            return Err(BindError::DefaultExchange);
        }
        let (Ok(x), Ok(q)) = (self.exchange(source), self.queue(queue)) else {
            return Ok(());
        };
        let destination = Destination::Queue(q);
        if !x.has_binding(&destination, routing_key, arguments) {
            return Ok(());
        }
        self.queue_for(queue, connection)?;
        self.remove_binding(&x, &destination, routing_key, arguments);
        Ok(())
    }

    /// exchange.unbind: like queue.unbind, what is not bound (or does not exist) succeeds.
    pub fn unbind_exchange(
        &self,
        source: &str,
        destination: &str,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> Result<(), BindError> {
        if source.is_empty() || destination.is_empty() {
            return Err(BindError::DefaultExchange);
        }
        if let (Ok(x), Ok(d)) = (self.exchange(source), self.exchange(destination)) {
            self.remove_binding(&x, &Destination::Exchange(d), routing_key, arguments);
        }
        Ok(())
    }

    /// Removes one binding; an auto-delete exchange left without bindings goes too.
    fn remove_binding(
        &self,
        x: &Arc<Exchange>,
        destination: &Destination,
        routing_key: &str,
        arguments: &FieldTable,
    ) {
        let removed = x.unbind(destination, routing_key, arguments);
        if removed {
            self.forget_binding(self.binding_def(x, destination, routing_key, arguments));
        }
        if removed && x.options.auto_delete && !x.has_bindings() {
            self.auto_delete_exchange(x);
        }
    }

    /// The queues a message published to `exchange` reaches, each once, as RabbitMQ 3.10's
    /// `rabbit_exchange:route/2` finds them: exchange-to-exchange bindings are followed without
    /// loops; an exchange that routes the message nowhere (not even to another exchange) hands
    /// it to its alternate exchange; direct, topic and default routing use the `CC` and `BCC`
    /// keys as well as the routing key.
    pub fn route(&self, exchange: &Arc<Exchange>, message: &Message) -> Vec<Arc<Queue>> {
        let headers = message.properties.headers.as_ref();
        let keys = sender_selected::routing_keys(message.routing_key(), headers);
        if exchange.name.is_empty() {
            return self.route_default(keys);
        }
        let mut queues: Vec<Arc<Queue>> = Vec::new();
        let mut visited: Vec<Arc<Exchange>> = vec![exchange.clone()];
        let mut pending = vec![exchange.clone()];
        let mut found = Vec::new();
        while let Some(x) = pending.pop() {
            found.clear();
            x.route_keys(keys.clone(), headers, &mut found);
            if found.is_empty() {
                found.extend(self.alternate_exchange_of(&x).map(Destination::Exchange));
            }
            for d in found.drain(..) {
                match d {
                    Destination::Queue(q) => {
                        if !queues.iter().any(|x| Arc::ptr_eq(x, &q)) {
                            queues.push(q);
                        }
                    }
                    Destination::Exchange(next) => {
                        if !visited.iter().any(|v| Arc::ptr_eq(v, &next)) {
                            visited.push(next.clone());
                            pending.push(next);
                        }
                    }
                }
            }
        }
        queues
    }

    /// The default exchange: each key names a queue, or a direct reply-to consumer.
    fn route_default<'a>(&self, keys: impl Iterator<Item = &'a str>) -> Vec<Arc<Queue>> {
        let mut queues: Vec<Arc<Queue>> = Vec::new();
        for key in keys {
            let map = if key.starts_with(REPLY_TO_PREFIX) {
                &self.reply_queues
            } else {
                &self.queues
            };
            let Some(q) = map.get(key).map(|q| q.clone()) else {
                continue;
            };
            if !queues.iter().any(|x| Arc::ptr_eq(x, &q)) {
                queues.push(q);
            }
        }
        queues
    }

    /// The exchange named by `x`'s `alternate-exchange` argument, if it exists. The default
    /// exchange as an alternate routes nothing in RabbitMQ 3.10 (checked with pika), so it is
    /// not followed.
    fn alternate_exchange_of(&self, x: &Exchange) -> Option<Arc<Exchange>> {
        let name = x.effective_alternate_exchange().filter(|n| !n.is_empty())?;
        self.exchanges.get(name.as_str()).map(|e| e.clone())
    }

    /// Direct reply-to: registers the queue behind a channel's consumer of
    /// [`DIRECT_REPLY_TO`] under its generated `name` ([`REPLY_TO_PREFIX`] and a token). The
    /// queue is in no other map, so it cannot be bound, consumed from by name, got from, purged
    /// or deleted; it is auto-delete and goes away with its consumer.
    pub fn add_reply_queue(&self, name: ShortStr, connection: ConnectionId) -> Arc<Queue> {
        let options = QueueOptions {
            durable: false,
            auto_delete: true,
            exclusive_owner: Some(connection),
            arguments: FieldTable::new(),
        };
        let q = Queue::new(name.clone(), options);
        self.reply_queues.insert(name, q.clone());
        q
    }

    /// The live queue behind a generated direct reply-to name.
    pub fn reply_queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.reply_queues.get(name).map(|q| q.clone())
    }

    /// Every exchange now, the default one (`""`) included (for the management API).
    pub fn exchange_list(&self) -> Vec<Arc<Exchange>> {
        self.exchanges.iter().map(|x| x.value().clone()).collect()
    }

    /// Every queue now, direct reply-to ones excluded (for the management API).
    pub fn queue_list(&self) -> Vec<Arc<Queue>> {
        self.queues.iter().map(|q| q.value().clone()).collect()
    }

    /// Every queue owned exclusively by `connection` (deleted when it closes).
    pub fn exclusive_queues_of(&self, connection: ConnectionId) -> Vec<Arc<Queue>> {
        self.queues
            .iter()
            .filter(|q| q.options.exclusive_owner == Some(connection))
            .map(|q| q.value().clone())
            .collect()
    }
}

/// Counters: connections register theirs here; sums are made when asked (`src/stats.rs`).
impl VHost {
    /// Registers the counters of a connection that opened this vhost; they count into its
    /// totals.
    pub fn register_connection(
        &self,
        connection: ConnectionId,
        counters: Arc<ConnectionCounters>,
    ) -> Arc<ConnectionCounters> {
        self.connections.insert(connection, counters.clone());
        counters
    }

    /// The connection closed: what it counted stays in this vhost's totals.
    pub fn retire_connection(&self, connection: ConnectionId) {
        if let Some((_, counters)) = self.connections.remove(&connection) {
            self.closed_connections
                .absorb(&counters.messages.snapshot());
            self.closed_sizes.absorb(&counters.message_sizes.snapshot());
        }
    }

    /// The counters of every open connection (Prometheus' per-object metrics).
    pub fn connection_list(&self) -> Vec<Arc<ConnectionCounters>> {
        self.connections.iter().map(|c| c.value().clone()).collect()
    }

    /// Sizes of the messages published here, closed connections included.
    pub fn message_sizes(&self) -> SizeStats {
        let mut sizes = self.closed_sizes.snapshot();
        for c in self.connections.iter() {
            sizes += c.value().message_sizes.snapshot();
        }
        sizes
    }

    /// What deleted queues counted, by queue type name.
    pub fn deleted_queue_stats(&self) -> Vec<(&'static str, MessageStats)> {
        self.deleted_queues.lock().clone()
    }

    fn count_deleted_queue(&self, q: &Queue) {
        crate::stats::bump(&self.churn.queues_deleted);
        let kind = q.queue_type().name();
        let counted = q.counted();
        let mut deleted = self.deleted_queues.lock();
        match deleted.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, m)) => *m += counted,
            None => deleted.push((kind, counted)),
        }
    }

    /// The counters of what the management API does here (publish, get, ack): it has no
    /// connection to count them, and they belong in this vhost's totals.
    pub fn api_counters(&self) -> &MessageCounters {
        &self.api_published
    }

    /// One open connection's counters now.
    pub fn connection_stats(&self, connection: ConnectionId) -> Option<ConnectionStats> {
        self.connections.get(&connection).map(|c| c.snapshot())
    }

    /// Every open connection's counters now, by connection id.
    pub fn connections_stats(&self) -> Vec<(ConnectionId, ConnectionStats)> {
        self.connections
            .iter()
            .map(|c| (*c.key(), c.value().snapshot()))
            .collect()
    }

    /// What went through its connections (closed ones included) and the management API.
    pub fn message_stats(&self) -> MessageStats {
        let mut m = self.closed_connections.snapshot();
        m += self.api_published.snapshot();
        for c in self.connections.iter() {
            m += c.value().messages.snapshot();
        }
        m
    }

    /// Totals over its connections (closed ones included) and its queues, now.
    pub fn stats(&self) -> VHostStats {
        let mut stats = VHostStats {
            messages: self.closed_connections.snapshot(),
            ..VHostStats::default()
        };
        stats.messages += self.api_published.snapshot();
        for c in self.connections.iter() {
            let c = c.value().snapshot();
            stats.messages += c.messages;
            stats.connections += 1;
            stats.channels += c.channels;
        }
        let queues: Vec<Arc<Queue>> = self.queues.iter().map(|q| q.value().clone()).collect();
        for q in queues {
            let q = q.stats();
            stats.queues += 1;
            stats.consumers += q.consumers;
            stats.messages_ready += q.messages_ready;
            stats.messages_unacked += q.messages_unacked;
            stats.message_bytes_ready += q.message_bytes_ready;
        }
        stats
    }
}

fn add_binding(
    x: &Exchange,
    destination: Destination,
    routing_key: ShortStr,
    arguments: FieldTable,
) -> Result<(), BindError> {
    x.bind(destination, routing_key, arguments)
        .map_err(|InvalidBinding::InvalidArguments(t)| BindError::BadArguments(t))
}

/// The delayed-message plugin's checks of `x-delayed-type`.
fn check_delayed_type(arguments: &warren_protocol::FieldTable) -> Result<(), DeclareError> {
    use crate::exchange::delayed::{validate, DelayedTypeError};
    validate(arguments).map_err(|e| match e {
        DelayedTypeError::Invalid(text) => DeclareError::BadArguments(text.to_string()),
        DelayedTypeError::UnknownType(t) => DeclareError::UnknownExchangeType(t),
    })
}

/// The exchange arguments RabbitMQ compares on redeclare (`rabbit_exchange:assert_args_equivalence`).
const COMPARED_EXCHANGE_ARGUMENTS: &[&str] = &["alternate-exchange"];

/// A flag or type in an inequivalence text: `'true'`, `'direct'`.
fn quoted(value: impl std::fmt::Display) -> String {
    format!("'{value}'")
}

/// A new exchange's `alternate-exchange` must be a string (RabbitMQ's `rabbit_misc:r_arg`); it
/// may name an exchange that does not exist (yet).
fn check_alternate_exchange(name: &ShortStr, arguments: &FieldTable) -> Result<(), DeclareError> {
    match arguments.get(ALTERNATE_EXCHANGE) {
        None | Some(FieldValue::LongStr(_)) => Ok(()),
        Some(other) => Err(DeclareError::InvalidArgumentType {
            what: "exchange",
            name: name.clone(),
            argument: ALTERNATE_EXCHANGE,
            type_name: field_type_name(other),
        }),
    }
}

fn check_exchange_equivalent(
    x: &Exchange,
    kind: &str,
    new: &ExchangeOptions,
) -> Result<(), DeclareError> {
    let o = &x.options;
    let diff = |field: &str, received: String, current: String| DeclareError::Inequivalent {
        what: "exchange",
        name: x.name.clone(),
        field: field.to_owned(),
        received,
        current,
    };
    if o.kind.name() != kind {
        return Err(diff("type", quoted(kind), quoted(o.kind.name())));
    }
    if o.durable != new.durable {
        return Err(diff("durable", quoted(new.durable), quoted(o.durable)));
    }
    if o.auto_delete != new.auto_delete {
        return Err(diff(
            "auto_delete",
            quoted(new.auto_delete),
            quoted(o.auto_delete),
        ));
    }
    if o.internal != new.internal {
        return Err(diff("internal", quoted(new.internal), quoted(o.internal)));
    }
    check_arguments(
        COMPARED_EXCHANGE_ARGUMENTS,
        &new.arguments,
        &o.arguments,
        diff,
    )
}

fn check_queue_equivalent(q: &Queue, new: &QueueOptions) -> Result<(), DeclareError> {
    let o = &q.options;
    let diff = |field: &str, received: String, current: String| DeclareError::Inequivalent {
        what: "queue",
        name: q.name.clone(),
        field: field.to_owned(),
        received,
        current,
    };
    if o.durable != new.durable {
        return Err(diff("durable", quoted(new.durable), quoted(o.durable)));
    }
    if o.auto_delete != new.auto_delete {
        return Err(diff(
            "auto_delete",
            quoted(new.auto_delete),
            quoted(o.auto_delete),
        ));
    }
    // Which x-arguments must match is the queue type's business (kind.rs).
    let compared = q.queue_type().compared_arguments();
    check_arguments(compared, &new.arguments, &o.arguments, diff)?;
    check_queue_type(&new.arguments, &o.arguments, diff)
}

/// `x-queue-type` on redeclare: absent and `classic` are the same type (RabbitMQ 3.10 accepts
/// one against the other), any other value is inequivalent, in the usual words (checked with
/// pika: `received the value 'quorum' of type 'longstr' but current is none`).
fn check_queue_type(
    received: &FieldTable,
    current: &FieldTable,
    diff: impl Fn(&str, String, String) -> DeclareError,
) -> Result<(), DeclareError> {
    const KEY: &str = crate::queue::args::X_QUEUE_TYPE;
    if requested_type(received) == requested_type(current) {
        return Ok(());
    }
    let (r, c) = (received.get(KEY), current.get(KEY));
    Err(match (r, c) {
        (Some(r), Some(c)) => diff(
            KEY,
            quoted(field_value_text(r)),
            quoted(field_value_text(c)),
        ),
        (r, c) => diff(KEY, described(r), described(c)),
    })
}

/// RabbitMQ's `assert_args_equivalence`: each of `keys` must be absent from both tables or
/// present in both with equivalent values (integers of any width compare by value). An argument
/// only one side has is as inequivalent as a different value.
fn check_arguments(
    keys: &[&str],
    received: &FieldTable,
    current: &FieldTable,
    diff: impl Fn(&str, String, String) -> DeclareError,
) -> Result<(), DeclareError> {
    for key in keys {
        match (received.get(key), current.get(key)) {
            (None, None) => {}
            (Some(r), Some(c)) if crate::exchange::headers::equivalent(r, c) => {}
            // Both present: RabbitMQ prints the bare values ('20' but current is '10').
            (Some(r), Some(c)) => {
                return Err(diff(
                    key,
                    quoted(field_value_text(r)),
                    quoted(field_value_text(c)),
                ))
            }
            (r, c) => return Err(diff(key, described(r), described(c))),
        }
    }
    Ok(())
}

/// An argument only one side has, in RabbitMQ's words: `none` or
/// `the value '10' of type 'signedint'`.
fn described(value: Option<&warren_protocol::FieldValue>) -> String {
    match value {
        None => "none".into(),
        Some(v) => format!(
            "the value '{}' of type '{}'",
            field_value_text(v),
            field_type_name(v)
        ),
    }
}
