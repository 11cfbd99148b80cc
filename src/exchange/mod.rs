//! Exchanges and their bindings: which queues (and exchanges) a routing key and headers reach.
//! Never touches queues' contents; the vhost pushes to what `route` returns.

pub mod delayed;
pub mod headers;
pub mod sender_selected;
pub mod topic;
pub mod topic_trie;

use crate::queue::Queue;
use headers::MatchMode;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use topic_trie::TopicTrie;
use warren_protocol::{FieldTable, FieldValue, ShortStr};

/// The four exchange types of 0-9-1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExchangeKind {
    /// Routing key equals binding key.
    Direct,
    /// Every binding.
    Fanout,
    /// Binding keys with `*` and `#` wildcards.
    Topic,
    /// Header values, not the routing key.
    Headers,
    /// The delayed-message plugin's type: holds each message for its `x-delay` header's
    /// milliseconds, then routes it as its `x-delayed-type` argument's type does.
    DelayedMessage,
    /// The deduplication plugin's type: drops a message whose `x-deduplication-header` was
    /// seen within its cache window, and routes the rest as fanout.
    MessageDeduplication,
}

impl ExchangeKind {
    /// The type named in exchange.declare.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "direct" => ExchangeKind::Direct,
            "fanout" => ExchangeKind::Fanout,
            "topic" => ExchangeKind::Topic,
            "headers" => ExchangeKind::Headers,
            delayed::TYPE_NAME => ExchangeKind::DelayedMessage,
            crate::dedup::TYPE_NAME => ExchangeKind::MessageDeduplication,
            _ => return None,
        })
    }

    /// The type's name.
    pub fn name(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
            ExchangeKind::DelayedMessage => delayed::TYPE_NAME,
            ExchangeKind::MessageDeduplication => crate::dedup::TYPE_NAME,
        }
    }
}

/// What a binding leads to.
#[derive(Clone)]
pub enum Destination {
    /// A queue.
    Queue(Arc<Queue>),
    /// Another exchange (RabbitMQ's exchange-to-exchange bindings).
    Exchange(Arc<Exchange>),
}

