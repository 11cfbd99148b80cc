//! The management API over the real broker: [`BrokerManagement`] answers [`ManagementSource`]
//! from the vhosts, queues, exchanges and counters, and [`BrokerAuth`] checks HTTP Basic
//! credentials against the broker's users.
//!
//! Reads take snapshots (the counters are atomics, a queue's gauges one short lock each); changes
//! go through the same vhost methods the AMQP channel uses, so equivalence checks, reserved names
//! and RabbitMQ's texts are the same, and every publish goes through [`VHost::publish`].
//!
//! Rates come from the sampler in [`super::rates`] ([`run_sampler`]); connections, channels and
//! consumers from the broker's registry (`src/registry.rs`). Users, permissions, topic
//! permissions, vhosts, limits and definitions imports change the access model and the store,
//! and answer once written down.
//!
//! Not there yet (answered as such, never faked): exchanges' message_stats and connections'
//! byte counts.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::{Map, Value};
use warren_protocol::{FieldTable, ShortStr};

use super::amqp_json::{json_to_properties, json_to_table, properties_to_json, table_to_json};
use super::auth::{ManagementAuth, UserInfo};
use super::rates::{Key, RateBook, Sample, Table, Window};
use super::source::{
    AckMode, BindingSpec, Declared, Definitions, ExchangeDeclare, LimitScope, ManagementSource,
    PasswordSpec, Publish, QueueDeclare, SourceError, TopicPermissionView, UserSpec, VhostSpec,
};
use super::views::{
    BindingView, ChannelView, ConnectionRef, ConnectionView, ConsumerView, Counter, Depth,
    DestinationType, ExchangeView, GotMessage, ListenerView, MessageStats, NodeIdentity, NodeView,
    OverviewView, PermissionView, PolicyView, QueueView, UserView, VhostView,
};
use crate::auth::Access as Permit;
use crate::auth::{HashingAlgorithm, ManageError, PasswordHash, User, VhostInfo};
use crate::broker::{Broker, VhostError};
use crate::error::{AmqpError, Refusal};
use crate::exchange::{Destination, Exchange, ExchangeKind, ExchangeOptions};
use crate::ids::ConnectionId;
use crate::message::Message;
use crate::queue::policy::{Policy, PolicyKind};
use crate::queue::{Queue, QueueOptions};
use crate::registry::ConnectionEntry;
use crate::stats;
use crate::vhost::VHost;
use warren_protocol::ReplyCode;

/// The connection id management requests act as: no AMQP connection has it (ids start at 1), so
/// another connection's exclusive queue is as locked to the API as to any other client.
const API_CONNECTION: ConnectionId = ConnectionId(0);

/// The RabbitMQ version Warren answers as (clients gate features on it).
const RABBITMQ_VERSION: &str = "3.13.7";

/// What a queued message costs in memory beyond its body, roughly (see `message.rs`).
const MESSAGE_OVERHEAD: u64 = 192;

/// [`ManagementSource`] over a running broker.
pub struct BrokerManagement {
    broker: Arc<Broker>,
    rates: Arc<RateBook>,
    identity: NodeIdentity,
    started: Instant,
    listeners: Vec<ListenerView>,
    /// The cluster name until one is set (`warren@<hostname>`).
    default_cluster_name: String,
}

impl BrokerManagement {
    /// `listeners`: what the node listens on (AMQP and HTTP), for `/api/overview` and nodes.
    pub fn new(broker: Arc<Broker>, listeners: Vec<ListenerView>) -> Self {
        Self::with_rates(broker, listeners, Arc::default())
    }

    /// Answers rates from `rates`, which [`run_sampler`] keeps up to date.
    pub fn with_rates(
        broker: Arc<Broker>,
        listeners: Vec<ListenerView>,
        rates: Arc<RateBook>,
    ) -> Self {
        let host = hostname();
        BrokerManagement {
            broker,
            rates,
            identity: NodeIdentity {
                node: format!("warren@{host}"),
                product_version: env!("CARGO_PKG_VERSION").into(),
                rabbitmq_version: RABBITMQ_VERSION.into(),
            },
            started: Instant::now(),
            listeners,
            default_cluster_name: format!("warren@{host}"),
        }
    }

    fn policy_views(&self, vhost: Option<&str>, kind: PolicyKind) -> Vec<PolicyView> {
        let mut out = Vec::new();
        for v in self.vhosts_of(vhost) {
            out.extend(v.policies(kind).iter().map(|p| PolicyView {
                vhost: p.vhost.clone(),
                name: p.name.clone(),
                pattern: p.pattern.clone(),
                apply_to: p.apply_to.name().into(),
                priority: p.priority,
                definition: p.definition.clone(),
            }));
        }
        out
    }

    /// Validates and sets a policy; answers once it is written down (as a declare's -ok).
    async fn set_policy(&self, kind: PolicyKind, p: PolicyView) -> Result<Declared, SourceError> {
        let v = self.vhost(&p.vhost)?;
        let policy = Policy::new(
            kind,
            &p.vhost,
            &p.name,
            &p.pattern,
            &p.apply_to,
            p.priority,
            p.definition,
        )
        .map_err(|reason| SourceError::BadRequest(format!("Validation failed\n\n{reason}\n")))?;
        let created = v.put_policy(policy);
        metadata_written(&v).await;
        Ok(if created {
            Declared::Created
        } else {
            Declared::Existed
        })
    }

    async fn clear_policy(
        &self,
        kind: PolicyKind,
        vhost: &str,
        name: &str,
    ) -> Result<(), SourceError> {
        let v = self.vhost(vhost)?;
        if !v.delete_policy(kind, name) {
            return Err(SourceError::NotFound);
        }
        metadata_written(&v).await;
        Ok(())
    }

