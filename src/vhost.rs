//! A virtual host: its exchanges, queues and bindings, and the rules of declare, delete and bind.
//! Never sees frames or sockets; channel/ turns its results into methods.
//!
//! Lock order (take them only in this order, never the reverse):
//!   vhost maps (DashMap shard locks; never held across another lock: clone the `Arc` and drop
//!   the guard first) → exchange bindings (`RwLock`) → queue state (`Mutex`) → channel delivery
//!   state (`Mutex` in channel/) → connection outbound buffer (`Mutex` in connection/writer.rs).

use crate::exchange::{BindError, Destination, Exchange, ExchangeKind, ExchangeOptions};
use crate::message::Message;
use crate::queue::{Queue, QueueOptions};
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use std::sync::Arc;
use warren_protocol::{FieldTable, ShortStr};

/// Why a declare, delete or bind was refused. `src/error.rs` maps these to reply codes.
#[derive(Debug, PartialEq, Eq)]
pub enum DeclareError {
    /// 404 no such queue.
    QueueNotFound(ShortStr),
    /// 404 no such exchange.
    ExchangeNotFound(ShortStr),
    /// 406 redeclared with other properties: (what, name, field, received, current).
    Inequivalent {
        what: &'static str,
        name: ShortStr,
        field: String,
        received: String,
        current: String,
    },
    /// 403 `amq.` prefix.
    ReservedName { what: &'static str, name: ShortStr },
    /// 403 the default exchange cannot be declared, deleted or bound.
    DefaultExchange,
    /// 405 another connection's exclusive queue.
    Locked(ShortStr),
    /// 406 delete if-unused of a queue with consumers / an exchange with bindings.
    InUse { what: &'static str, name: ShortStr },
    /// 406 delete if-empty of a queue with messages.
    NotEmpty(ShortStr),
    /// 503 unknown exchange type.
    UnknownExchangeType(String),
    /// 406 bad binding arguments.
    BadArguments(String),
    /// 403 publishing to an internal exchange.
    Internal(ShortStr),
}

/// A virtual host.
pub struct VHost {
    /// Name, e.g. `/`.
    pub name: String,
    exchanges: DashMap<ShortStr, Arc<Exchange>>,
    queues: DashMap<ShortStr, Arc<Queue>>,
}

const DEFAULT_EXCHANGE: &str = "";

impl VHost {
    /// A vhost with the default exchange and RabbitMQ's predeclared `amq.*` exchanges.
    pub fn new(name: &str) -> Arc<Self> {
        let vhost = VHost {
            name: name.to_owned(),
            exchanges: DashMap::new(),
            queues: DashMap::new(),
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
        Arc::new(vhost)
    }

    /// An exchange by name.
    pub fn exchange(&self, name: &str) -> Result<Arc<Exchange>, DeclareError> {
        self.exchanges
            .get(name)
            .map(|e| e.clone())
            .ok_or_else(|| DeclareError::ExchangeNotFound(ShortStr::truncated(name)))
    }

    /// A queue by name.
    pub fn queue(&self, name: &str) -> Result<Arc<Queue>, DeclareError> {
        self.queues
            .get(name)
            .map(|q| q.clone())
            .ok_or_else(|| DeclareError::QueueNotFound(ShortStr::truncated(name)))
    }

    /// A queue by name, checking exclusive ownership against `connection`.
    pub fn queue_for(&self, name: &str, connection: u64) -> Result<Arc<Queue>, DeclareError> {
        let q = self.queue(name)?;
        match q.options.exclusive_owner {
            Some(owner) if owner != connection => Err(DeclareError::Locked(q.name.clone())),
            _ => Ok(q),
        }
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
                let x = Exchange::new(name, options);
                v.insert(x.clone());
                Ok(x)
            }
        }
    }

    /// exchange.delete.
    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<(), DeclareError> {
        if name.is_empty() {
            return Err(DeclareError::DefaultExchange);
        }
        if name.starts_with("amq.") {
            return Err(DeclareError::ReservedName {
                what: "exchange",
                name: ShortStr::truncated(name),
            });
        }
        let Ok(x) = self.exchange(name) else {
            return Ok(()); // RabbitMQ 3.x: deleting a missing exchange succeeds
        };
        if if_unused && x.has_bindings() {
            return Err(DeclareError::InUse {
                what: "exchange",
                name: x.name.clone(),
            });
        }
        self.exchanges.remove(name);
        self.remove_destination(&Destination::Exchange(x));
        Ok(())
    }

    /// queue.declare (not passive): creates or checks equivalence and ownership. Names the
    /// client chose may not start with `amq.`; `server_named` ones (`amq.gen-…`) do.
    pub fn declare_queue(
        &self,
        name: ShortStr,
        server_named: bool,
        options: QueueOptions,
        connection: u64,
    ) -> Result<Arc<Queue>, DeclareError> {
        match self.queues.entry(name.clone()) {
            Entry::Occupied(e) => {
                let existing = e.get().clone();
                drop(e);
                if matches!(existing.options.exclusive_owner, Some(o) if o != connection) {
                    return Err(DeclareError::Locked(name));
                }
                check_queue_equivalent(&existing, &options)?;
                Ok(existing)
            }
            Entry::Vacant(v) => {
                if name.starts_with("amq.") && !server_named {
                    return Err(DeclareError::ReservedName {
                        what: "queue",
                        name,
                    });
                }
                let q = Queue::new(name, options);
                v.insert(q.clone());
                Ok(q)
            }
        }
    }

    /// queue.delete: returns the number of messages it held.
    pub fn delete_queue(
        &self,
        name: &str,
        connection: u64,
        if_unused: bool,
        if_empty: bool,
    ) -> Result<u32, DeclareError> {
        let Ok(q) = self.queue_for(name, connection) else {
            return match self.queue(name) {
                Ok(q) => Err(DeclareError::Locked(q.name.clone())),
                Err(_) => Ok(0), // RabbitMQ 3.x: deleting a missing queue succeeds
            };
        };
        if if_unused && q.consumer_count() > 0 {
            return Err(DeclareError::InUse {
                what: "queue",
                name: q.name.clone(),
            });
        }
        if if_empty && q.message_count() > 0 {
            return Err(DeclareError::NotEmpty(q.name.clone()));
        }
        Ok(self.remove_queue(&q))
    }

    /// Removes a queue for good (delete, auto-delete, exclusive owner gone).
    pub fn remove_queue(&self, q: &Arc<Queue>) -> u32 {
        self.queues.remove_if(&q.name, |_, v| Arc::ptr_eq(v, q));
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
            self.remove_destination(&Destination::Exchange(x.clone()));
        }
    }