impl Destination {
    fn is(&self, other: &Destination) -> bool {
        match (self, other) {
            (Destination::Queue(a), Destination::Queue(b)) => Arc::ptr_eq(a, b),
            (Destination::Exchange(a), Destination::Exchange(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// One binding from this exchange.
#[derive(Clone)]
pub struct Binding {
    /// Where matching messages go.
    pub destination: Destination,
    /// Binding key.
    pub routing_key: ShortStr,
    /// Binding arguments (headers exchange: what to match).
    pub arguments: FieldTable,
    /// Identifies the binding in the routing indexes.
    id: u64,
    match_mode: MatchMode,
}

/// An exchange's bindings and the indexes that route by key.
#[derive(Default)]
struct Bindings {
    all: Vec<Binding>,
    next_id: u64,
    /// Direct exchanges: binding key → destinations.
    direct: HashMap<ShortStr, Vec<(u64, Destination)>>,
    /// Topic exchanges: binding keys as a trie of words.
    topic: TopicTrie<Destination>,
}

impl Bindings {
    fn index(&mut self, kind: ExchangeKind, b: &Binding) {
        match kind {
            ExchangeKind::Direct => self
                .direct
                .entry(b.routing_key.clone())
                .or_default()
                .push((b.id, b.destination.clone())),
            ExchangeKind::Topic => self
                .topic
                .insert(&b.routing_key, b.id, b.destination.clone()),
            ExchangeKind::Fanout
            | ExchangeKind::Headers
            | ExchangeKind::DelayedMessage
            | ExchangeKind::MessageDeduplication => {}
        }
    }

    fn unindex(&mut self, kind: ExchangeKind, b: &Binding) {
        match kind {
            ExchangeKind::Direct => {
                if let Some(list) = self.direct.get_mut(&b.routing_key) {
                    list.retain(|(id, _)| *id != b.id);
                    if list.is_empty() {
                        self.direct.remove(&b.routing_key);
                    }
                }
            }
            ExchangeKind::Topic => self.topic.remove(&b.routing_key, b.id),
            ExchangeKind::Fanout
            | ExchangeKind::Headers
            | ExchangeKind::DelayedMessage
            | ExchangeKind::MessageDeduplication => {}
        }
    }
}

/// Declared properties, compared on redeclare.
#[derive(Clone, Debug, PartialEq)]
pub struct ExchangeOptions {
    /// Exchange type.
    pub kind: ExchangeKind,
    /// Survives restarts.
    pub durable: bool,
    /// Deleted when its last binding goes.
    pub auto_delete: bool,
    /// Cannot be published to directly, only through exchange-to-exchange bindings.
    pub internal: bool,
    /// Declared arguments.
    pub arguments: FieldTable,
}

/// An exchange.
pub struct Exchange {
    /// Name (`""` is the default exchange).
    pub name: ShortStr,
    /// Declared properties.
    pub options: ExchangeOptions,
    /// Where messages this exchange cannot route go: its `alternate-exchange` argument.
    pub alternate_exchange: Option<ShortStr>,
    /// How bindings route: the declared kind, or a delayed exchange's `x-delayed-type`.
    routing: ExchangeKind,
    /// A delayed exchange's held messages (`None` for every other type).
    pub delayed: Option<delayed::Delayed>,
    /// A deduplication exchange's cache of recent message ids.
    dedup: Option<crate::dedup::DedupCache>,
    /// The policies that apply (`src/queue/policy.rs`); read only for unroutable messages and by the
    /// management API.
    applied: arc_swap::ArcSwap<crate::queue::policy::Applied>,
    bindings: RwLock<Bindings>,
    /// Publishes through it, for the management API.
    pub counters: crate::stats::ExchangeCounters,
}

/// A publishing channel's count for the exchange it publishes to, added to the exchange's
/// counters in one go at the end of each socket read (or when the channel turns to another
/// exchange, or goes): two atomic adds per batch of publishes rather than per message.
#[derive(Default)]
pub struct PublishTally {
    exchange: Option<Arc<Exchange>>,
    publish_in: u64,
    publish_out: u64,
}

impl PublishTally {
    /// One publish to `exchange` that reached `queues` queues.
    #[inline]
    pub fn count(&mut self, exchange: &Arc<Exchange>, queues: usize) {
        if !self
            .exchange
            .as_ref()
            .is_some_and(|x| Arc::ptr_eq(x, exchange))
        {
            self.flush();
            self.exchange = Some(exchange.clone());
        }
        self.publish_in += 1;
        self.publish_out += queues as u64;
    }

    /// Adds what was counted to the exchange's counters.
    pub fn flush(&mut self) {
        if let Some(x) = &self.exchange {
            crate::stats::bump_by(&x.counters.publish_in, self.publish_in);
            crate::stats::bump_by(&x.counters.publish_out, self.publish_out);
        }
        self.publish_in = 0;
        self.publish_out = 0;
    }
}

impl Drop for PublishTally {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The exchange argument naming an alternate exchange (RabbitMQ's extension).
pub const ALTERNATE_EXCHANGE: &str = "alternate-exchange";

/// Why a bind was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum BindError {
    /// Headers binding with a bad `x-match` (406 text).
    InvalidArguments(String),
}

impl Exchange {
    /// A new exchange with no bindings.
    pub fn new(name: ShortStr, options: ExchangeOptions) -> Arc<Self> {
        let alternate_exchange = match options.arguments.get(ALTERNATE_EXCHANGE) {
            Some(FieldValue::LongStr(name)) => ShortStr::from_utf8(name.clone()),
            _ => None,
        };
        let (routing, delayed) = match options.kind {
            ExchangeKind::DelayedMessage => (
                delayed::routing_kind(&options.arguments).unwrap_or(ExchangeKind::Direct),
                Some(delayed::Delayed::default()),
            ),
            ExchangeKind::MessageDeduplication => (ExchangeKind::Fanout, None),
            kind => (kind, None),
        };
        let dedup = (options.kind == ExchangeKind::MessageDeduplication)
            .then(|| crate::dedup::cache_for(&options.arguments));
        Arc::new(Exchange {
            name,
            options,
            alternate_exchange,
            routing,
            delayed,
            dedup,
            applied: Default::default(),
            bindings: RwLock::new(Bindings::default()),
            counters: Default::default(),
        })
    }

    /// The policies that apply now.
    pub fn applied_policy(&self) -> Arc<crate::queue::policy::Applied> {
        self.applied.load_full()
    }

    /// Makes `applied` this exchange's policy.
    pub fn apply_policy(&self, applied: crate::queue::policy::Applied) {
        self.applied.store(Arc::new(applied));
    }

    /// Where unroutable messages go: the `alternate-exchange` argument, else the policy's.
    pub fn effective_alternate_exchange(&self) -> Option<ShortStr> {
        if self.alternate_exchange.is_some() {
            return self.alternate_exchange.clone();
        }
        self.applied.load().alternate_exchange(None)
    }

    /// Adds a binding; binding the same thing twice is a no-op, as in RabbitMQ.
    pub fn bind(
        &self,
        destination: Destination,
        routing_key: ShortStr,
        arguments: FieldTable,
    ) -> Result<(), BindError> {
        let match_mode = match self.routing {
            ExchangeKind::Headers => {
                MatchMode::from_arguments(&arguments).map_err(BindError::InvalidArguments)?
            }
            _ => MatchMode::All,
        };
        let mut b = self.bindings.write();
        let exists = b.all.iter().any(|x| {
            x.destination.is(&destination)
                && x.routing_key == routing_key
                && x.arguments == arguments
        });
        if !exists {
            let id = b.next_id;
            b.next_id += 1;
            let binding = Binding {
                destination,
                routing_key,
                arguments,
                id,
                match_mode,
            };
            b.index(self.routing, &binding);
            b.all.push(binding);
        }
        Ok(())
    }

    /// Removes a binding; returns whether it existed.
    pub fn unbind(
        &self,
        destination: &Destination,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> bool {
        self.remove_where(|x| {
            x.destination.is(destination)
                && x.routing_key == routing_key
                && x.arguments == *arguments
        })
    }

    /// Whether exactly this binding exists.
    pub fn has_binding(
        &self,
        destination: &Destination,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> bool {
        self.bindings.read().all.iter().any(|x| {
            x.destination.is(destination)
                && x.routing_key == routing_key
                && x.arguments == *arguments
        })
    }

    /// Removes every binding to `destination` (it was deleted); returns whether any existed.
    pub fn unbind_all(&self, destination: &Destination) -> bool {
        self.remove_where(|x| x.destination.is(destination))
    }

    fn remove_where(&self, pred: impl Fn(&Binding) -> bool) -> bool {
        let mut b = self.bindings.write();
        let (gone, kept): (Vec<Binding>, Vec<Binding>) = std::mem::take(&mut b.all)
            .into_iter()
            .partition(|x| pred(x));
        b.all = kept;
        for x in &gone {
            b.unindex(self.routing, x);
        }
        !gone.is_empty()
    }

    /// A deduplication exchange's cache.
    pub fn dedup_cache(&self) -> Option<&crate::dedup::DedupCache> {
        self.dedup.as_ref()
    }

    /// How this exchange routes (a delayed exchange: as its `x-delayed-type`).
    pub fn routing_kind(&self) -> ExchangeKind {
        self.routing
    }

    /// Whether any binding has this exchange as its source.
    pub fn has_bindings(&self) -> bool {
        !self.bindings.read().all.is_empty()
    }

    /// Every binding, for listing and for cleanup.
    pub fn bindings(&self) -> Vec<Binding> {
        self.bindings.read().all.clone()
    }

    /// Adds the destinations a message reaches to `out`: direct and topic exchanges route with
    /// each of `routing_keys` (the routing key, then the `CC` and `BCC` ones, see
    /// [`sender_selected`]); fanout and headers exchanges ignore keys. A destination may be
    /// added more than once.
    pub fn route_keys<'a>(
        &self,
        mut routing_keys: impl Iterator<Item = &'a str>,
        headers: Option<&FieldTable>,
        out: &mut Vec<Destination>,
    ) {
        match self.routing {
            ExchangeKind::Direct | ExchangeKind::Topic => {
                routing_keys.for_each(|key| self.route(key, headers, out))
            }
            ExchangeKind::Fanout
            | ExchangeKind::Headers
            | ExchangeKind::DelayedMessage
            | ExchangeKind::MessageDeduplication => {
                if let Some(key) = routing_keys.next() {
                    self.route(key, headers, out);
                }
            }
        }
    }

    /// Adds the destinations a message with `routing_key` and `headers` reaches to `out`.
    pub fn route(
        &self,
        routing_key: &str,
        headers: Option<&FieldTable>,
        out: &mut Vec<Destination>,
    ) {
        if let Some(cache) = &self.dedup {
            if cache.is_duplicate(headers, std::time::Instant::now()) {
                return; // the plugin routes a duplicate nowhere
            }
        }
        let b = self.bindings.read();
        match self.routing {
            ExchangeKind::Direct => {
                if let Some(list) = b.direct.get(routing_key) {
                    out.extend(list.iter().map(|(_, d)| d.clone()));
                }
            }
            ExchangeKind::Fanout => out.extend(b.all.iter().map(|x| x.destination.clone())),
            ExchangeKind::Topic => b.topic.matches(routing_key, out),
            ExchangeKind::DelayedMessage | ExchangeKind::MessageDeduplication => {} // never routing kinds
            ExchangeKind::Headers => out.extend(
                b.all
                    .iter()
                    .filter(|x| headers::matches(x.match_mode, &x.arguments, headers))
                    .map(|x| x.destination.clone()),
            ),
        }
    }
}
