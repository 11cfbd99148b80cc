//! Plain data the broker fills ("views"), and their JSON as RabbitMQ 3.10–3.13 shapes it.
//!
//! The broker knows counters and names; this module knows RabbitMQ's field names, `*_details.rate`
//! nesting, and the constant fields strict clients require (checked against the captured fixtures in
//! tests/fixtures/management/ and the response structs of the Rust `rabbitmq_http_client` crate).

use serde::ser::SerializeMap;
use serde_json::{json, Map, Value};

use super::path::percent_encode;
use super::pick::{FieldOut, Fields, Rate};

/// A monotonically growing count and its recent rate per second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counter {
    pub count: u64,
    pub rate: f64,
}

impl Counter {
    pub fn new(count: u64, rate: f64) -> Self {
        Counter { count, rate }
    }
}

/// `message_stats`: each counter present renders as `name` and `name_details: {rate}`; absent ones
/// are left out, as RabbitMQ leaves out what an object never did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageStats {
    pub publish: Option<Counter>,
    pub publish_in: Option<Counter>,
    pub publish_out: Option<Counter>,
    pub confirm: Option<Counter>,
    pub deliver: Option<Counter>,
    pub deliver_no_ack: Option<Counter>,
    pub get: Option<Counter>,
    pub get_no_ack: Option<Counter>,
    pub get_empty: Option<Counter>,
    pub deliver_get: Option<Counter>,
    pub redeliver: Option<Counter>,
    pub ack: Option<Counter>,
    pub drop_unroutable: Option<Counter>,
    pub return_unroutable: Option<Counter>,
}

impl MessageStats {
    /// `None` when nothing is set (the field is then omitted from the object).
    pub fn to_json(&self) -> Option<Value> {
        let fields = [
            ("publish", self.publish),
            ("publish_in", self.publish_in),
            ("publish_out", self.publish_out),
            ("confirm", self.confirm),
            ("deliver", self.deliver),
            ("deliver_no_ack", self.deliver_no_ack),
            ("get", self.get),
            ("get_no_ack", self.get_no_ack),
            ("get_empty", self.get_empty),
            ("deliver_get", self.deliver_get),
            ("redeliver", self.redeliver),
            ("ack", self.ack),
            ("drop_unroutable", self.drop_unroutable),
            ("return_unroutable", self.return_unroutable),
        ];
        let mut map = Map::new();
        for (name, counter) in fields {
            if let Some(counter) = counter {
                insert_counter(&mut map, name, counter);
            }
        }
        (!map.is_empty()).then_some(Value::Object(map))
    }
}

impl MessageStats {
    pub fn is_empty(&self) -> bool {
        self.sorted().iter().all(|(_, _, c)| c.is_none())
    }

    /// The counters with their two keys, in ascending key order (`x` < `x_details` < `x_…`).
    fn sorted(&self) -> [(&'static str, &'static str, Option<Counter>); 14] {
        [
            ("ack", "ack_details", self.ack),
            ("confirm", "confirm_details", self.confirm),
            ("deliver", "deliver_details", self.deliver),
            ("deliver_get", "deliver_get_details", self.deliver_get),
            (
                "deliver_no_ack",
                "deliver_no_ack_details",
                self.deliver_no_ack,
            ),
            (
                "drop_unroutable",
                "drop_unroutable_details",
                self.drop_unroutable,
            ),
            ("get", "get_details", self.get),
            ("get_empty", "get_empty_details", self.get_empty),
            ("get_no_ack", "get_no_ack_details", self.get_no_ack),
            ("publish", "publish_details", self.publish),
            ("publish_in", "publish_in_details", self.publish_in),
            ("publish_out", "publish_out_details", self.publish_out),
            ("redeliver", "redeliver_details", self.redeliver),
            (
                "return_unroutable",
                "return_unroutable_details",
                self.return_unroutable,
            ),
        ]
    }
}

impl Fields for MessageStats {
    fn fields<M: SerializeMap>(&self, out: &mut FieldOut<'_, M>) -> Result<(), M::Error> {
        for (name, details, counter) in self.sorted() {
            if let Some(counter) = counter {
                out.scalar(name, &counter.count)?;
                out.object(details, &Rate(counter.rate))?;
            }
        }
        Ok(())
    }
}

fn insert_counter(map: &mut Map<String, Value>, name: &str, counter: Counter) {
    map.insert(name.to_string(), json!(counter.count));
    map.insert(format!("{name}_details"), json!({ "rate": counter.rate }));
}

fn rate(rate: f64) -> Value {
    json!({ "rate": rate })
}

/// Message depth of a queue, vhost or the whole node, with rates of change.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Depth {
    pub ready: Counter,
    pub unacknowledged: Counter,
}

