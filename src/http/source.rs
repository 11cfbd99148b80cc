//! What the management API needs from the broker: the one interface the broker implements.
//!
//! Reads are synchronous snapshots (counters are read without locking the data path); changes are
//! async because they may wait for the store. Every change carries the acting [`UserInfo`] so the
//! broker can apply the user's AMQP permissions (configure/write/read regexes) exactly as for an AMQP
//! client, answering [`SourceError::AccessRefused`] when they deny it.

use std::future::Future;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::auth::UserInfo;
use super::error::ApiError;
use super::views::{
    BindingView, ChannelView, ConnectionView, ConsumerView, DestinationType, ExchangeView,
    GotMessage, NodeIdentity, NodeView, OverviewView, PermissionView, PolicyView, QueueView,
    UserView, VhostView,
};

/// Why the broker refused a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// 404: the vhost, queue, exchange, user or connection does not exist.
    NotFound,
    /// 400 `bad_request` with RabbitMQ's reason, e.g. `inequivalent arg 'durable' for queue 'q' in
    /// vhost '/': received 'false' but current is 'true'`, `unknown exchange type 'x'`,
    /// `404 NOT_FOUND - no exchange 'x' in vhost '/'` (publish), or an AMQP error text.
    BadRequest(String),
    /// 401 `not_authorised`: the user's permissions deny it, e.g. `access to queue 'q' in vhost '/'
    /// refused for user 'u'`.
    AccessRefused(String),
    /// 500: the broker failed (store error); never for a client mistake.
    Internal(String),
}

impl From<SourceError> for ApiError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::NotFound => ApiError::NotFound,
            SourceError::BadRequest(reason) => ApiError::BadRequest(reason),
            SourceError::AccessRefused(reason) => ApiError::NotAuthorised(reason),
            SourceError::Internal(reason) => ApiError::Internal(reason),
        }
    }
}

/// Whether a PUT created the object (201) or found an equivalent one (204).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    Created,
    Existed,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueDeclare {
    pub durable: bool,
    pub auto_delete: bool,
    pub arguments: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExchangeDeclare {
    pub kind: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: Map<String, Value>,
}

/// A binding to create or delete. `source` is `""` for the default exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingSpec {
    pub vhost: String,
    pub source: String,
    pub destination: String,
    pub destination_type: DestinationType,
    pub routing_key: String,
    pub arguments: Map<String, Value>,
}

/// A message to publish from `POST /api/exchanges/{v}/{x}/publish`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Publish {
    /// `""` for the default exchange.
    pub exchange: String,
    pub routing_key: String,
    /// AMQP basic properties in RabbitMQ's JSON form (`delivery_mode`, `headers`, `content_type`, …).
    pub properties: Map<String, Value>,
    pub payload: Vec<u8>,
}

/// `ackmode` of `POST /api/queues/{v}/{q}/get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// Take and put back (requeued, so `redelivered` next time).
    AckRequeueTrue,
    /// Take and acknowledge: the messages are gone.
    AckRequeueFalse,
    RejectRequeueTrue,
    /// Take and reject without requeue (dead-lettered where configured).
    RejectRequeueFalse,
}

impl AckMode {
    pub fn parse(mode: &str) -> Option<AckMode> {
        Some(match mode {
            "ack_requeue_true" => AckMode::AckRequeueTrue,
            "ack_requeue_false" => AckMode::AckRequeueFalse,
            "reject_requeue_true" => AckMode::RejectRequeueTrue,
            "reject_requeue_false" => AckMode::RejectRequeueFalse,
            _ => return None,
        })
    }

    pub fn requeue(self) -> bool {
        matches!(self, AckMode::AckRequeueTrue | AckMode::RejectRequeueTrue)
    }
}