    fn vhost(&self, name: &str) -> Result<Arc<VHost>, SourceError> {
        self.broker.vhost(name).ok_or(SourceError::NotFound)
    }

    fn vhosts_of(&self, vhost: Option<&str>) -> Vec<Arc<VHost>> {
        match vhost {
            Some(name) => self.broker.vhost(name).into_iter().collect(),
            None => self.broker.vhost_list(),
        }
    }

    /// The acting user's AMQP permission on a resource, as a channel would check it.
    fn permit(
        &self,
        user: &UserInfo,
        vhost: &str,
        access: Permit,
        kind: &str,
        name: &str,
    ) -> Result<(), SourceError> {
        let allowed = self
            .broker
            .users
            .permission(&user.name, vhost)
            .is_some_and(|p| p.pattern(access).is_match(name));
        if allowed {
            Ok(())
        } else {
            Err(SourceError::AccessRefused(format!(
                "access to {kind} '{name}' in vhost '{vhost}' refused for user '{}'",
                user.name
            )))
        }
    }

    fn queue_view(&self, vhost: &str, q: &Queue, rates: &Table) -> QueueView {
        let s = q.stats();
        let applied = q.applied_policy();
        let ready_messages = s.messages_ready;
        let w = rates.queue(vhost, &q.name);
        QueueView {
            vhost: vhost.to_owned(),
            name: q.name.to_string(),
            queue_type: q.queue_type().name().into(),
            durable: q.options.durable,
            auto_delete: q.options.auto_delete,
            exclusive: q.options.exclusive_owner.is_some(),
            arguments: table_to_json(&q.options.arguments),
            state: "running".into(),
            depth: depth(s.messages_ready, s.messages_unacked, &w),
            message_bytes_ready: s.message_bytes_ready,
            messages_paged_out: s.messages_paged_out,
            message_bytes_paged_out: s.message_bytes_paged_out,
            consumers: s.consumers,
            consumer_utilisation: if s.consumers > 0 { 1.0 } else { 0.0 },
            memory: s.message_bytes_ready
                + (ready_messages + s.messages_unacked) * MESSAGE_OVERHEAD
                + MESSAGE_OVERHEAD,
            message_stats: message_stats(&s.messages, &w),
            policy: applied.policy.clone(),
            operator_policy: applied.operator_policy.clone(),
            effective_policy_definition: applied.definition.clone(),
            ..QueueView::default()
        }
    }
}

/// RabbitMQ's `message_stats` from Warren's counters now, with rates from the sampler's window.
fn message_stats(m: &stats::MessageStats, w: &Window) -> MessageStats {
    let c =
        |f: fn(&stats::MessageStats) -> u64| Some(Counter::new(f(m), w.rate(|s| f(&s.messages))));
    MessageStats {
        publish: c(|m| m.published),
        confirm: c(|m| m.confirmed),
        deliver: c(|m| m.delivered_consume_manual_ack),
        deliver_no_ack: c(|m| m.delivered_consume_auto_ack),
        get: c(|m| m.delivered_get_manual_ack),
        get_no_ack: c(|m| m.delivered_get_auto_ack),
        get_empty: c(|m| m.get_empty),
        deliver_get: c(|m| m.delivered()),
        redeliver: c(|m| m.redelivered),
        ack: c(|m| m.acked),
        drop_unroutable: c(|m| m.unroutable_dropped),
        return_unroutable: c(|m| m.unroutable_returned),
        ..MessageStats::default()
    }
}

/// Ready and unacked counts now, with their rates of change from the sampler's window.
fn depth(ready: u64, unacked: u64, w: &Window) -> Depth {
    Depth {
        ready: Counter::new(ready, w.rate(|s| s.ready)),
        unacknowledged: Counter::new(unacked, w.rate(|s| s.unacked)),
    }
}

/// One round of samples: the node, every vhost, queue and channel.
pub fn sample(broker: &Broker) -> Vec<(Key, Sample)> {
    let mut out = Vec::new();
    let mut total = Sample::default();
    for v in broker.vhost_list() {
        let s = v.stats();
        let vs = Sample {
            messages: s.messages,
            ready: s.messages_ready,
            unacked: s.messages_unacked,
            ..Sample::default()
        };
        total.messages += vs.messages;
        total.ready += vs.ready;
        total.unacked += vs.unacked;
        out.push((Key::Vhost(v.name.clone()), vs));
        for q in v.queue_list() {
            let s = q.stats();
            let key = Key::Queue {
                vhost: v.name.clone(),
                name: q.name.to_string(),
            };
            out.push((
                key,
                Sample {
                    messages: s.messages,
                    ready: s.messages_ready,
                    unacked: s.messages_unacked,
                    ..Sample::default()
                },
            ));
        }
        for x in v.exchange_list() {
            let (publish_in, publish_out) = x.counters.snapshot();
            if publish_in == 0 {
                continue;
            }
            let key = Key::Exchange {
                vhost: v.name.clone(),
                name: x.name.to_string(),
            };
            let messages = stats::MessageStats {
                published: publish_in,
                routed: publish_out,
                ..stats::MessageStats::default()
            };
            out.push((
                key,
                Sample {
                    messages,
                    ..Sample::default()
                },
            ));
        }
    }
    out.push((Key::Overview, total));
    for c in broker.registry.list() {
        let counters = c.counters.snapshot();
        let sample = Sample {
            bytes_in: counters.bytes_in,
            bytes_out: counters.bytes_out,
            ..Sample::default()
        };
        out.push((Key::Connection(c.id), sample));
        for (number, stats) in c.channel_stats() {
            let sample = Sample {
                messages: stats.messages,
                ready: 0,
                unacked: stats.messages_unacked,
                ..Sample::default()
            };
            out.push((Key::Channel(c.id, number), sample));
        }
    }
    out
}