impl Depth {
    fn insert(&self, map: &mut Map<String, Value>) {
        let total = self.ready.count + self.unacknowledged.count;
        map.insert("messages".into(), json!(total));
        map.insert(
            "messages_details".into(),
            rate(self.ready.rate + self.unacknowledged.rate),
        );
        insert_counter(map, "messages_ready", self.ready);
        insert_counter(map, "messages_unacknowledged", self.unacknowledged);
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// RFC 3339 with milliseconds and `+00:00`, as RabbitMQ writes `idle_since`.
pub fn format_timestamp_ms(ms: u64) -> String {
    let ((year, month, day), rem) = civil_from_unix(ms as i64 / 1000);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// `YYYY-MM-DD H:MM:SS` in UTC, as RabbitMQ writes a certificate's expiry date.
pub fn format_expiry_date(secs: i64) -> String {
    let ((year, month, day), rem) = civil_from_unix(secs);
    format!(
        "{year:04}-{month:02}-{day:02} {}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The UTC calendar date of Unix seconds, and the seconds into that day.
fn civil_from_unix(secs: i64) -> ((i64, i64, i64), i64) {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    ((year, month, day), rem)
}

/// Who is running the API: fixed facts about this node, filled once by the broker.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeIdentity {
    /// RabbitMQ-style node name, e.g. `warren@hostname`.
    pub node: String,
    pub product_version: String,
    /// The RabbitMQ version Warren answers as, for clients that gate features on it.
    pub rabbitmq_version: String,
}

/// A running node's resource numbers for `/api/nodes`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeView {
    pub uptime_ms: u64,
    pub processors: u32,
    pub os_pid: u32,
    pub run_queue: u32,
    pub fd_used: u64,
    pub fd_total: u64,
    pub sockets_used: u64,
    pub sockets_total: u64,
    /// Tasks in use and the limit (RabbitMQ's Erlang process counts; Warren's own measure).
    pub proc_used: u64,
    pub proc_total: u64,
    pub mem_used: u64,
    pub mem_limit: u64,
    pub mem_alarm: bool,
    pub disk_free: u64,
    pub disk_free_limit: u64,
    pub disk_free_alarm: bool,
    pub being_drained: bool,
    pub churn: Churn,
    pub listeners: Vec<ListenerView>,
    pub config_files: Vec<String>,
    pub log_files: Vec<String>,
    pub db_dir: String,
}

/// Object churn counters (overview `churn_rates`, node fields).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Churn {
    pub connection_created: Counter,
    pub connection_closed: Counter,
    pub channel_created: Counter,
    pub channel_closed: Counter,
    pub queue_declared: Counter,
    pub queue_created: Counter,
    pub queue_deleted: Counter,
}

impl Churn {
    fn insert(&self, map: &mut Map<String, Value>) {
        insert_counter(map, "channel_closed", self.channel_closed);
        insert_counter(map, "channel_created", self.channel_created);
        insert_counter(map, "connection_closed", self.connection_closed);
        insert_counter(map, "connection_created", self.connection_created);
        insert_counter(map, "queue_created", self.queue_created);
        insert_counter(map, "queue_declared", self.queue_declared);
        insert_counter(map, "queue_deleted", self.queue_deleted);
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListenerView {
    /// `amqp`, `amqp/ssl`, `http`, `https`, `prometheus`, `clustering`.
    pub protocol: String,
    pub ip_address: String,
    pub port: u16,
    /// A TLS listener's certificate files (`--tls-cert`, `--tls-ca`), for the
    /// certificate-expiration health check.
    pub certificates: Option<CertificateFiles>,
}

/// The PEM files a TLS listener presents and trusts.
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateFiles {
    pub cert: std::path::PathBuf,
    pub ca: Option<std::path::PathBuf>,
}

impl ListenerView {
    /// A listener on `address` speaking `protocol`, without TLS.
    pub fn plain(protocol: &str, address: std::net::SocketAddr) -> Self {
        Self {
            protocol: protocol.to_owned(),
            ip_address: address.ip().to_string(),
            port: address.port(),
            certificates: None,
        }
    }

    /// A TLS listener on `address` speaking `protocol` (`amqp/ssl`, `https`).
    pub fn tls(protocol: &str, address: std::net::SocketAddr, files: CertificateFiles) -> Self {
        Self {
            certificates: Some(files),
            ..Self::plain(protocol, address)
        }
    }
}

const EXCHANGE_TYPES: [(&str, &str); 4] = [
    (
        "direct",
        "AMQP direct exchange, as per the AMQP specification",
    ),
    (
        "fanout",
        "AMQP fanout exchange, as per the AMQP specification",
    ),
    (
        "headers",
        "AMQP headers exchange, as per the AMQP specification",
    ),
    (
        "topic",
        "AMQP topic exchange, as per the AMQP specification",
    ),
];

fn exchange_types() -> Value {
    EXCHANGE_TYPES
        .iter()
        .map(|(name, description)| json!({"name": name, "description": description, "enabled": true}))
        .collect()
}

fn listeners_json(node: &NodeIdentity, listeners: &[ListenerView]) -> Value {
    listeners
        .iter()
        .map(|l| {
            json!({"node": node.node, "protocol": l.protocol, "ip_address": l.ip_address,
                   "port": l.port, "socket_opts": []})
        })
        .collect()
}

fn contexts(node: &NodeIdentity, listeners: &[ListenerView]) -> Value {
    listeners
        .iter()
        .filter(|l| l.protocol == "http" || l.protocol == "https")
        .map(|l| {
            json!({"description": "RabbitMQ Management", "node": node.node, "path": "/",
                   "port": l.port.to_string(), "ssl_opts": []})
        })
        .collect()
}

pub fn node_json(id: &NodeIdentity, n: &NodeView) -> Value {
    let mut map = object(json!({
        "name": id.node,
        "type": "disc",
        "running": true,
        "being_drained": n.being_drained,
        "uptime": n.uptime_ms,
        "processors": n.processors,
        "os_pid": n.os_pid.to_string(),
        "run_queue": n.run_queue,
        "fd_used": n.fd_used,
        "fd_used_details": rate(0.0),
        "fd_total": n.fd_total,
        "sockets_used": n.sockets_used,
        "sockets_used_details": rate(0.0),
        "sockets_total": n.sockets_total,
        "proc_used": n.proc_used,
        "proc_used_details": rate(0.0),
        "proc_total": n.proc_total,
        "mem_used": n.mem_used,
        "mem_used_details": rate(0.0),
        "mem_limit": n.mem_limit,
        "mem_alarm": n.mem_alarm,
        "mem_calculation_strategy": "rss",
        "disk_free": n.disk_free,
        "disk_free_details": rate(0.0),
        "disk_free_limit": n.disk_free_limit,
        "disk_free_alarm": n.disk_free_alarm,
        "rates_mode": "basic",
        "net_ticktime": 60,
        "enabled_plugins": ["rabbitmq_management"],
        "applications": [
            {"name": "warren", "description": "Warren AMQP 0-9-1 broker", "version": id.product_version},
            {"name": "rabbit", "description": "RabbitMQ", "version": id.rabbitmq_version},
            {"name": "rabbitmq_management", "description": "RabbitMQ Management Console", "version": id.rabbitmq_version},
        ],
        "auth_mechanisms": [
            {"name": "PLAIN", "description": "SASL PLAIN authentication mechanism", "enabled": true},
            {"name": "AMQPLAIN", "description": "QPid AMQPLAIN mechanism", "enabled": true},
        ],
        "exchange_types": exchange_types(),
        "contexts": contexts(id, &n.listeners),
        "partitions": [],
        "cluster_links": [],
        "config_files": n.config_files,
        "log_files": n.log_files,
        "db_dir": n.db_dir,
    }));
    n.churn.insert(&mut map);
    Value::Object(map)
}

/// `/api/overview`: totals over the whole node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OverviewView {
    pub cluster_name: String,
    pub depth: Depth,
    pub message_stats: MessageStats,
    pub churn: Churn,
    pub connections: u64,
    pub channels: u64,
    pub queues: u64,
    pub exchanges: u64,
    pub consumers: u64,
    pub listeners: Vec<ListenerView>,
}

pub fn overview_json(id: &NodeIdentity, o: &OverviewView) -> Value {
    let mut queue_totals = Map::new();
    o.depth.insert(&mut queue_totals);
    let mut churn_rates = Map::new();
    o.churn.insert(&mut churn_rates);
    json!({
        "management_version": id.rabbitmq_version,
        "rates_mode": "basic",
        "sample_retention_policies": {"global": [600, 3600, 28800, 86400], "basic": [600, 3600], "detailed": [600]},
        "exchange_types": exchange_types(),
        "product_version": id.product_version,
        "product_name": "Warren",
        "rabbitmq_version": id.rabbitmq_version,
        "cluster_name": o.cluster_name,
        "erlang_version": "none",
        "erlang_full_version": format!("Warren {} (Rust)", id.product_version),
        "release_series_support_status": "supported",
        "disable_stats": false,
        "enable_queue_totals": false,
        "message_stats": o.message_stats.to_json().unwrap_or_else(|| json!({})),
        "churn_rates": churn_rates,
        "queue_totals": queue_totals,
        "object_totals": {"channels": o.channels, "connections": o.connections, "consumers": o.consumers,
                          "exchanges": o.exchanges, "queues": o.queues},
        "statistics_db_event_queue": 0,
        "node": id.node,
        "listeners": listeners_json(id, &o.listeners),
        "contexts": contexts(id, &o.listeners),
    })
}

/// Which connection a queue, channel or consumer belongs to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionRef {
    pub name: String,
    pub peer_host: String,
    pub peer_port: u16,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueView {
    pub vhost: String,
    pub name: String,
    /// `classic`, `quorum` or `stream`.
    pub queue_type: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub exclusive: bool,
    pub arguments: Map<String, Value>,
    /// `running` (or `idle`, `crashed`, …).
    pub state: String,
    pub depth: Depth,
    pub message_bytes_ready: u64,
    pub message_bytes_unacknowledged: u64,
    pub messages_persistent: u64,
    pub message_bytes_persistent: u64,
    pub messages_paged_out: u64,
    pub message_bytes_paged_out: u64,
    pub consumers: u64,
    pub consumer_utilisation: f64,
    pub memory: u64,
    /// Milliseconds since the epoch when the queue last went idle; `None` while active.
    pub idle_since_ms: Option<u64>,
    pub policy: Option<String>,
    pub operator_policy: Option<String>,
    pub effective_policy_definition: Map<String, Value>,
    pub exclusive_consumer_tag: Option<String>,
    pub single_active_consumer_tag: Option<String>,
    /// The owning connection of an exclusive queue.
    pub owner: Option<ConnectionRef>,
    pub message_stats: MessageStats,
}

/// The value `queue_json(q)` has at the top-level `key`, for the few keys lists are sorted on, read
/// straight from the view; `None` for any other key (the caller then builds the whole object).
/// Sorting 10,000 queues on these needs no JSON object per queue (issue 13).
pub fn queue_sort_key(q: &QueueView, key: &[String]) -> Option<Option<Value>> {
    let [key] = key else {
        return None;
    };
    let value = match key.as_str() {
        "name" => json!(q.name),
        "vhost" => json!(q.vhost),
        "type" => json!(q.queue_type),
        "state" => json!(q.state),
        "durable" => json!(q.durable),
        "auto_delete" => json!(q.auto_delete),
        "exclusive" => json!(q.exclusive),
        "consumers" => json!(q.consumers),
        "memory" => json!(q.memory),
        "messages" => json!(q.depth.ready.count + q.depth.unacknowledged.count),
        "messages_ready" => json!(q.depth.ready.count),
        "messages_unacknowledged" => json!(q.depth.unacknowledged.count),
        "message_bytes" => json!(q.message_bytes_ready + q.message_bytes_unacknowledged),
        "message_bytes_ready" => json!(q.message_bytes_ready),
        "message_bytes_unacknowledged" => json!(q.message_bytes_unacknowledged),
        _ => return None,
    };
    Some(Some(value))
}

pub fn queue_json(id: &NodeIdentity, q: &QueueView) -> Value {
    let ready_in_memory = q.depth.ready.count.saturating_sub(q.messages_paged_out);
    let bytes = q.message_bytes_ready + q.message_bytes_unacknowledged;
    let mut map = object(json!({
        "name": q.name,
        "vhost": q.vhost,
        "type": q.queue_type,
        "durable": q.durable,
        "auto_delete": q.auto_delete,
        "exclusive": q.exclusive,
        "arguments": q.arguments,
        "node": id.node,
        "state": q.state,
        "consumers": q.consumers,
        "consumer_utilisation": q.consumer_utilisation,
        "consumer_capacity": q.consumer_utilisation,
        "memory": q.memory,
        "policy": q.policy,
        "operator_policy": q.operator_policy,
        "effective_policy_definition": q.effective_policy_definition,
        "exclusive_consumer_tag": q.exclusive_consumer_tag,
        "single_active_consumer_tag": q.single_active_consumer_tag,
        "head_message_timestamp": null,
        "recoverable_slaves": null,
        "message_bytes": bytes,
        "message_bytes_ready": q.message_bytes_ready,
        "message_bytes_unacknowledged": q.message_bytes_unacknowledged,
        "message_bytes_ram": bytes.saturating_sub(q.message_bytes_paged_out),
        "message_bytes_persistent": q.message_bytes_persistent,
        "message_bytes_paged_out": q.message_bytes_paged_out,
        "messages_ram": ready_in_memory + q.depth.unacknowledged.count,
        "messages_ready_ram": ready_in_memory,
        "messages_unacknowledged_ram": q.depth.unacknowledged.count,
        "messages_persistent": q.messages_persistent,
        "messages_paged_out": q.messages_paged_out,
    }));
    q.depth.insert(&mut map);
    if let Some(ms) = q.idle_since_ms {
        map.insert("idle_since".into(), json!(format_timestamp_ms(ms)));
    }
    if let Some(owner) = &q.owner {
        map.insert(
            "owner_pid_details".into(),
            json!({"name": owner.name, "peer_host": owner.peer_host, "peer_port": owner.peer_port}),
        );
    }
    if let Some(stats) = q.message_stats.to_json() {
        map.insert("message_stats".into(), stats);
    }
    Value::Object(map)
}

/// A queue's list row: its view and the node it is on, written as `queue_json` writes it
/// (field for field, in the same key order) without building the JSON.
pub struct QueueRow<'a> {
    pub id: &'a NodeIdentity,
    pub view: QueueView,
}

impl Fields for QueueRow<'_> {
    fn fields<M: SerializeMap>(&self, out: &mut FieldOut<'_, M>) -> Result<(), M::Error> {
        let q = &self.view;
        let ready_in_memory = q.depth.ready.count.saturating_sub(q.messages_paged_out);
        let bytes = q.message_bytes_ready + q.message_bytes_unacknowledged;
        let (ready, unacked) = (q.depth.ready, q.depth.unacknowledged);
        out.map("arguments", &q.arguments)?;
        out.scalar("auto_delete", &q.auto_delete)?;
        out.scalar("consumer_capacity", &q.consumer_utilisation)?;
        out.scalar("consumer_utilisation", &q.consumer_utilisation)?;
        out.scalar("consumers", &q.consumers)?;
        out.scalar("durable", &q.durable)?;
        out.map(
            "effective_policy_definition",
            &q.effective_policy_definition,
        )?;
        out.scalar("exclusive", &q.exclusive)?;
        out.scalar("exclusive_consumer_tag", &q.exclusive_consumer_tag)?;
        out.scalar("head_message_timestamp", &())?;
        if let Some(ms) = q.idle_since_ms {
            out.scalar("idle_since", &format_timestamp_ms(ms))?;
        }
        out.scalar("memory", &q.memory)?;
        out.scalar("message_bytes", &bytes)?;
        out.scalar("message_bytes_paged_out", &q.message_bytes_paged_out)?;
        out.scalar("message_bytes_persistent", &q.message_bytes_persistent)?;
        out.scalar(
            "message_bytes_ram",
            &bytes.saturating_sub(q.message_bytes_paged_out),
        )?;
        out.scalar("message_bytes_ready", &q.message_bytes_ready)?;
        out.scalar(
            "message_bytes_unacknowledged",
            &q.message_bytes_unacknowledged,
        )?;
        if !q.message_stats.is_empty() {
            out.object("message_stats", &q.message_stats)?;
        }
        out.scalar("messages", &(ready.count + unacked.count))?;
        out.object("messages_details", &Rate(ready.rate + unacked.rate))?;
        out.scalar("messages_paged_out", &q.messages_paged_out)?;
        out.scalar("messages_persistent", &q.messages_persistent)?;
        out.scalar("messages_ram", &(ready_in_memory + unacked.count))?;
        out.scalar("messages_ready", &ready.count)?;
        out.object("messages_ready_details", &Rate(ready.rate))?;
        out.scalar("messages_ready_ram", &ready_in_memory)?;
        out.scalar("messages_unacknowledged", &unacked.count)?;
        out.object("messages_unacknowledged_details", &Rate(unacked.rate))?;
        out.scalar("messages_unacknowledged_ram", &unacked.count)?;
        out.scalar("name", &q.name)?;
        out.scalar("node", &self.id.node)?;
        out.scalar("operator_policy", &q.operator_policy)?;
        if let Some(owner) = &q.owner {
            out.object("owner_pid_details", owner)?;
        }
        out.scalar("policy", &q.policy)?;
        out.scalar("recoverable_slaves", &())?;
        out.scalar("single_active_consumer_tag", &q.single_active_consumer_tag)?;
        out.scalar("state", &q.state)?;
        out.scalar("type", &q.queue_type)?;
        out.scalar("vhost", &q.vhost)
    }
}

impl Fields for ConnectionRef {
    fn fields<M: SerializeMap>(&self, out: &mut FieldOut<'_, M>) -> Result<(), M::Error> {
        out.scalar("name", &self.name)?;
        out.scalar("peer_host", &self.peer_host)?;
        out.scalar("peer_port", &self.peer_port)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExchangeView {
    pub vhost: String,
    /// `""` for the default exchange (it is `amq.default` only in paths).
    pub name: String,
    pub kind: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: Map<String, Value>,
    pub policy: Option<String>,
    pub message_stats: MessageStats,
}

pub fn exchange_json(x: &ExchangeView) -> Value {
    let mut map = object(json!({
        "name": x.name,
        "vhost": x.vhost,
        "type": x.kind,
        "durable": x.durable,
        "auto_delete": x.auto_delete,
        "internal": x.internal,
        "arguments": x.arguments,
        "user_who_performed_action": "rmq-internal",
    }));
    if let Some(policy) = &x.policy {
        map.insert("policy".into(), json!(policy));
    }
    if let Some(stats) = x.message_stats.to_json() {
        map.insert("message_stats".into(), stats);
    }
    Value::Object(map)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationType {
    Queue,
    Exchange,
}

impl DestinationType {
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationType::Queue => "queue",
            DestinationType::Exchange => "exchange",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BindingView {
    pub vhost: String,
    /// `""` for the default exchange's implicit bindings.
    pub source: String,
    pub destination: String,
    pub destination_type: DestinationType,
    pub routing_key: String,
    pub arguments: Map<String, Value>,
}

/// RabbitMQ's binding id in paths: the percent-encoded routing key (`~` when empty), and with
/// arguments `{key}~{hash}` (clients treat it as opaque; ours is stable for the same arguments).
pub fn properties_key(routing_key: &str, arguments: &Map<String, Value>) -> String {
    let key = if routing_key.is_empty() && arguments.is_empty() {
        "~".to_string()
    } else {
        percent_encode(routing_key)
    };
    if arguments.is_empty() {
        return key;
    }
    // serde_json's Map is ordered by key, so the serialisation (and hash) is canonical.
    let canonical = serde_json::to_string(arguments).unwrap_or_default();
    let digest = {
        use sha2::Digest;
        sha2::Sha256::digest(canonical.as_bytes())
    };
    let hash = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &digest[..6],
    );
    format!("{key}~{hash}")
}

pub fn binding_json(b: &BindingView) -> Value {
    json!({
        "source": b.source,
        "vhost": b.vhost,
        "destination": b.destination,
        "destination_type": b.destination_type.as_str(),
        "routing_key": b.routing_key,
        "arguments": b.arguments,
        "properties_key": properties_key(&b.routing_key, &b.arguments),
    })
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionView {
    /// RabbitMQ's naming: `"{peer_host}:{peer_port} -> {host}:{port}"`.
    pub name: String,
    pub vhost: String,
    pub user: String,
    pub host: String,
    pub port: u16,
    pub peer_host: String,
    pub peer_port: u16,
    pub connected_at_ms: u64,
    pub channels: u64,
    pub channel_max: u16,
    pub frame_max: u32,
    /// Negotiated heartbeat in seconds.
    pub timeout: u16,
    pub auth_mechanism: String,
    pub ssl: bool,
    /// The client's properties as a JSON object (capabilities, connection_name, product, …).
    pub client_properties: Map<String, Value>,
    pub recv_oct: Counter,
    pub send_oct: Counter,
    pub recv_cnt: u64,
    pub send_cnt: u64,
    pub send_pend: u64,
    /// `running`, `blocked`, `blocking`, `closing`.
    pub state: String,
}

pub fn connection_json(id: &NodeIdentity, c: &ConnectionView) -> Value {
    let user_provided_name = c
        .client_properties
        .get("connection_name")
        .cloned()
        .unwrap_or(Value::Null);
    let mut map = object(json!({
        "name": c.name,
        "node": id.node,
        "type": "network",
        "protocol": "AMQP 0-9-1",
        "state": c.state,
        "vhost": c.vhost,
        "user": c.user,
        "user_who_performed_action": c.user,
        "host": c.host,
        "port": c.port,
        "peer_host": c.peer_host,
        "peer_port": c.peer_port,
        "connected_at": c.connected_at_ms,
        "channels": c.channels,
        "channel_max": c.channel_max,
        "frame_max": c.frame_max,
        "timeout": c.timeout,
        "auth_mechanism": c.auth_mechanism,
        "ssl": c.ssl,
        "ssl_protocol": null,
        "ssl_key_exchange": null,
        "ssl_cipher": null,
        "ssl_hash": null,
        "peer_cert_subject": null,
        "peer_cert_issuer": null,
        "peer_cert_validity": null,
        "client_properties": c.client_properties,
        "recv_cnt": c.recv_cnt,
        "send_cnt": c.send_cnt,
        "send_pend": c.send_pend,
    }));
    insert_counter(&mut map, "recv_oct", c.recv_oct);
    insert_counter(&mut map, "send_oct", c.send_oct);
    if !user_provided_name.is_null() {
        map.insert("user_provided_name".into(), user_provided_name);
    }
    Value::Object(map)
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChannelView {
    pub connection: ConnectionRef,
    pub number: u16,
    pub vhost: String,
    pub user: String,
    /// `running`, `flow`, `closing`.
    pub state: String,
    pub consumer_count: u64,
    pub confirm: bool,
    pub transactional: bool,
    pub prefetch_count: u32,
    pub global_prefetch_count: u32,
    pub messages_unacknowledged: u64,
    pub messages_unconfirmed: u64,
    pub messages_uncommitted: u64,
    pub acks_uncommitted: u64,
    pub idle_since_ms: Option<u64>,
    pub message_stats: MessageStats,
}

/// RabbitMQ names a channel `"{connection name} ({number})"`.
pub fn channel_name(connection: &str, number: u16) -> String {
    format!("{connection} ({number})")
}

pub fn channel_json(id: &NodeIdentity, c: &ChannelView) -> Value {
    let mut map = object(json!({
        "name": channel_name(&c.connection.name, c.number),
        "node": id.node,
        "number": c.number,
        "vhost": c.vhost,
        "user": c.user,
        "user_who_performed_action": c.user,
        "state": c.state,
        "connection_details": {"name": c.connection.name, "peer_host": c.connection.peer_host,
                               "peer_port": c.connection.peer_port},
        "consumer_count": c.consumer_count,
        "confirm": c.confirm,
        "transactional": c.transactional,
        "prefetch_count": c.prefetch_count,
        "global_prefetch_count": c.global_prefetch_count,
        "messages_unacknowledged": c.messages_unacknowledged,
        "messages_unconfirmed": c.messages_unconfirmed,
        "messages_uncommitted": c.messages_uncommitted,
        "acks_uncommitted": c.acks_uncommitted,
        "pending_raft_commands": 0,
    }));
    if let Some(ms) = c.idle_since_ms {
        map.insert("idle_since".into(), json!(format_timestamp_ms(ms)));
    }
    if let Some(stats) = c.message_stats.to_json() {
        map.insert("message_stats".into(), stats);
    }
    Value::Object(map)
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsumerView {
    pub vhost: String,
    pub queue: String,
    pub consumer_tag: String,
    pub connection: ConnectionRef,
    pub channel_number: u16,
    pub user: String,
    pub ack_required: bool,
    pub exclusive: bool,
    pub prefetch_count: u32,
    pub active: bool,
    pub arguments: Map<String, Value>,
    /// Delivery acknowledgement timeout in milliseconds (RabbitMQ's default is 1,800,000).
    pub consumer_timeout_ms: u64,
}

pub fn consumer_json(id: &NodeIdentity, c: &ConsumerView) -> Value {
    json!({
        "consumer_tag": c.consumer_tag,
        "queue": {"name": c.queue, "vhost": c.vhost},
        "channel_details": {
            "name": channel_name(&c.connection.name, c.channel_number),
            "connection_name": c.connection.name,
            "node": id.node,
            "number": c.channel_number,
            "peer_host": c.connection.peer_host,
            "peer_port": c.connection.peer_port,
            "user": c.user,
        },
        "ack_required": c.ack_required,
        "exclusive": c.exclusive,
        "prefetch_count": c.prefetch_count,
        "active": c.active,
        "consumer_timeout": c.consumer_timeout_ms,
        "activity_status": if c.active { "up" } else { "waiting" },
        "arguments": c.arguments,
    })
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct VhostView {
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub default_queue_type: Option<String>,
    pub tracing: bool,
    pub depth: Depth,
    pub message_stats: MessageStats,
    pub recv_oct: Counter,
    pub send_oct: Counter,
}

pub fn vhost_json(id: &NodeIdentity, v: &VhostView) -> Value {
    let mut map = object(json!({
        "name": v.name,
        "description": v.description,
        "tags": v.tags,
        "default_queue_type": v.default_queue_type.as_deref().unwrap_or("undefined"),
        "metadata": {"description": v.description, "tags": v.tags},
        "tracing": v.tracing,
        "cluster_state": {id.node.clone(): "running"},
    }));
    v.depth.insert(&mut map);
    insert_counter(&mut map, "recv_oct", v.recv_oct);
    insert_counter(&mut map, "send_oct", v.send_oct);
    if let Some(stats) = v.message_stats.to_json() {
        map.insert("message_stats".into(), stats);
    }
    Value::Object(map)
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserView {
    pub name: String,
    pub tags: Vec<String>,
    /// Base64 of RabbitMQ's salted hash (4-byte salt + digest); empty for users without a password.
    pub password_hash: String,
    /// `rabbit_password_hashing_sha256` (RabbitMQ's default) or `rabbit_password_hashing_sha512`.
    pub hashing_algorithm: String,
    pub limits: Map<String, Value>,
}

pub fn user_json(u: &UserView) -> Value {
    json!({
        "name": u.name,
        "tags": u.tags,
        "password_hash": u.password_hash,
        "hashing_algorithm": u.hashing_algorithm,
        "limits": u.limits,
    })
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PermissionView {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

pub fn permission_json(p: &PermissionView) -> Value {
    json!({"user": p.user, "vhost": p.vhost, "configure": p.configure, "write": p.write, "read": p.read})
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyView {
    pub vhost: String,
    pub name: String,
    pub pattern: String,
    /// `queues`, `exchanges`, `all`, `classic_queues`, `quorum_queues`, `streams`.
    pub apply_to: String,
    pub priority: i64,
    pub definition: Map<String, Value>,
}

pub fn policy_json(p: &PolicyView) -> Value {
    json!({"vhost": p.vhost, "name": p.name, "pattern": p.pattern, "apply-to": p.apply_to,
           "priority": p.priority, "definition": p.definition})
}

/// A message taken by `POST /api/queues/{v}/{q}/get`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GotMessage {
    pub exchange: String,
    pub routing_key: String,
    pub redelivered: bool,
    /// Messages left in the queue after this one was taken.
    pub message_count: u64,
    /// AMQP basic properties as RabbitMQ's JSON (`content_type`, `headers`, `delivery_mode`, …).
    pub properties: Map<String, Value>,
    pub payload: Vec<u8>,
}

/// RabbitMQ's get answer: `encoding` `auto` gives the payload as a string when it is valid UTF-8,
/// else base64; `base64` always base64. `truncate` cuts the payload (payload_bytes stays the size).
/// Empty properties are `[]`, not `{}` (an Erlang artefact clients rely on).
pub fn got_message_json(m: &GotMessage, force_base64: bool, truncate: Option<u64>) -> Value {
    let cut = truncate.map_or(m.payload.len(), |t| (t as usize).min(m.payload.len()));
    let body = &m.payload[..cut];
    let (payload, encoding) = match std::str::from_utf8(body) {
        Ok(text) if !force_base64 => (text.to_string(), "string"),
        _ => (
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, body),
            "base64",
        ),
    };
    let properties = if m.properties.is_empty() {
        json!([])
    } else {
        Value::Object(m.properties.clone())
    };
    json!({
        "payload_bytes": m.payload.len(),
        "redelivered": m.redelivered,
        "exchange": m.exchange,
        "routing_key": m.routing_key,
        "message_count": m.message_count,
        "properties": properties,
        "payload": payload,
        "payload_encoding": encoding,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_sort_keys_are_the_values_of_the_queue_json() {
        let q = QueueView {
            vhost: "v".into(),
            name: "q".into(),
            queue_type: "classic".into(),
            durable: true,
            depth: Depth {
                ready: Counter::new(3, 0.5),
                unacknowledged: Counter::new(4, 0.0),
            },
            message_bytes_ready: 10,
            message_bytes_unacknowledged: 20,
            consumers: 2,
            memory: 999,
            state: "running".into(),
            ..QueueView::default()
        };
        let id = NodeIdentity {
            node: "warren@h".into(),
            product_version: "0".into(),
            rabbitmq_version: "3.10.8".into(),
        };
        let json = queue_json(&id, &q);
        for key in [
            "name",
            "vhost",
            "type",
            "state",
            "durable",
            "auto_delete",
            "exclusive",
            "consumers",
            "memory",
            "messages",
            "messages_ready",
            "messages_unacknowledged",
            "message_bytes",
            "message_bytes_ready",
            "message_bytes_unacknowledged",
        ] {
            let typed = queue_sort_key(&q, &[key.to_string()]);
            assert_eq!(typed, Some(json.get(key).cloned()), "{key}");
            assert!(json.get(key).is_some(), "{key}");
        }
        // Anything else is read from the JSON.
        assert_eq!(queue_sort_key(&q, &["node".to_string()]), None);
        let rate = ["messages_details".to_string(), "rate".to_string()];
        assert_eq!(queue_sort_key(&q, &rate), None);
    }

    #[test]
    fn queue_rows_write_the_bytes_of_the_queue_json() {
        use crate::http::list::select_columns;
        use crate::http::pick::{Pick, Picked};
        let id = NodeIdentity {
            node: "warren@h".into(),
            product_version: "0".into(),
            rabbitmq_version: "3.10.8".into(),
        };
        let mut arguments = Map::new();
        arguments.insert("x-max-length".into(), json!(10));
        arguments.insert("x-queue-type".into(), json!("classic"));
        let mut definition = Map::new();
        definition.insert("message-ttl".into(), json!(1000));
        let full = QueueView {
            vhost: "v/h".into(),
            name: "q\"\u{1}é".into(),
            queue_type: "quorum".into(),
            durable: true,
            exclusive: true,
            arguments,
            state: "running".into(),
            depth: Depth {
                ready: Counter::new(3, 0.5),
                unacknowledged: Counter::new(4, -1.25),
            },
            message_bytes_ready: 10,
            message_bytes_unacknowledged: 20,
            messages_paged_out: 1,
            message_bytes_paged_out: 5,
            consumers: 2,
            consumer_utilisation: 1.0,
            memory: 999,
            idle_since_ms: Some(1_796_392_500_027),
            policy: Some("p".into()),
            effective_policy_definition: definition,
            owner: Some(ConnectionRef {
                name: "127.0.0.1:1 -> 127.0.0.1:5672".into(),
                peer_host: "127.0.0.1".into(),
                peer_port: 1,
            }),
            message_stats: MessageStats {
                publish: Some(Counter::new(7, 1.5)),
                deliver_get: Some(Counter::new(6, 0.0)),
                return_unroutable: Some(Counter::new(1, 0.2)),
                ack: Some(Counter::new(5, f64::NAN)),
                ..MessageStats::default()
            },
            ..QueueView::default()
        };
        for view in [full, QueueView::default()] {
            let json = queue_json(&id, &view);
            let row = QueueRow { id: &id, view };
            let all = serde_json::to_vec(&Picked(&row, &Pick::All)).unwrap();
            assert_eq!(
                String::from_utf8(all).unwrap(),
                serde_json::to_string(&json).unwrap()
            );
            for columns in [
                "name,messages_details.rate,message_stats.publish_details.rate",
                "arguments.x-max-length,owner_pid_details.peer_port,idle_since,policy",
                "message_stats,message_stats.ack_details.rate,node,effective_policy_definition.x",
                "name.x,messages_ready_details,vhost,type,state",
            ] {
                let columns: Vec<Vec<String>> = columns
                    .split(',')
                    .map(|c| c.split('.').map(str::to_string).collect())
                    .collect();
                let typed = serde_json::to_vec(&Picked(&row, &Pick::of(Some(&columns)))).unwrap();
                let generic = serde_json::to_vec(&select_columns(&json, &columns)).unwrap();
                assert_eq!(
                    String::from_utf8(typed).unwrap(),
                    String::from_utf8(generic).unwrap(),
                    "{columns:?}"
                );
            }
        }
    }

    #[test]
    fn timestamps_format_like_rabbitmq() {
        assert_eq!(format_timestamp_ms(0), "1970-01-01T00:00:00.000+00:00");
        // 2026-12-04T13:55:00.027Z, the fixture's idle_since.
        assert_eq!(
            format_timestamp_ms(1_796_392_500_027),
            "2026-12-04T13:55:00.027+00:00"
        );
        assert_eq!(
            format_timestamp_ms(951_782_400_000),
            "2000-02-29T00:00:00.000+00:00"
        );
    }

    #[test]
    fn properties_keys_follow_rabbitmq() {
        assert_eq!(properties_key("", &Map::new()), "~");
        assert_eq!(properties_key("a.#", &Map::new()), "a.%23");
        assert_eq!(properties_key("q1", &Map::new()), "q1");
        let mut args = Map::new();
        args.insert("x-match".into(), json!("any"));
        let with_args = properties_key("", &args);
        assert!(
            with_args.starts_with('~') && with_args.len() > 2,
            "{with_args}"
        );
        assert_eq!(with_args, properties_key("", &args), "stable");
        assert_ne!(with_args, properties_key("k", &args));
        let mut other = Map::new();
        other.insert("x-match".into(), json!("all"));
        assert_ne!(with_args, properties_key("", &other));
    }

    #[test]
    fn get_encodes_payloads_like_rabbitmq() {
        let m = GotMessage {
            payload: b"hello".to_vec(),
            ..Default::default()
        };
        let out = got_message_json(&m, false, None);
        assert_eq!(
            (out["payload"].as_str(), out["payload_encoding"].as_str()),
            (Some("hello"), Some("string"))
        );
        assert_eq!(out["properties"], json!([]));
        let out = got_message_json(&m, true, Some(2));
        assert_eq!(
            (out["payload"].as_str(), out["payload_bytes"].as_u64()),
            (Some("aGU="), Some(5))
        );
        let binary = GotMessage {
            payload: vec![0xff, 0xfe],
            ..Default::default()
        };
        assert_eq!(
            got_message_json(&binary, false, None)["payload_encoding"],
            "base64"
        );
    }

    #[test]
    fn message_stats_render_counts_and_rates_and_stay_absent_when_empty() {
        assert!(MessageStats::default().to_json().is_none());
        let stats = MessageStats {
            publish: Some(Counter::new(3, 1.5)),
            ..Default::default()
        };
        assert_eq!(
            stats.to_json().unwrap(),
            json!({"publish": 3, "publish_details": {"rate": 1.5}})
        );
    }
}