/// How a user's password is set by `PUT /api/users/{u}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSpec {
    /// Hash it with the broker's default algorithm.
    Clear(String),
    /// Store a RabbitMQ hash as given (definitions import, `password_hash` in the body).
    Hash { hash: String, algorithm: String },
    /// No password: the user cannot log in with one.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    pub name: String,
    pub password: PasswordSpec,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VhostSpec {
    pub description: String,
    pub tags: Vec<String>,
    pub default_queue_type: Option<String>,
    /// The firehose: `None` leaves it as it is (RabbitMQ's `put_vhost` with `tracing` absent).
    pub tracing: Option<bool>,
}

/// A definitions document as RabbitMQ exports it (`GET /api/definitions`), the input of
/// [`ManagementSource::import_definitions`]. Unknown fields are ignored, missing lists are empty.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Definitions {
    pub rabbit_version: Option<String>,
    pub rabbitmq_version: Option<String>,
    pub users: Vec<DefinitionUser>,
    pub vhosts: Vec<DefinitionVhost>,
    pub permissions: Vec<DefinitionPermission>,
    pub topic_permissions: Vec<Value>,
    pub parameters: Vec<Value>,
    pub global_parameters: Vec<Value>,
    pub policies: Vec<DefinitionPolicy>,
    pub queues: Vec<DefinitionQueue>,
    pub exchanges: Vec<DefinitionExchange>,
    pub bindings: Vec<DefinitionBinding>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DefinitionUser {
    pub name: String,
    #[serde(default)]
    pub password_hash: String,
    #[serde(default)]
    pub hashing_algorithm: Option<String>,
    #[serde(default, deserialize_with = "super::body::tags")]
    pub tags: Vec<String>,
    /// `max-connections`, `max-channels`.
    #[serde(default)]
    pub limits: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DefinitionVhost {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<Value>,
    /// `max-connections`, `max-queues` (RabbitMQ 3.x exports them as `vhost-limits` parameters).
    #[serde(default)]
    pub limits: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DefinitionPermission {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DefinitionPolicy {
    /// Absent in a per-vhost document: the importer fills in the vhost of the request.
    #[serde(default)]
    pub vhost: String,
    pub name: String,
    pub pattern: String,
    #[serde(rename = "apply-to", default = "all")]
    pub apply_to: String,
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub definition: Map<String, Value>,
}

fn all() -> String {
    "all".to_string()
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DefinitionQueue {
    #[serde(default)]
    pub vhost: String,
    pub name: String,
    #[serde(default, deserialize_with = "super::body::lenient_bool")]
    pub durable: bool,
    #[serde(default, deserialize_with = "super::body::lenient_bool")]
    pub auto_delete: bool,
    #[serde(default, deserialize_with = "super::body::arguments")]
    pub arguments: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DefinitionExchange {
    #[serde(default)]
    pub vhost: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "super::body::lenient_bool")]
    pub durable: bool,
    #[serde(default, deserialize_with = "super::body::lenient_bool")]
    pub auto_delete: bool,
    #[serde(default, deserialize_with = "super::body::lenient_bool")]
    pub internal: bool,
    #[serde(default, deserialize_with = "super::body::arguments")]
    pub arguments: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DefinitionBinding {
    #[serde(default)]
    pub vhost: String,
    pub source: String,
    pub destination: String,
    /// `queue` or `exchange`.
    pub destination_type: String,
    #[serde(default)]
    pub routing_key: String,
    #[serde(default, deserialize_with = "super::body::arguments")]
    pub arguments: Map<String, Value>,
}

/// One topic permission: a user's write/read patterns for routing keys on one exchange.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicPermissionView {
    pub user: String,
    pub vhost: String,
    pub exchange: String,
    pub write: String,
    pub read: String,
}

/// Whose limits: a user's (`max-connections`, `max-channels`) or a vhost's
/// (`max-connections`, `max-queues`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitScope {
    User(String),
    Vhost(String),
}

/// The broker, as the management API sees it. Lists are unfiltered: the HTTP layer applies the
/// caller's visibility (vhosts, own connections) and the list parameters.
pub trait ManagementSource: Send + Sync + 'static {
    // ---- reads: snapshots, no awaiting, no lock on the data path ----
    fn identity(&self) -> NodeIdentity;
    fn node(&self) -> NodeView;
    fn overview(&self) -> OverviewView;
    fn cluster_name(&self) -> String;
    fn vhosts(&self) -> Vec<VhostView>;
    fn vhost_exists(&self, vhost: &str) -> bool {
        self.vhosts().iter().any(|v| v.name == vhost)
    }
    /// Every exchange of `vhost` (or of all vhosts), the default one named `""`.
    fn exchanges(&self, vhost: Option<&str>) -> Vec<ExchangeView>;
    fn exchange(&self, vhost: &str, name: &str) -> Option<ExchangeView> {
        self.exchanges(Some(vhost))
            .into_iter()
            .find(|x| x.name == name)
    }
    fn queues(&self, vhost: Option<&str>) -> Vec<QueueView>;
    fn queue(&self, vhost: &str, name: &str) -> Option<QueueView> {
        self.queues(Some(vhost))
            .into_iter()
            .find(|q| q.name == name)
    }
    /// Including the default exchange's implicit binding of every queue (source `""`).
    fn bindings(&self, vhost: Option<&str>) -> Vec<BindingView>;
    fn connections(&self) -> Vec<ConnectionView>;
    fn channels(&self) -> Vec<ChannelView>;
    fn consumers(&self, vhost: Option<&str>) -> Vec<ConsumerView>;
    fn users(&self) -> Vec<UserView>;
    fn permissions(&self) -> Vec<PermissionView>;
    fn policies(&self, vhost: Option<&str>) -> Vec<PolicyView>;
    /// Resource alarms in effect: `memory`, `disk`.
    fn alarms(&self) -> Vec<String>;

    // ---- changes ----
    fn set_cluster_name(
        &self,
        name: String,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;
    fn declare_queue(
        &self,
        user: &UserInfo,
        vhost: &str,
        name: &str,
        spec: QueueDeclare,
    ) -> impl Future<Output = Result<Declared, SourceError>> + Send;
    /// With `if_empty`/`if_unused` unmet: `BadRequest("queue 'q' in vhost '/' not empty")` (or
    /// `in use`), RabbitMQ's texts.
    fn delete_queue(
        &self,
        user: &UserInfo,
        vhost: &str,
        name: &str,
        if_empty: bool,
        if_unused: bool,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;
    /// The number of messages purged.
    fn purge_queue(
        &self,
        user: &UserInfo,
        vhost: &str,
        name: &str,
    ) -> impl Future<Output = Result<u64, SourceError>> + Send;
    fn declare_exchange(
        &self,
        user: &UserInfo,
        vhost: &str,
        name: &str,
        spec: ExchangeDeclare,
    ) -> impl Future<Output = Result<Declared, SourceError>> + Send;
    fn delete_exchange(
        &self,
        user: &UserInfo,
        vhost: &str,
        name: &str,
        if_unused: bool,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;
    fn bind(
        &self,
        user: &UserInfo,
        spec: BindingSpec,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;
    fn unbind(
        &self,
        user: &UserInfo,
        spec: BindingSpec,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;
    /// Whether the message was routed to at least one queue. A missing exchange is
    /// `BadRequest("404 NOT_FOUND - no exchange 'x' in vhost 'v'")`, as RabbitMQ answers.
    fn publish(
        &self,
        user: &UserInfo,
        vhost: &str,
        message: Publish,
    ) -> impl Future<Output = Result<bool, SourceError>> + Send;
    /// Takes up to `count` messages with `basic.get` semantics and settles them per `mode`.
    fn get(
        &self,
        user: &UserInfo,
        vhost: &str,
        queue: &str,
        count: u64,
        mode: AckMode,
    ) -> impl Future<Output = Result<Vec<GotMessage>, SourceError>> + Send;
    /// Closes with `connection.close` 320 CONNECTION_FORCED and `reason` (RabbitMQ's `X-Reason`).
    fn close_connection(
        &self,
        name: &str,
        reason: &str,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;
    fn put_user(
        &self,
        spec: UserSpec,
    ) -> impl Future<Output = Result<Declared, SourceError>> + Send;
    fn delete_user(&self, name: &str) -> impl Future<Output = Result<(), SourceError>> + Send;
    fn put_permission(
        &self,
        permission: PermissionView,
    ) -> impl Future<Output = Result<Declared, SourceError>> + Send;
    fn delete_permission(
        &self,
        user: &str,
        vhost: &str,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;
    /// Creates or updates a vhost; on creation `creator` gets full permissions on it (RabbitMQ does).
    fn put_vhost(
        &self,
        creator: &UserInfo,
        name: &str,
        spec: VhostSpec,
    ) -> impl Future<Output = Result<Declared, SourceError>> + Send;
    fn delete_vhost(&self, name: &str) -> impl Future<Output = Result<(), SourceError>> + Send;
    fn put_policy(
        &self,
        policy: PolicyView,
    ) -> impl Future<Output = Result<Declared, SourceError>> + Send;
    fn delete_policy(
        &self,
        vhost: &str,
        name: &str,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;
    /// Every topic permission.
    fn topic_permissions(&self) -> Vec<TopicPermissionView> {
        Vec::new()
    }
    /// Sets one topic permission (patterns already checked by the caller or refused here).
    fn put_topic_permission(
        &self,
        permission: TopicPermissionView,
    ) -> impl Future<Output = Result<Declared, SourceError>> + Send {
        let _ = permission;
        async {
            Err(SourceError::Internal(
                "topic permissions are not supported".into(),
            ))
        }
    }
    /// Clears a user's topic permissions in a vhost: on one exchange, or all of them.
    fn delete_topic_permissions(
        &self,
        user: &str,
        vhost: &str,
        exchange: Option<&str>,
    ) -> impl Future<Output = Result<(), SourceError>> + Send {
        let _ = (user, vhost, exchange);
        async { Err(SourceError::NotFound) }
    }
    /// The limits set, by user or vhost name (only those with at least one).
    fn limits(&self, users: bool) -> Vec<(String, Map<String, Value>)> {
        let _ = users;
        Vec::new()
    }
    /// Sets (`Some`) or clears (`None`) one limit; a negative value is "unlimited".
    fn set_limit(
        &self,
        scope: LimitScope,
        name: &str,
        value: Option<i64>,
    ) -> impl Future<Output = Result<(), SourceError>> + Send {
        let _ = (scope, name, value);
        async { Err(SourceError::Internal("limits are not supported".into())) }
    }

    /// Global runtime parameters, sorted by name; a source without them has none.
    fn global_parameters(&self) -> Vec<(String, Value)> {
        Vec::new()
    }
    fn put_global_parameter(
        &self,
        name: String,
        value: Value,
    ) -> impl Future<Output = Result<Declared, SourceError>> + Send {
        let _ = (name, value);
        async {
            Err(SourceError::Internal(
                "global parameters are not supported".into(),
            ))
        }
    }
    /// `NotFound` when there is no such parameter.
    fn delete_global_parameter(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<(), SourceError>> + Send {
        let _ = name;
        async { Err(SourceError::NotFound) }
    }

    /// Operator policies (`/api/operator-policies`); a source without them has none.
    fn operator_policies(&self, _vhost: Option<&str>) -> Vec<PolicyView> {
        Vec::new()
    }
    fn put_operator_policy(
        &self,
        _policy: PolicyView,
    ) -> impl Future<Output = Result<Declared, SourceError>> + Send {
        async {
            Err(SourceError::BadRequest(
                "operator policies are not supported here".into(),
            ))
        }
    }
    fn delete_operator_policy(
        &self,
        _vhost: &str,
        _name: &str,
    ) -> impl Future<Output = Result<(), SourceError>> + Send {
        async { Err(SourceError::NotFound) }
    }
    /// All-or-nothing: on error nothing changed (answer 400 with the reason).
    fn import_definitions(
        &self,
        definitions: Definitions,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;
}