/// Samples `broker` into `book` every [`SAMPLE_INTERVAL`] until `stop` is cancelled.
pub async fn run_sampler(
    broker: Arc<Broker>,
    book: Arc<RateBook>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut ticker = tokio::time::interval(super::rates::SAMPLE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => book.record(Instant::now(), sample(&broker)),
            _ = stop.cancelled() => return,
        }
    }
}

fn connection_ref(c: &ConnectionEntry) -> ConnectionRef {
    ConnectionRef {
        name: c.name(),
        peer_host: c.peer.ip().to_string(),
        peer_port: c.peer.port(),
    }
}

fn connection_view(c: &ConnectionEntry, rates: &RateBook) -> ConnectionView {
    let counters = c.counters.snapshot();
    let w = rates.window(&Key::Connection(c.id));
    ConnectionView {
        recv_oct: Counter::new(counters.bytes_in, w.rate(|s| s.bytes_in)),
        send_oct: Counter::new(counters.bytes_out, w.rate(|s| s.bytes_out)),
        recv_cnt: counters.reads,
        send_cnt: counters.writes,
        name: c.name(),
        vhost: c.vhost.clone(),
        user: c.user.clone(),
        host: c.local.ip().to_string(),
        port: c.local.port(),
        peer_host: c.peer.ip().to_string(),
        peer_port: c.peer.port(),
        connected_at_ms: c.connected_at_ms,
        channels: counters.channels,
        channel_max: c.channel_max,
        frame_max: c.frame_max,
        timeout: c.heartbeat,
        auth_mechanism: c.auth_mechanism.clone(),
        ssl: c.ssl,
        client_properties: table_to_json(&c.client_properties),
        state: if c.closing().is_cancelled() {
            "closing".into()
        } else {
            "running".into()
        },
        ..ConnectionView::default()
    }
}