    /// queue.bind / exchange.bind.
    pub fn bind(
        &self,
        source: &str,
        destination: Destination,
        routing_key: ShortStr,
        arguments: FieldTable,
    ) -> Result<(), DeclareError> {
        if source.is_empty() {
            return Err(DeclareError::DefaultExchange);
        }
        let x = self.exchange(source)?;
        x.bind(destination, routing_key, arguments)
            .map_err(|BindError::InvalidArguments(t)| DeclareError::BadArguments(t))
    }

    /// queue.unbind / exchange.unbind (unbinding what is not bound succeeds, as in RabbitMQ).
    pub fn unbind(
        &self,
        source: &str,
        destination: &Destination,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> Result<(), DeclareError> {
        if source.is_empty() {
            return Err(DeclareError::DefaultExchange);
        }
        let x = self.exchange(source)?;
        if x.unbind(destination, routing_key, arguments)
            && x.options.auto_delete
            && !x.has_bindings()
        {
            self.auto_delete_exchange(&x);
        }
        Ok(())
    }

    /// The queues a message published to `exchange` reaches, each once, following
    /// exchange-to-exchange bindings without loops.
    pub fn route(&self, exchange: &Arc<Exchange>, message: &Message) -> Vec<Arc<Queue>> {
        let headers = message.properties.headers.as_ref();
        if exchange.name.is_empty() {
            return self
                .queues
                .get(message.routing_key.as_str())
                .map(|q| vec![q.clone()])
                .unwrap_or_default();
        }
        let mut queues: Vec<Arc<Queue>> = Vec::new();
        let mut visited: Vec<Arc<Exchange>> = vec![exchange.clone()];
        let mut pending = vec![exchange.clone()];
        let mut found = Vec::new();
        while let Some(x) = pending.pop() {
            found.clear();
            x.route(&message.routing_key, headers, &mut found);
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

    /// Every queue owned exclusively by `connection` (deleted when it closes).
    pub fn exclusive_queues_of(&self, connection: u64) -> Vec<Arc<Queue>> {
        self.queues
            .iter()
            .filter(|q| q.options.exclusive_owner == Some(connection))
            .map(|q| q.value().clone())
            .collect()
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
        return Err(diff("type", kind.to_owned(), o.kind.name().to_owned()));
    }
    if o.durable != new.durable {
        return Err(diff(
            "durable",
            new.durable.to_string(),
            o.durable.to_string(),
        ));
    }
    if o.auto_delete != new.auto_delete {
        return Err(diff(
            "auto_delete",
            new.auto_delete.to_string(),
            o.auto_delete.to_string(),
        ));
    }
    if o.internal != new.internal {
        return Err(diff(
            "internal",
            new.internal.to_string(),
            o.internal.to_string(),
        ));
    }
    Ok(())
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
        return Err(diff(
            "durable",
            new.durable.to_string(),
            o.durable.to_string(),
        ));
    }
    if o.exclusive_owner.is_some() != new.exclusive_owner.is_some() {
        let ex = |b: bool| b.to_string();
        return Err(diff(
            "exclusive",
            ex(new.exclusive_owner.is_some()),
            ex(o.exclusive_owner.is_some()),
        ));
    }
    if o.auto_delete != new.auto_delete {
        return Err(diff(
            "auto_delete",
            new.auto_delete.to_string(),
            o.auto_delete.to_string(),
        ));
    }
    // RabbitMQ compares the x-arguments in both directions: one that only the new declare
    // names, or only the existing queue has, is as inequivalent as a different value.
    let keys = new
        .arguments
        .iter()
        .chain(o.arguments.iter())
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("x-"));
    for key in keys {
        let (received, current) = (new.arguments.get(key), o.arguments.get(key));
        if received != current {
            return Err(diff(key, describe(received), describe(current)));
        }
    }
    Ok(())
}

/// RabbitMQ's wording for an argument in an inequivalence text.
fn describe(value: Option<&warren_protocol::FieldValue>) -> String {
    use warren_protocol::FieldValue as V;
    let Some(v) = value else { return "none".into() };
    let (text, kind) = match v {
        V::LongStr(b) => (String::from_utf8_lossy(b).into_owned(), "longstr"),
        V::Bool(b) => (b.to_string(), "bool"),
        V::F32(f) => (f.to_string(), "float"),
        V::F64(f) => (f.to_string(), "double"),
        other => match other.as_i64() {
            Some(n) => (
                n.to_string(),
                if matches!(other, V::I64(_)) {
                    "long"
                } else {
                    "signedint"
                },
            ),
            None => (format!("{other:?}"), "table"),
        },
    };
    format!("the value '{text}' of type '{kind}'")
}