fn exchange_view(vhost: &str, x: &Exchange, rates: &RateBook) -> ExchangeView {
    let (publish_in, publish_out) = x.counters.snapshot();
    // As RabbitMQ: no `message_stats` on an exchange nothing was published to.
    let message_stats = if publish_in == 0 {
        MessageStats::default()
    } else {
        let w = rates.window(&Key::Exchange {
            vhost: vhost.to_owned(),
            name: x.name.to_string(),
        });
        MessageStats {
            publish_in: Some(Counter::new(publish_in, w.rate(|s| s.messages.published))),
            publish_out: Some(Counter::new(publish_out, w.rate(|s| s.messages.routed))),
            ..MessageStats::default()
        }
    };
    ExchangeView {
        message_stats,
        vhost: vhost.to_owned(),
        name: x.name.to_string(),
        kind: x.options.kind.name().into(),
        durable: x.options.durable,
        auto_delete: x.options.auto_delete,
        internal: x.options.internal,
        arguments: table_to_json(&x.options.arguments),
        policy: x.applied_policy().policy.clone(),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// A name from a request as an AMQP short string.
fn short_name(what: &str, name: &str) -> Result<ShortStr, SourceError> {
    ShortStr::try_new(name.to_owned())
        .ok_or_else(|| SourceError::BadRequest(format!("{what} name too long: at most 255 bytes")))
}

fn arguments(map: &Map<String, serde_json::Value>) -> Result<FieldTable, SourceError> {
    json_to_table(map).map_err(SourceError::BadRequest)
}

/// A vhost's refusal as the API answers it: 404 for what does not exist, 401 for access
/// refusals, 400 with RabbitMQ's text (no `CODE - ` prefix) for the rest.
fn refused(e: impl Refusal, vhost: &str) -> SourceError {
    from_amqp(e.reply(vhost))
}

fn from_amqp(e: AmqpError) -> SourceError {
    match e.code {
        ReplyCode::NotFound => SourceError::NotFound,
        ReplyCode::AccessRefused => SourceError::AccessRefused(e.text),
        _ => SourceError::BadRequest(e.text),
    }
}

/// A refused change to users, vhosts or permissions: 404 for what does not exist, else 400
/// with the reason.
fn manage_error(e: ManageError) -> SourceError {
    match e {
        ManageError::NoSuchUser(_) | ManageError::NoSuchVhost(_) => SourceError::NotFound,
        other => SourceError::BadRequest(other.to_string()),
    }
}

/// Waits until the metadata writer has written down every change made so far.
async fn metadata_written(v: &VHost) {
    let Some(store) = v.store() else { return };
    if let Some(seq) = store.metadata_pending() {
        let mut committed = store.metadata_committed();
        let _ = committed.wait_for(|c| *c >= seq).await;
    }
}

impl ManagementSource for BrokerManagement {
    fn identity(&self) -> NodeIdentity {
        self.identity.clone()
    }

    fn node(&self) -> NodeView {
        let config = &self.broker.config;
        let processors = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        NodeView {
            uptime_ms: self.started.elapsed().as_millis() as u64,
            processors,
            os_pid: std::process::id(),
            fd_total: 1024,
            sockets_total: 1024,
            proc_total: 1_048_576,
            mem_used: crate::message::live_message_bytes(),
            mem_limit: config.memory_high_watermark,
            mem_alarm: *self.broker.memory_alarm.borrow(),
            disk_free_limit: config.disk_free_limit,
            disk_free_alarm: *self.broker.disk_alarm.borrow(),
            listeners: self.listeners.clone(),
            db_dir: config.data_dir.display().to_string(),
            ..NodeView::default()
        }
    }

    fn overview(&self) -> OverviewView {
        let s = self.broker.stats();
        let exchanges: usize = self
            .broker
            .vhost_list()
            .iter()
            .map(|v| v.exchange_list().len())
            .sum();
        let w = self.rates.window(&Key::Overview);
        OverviewView {
            cluster_name: self.cluster_name(),
            depth: depth(s.messages_ready, s.messages_unacked, &w),
            message_stats: message_stats(&s.messages, &w),
            connections: s.connections,
            channels: s.channels,
            queues: s.queues,
            exchanges: exchanges as u64,
            consumers: s.consumers,
            listeners: self.listeners.clone(),
            ..OverviewView::default()
        }
    }

    fn cluster_name(&self) -> String {
        self.broker
            .global_parameters
            .cluster_name(&self.default_cluster_name)
    }

    fn vhosts(&self) -> Vec<VhostView> {
        self.broker
            .vhost_list()
            .iter()
            .map(|v| {
                let s = v.stats();
                let info = self.broker.users.vhost(&v.name);
                let w = self.rates.window(&Key::Vhost(v.name.clone()));
                VhostView {
                    name: v.name.clone(),
                    description: info
                        .as_ref()
                        .map(|i| i.description.clone())
                        .unwrap_or_default(),
                    tags: info.as_ref().map(|i| i.tags.clone()).unwrap_or_default(),
                    default_queue_type: info.and_then(|i| i.default_queue_type.clone()),
                    tracing: v.tracing(),
                    depth: depth(s.messages_ready, s.messages_unacked, &w),
                    message_stats: message_stats(&s.messages, &w),
                    ..VhostView::default()
                }
            })
            .collect()
    }

    fn vhost_exists(&self, vhost: &str) -> bool {
        self.broker.vhost(vhost).is_some()
    }

    fn exchanges(&self, vhost: Option<&str>) -> Vec<ExchangeView> {
        let mut out = Vec::new();
        for v in self.vhosts_of(vhost) {
            out.extend(
                v.exchange_list()
                    .iter()
                    .map(|x| exchange_view(&v.name, x, &self.rates)),
            );
        }
        out
    }

    fn exchange(&self, vhost: &str, name: &str) -> Option<ExchangeView> {
        let v = self.broker.vhost(vhost)?;
        let x = v.exchange(name).ok()?;
        Some(exchange_view(vhost, &x, &self.rates))
    }

    /// In RabbitMQ's order, (vhost, name): sorted here as `Arc`s, so that the (large) views
    /// are never moved by a sort.
    fn queues(&self, vhost: Option<&str>) -> Vec<QueueView> {
        let rates = self.rates.table();
        let mut vhosts = self.vhosts_of(vhost);
        vhosts.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out = Vec::new();
        for v in vhosts {
            let mut queues = v.queue_list();
            queues.sort_by(|a, b| a.name.cmp(&b.name));
            out.reserve(queues.len());
            out.extend(queues.iter().map(|q| self.queue_view(&v.name, q, &rates)));
        }
        out
    }

    fn queue(&self, vhost: &str, name: &str) -> Option<QueueView> {
        let v = self.broker.vhost(vhost)?;
        let q = v.queue(name).ok()?;
        Some(self.queue_view(vhost, &q, &self.rates.table()))
    }

    fn bindings(&self, vhost: Option<&str>) -> Vec<BindingView> {
        let mut out = Vec::new();
        for v in self.vhosts_of(vhost) {
            // The default exchange's implicit binding of every queue comes first, as in RabbitMQ.
            for q in v.queue_list() {
                out.push(BindingView {
                    vhost: v.name.clone(),
                    source: String::new(),
                    destination: q.name.to_string(),
                    destination_type: DestinationType::Queue,
                    routing_key: q.name.to_string(),
                    arguments: Map::new(),
                });
            }
            for x in v.exchange_list() {
                if x.name.is_empty() {
                    continue;
                }
                for b in x.bindings() {
                    let (destination, destination_type) = match &b.destination {
                        Destination::Queue(q) => (q.name.to_string(), DestinationType::Queue),
                        Destination::Exchange(d) => (d.name.to_string(), DestinationType::Exchange),
                    };
                    out.push(BindingView {
                        vhost: v.name.clone(),
                        source: x.name.to_string(),
                        destination,
                        destination_type,
                        routing_key: b.routing_key.to_string(),
                        arguments: table_to_json(&b.arguments),
                    });
                }
            }
        }
        out
    }

    fn connections(&self) -> Vec<ConnectionView> {
        self.broker
            .registry
            .list()
            .iter()
            .map(|c| connection_view(c, &self.rates))
            .collect()
    }

    fn channels(&self) -> Vec<ChannelView> {
        let mut out = Vec::new();
        for c in self.broker.registry.list() {
            let connection = connection_ref(&c);
            for ch in c.channels() {
                let w = self.rates.window(&Key::Channel(c.id, ch.number));
                out.push(ChannelView {
                    connection: connection.clone(),
                    number: ch.number,
                    vhost: c.vhost.clone(),
                    user: c.user.clone(),
                    state: "running".into(),
                    consumer_count: ch.stats.consumers,
                    prefetch_count: u32::from(ch.prefetch_count),
                    global_prefetch_count: u32::from(ch.global_prefetch_count),
                    confirm: ch.confirm,
                    transactional: ch.transactional,
                    messages_unacknowledged: ch.stats.messages_unacked,
                    message_stats: message_stats(&ch.stats.messages, &w),
                    ..ChannelView::default()
                });
            }
        }
        out
    }

    fn consumers(&self, vhost: Option<&str>) -> Vec<ConsumerView> {
        let mut out = Vec::new();
        for c in self.broker.registry.list() {
            if vhost.is_some_and(|v| v != c.vhost) {
                continue;
            }
            let connection = connection_ref(&c);
            for ch in c.channels() {
                for consumer in ch.consumers {
                    out.push(ConsumerView {
                        vhost: c.vhost.clone(),
                        queue: consumer.queue,
                        consumer_tag: consumer.tag,
                        connection: connection.clone(),
                        channel_number: ch.number,
                        user: c.user.clone(),
                        ack_required: consumer.ack_required,
                        exclusive: false,
                        prefetch_count: u32::from(consumer.prefetch_count),
                        active: true,
                        arguments: Map::new(),
                        consumer_timeout_ms: 1_800_000,
                    });
                }
            }
        }
        out
    }

    fn users(&self) -> Vec<UserView> {
        self.broker
            .users
            .users()
            .iter()
            .map(|u| UserView {
                name: u.name.clone(),
                tags: u.tags.clone(),
                password_hash: u
                    .password
                    .as_ref()
                    .map(|h| h.to_base64())
                    .unwrap_or_default(),
                hashing_algorithm: u
                    .password
                    .as_ref()
                    .map(|h| h.algorithm().as_str().to_owned())
                    .unwrap_or_else(|| "rabbit_password_hashing_sha256".into()),
                limits: [
                    ("max-connections", u.limits.max_connections),
                    ("max-channels", u.limits.max_channels),
                ]
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_owned(), serde_json::Value::from(v?))))
                .collect(),
            })
            .collect()
    }

    fn permissions(&self) -> Vec<PermissionView> {
        let users = &self.broker.users;
        let mut out = Vec::new();
        for u in users.users() {
            for v in users.vhosts() {
                if let Some(p) = users.permission(&u.name, &v.name) {
                    out.push(PermissionView {
                        user: u.name.clone(),
                        vhost: v.name.clone(),
                        configure: p.configure.as_str().to_owned(),
                        write: p.write.as_str().to_owned(),
                        read: p.read.as_str().to_owned(),
                    });
                }
            }
        }
        out
    }

    fn policies(&self, vhost: Option<&str>) -> Vec<PolicyView> {
        self.policy_views(vhost, PolicyKind::User)
    }

    fn operator_policies(&self, vhost: Option<&str>) -> Vec<PolicyView> {
        self.policy_views(vhost, PolicyKind::Operator)
    }

    async fn put_operator_policy(&self, policy: PolicyView) -> Result<Declared, SourceError> {
        self.set_policy(PolicyKind::Operator, policy).await
    }

    async fn delete_operator_policy(&self, vhost: &str, name: &str) -> Result<(), SourceError> {
        self.clear_policy(PolicyKind::Operator, vhost, name).await
    }

    fn alarms(&self) -> Vec<String> {
        let mut out = Vec::new();
        if *self.broker.memory_alarm.borrow() {
            out.push("memory".into());
        }
        if *self.broker.disk_alarm.borrow() {
            out.push("disk".into());
        }
        out
    }

    async fn set_cluster_name(&self, name: String) -> Result<(), SourceError> {
        // Durable, as RabbitMQ keeps it: a global runtime parameter.
        self.broker.global_parameters.put(
            crate::parameters::CLUSTER_NAME,
            serde_json::Value::String(name),
        );
        self.broker.metadata_written().await;
        Ok(())
    }

    async fn declare_queue(
        &self,
        user: &UserInfo,
        vhost: &str,
        name: &str,
        spec: QueueDeclare,
    ) -> Result<Declared, SourceError> {
        let v = self.vhost(vhost)?;
        self.permit(user, vhost, Permit::Configure, "queue", name)?;
        let queue_name = short_name("queue", name)?;
        let existed = v.queue(name).is_ok();
        if !existed {
            self.broker
                .users
                .check_queue_limit(vhost, name, v.queue_count())
                .map_err(|e| SourceError::BadRequest(e.to_string()))?;
        }
        let options = QueueOptions {
            durable: spec.durable,
            auto_delete: spec.auto_delete,
            exclusive_owner: None,
            arguments: arguments(&spec.arguments)?,
        };
        v.declare_queue(queue_name, false, options)
            .map_err(|e| refused(e, vhost))?;
        Ok(if existed {
            Declared::Existed
        } else {
            Declared::Created
        })
    }

    async fn delete_queue(
        &self,
        user: &UserInfo,
        vhost: &str,
        name: &str,
        if_empty: bool,
        if_unused: bool,
    ) -> Result<(), SourceError> {
        let v = self.vhost(vhost)?;
        v.queue(name).map_err(|_| SourceError::NotFound)?;
        self.permit(user, vhost, Permit::Configure, "queue", name)?;
        v.delete_queue(name, API_CONNECTION, if_unused, if_empty)
            .map(|_| ())
            .map_err(|e| refused(e, vhost))
    }

    async fn purge_queue(
        &self,
        user: &UserInfo,
        vhost: &str,
        name: &str,
    ) -> Result<u64, SourceError> {
        let v = self.vhost(vhost)?;
        let q = v
            .queue_for(name, API_CONNECTION)
            .map_err(|e| refused(e, vhost))?;
        self.permit(user, vhost, Permit::Read, "queue", name)?;
        Ok(u64::from(q.purge()))
    }

    async fn declare_exchange(
        &self,
        user: &UserInfo,
        vhost: &str,
        name: &str,
        spec: ExchangeDeclare,
    ) -> Result<Declared, SourceError> {
        let v = self.vhost(vhost)?;
        self.permit(user, vhost, Permit::Configure, "exchange", name)?;
        let exchange_name = short_name("exchange", name)?;
        let kind = ExchangeKind::from_name(&spec.kind).ok_or_else(|| {
            SourceError::BadRequest(format!("unknown exchange type '{}'", spec.kind))
        })?;
        let existed = v.exchange(name).is_ok();
        let options = ExchangeOptions {
            kind,
            durable: spec.durable,
            auto_delete: spec.auto_delete,
            internal: spec.internal,
            arguments: arguments(&spec.arguments)?,
        };
        v.declare_exchange(exchange_name, &spec.kind, options)
            .map_err(|e| refused(e, vhost))?;
        Ok(if existed {
            Declared::Existed
        } else {
            Declared::Created
        })
    }

    async fn delete_exchange(
        &self,
        user: &UserInfo,
        vhost: &str,
        name: &str,
        if_unused: bool,
    ) -> Result<(), SourceError> {
        let v = self.vhost(vhost)?;
        v.exchange(name).map_err(|_| SourceError::NotFound)?;
        self.permit(user, vhost, Permit::Configure, "exchange", name)?;
        v.delete_exchange(name, if_unused)
            .map_err(|e| refused(e, vhost))
    }

    async fn bind(&self, user: &UserInfo, spec: BindingSpec) -> Result<(), SourceError> {
        let vhost = spec.vhost.as_str();
        let v = self.vhost(vhost)?;
        let kind = match spec.destination_type {
            DestinationType::Queue => "queue",
            DestinationType::Exchange => "exchange",
        };
        self.permit(user, vhost, Permit::Write, kind, &spec.destination)?;
        self.permit(user, vhost, Permit::Read, "exchange", &spec.source)?;
        let routing_key = short_name("routing key", &spec.routing_key)?;
        let args = arguments(&spec.arguments)?;
        match spec.destination_type {
            DestinationType::Queue => v.bind_queue(
                &spec.source,
                &spec.destination,
                API_CONNECTION,
                routing_key,
                args,
            ),
            DestinationType::Exchange => {
                v.bind_exchange(&spec.source, &spec.destination, routing_key, args)
            }
        }
        .map_err(|e| refused(e, vhost))
    }

    async fn unbind(&self, user: &UserInfo, spec: BindingSpec) -> Result<(), SourceError> {
        let vhost = spec.vhost.as_str();
        let v = self.vhost(vhost)?;
        let kind = match spec.destination_type {
            DestinationType::Queue => "queue",
            DestinationType::Exchange => "exchange",
        };
        self.permit(user, vhost, Permit::Write, kind, &spec.destination)?;
        self.permit(user, vhost, Permit::Read, "exchange", &spec.source)?;
        let args = arguments(&spec.arguments)?;
        match spec.destination_type {
            DestinationType::Queue => v.unbind_queue(
                &spec.source,
                &spec.destination,
                API_CONNECTION,
                &spec.routing_key,
                &args,
            ),
            DestinationType::Exchange => {
                v.unbind_exchange(&spec.source, &spec.destination, &spec.routing_key, &args)
            }
        }
        .map_err(|e| refused(e, vhost))
    }

    async fn publish(
        &self,
        user: &UserInfo,
        vhost: &str,
        message: Publish,
    ) -> Result<bool, SourceError> {
        let v = self.vhost(vhost)?;
        let x = v.exchange(&message.exchange).map_err(|_| {
            SourceError::BadRequest(format!(
                "404 NOT_FOUND - no exchange '{}' in vhost '{vhost}'",
                message.exchange
            ))
        })?;
        self.permit(user, vhost, Permit::Write, "exchange", &message.exchange)?;
        if x.options.internal {
            return Err(SourceError::BadRequest(format!(
                "403 ACCESS_REFUSED - cannot publish to internal exchange '{}' in vhost \
                 '{vhost}'",
                message.exchange
            )));
        }
        let properties =
            json_to_properties(&message.properties).map_err(SourceError::BadRequest)?;
        if message.payload.len() as u64 > self.broker.config.max_message_size {
            return Err(SourceError::BadRequest(format!(
                "message size {} is larger than the configured max size {}",
                message.payload.len(),
                self.broker.config.max_message_size
            )));
        }
        let routing_key = short_name("routing key", &message.routing_key)?;
        let m = Message::new(
            x.name.clone(),
            routing_key,
            properties,
            Bytes::from(message.payload),
        );
        // Traced like a channel's publish (RabbitMQ publishes through a direct connection).
        let origin = Arc::new(crate::vhost::TraceOrigin {
            connection: "management API".to_owned(),
            channel: 1,
            user: Arc::from(user.name.as_str()),
        });
        let published = v.publish_traced(&x, Arc::new(m), &origin);
        x.counters.count_publish(published.routed);
        let routed = published.unroutable.is_none();
        let counters = v.api_counters();
        stats::bump(&counters.published);
        stats::bump(if routed {
            &counters.routed
        } else {
            &counters.unroutable_dropped
        });
        Ok(routed)
    }

    async fn get(
        &self,
        user: &UserInfo,
        vhost: &str,
        queue: &str,
        count: u64,
        mode: AckMode,
    ) -> Result<Vec<GotMessage>, SourceError> {
        let v = self.vhost(vhost)?;
        let q = v
            .queue_for(queue, API_CONNECTION)
            .map_err(|e| refused(e, vhost))?;
        self.permit(user, vhost, Permit::Read, "queue", queue)?;
        // Take them all first, then settle: a requeued message must not be taken again.
        let mut taken = Vec::new();
        let mut answers = Vec::new();
        while (taken.len() as u64) < count {
            let Some((m, remaining)) = q.get(false) else {
                break;
            };
            answers.push(GotMessage {
                exchange: m.message.exchange().to_string(),
                routing_key: m.message.routing_key().to_string(),
                redelivered: m.redelivered,
                message_count: u64::from(remaining),
                properties: properties_to_json(&m.delivery_properties(q.queue_type())),
                payload: m.message.body.to_vec(),
            });
            stats::count_delivery(v.api_counters(), true, false, m.redelivered);
            taken.push(m);
        }
        if taken.is_empty() {
            stats::bump(&v.api_counters().get_empty);
        }
        if mode == AckMode::AckRequeueFalse {
            stats::bump_by(&v.api_counters().acked, taken.len() as u64);
        }
        match mode {
            AckMode::AckRequeueFalse => q.settle(taken),
            AckMode::AckRequeueTrue | AckMode::RejectRequeueTrue => q.requeue(taken),
            AckMode::RejectRequeueFalse => q.reject(taken),
        }
        Ok(answers)
    }

    async fn close_connection(&self, name: &str, reason: &str) -> Result<(), SourceError> {
        let entry = self
            .broker
            .registry
            .find(name)
            .ok_or(SourceError::NotFound)?;
        entry.close(reason);
        Ok(())
    }

    async fn put_user(&self, spec: UserSpec) -> Result<Declared, SourceError> {
        let users = &self.broker.users;
        if spec.name.is_empty() {
            return Err(SourceError::BadRequest(
                "user name must not be empty".into(),
            ));
        }
        let existing = users.user(&spec.name);
        let password = match spec.password {
            PasswordSpec::Clear(p) => Some(PasswordHash::new(HashingAlgorithm::default(), &p)),
            PasswordSpec::Hash { hash, algorithm } => {
                let algorithm = HashingAlgorithm::try_from_name(&algorithm).ok_or_else(|| {
                    SourceError::BadRequest(format!("unknown hashing algorithm '{algorithm}'"))
                })?;
                PasswordHash::try_from_base64(algorithm, &hash)
                    .map_err(|e| SourceError::BadRequest(e.to_string()))?
            }
            PasswordSpec::None => None,
        };
        let limits = existing.as_ref().map(|u| u.limits).unwrap_or_default();
        users.put_user(User {
            name: spec.name,
            password,
            tags: spec.tags,
            limits,
        });
        self.broker.metadata_written().await;
        Ok(if existing.is_some() {
            Declared::Existed
        } else {
            Declared::Created
        })
    }

    async fn delete_user(&self, name: &str) -> Result<(), SourceError> {
        self.broker.delete_user(name).map_err(manage_error)?;
        self.broker.metadata_written().await;
        Ok(())
    }

    async fn put_permission(&self, permission: PermissionView) -> Result<Declared, SourceError> {
        let users = &self.broker.users;
        let existed = users
            .permission(&permission.user, &permission.vhost)
            .is_some();
        users
            .set_permissions(
                &permission.user,
                &permission.vhost,
                &permission.configure,
                &permission.write,
                &permission.read,
            )
            .map_err(manage_error)?;
        self.broker.metadata_written().await;
        Ok(if existed {
            Declared::Existed
        } else {
            Declared::Created
        })
    }

    async fn delete_permission(&self, user: &str, vhost: &str) -> Result<(), SourceError> {
        let users = &self.broker.users;
        if users.permission(user, vhost).is_none() {
            return Err(SourceError::NotFound);
        }
        users.clear_permissions(user, vhost).map_err(manage_error)?;
        self.broker.metadata_written().await;
        Ok(())
    }

    async fn put_vhost(
        &self,
        creator: &UserInfo,
        name: &str,
        spec: VhostSpec,
    ) -> Result<Declared, SourceError> {
        let info = VhostInfo {
            name: name.to_owned(),
            description: spec.description,
            tags: spec.tags,
            default_queue_type: spec.default_queue_type,
            limits: Default::default(),
        };
        let created = self.broker.put_vhost(info).map_err(|e| match e {
            VhostError::Manage(e) => manage_error(e),
        })?;
        if created {
            // Whoever creates a vhost over HTTP gets full permissions on it (RabbitMQ does).
            let _ = self
                .broker
                .users
                .set_permissions(&creator.name, name, ".*", ".*", ".*");
        }
        // The firehose switch (`warren ctl trace_on`, rabbitmqadmin, the UI); absent = unchanged.
        if let (Some(on), Some(vhost)) = (spec.tracing, self.broker.vhost(name)) {
            vhost.set_tracing(on);
        }
        self.broker.metadata_written().await;
        Ok(if created {
            Declared::Created
        } else {
            Declared::Existed
        })
    }

    async fn delete_vhost(&self, name: &str) -> Result<(), SourceError> {
        self.broker.delete_vhost(name).map_err(|e| match e {
            VhostError::Manage(e) => manage_error(e),
        })?;
        self.broker.metadata_written().await;
        Ok(())
    }

    fn topic_permissions(&self) -> Vec<TopicPermissionView> {
        self.broker
            .users
            .snapshot()
            .topic_permissions
            .into_iter()
            .map(|p| TopicPermissionView {
                user: p.user,
                vhost: p.vhost,
                exchange: p.exchange,
                write: p.write,
                read: p.read,
            })
            .collect()
    }

    async fn put_topic_permission(&self, p: TopicPermissionView) -> Result<Declared, SourceError> {
        let users = &self.broker.users;
        let existed = users
            .topic_permissions(&p.user, &p.vhost)
            .is_some_and(|by_exchange| by_exchange.contains_key(&p.exchange));
        users
            .set_topic_permissions(&p.user, &p.vhost, &p.exchange, &p.write, &p.read)
            .map_err(manage_error)?;
        self.broker.metadata_written().await;
        Ok(if existed {
            Declared::Existed
        } else {
            Declared::Created
        })
    }

    async fn delete_topic_permissions(
        &self,
        user: &str,
        vhost: &str,
        exchange: Option<&str>,
    ) -> Result<(), SourceError> {
        let users = &self.broker.users;
        let found = users
            .topic_permissions(user, vhost)
            .is_some_and(|by| exchange.map_or(!by.is_empty(), |x| by.contains_key(x)));
        if !found {
            return Err(SourceError::NotFound);
        }
        users
            .clear_topic_permissions(user, vhost, exchange)
            .map_err(manage_error)?;
        self.broker.metadata_written().await;
        Ok(())
    }

    fn limits(&self, users: bool) -> Vec<(String, Map<String, serde_json::Value>)> {
        let defs = self.broker.users.snapshot();
        let to_map = |limits: std::collections::BTreeMap<String, i64>| {
            limits
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::from(v)))
                .collect::<Map<_, _>>()
        };
        let all: Vec<(String, Map<String, serde_json::Value>)> = if users {
            defs.users
                .into_iter()
                .map(|u| (u.name, to_map(u.limits)))
                .collect()
        } else {
            defs.vhosts
                .into_iter()
                .map(|v| (v.name, to_map(v.limits)))
                .collect()
        };
        all.into_iter().filter(|(_, m)| !m.is_empty()).collect()
    }

    async fn set_limit(
        &self,
        scope: LimitScope,
        name: &str,
        value: Option<i64>,
    ) -> Result<(), SourceError> {
        // A negative value is RabbitMQ's "unlimited": the same as no limit.
        let value = value.and_then(|v| u64::try_from(v).ok());
        let users = &self.broker.users;
        match scope {
            LimitScope::User(user) => {
                let mut limits = users.user(&user).ok_or(SourceError::NotFound)?.limits;
                match name {
                    "max-connections" => limits.max_connections = value,
                    "max-channels" => limits.max_channels = value,
                    other => {
                        return Err(SourceError::BadRequest(format!("unknown limit '{other}'")))
                    }
                }
                users.set_user_limits(&user, limits).map_err(manage_error)?;
            }
            LimitScope::Vhost(vhost) => {
                let mut limits = users.vhost(&vhost).ok_or(SourceError::NotFound)?.limits;
                match name {
                    "max-connections" => limits.max_connections = value,
                    "max-queues" => limits.max_queues = value,
                    other => {
                        return Err(SourceError::BadRequest(format!("unknown limit '{other}'")))
                    }
                }
                users
                    .set_vhost_limits(&vhost, limits)
                    .map_err(manage_error)?;
            }
        }
        self.broker.metadata_written().await;
        Ok(())
    }

    async fn put_policy(&self, policy: PolicyView) -> Result<Declared, SourceError> {
        self.set_policy(PolicyKind::User, policy).await
    }

    async fn delete_policy(&self, vhost: &str, name: &str) -> Result<(), SourceError> {
        self.clear_policy(PolicyKind::User, vhost, name).await
    }

    fn global_parameters(&self) -> Vec<(String, Value)> {
        self.broker.global_parameters.list()
    }

    async fn put_global_parameter(
        &self,
        name: String,
        value: Value,
    ) -> Result<Declared, SourceError> {
        let created = self.broker.global_parameters.put(&name, value);
        self.broker.metadata_written().await;
        Ok(if created {
            Declared::Created
        } else {
            Declared::Existed
        })
    }

    async fn delete_global_parameter(&self, name: &str) -> Result<(), SourceError> {
        if !self.broker.global_parameters.delete(name) {
            return Err(SourceError::NotFound);
        }
        self.broker.metadata_written().await;
        Ok(())
    }

    async fn import_definitions(&self, definitions: Definitions) -> Result<(), SourceError> {
        crate::http::definitions_import::import(&self.broker, &definitions)
            .map_err(SourceError::BadRequest)?;
        self.broker.metadata_written().await;
        Ok(())
    }
}

/// [`ManagementAuth`] over the broker's users: the password check is the AMQP login's (PLAIN,
/// constant-time hash comparison), so the loopback-only rule for `guest` applies to HTTP too.
pub struct BrokerAuth {
    broker: Arc<Broker>,
}

impl BrokerAuth {
    pub fn new(broker: Arc<Broker>) -> Self {
        BrokerAuth { broker }
    }
}

impl ManagementAuth for BrokerAuth {
    fn authenticate(
        &self,
        username: &str,
        password: &str,
        peer: Option<IpAddr>,
    ) -> Option<UserInfo> {
        // Without a peer address (never over a socket) the user counts as remote.
        let peer = peer.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let mut response = Vec::with_capacity(username.len() + password.len() + 2);
        response.push(0);
        response.extend_from_slice(username.as_bytes());
        response.push(0);
        response.extend_from_slice(password.as_bytes());
        let user = self
            .broker
            .users
            .login("PLAIN", &response, peer, None)
            .ok()?;
        let users = &self.broker.users;
        let vhosts = users
            .vhosts()
            .iter()
            .filter(|v| users.permission(&user.name, &v.name).is_some())
            .map(|v| v.name.clone())
            .collect();
        Some(UserInfo {
            name: user.name.to_string(),
            tags: user.tags.to_vec(),
            vhosts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn broker(dir: &std::path::Path) -> Arc<Broker> {
        let config = crate::Config {
            data_dir: dir.to_path_buf(),
            ..crate::Config::default()
        };
        Broker::open(config).expect("broker opens")
    }

    #[test]
    fn guest_is_an_administrator_from_loopback_only() {
        let dir = tempfile::tempdir().expect("tmp");
        let b = broker(dir.path());
        let auth = BrokerAuth::new(b.clone());
        let local = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let remote = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
        let guest = auth
            .authenticate("guest", "guest", local)
            .expect("guest logs in");
        assert_eq!(guest.name, "guest");
        assert!(guest.is_admin(), "{guest:?}");
        assert_eq!(guest.vhosts, ["/"]);
        assert_eq!(auth.authenticate("guest", "guest", remote), None);
        assert_eq!(auth.authenticate("guest", "guest", None), None);
        assert_eq!(auth.authenticate("guest", "wrong", local), None);
        assert_eq!(auth.authenticate("nobody", "guest", local), None);
        b.close();
    }
}
