//! The endpoint table: a raw path becomes a [`Route`], each route knows its methods, and each
//! (route, method) pair is one small handler over the [`ManagementSource`].

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{json, Value};

use super::auth::{authorize, Access, UserInfo};
use super::body::{
    self, BindingBody, ExchangeDeclareBody, GetBody, PermissionBody, PublishBody, QueueDeclareBody,
    UserBody, VhostBody,
};
use super::certificate_check;
use super::error::{json_bytes_response, json_response, ApiError};
use super::list::ListQuery;
use super::path::{percent_decode, percent_encode};
use super::source::{
    AckMode, BindingSpec, Declared, Definitions, ExchangeDeclare, ManagementSource, PasswordSpec,
    Publish, QueueDeclare, UserSpec, VhostSpec,
};
use super::views::{
    binding_json, channel_json, channel_name, connection_json, consumer_json, exchange_json,
    got_message_json, node_json, overview_json, permission_json, policy_json, properties_key,
    queue_json, queue_sort_key, user_json, vhost_json, BindingView, DestinationType,
    PermissionView, PolicyView, QueueRow,
};

/// The default exchange is `amq.default` in paths and `""` everywhere else.
fn exchange_from_path(name: &str) -> String {
    if name == "amq.default" {
        String::new()
    } else {
        name.to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Overview,
    ClusterName,
    Nodes,
    Node(String),
    Whoami,
    Vhosts,
    Vhost(String),
    VhostPermissions(String),
    VhostConnections(String),
    VhostChannels(String),
    Exchanges(Option<String>),
    Exchange(String, String),
    ExchangePublish(String, String),
    /// (vhost, exchange, true for `source`, false for `destination`)
    ExchangeBindings(String, String, bool),
    Queues(Option<String>),
    Queue(String, String),
    QueueGet(String, String),
    QueueContents(String, String),
    QueueBindings(String, String),
    Bindings(Option<String>),
    BindingPair {
        vhost: String,
        source: String,
        kind: DestinationType,
        destination: String,
    },
    Binding {
        vhost: String,
        source: String,
        kind: DestinationType,
        destination: String,
        props: String,
    },
    Connections,
    Connection(String),
    ConnectionChannels(String),
    Channels,
    Channel(String),
    Consumers(Option<String>),
    Users,
    User(String),
    UserPermissions(String),
    Permissions,
    Permission(String, String),
    Policies(Option<String>),
    Policy(String, String),
    OperatorPolicies(Option<String>),
    OperatorPolicy(String, String),
    Definitions(Option<String>),
    HealthAlarms,
    HealthLocalAlarms,
    HealthPortListener(String),
    HealthProtocolListener(String),
    HealthQuorumCritical,
    HealthCertificateExpiration(String, String),
    HealthVirtualHosts,
    Aliveness(String),
    /// Topic permissions, limits, users/bulk-delete (`access_routes.rs`).
    Access(super::access_routes::AccessRoute),
    /// Runtime parameters, feature flags and the like (`parameter_routes.rs`).
    Parameters(super::parameter_routes::ParameterRoute),
}

impl Route {
    /// The route for decoded path segments after `/api/`, `None` for an unknown path (404).
    pub fn parse(segments: &[String]) -> Option<Route> {
        let s: Vec<&str> = segments.iter().map(String::as_str).collect();
        if let Some(route) = super::access_routes::AccessRoute::parse(&s) {
            return Some(Route::Access(route));
        }
        if let Some(route) = super::parameter_routes::ParameterRoute::parse(&s) {
            return Some(Route::Parameters(route));
        }
        let own = |x: &str| x.to_string();
        let kind = |k: &str| match k {
            "q" => Some(DestinationType::Queue),
            "e" => Some(DestinationType::Exchange),
            _ => None,
        };
        Some(match s.as_slice() {
            ["overview"] => Route::Overview,
            ["cluster-name"] => Route::ClusterName,
            ["nodes"] => Route::Nodes,
            ["nodes", n] => Route::Node(own(n)),
            ["whoami"] => Route::Whoami,
            ["vhosts"] => Route::Vhosts,
            ["vhosts", v] => Route::Vhost(own(v)),
            ["vhosts", v, "permissions"] => Route::VhostPermissions(own(v)),
            ["vhosts", v, "connections"] => Route::VhostConnections(own(v)),
            ["vhosts", v, "channels"] => Route::VhostChannels(own(v)),
            ["exchanges"] => Route::Exchanges(None),
            ["exchanges", v] => Route::Exchanges(Some(own(v))),
            ["exchanges", v, x] => Route::Exchange(own(v), exchange_from_path(x)),
            ["exchanges", v, x, "publish"] => Route::ExchangePublish(own(v), exchange_from_path(x)),
            ["exchanges", v, x, "bindings", "source"] => {
                Route::ExchangeBindings(own(v), exchange_from_path(x), true)
            }
            ["exchanges", v, x, "bindings", "destination"] => {
                Route::ExchangeBindings(own(v), exchange_from_path(x), false)
            }
            ["queues"] => Route::Queues(None),
            ["queues", v] => Route::Queues(Some(own(v))),
            ["queues", v, q] => Route::Queue(own(v), own(q)),
            ["queues", v, q, "get"] => Route::QueueGet(own(v), own(q)),
            ["queues", v, q, "contents"] => Route::QueueContents(own(v), own(q)),
            ["queues", v, q, "bindings"] => Route::QueueBindings(own(v), own(q)),
            ["bindings"] => Route::Bindings(None),
            ["bindings", v] => Route::Bindings(Some(own(v))),
            ["bindings", v, "e", src, k, dst] => Route::BindingPair {
                vhost: own(v),
                source: exchange_from_path(src),
                kind: kind(k)?,
                destination: own(dst),
            },
            ["bindings", v, "e", src, k, dst, props] => Route::Binding {
                vhost: own(v),
                source: exchange_from_path(src),
                kind: kind(k)?,
                destination: own(dst),
                props: own(props),
            },
            ["connections"] => Route::Connections,
            ["connections", c] => Route::Connection(own(c)),
            ["connections", c, "channels"] => Route::ConnectionChannels(own(c)),
            ["channels"] => Route::Channels,
            ["channels", c] => Route::Channel(own(c)),
            ["consumers"] => Route::Consumers(None),
            ["consumers", v] => Route::Consumers(Some(own(v))),
            ["users"] => Route::Users,
            ["users", u] => Route::User(own(u)),
            ["users", u, "permissions"] => Route::UserPermissions(own(u)),
            ["permissions"] => Route::Permissions,
            ["permissions", v, u] => Route::Permission(own(v), own(u)),
            ["policies"] => Route::Policies(None),
            ["policies", v] => Route::Policies(Some(own(v))),
            ["policies", v, n] => Route::Policy(own(v), own(n)),
            ["operator-policies"] => Route::OperatorPolicies(None),
            ["operator-policies", v] => Route::OperatorPolicies(Some(own(v))),
            ["operator-policies", v, n] => Route::OperatorPolicy(own(v), own(n)),
            ["definitions"] => Route::Definitions(None),
            ["definitions", v] => Route::Definitions(Some(own(v))),
            ["health", "checks", "alarms"] => Route::HealthAlarms,
            ["health", "checks", "local-alarms"] => Route::HealthLocalAlarms,
            ["health", "checks", "port-listener", port] => Route::HealthPortListener(own(port)),
            ["health", "checks", "protocol-listener", p] => Route::HealthProtocolListener(own(p)),
            ["health", "checks", "node-is-quorum-critical"] => Route::HealthQuorumCritical,
            ["health", "checks", "certificate-expiration", within, unit] => {
                Route::HealthCertificateExpiration(own(within), own(unit))
            }
            ["health", "checks", "virtual-hosts"] => Route::HealthVirtualHosts,
            ["aliveness-test", v] => Route::Aliveness(own(v)),
            _ => return None,
        })
    }

    /// The methods this route answers; others are 405 with `allow`.
    pub fn methods(&self) -> &'static [Method] {
        const GET: &[Method] = &[Method::GET];
        const GET_PUT: &[Method] = &[Method::GET, Method::PUT];
        const GET_PUT_DELETE: &[Method] = &[Method::GET, Method::PUT, Method::DELETE];
        const GET_DELETE: &[Method] = &[Method::GET, Method::DELETE];
        const GET_POST: &[Method] = &[Method::GET, Method::POST];
        const POST: &[Method] = &[Method::POST];
        const DELETE: &[Method] = &[Method::DELETE];
        match self {
            Route::Access(route) => route.methods(),
            Route::Parameters(route) => route.methods(),
            Route::ClusterName => GET_PUT,
            Route::Vhost(_)
            | Route::Exchange(..)
            | Route::Queue(..)
            | Route::User(_)
            | Route::Permission(..)
            | Route::Policy(..)
            | Route::OperatorPolicy(..) => GET_PUT_DELETE,
            Route::Connection(_) | Route::Binding { .. } => GET_DELETE,
            Route::BindingPair { .. } | Route::Definitions(_) => GET_POST,
            Route::ExchangePublish(..) | Route::QueueGet(..) => POST,
            Route::QueueContents(..) => DELETE,
            _ => GET,
        }
    }
}

/// One request after routing and authentication.
pub struct Request<'a, S> {
    pub source: &'a S,
    pub user: UserInfo,
    pub method: Method,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl<S> Request<'_, S> {
    fn query_flag(&self, key: &str) -> bool {
        self.query.iter().any(|(k, v)| k == key && v == "true")
    }

    fn list(&self, rows: Vec<Value>) -> Result<Response, ApiError> {
        let query = ListQuery::parse(&self.query)?;
        Ok(json_bytes_response(query.apply_json(rows)?))
    }

    /// A list answer honouring the list parameters (`columns`, `sort`, paging).
    pub(super) fn list_rows(&self, rows: Vec<Value>) -> Result<Response, ApiError> {
        self.list(rows)
    }
}

fn ok(value: Value) -> Result<Response, ApiError> {
    Ok(json_response(StatusCode::OK, &value))
}

fn no_content() -> Result<Response, ApiError> {
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn declared(d: Declared) -> Result<Response, ApiError> {
    Ok(match d {
        Declared::Created => StatusCode::CREATED.into_response(),
        Declared::Existed => StatusCode::NO_CONTENT.into_response(),
    })
}

/// Sorts rows by (vhost, name), RabbitMQ's default order for object lists.
fn by_vhost_and_name(rows: &mut [Value]) {
    fn field<'a>(v: &'a Value, key: &str) -> &'a str {
        v.get(key).and_then(Value::as_str).unwrap_or("")
    }
    // Borrowed keys: no allocation per comparison (10,000 queues sort in O(n log n) compares).
    rows.sort_by(|a, b| {
        (field(a, "vhost"), field(a, "name")).cmp(&(field(b, "vhost"), field(b, "name")))
    });
}

/// 404 for a vhost that does not exist (checked before access, as RabbitMQ does), then the caller's
/// access to it.
fn vhost_access<S: ManagementSource>(
    source: &S,
    user: &UserInfo,
    vhost: &str,
) -> Result<(), ApiError> {
    if !source.vhost_exists(vhost) {
        return Err(ApiError::NotFound);
    }
    authorize(user, Access::Vhost(vhost))
}

/// Vhosts whose objects the caller sees in global lists: those it has permissions on (all users,
/// administrators included, as RabbitMQ's `filter_vhost`).
fn visible<'v>(user: &'v UserInfo, scope: &'v Option<String>) -> impl Fn(&str) -> bool + 'v {
    move |vhost: &str| scope.as_deref().is_none_or(|s| s == vhost) && user.can_access_vhost(vhost)
}

pub async fn handle<S: ManagementSource>(
    route: Route,
    req: Request<'_, S>,
) -> Result<Response, ApiError> {
    let source = req.source;
    let user = &req.user;
    let id = source.identity();
    let method = req.method.clone();
    match (route, method) {
        (Route::Access(route), _) => super::access_routes::handle(route, req).await,
        (Route::Parameters(route), _) => super::parameter_routes::handle(route, req).await,
        (Route::Overview, _) => ok(overview_for(source, user)),
        (Route::ClusterName, Method::GET) => ok(json!({ "name": source.cluster_name() })),
        (Route::ClusterName, _) => {
            authorize(user, Access::Administrator)?;
            #[derive(serde::Deserialize)]
            struct Name {
                name: String,
            }
            let Name { name } = body::parse(&req.body)?;
            source.set_cluster_name(name).await?;
            no_content()
        }
        (Route::Nodes, _) => {
            authorize(user, Access::Monitor)?;
            req.list(vec![node_json(&id, &source.node())])
        }
        (Route::Node(name), _) => {
            authorize(user, Access::Monitor)?;
            if name != id.node {
                return Err(ApiError::NotFound);
            }
            ok(node_json(&id, &source.node()))
        }
        (Route::Whoami, _) => ok(json!({ "name": user.name, "tags": user.tags })),
        (Route::Vhosts, _) => {
            let all = user.is_monitor();
            let mut rows: Vec<Value> = source
                .vhosts()
                .iter()
                .filter(|v| all || user.can_access_vhost(&v.name))
                .map(|v| vhost_json(&id, v))
                .collect();
            by_vhost_and_name(&mut rows);
            req.list(rows)
        }
        (Route::Vhost(name), Method::GET) => {
            // RabbitMQ 3.10 answers a single vhost to administrators only.
            authorize(user, Access::Administrator)?;
            let vhost = source
                .vhosts()
                .into_iter()
                .find(|v| v.name == name)
                .ok_or(ApiError::NotFound)?;
            ok(vhost_json(&id, &vhost))
        }
        (Route::Vhost(name), Method::PUT) => {
            authorize(user, Access::Administrator)?;
            let b: VhostBody = body::parse(&req.body)?;
            let spec = VhostSpec {
                description: b.description.unwrap_or_default(),
                tags: b.tags,
                default_queue_type: b.default_queue_type,
                tracing: b.tracing,
            };
            declared(source.put_vhost(user, &name, spec).await?)
        }
        (Route::Vhost(name), _) => {
            authorize(user, Access::Administrator)?;
            source.delete_vhost(&name).await?;
            no_content()
        }
        (Route::VhostPermissions(vhost), _) => {
            authorize(user, Access::Administrator)?;
            if !source.vhost_exists(&vhost) {
                return Err(ApiError::NotFound);
            }
            let rows = source
                .permissions()
                .iter()
                .filter(|p| p.vhost == vhost)
                .map(permission_json)
                .collect();
            req.list(rows)
        }
        (Route::VhostConnections(vhost), _) => {
            vhost_access(source, user, &vhost)?;
            let rows = source
                .connections()
                .iter()
                .filter(|c| c.vhost == vhost && (user.is_monitor() || c.user == user.name))
                .map(|c| connection_json(&id, c))
                .collect();
            req.list(rows)
        }
        (Route::VhostChannels(vhost), _) => {
            vhost_access(source, user, &vhost)?;
            let rows = source
                .channels()
                .iter()
                .filter(|c| c.vhost == vhost && (user.is_monitor() || c.user == user.name))
                .map(|c| channel_json(&id, c))
                .collect();
            req.list(rows)
        }
        (Route::Exchanges(scope), _) => {
            if let Some(vhost) = &scope {
                vhost_access(source, user, vhost)?;
            }
            let see = visible(user, &scope);
            let mut rows: Vec<Value> = source
                .exchanges(scope.as_deref())
                .iter()
                .filter(|x| see(&x.vhost))
                .map(exchange_json)
                .collect();
            by_vhost_and_name(&mut rows);
            req.list(rows)
        }
        (Route::Exchange(vhost, name), Method::GET) => {
            vhost_access(source, user, &vhost)?;
            let exchange = source.exchange(&vhost, &name).ok_or(ApiError::NotFound)?;
            let mut value = exchange_json(&exchange);
            value["incoming"] = json!([]);
            value["outgoing"] = json!([]);
            ok(value)
        }
        (Route::Exchange(vhost, name), Method::PUT) => {
            vhost_access(source, user, &vhost)?;
            let b: ExchangeDeclareBody = body::parse(&req.body)?;
            let spec = ExchangeDeclare {
                kind: b.kind,
                durable: b.durable,
                auto_delete: b.auto_delete,
                internal: b.internal,
                arguments: b.arguments,
            };
            declared(source.declare_exchange(user, &vhost, &name, spec).await?)
        }
        (Route::Exchange(vhost, name), _) => {
            vhost_access(source, user, &vhost)?;
            source
                .delete_exchange(user, &vhost, &name, req.query_flag("if-unused"))
                .await?;
            no_content()
        }
        (Route::ExchangePublish(vhost, exchange), _) => {
            vhost_access(source, user, &vhost)?;
            body::require_keys(
                &req.body,
                &["routing_key", "payload", "payload_encoding", "properties"],
            )?;
            let b: PublishBody = body::parse(&req.body)?;
            let payload = match b.payload_encoding.as_str() {
                "string" => b.payload.into_bytes(),
                "base64" => base64::engine::general_purpose::STANDARD
                    .decode(b.payload.as_bytes())
                    .map_err(|_| ApiError::bad_request("not_base64"))?,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unsupported_encoding {other}"
                    )))
                }
            };
            let message = Publish {
                exchange,
                routing_key: b.routing_key,
                properties: b.properties,
                payload,
            };
            let routed = source.publish(user, &vhost, message).await?;
            ok(json!({ "routed": routed }))
        }
        (Route::ExchangeBindings(vhost, exchange, as_source), _) => {
            vhost_access(source, user, &vhost)?;
            source
                .exchange(&vhost, &exchange)
                .ok_or(ApiError::NotFound)?;
            let rows = source
                .bindings(Some(&vhost))
                .iter()
                .filter(|b| {
                    if as_source {
                        b.source == exchange
                    } else {
                        b.destination_type == DestinationType::Exchange && b.destination == exchange
                    }
                })
                .map(binding_json)
                .collect();
            req.list(rows)
        }
        (Route::Queues(scope), _) => {
            if let Some(vhost) = &scope {
                vhost_access(source, user, vhost)?;
            }
            let see = visible(user, &scope);
            let mut queues = source.queues(scope.as_deref());
            queues.retain(|q| see(&q.vhost));
            // RabbitMQ's default order, (vhost, name), on the typed views, which are written
            // straight to bytes (10,000 queues, issue 13).
            queues.sort_by(|a, b| (&a.vhost, &a.name).cmp(&(&b.vhost, &b.name)));
            let rows = queues
                .into_iter()
                .map(|view| QueueRow { id: &id, view })
                .collect();
            let query = ListQuery::parse(&req.query)?;
            let answer = query.apply_typed(
                rows,
                |r| &r.view.name,
                |r, key| queue_sort_key(&r.view, key),
                |r| queue_json(&id, &r.view),
            )?;
            Ok(json_bytes_response(answer))
        }
        (Route::Queue(vhost, name), Method::GET) => {
            vhost_access(source, user, &vhost)?;
            let queue = source.queue(&vhost, &name).ok_or(ApiError::NotFound)?;
            let mut value = queue_json(&id, &queue);
            let consumers: Vec<Value> = source
                .consumers(Some(&vhost))
                .iter()
                .filter(|c| c.queue == name)
                .map(|c| consumer_json(&id, c))
                .collect();
            value["consumer_details"] = Value::Array(consumers);
            value["deliveries"] = json!([]);
            value["incoming"] = json!([]);
            ok(value)
        }
        (Route::Queue(vhost, name), Method::PUT) => {
            vhost_access(source, user, &vhost)?;
            let b: QueueDeclareBody = body::parse(&req.body)?;
            let spec = QueueDeclare {
                durable: b.durable,
                auto_delete: b.auto_delete,
                arguments: b.arguments,
            };
            declared(source.declare_queue(user, &vhost, &name, spec).await?)
        }
        (Route::Queue(vhost, name), _) => {
            vhost_access(source, user, &vhost)?;
            let (if_empty, if_unused) = (req.query_flag("if-empty"), req.query_flag("if-unused"));
            source
                .delete_queue(user, &vhost, &name, if_empty, if_unused)
                .await?;
            no_content()
        }
        (Route::QueueGet(vhost, name), _) => {
            vhost_access(source, user, &vhost)?;
            body::require_keys(&req.body, &["count", "ackmode", "encoding"])?;
            let b: GetBody = body::parse(&req.body)?;
            let mode = AckMode::parse(&b.ackmode)
                .ok_or_else(|| ApiError::bad_request("invalid ackmode"))?;
            let force_base64 = match b.encoding.as_str() {
                "auto" => false,
                "base64" => true,
                _ => return Err(ApiError::bad_request("invalid encoding")),
            };
            let messages = source.get(user, &vhost, &name, b.count, mode).await?;
            ok(messages
                .iter()
                .map(|m| got_message_json(m, force_base64, b.truncate))
                .collect())
        }
        (Route::QueueContents(vhost, name), _) => {
            vhost_access(source, user, &vhost)?;
            source.purge_queue(user, &vhost, &name).await?;
            no_content()
        }
        (Route::QueueBindings(vhost, name), _) => {
            vhost_access(source, user, &vhost)?;
            source.queue(&vhost, &name).ok_or(ApiError::NotFound)?;
            let rows = source
                .bindings(Some(&vhost))
                .iter()
                .filter(|b| b.destination_type == DestinationType::Queue && b.destination == name)
                .map(binding_json)
                .collect();
            req.list(rows)
        }
        (Route::Bindings(scope), _) => {
            if let Some(vhost) = &scope {
                vhost_access(source, user, vhost)?;
            }
            let see = visible(user, &scope);
            let rows = source
                .bindings(scope.as_deref())
                .iter()
                .filter(|b| see(&b.vhost))
                .map(binding_json)
                .collect();
            req.list(rows)
        }
        (
            Route::BindingPair {
                vhost,
                source: src,
                kind,
                destination,
            },
            Method::GET,
        ) => {
            vhost_access(source, user, &vhost)?;
            let rows = pair_bindings(source, &vhost, &src, kind, &destination)?
                .iter()
                .map(binding_json)
                .collect();
            req.list(rows)
        }
        (
            Route::BindingPair {
                vhost,
                source: src,
                kind,
                destination,
            },
            _,
        ) => {
            vhost_access(source, user, &vhost)?;
            if source.exchange(&vhost, &src).is_none() {
                return Err(ApiError::NotFoundWith(format!(
                    "no exchange '{src}' in vhost '{vhost}'"
                )));
            }
            let destination_exists = match kind {
                DestinationType::Queue => source.queue(&vhost, &destination).is_some(),
                DestinationType::Exchange => source.exchange(&vhost, &destination).is_some(),
            };
            if !destination_exists {
                let what = kind.as_str();
                return Err(ApiError::NotFoundWith(format!(
                    "no {what} '{destination}' in vhost '{vhost}'"
                )));
            }
            let b: BindingBody = body::parse(&req.body)?;
            let props = properties_key(&b.routing_key, &b.arguments);
            let spec = BindingSpec {
                vhost,
                source: src,
                destination: destination.clone(),
                destination_type: kind,
                routing_key: b.routing_key,
                arguments: b.arguments,
            };
            source.bind(user, spec).await?;
            let location = format!(
                "{}/{}",
                percent_encode(&destination),
                percent_encode(&props)
            );
            let mut response = StatusCode::CREATED.into_response();
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            Ok(response)
        }
        (
            Route::Binding {
                vhost,
                source: src,
                kind,
                destination,
                props,
            },
            method,
        ) => {
            vhost_access(source, user, &vhost)?;
            // The path segment arrives decoded once; RabbitMQ unquotes it once more before
            // comparing, so both `a.%23` and `a.%2523` (what rabbitmqadmin 2.x sends) name `a.#`.
            let wanted = percent_decode(&props, false).unwrap_or_else(|| props.clone());
            let binding = pair_bindings(source, &vhost, &src, kind, &destination)?
                .into_iter()
                .find(|b| {
                    percent_decode(&properties_key(&b.routing_key, &b.arguments), false).as_deref()
                        == Some(&wanted)
                })
                .ok_or(ApiError::NotFound)?;
            if method == Method::GET {
                return ok(binding_json(&binding));
            }
            let spec = BindingSpec {
                vhost: binding.vhost,
                source: binding.source,
                destination: binding.destination,
                destination_type: binding.destination_type,
                routing_key: binding.routing_key,
                arguments: binding.arguments,
            };
            source.unbind(user, spec).await?;
            no_content()
        }
        (Route::Connections, _) => {
            let mut rows: Vec<Value> = source
                .connections()
                .iter()
                .filter(|c| user.is_monitor() || c.user == user.name)
                .map(|c| connection_json(&id, c))
                .collect();
            by_vhost_and_name(&mut rows);
            req.list(rows)
        }
        (Route::Connection(name), method) => {
            let connection = source
                .connections()
                .into_iter()
                .find(|c| c.name == name)
                .ok_or(ApiError::NotFound)?;
            let write = method == Method::DELETE;
            authorize(
                user,
                Access::Owned {
                    owner: &connection.user,
                    write,
                },
            )?;
            if !write {
                // RabbitMQ's single-connection answer has "" where its list has null (no TLS).
                let mut value = connection_json(&id, &connection);
                if let Some(map) = value.as_object_mut() {
                    for (key, field) in map.iter_mut() {
                        if field.is_null()
                            && (key.starts_with("ssl_") || key.starts_with("peer_cert_"))
                        {
                            *field = json!("");
                        }
                    }
                }
                return ok(value);
            }
            let reason = req
                .headers
                .get("x-reason")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("Closed via management plugin");
            source.close_connection(&name, reason).await?;
            no_content()
        }
        (Route::ConnectionChannels(name), _) => {
            let connection = source
                .connections()
                .into_iter()
                .find(|c| c.name == name)
                .ok_or(ApiError::NotFound)?;
            authorize(
                user,
                Access::Owned {
                    owner: &connection.user,
                    write: false,
                },
            )?;
            let rows = source
                .channels()
                .iter()
                .filter(|c| c.connection.name == name)
                .map(|c| channel_json(&id, c))
                .collect();
            req.list(rows)
        }
        (Route::Channels, _) => {
            let rows = source
                .channels()
                .iter()
                .filter(|c| user.is_monitor() || c.user == user.name)
                .map(|c| channel_json(&id, c))
                .collect();
            req.list(rows)
        }
        (Route::Channel(name), _) => {
            let channel = source
                .channels()
                .into_iter()
                .find(|c| channel_name(&c.connection.name, c.number) == name)
                .ok_or(ApiError::NotFound)?;
            authorize(
                user,
                Access::Owned {
                    owner: &channel.user,
                    write: false,
                },
            )?;
            ok(channel_json(&id, &channel))
        }
        (Route::Consumers(scope), _) => {
            if let Some(vhost) = &scope {
                vhost_access(source, user, vhost)?;
            }
            let see = visible(user, &scope);
            let rows = source
                .consumers(scope.as_deref())
                .iter()
                .filter(|c| see(&c.vhost))
                .map(|c| consumer_json(&id, c))
                .collect();
            req.list(rows)
        }
        (Route::Users, _) => {
            authorize(user, Access::Administrator)?;
            let mut rows: Vec<Value> = source.users().iter().map(user_json).collect();
            by_vhost_and_name(&mut rows);
            req.list(rows)
        }
        (Route::User(name), Method::GET) => {
            authorize(user, Access::Administrator)?;
            let found = source
                .users()
                .into_iter()
                .find(|u| u.name == name)
                .ok_or(ApiError::NotFound)?;
            ok(user_json(&found))
        }
        (Route::User(name), Method::PUT) => {
            authorize(user, Access::Administrator)?;
            let b: UserBody = body::parse(&req.body)?;
            let password = match (b.password, b.password_hash) {
                (Some(password), _) => PasswordSpec::Clear(password),
                (None, Some(hash)) if hash.is_empty() => PasswordSpec::None,
                (None, Some(hash)) => PasswordSpec::Hash {
                    hash,
                    algorithm: b
                        .hashing_algorithm
                        .unwrap_or_else(|| "rabbit_password_hashing_sha256".into()),
                },
                (None, None) => PasswordSpec::None,
            };
            declared(
                source
                    .put_user(UserSpec {
                        name,
                        password,
                        tags: b.tags,
                    })
                    .await?,
            )
        }
        (Route::User(name), _) => {
            authorize(user, Access::Administrator)?;
            source.delete_user(&name).await?;
            no_content()
        }
        (Route::UserPermissions(name), _) => {
            authorize(user, Access::Administrator)?;
            if !source.users().iter().any(|u| u.name == name) {
                return Err(ApiError::NotFound);
            }
            req.list(
                source
                    .permissions()
                    .iter()
                    .filter(|p| p.user == name)
                    .map(permission_json)
                    .collect(),
            )
        }
        (Route::Permissions, _) => {
            authorize(user, Access::Administrator)?;
            req.list(source.permissions().iter().map(permission_json).collect())
        }
        (Route::Permission(vhost, name), method) => {
            authorize(user, Access::Administrator)?;
            if !source.vhost_exists(&vhost) {
                return Err(ApiError::NotFound);
            }
            match method {
                Method::GET => {
                    let found = source
                        .permissions()
                        .into_iter()
                        .find(|p| p.vhost == vhost && p.user == name)
                        .ok_or(ApiError::NotFound)?;
                    ok(permission_json(&found))
                }
                Method::PUT => {
                    let b: PermissionBody = body::parse(&req.body)?;
                    if !source.users().iter().any(|u| u.name == name) {
                        return Err(ApiError::bad_request("vhost_or_user_not_found"));
                    }
                    for regex in [&b.configure, &b.write, &b.read] {
                        regex::Regex::new(regex).map_err(|_| {
                            ApiError::bad_request(format!("invalid regex '{regex}'"))
                        })?;
                    }
                    let permission = PermissionView {
                        user: name,
                        vhost,
                        configure: b.configure,
                        write: b.write,
                        read: b.read,
                    };
                    declared(source.put_permission(permission).await?)
                }
                _ => {
                    source.delete_permission(&name, &vhost).await?;
                    no_content()
                }
            }
        }
        (Route::Policies(scope), _) => {
            if let Some(vhost) = &scope {
                vhost_access(source, user, vhost)?;
            }
            let see = visible(user, &scope);
            let mut rows: Vec<Value> = source
                .policies(scope.as_deref())
                .iter()
                .filter(|p| see(&p.vhost))
                .map(policy_json)
                .collect();
            by_vhost_and_name(&mut rows);
            req.list(rows)
        }
        (Route::Policy(vhost, name), method) => {
            if !source.vhost_exists(&vhost) {
                return Err(ApiError::NotFound);
            }
            authorize(user, Access::Policies(&vhost))?;
            match method {
                Method::GET => {
                    let found = source
                        .policies(Some(&vhost))
                        .into_iter()
                        .find(|p| p.name == name)
                        .ok_or(ApiError::NotFound)?;
                    ok(policy_json(&found))
                }
                Method::PUT => {
                    let policy = parse_policy(&req.body, vhost, name)?;
                    declared(source.put_policy(policy).await?)
                }
                _ => {
                    source.delete_policy(&vhost, &name).await?;
                    no_content()
                }
            }
        }
        // RabbitMQ: policymakers read operator policies, administrators change them.
        (Route::OperatorPolicies(scope), _) => {
            if let Some(vhost) = &scope {
                if !source.vhost_exists(vhost) {
                    return Err(ApiError::NotFound);
                }
            }
            if !user.is_policymaker() {
                authorize(user, Access::Administrator)?;
            }
            let mut rows: Vec<Value> = source
                .operator_policies(scope.as_deref())
                .iter()
                .map(policy_json)
                .collect();
            by_vhost_and_name(&mut rows);
            req.list(rows)
        }
        (Route::OperatorPolicy(vhost, name), method) => {
            if !source.vhost_exists(&vhost) {
                return Err(ApiError::NotFound);
            }
            match method {
                Method::GET => {
                    authorize(user, Access::Policies(&vhost))?;
                    let found = source
                        .operator_policies(Some(&vhost))
                        .into_iter()
                        .find(|p| p.name == name)
                        .ok_or(ApiError::NotFound)?;
                    ok(policy_json(&found))
                }
                Method::PUT => {
                    authorize(user, Access::Administrator)?;
                    let policy = parse_policy(&req.body, vhost, name)?;
                    declared(source.put_operator_policy(policy).await?)
                }
                _ => {
                    authorize(user, Access::Administrator)?;
                    source.delete_operator_policy(&vhost, &name).await?;
                    no_content()
                }
            }
        }
        (Route::Definitions(scope), method) => {
            authorize(user, Access::Administrator)?;
            if let Some(vhost) = &scope {
                if !source.vhost_exists(vhost) {
                    return Err(ApiError::NotFound);
                }
            }
            if method == Method::GET {
                return ok(super::definitions::export(source, scope.as_deref()));
            }
            let mut definitions: Definitions = body::parse(&req.body)?;
            if let Some(vhost) = &scope {
                super::definitions::scope_to_vhost(&mut definitions, vhost);
            }
            source.import_definitions(definitions).await?;
            no_content()
        }
        (Route::HealthAlarms, _) | (Route::HealthLocalAlarms, _) => {
            let alarms = source.alarms();
            if alarms.is_empty() {
                return ok(json!({ "status": "ok" }));
            }
            let alarms: Vec<Value> = alarms
                .iter()
                .map(|r| json!({ "node": id.node, "resource": r }))
                .collect();
            Ok(json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "failed", "reason": "There are alarms in effect in the cluster", "alarms": alarms}),
            ))
        }
        (Route::HealthPortListener(port), _) => {
            let port: u16 = port
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid port '{port}'")))?;
            let ports: Vec<u16> = source.node().listeners.iter().map(|l| l.port).collect();
            if ports.contains(&port) {
                return ok(json!({ "status": "ok", "port": port }));
            }
            Ok(json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "failed", "reason": "No active listener", "missing": port, "ports": ports}),
            ))
        }
        (Route::HealthProtocolListener(protocol), _) => {
            let protocol = normalize_protocol(&protocol);
            let mut protocols: Vec<String> = source
                .node()
                .listeners
                .iter()
                .map(|l| l.protocol.clone())
                .collect();
            protocols.dedup();
            if protocols.contains(&protocol) {
                return ok(json!({ "status": "ok", "protocol": protocol }));
            }
            Ok(json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "failed", "reason": "No active listener", "missing": protocol, "protocols": protocols}),
            ))
        }
        // One node holds every replica: nothing can lose quorum by stopping it (RabbitMQ's answer).
        (Route::HealthQuorumCritical, _) => {
            ok(json!({ "status": "ok", "reason": "single node cluster" }))
        }
        (Route::HealthCertificateExpiration(within, unit), _) => {
            let seconds = certificate_check::period_seconds(&within, &unit)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let node = source.identity().node;
            let listeners = source.node().listeners;
            let expired = certificate_check::expiring_listeners(&node, &listeners, now, seconds);
            if expired.is_empty() {
                return ok(json!({ "status": "ok" }));
            }
            Ok(json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "failed", "reason": "Certificates expiring", "expired": expired}),
            ))
        }
        // Every vhost of a running Warren is running: vhosts have no separate supervisor to fail.
        (Route::HealthVirtualHosts, _) => ok(json!({ "status": "ok" })),
        (Route::Aliveness(vhost), _) => {
            vhost_access(source, user, &vhost)?;
            aliveness(source, user, &vhost).await
        }
    }
}

/// The bindings between one source and one destination; 404 when either end is missing.
fn pair_bindings<S: ManagementSource>(
    source: &S,
    vhost: &str,
    src: &str,
    kind: DestinationType,
    destination: &str,
) -> Result<Vec<BindingView>, ApiError> {
    source.exchange(vhost, src).ok_or(ApiError::NotFound)?;
    let destination_exists = match kind {
        DestinationType::Queue => source.queue(vhost, destination).is_some(),
        DestinationType::Exchange => source.exchange(vhost, destination).is_some(),
    };
    if !destination_exists {
        return Err(ApiError::NotFound);
    }
    Ok(source
        .bindings(Some(vhost))
        .into_iter()
        .filter(|b| b.source == src && b.destination_type == kind && b.destination == destination)
        .collect())
}

fn parse_policy(body_bytes: &[u8], vhost: String, name: String) -> Result<PolicyView, ApiError> {
    #[derive(serde::Deserialize)]
    struct PolicyBody {
        pattern: String,
        #[serde(rename = "apply-to", default = "all")]
        apply_to: String,
        #[serde(default, deserialize_with = "lenient_i64")]
        priority: i64,
        definition: serde_json::Map<String, Value>,
    }
    fn all() -> String {
        "all".into()
    }
    fn lenient_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        use serde::Deserialize;
        match Value::deserialize(d)? {
            Value::Number(n) if n.as_i64().is_some() => Ok(n.as_i64().unwrap_or_default()),
            Value::String(s) => s.trim().parse().map_err(serde::de::Error::custom),
            other => Err(serde::de::Error::custom(format!(
                "{other} is not an integer"
            ))),
        }
    }
    let b: PolicyBody = body::parse(body_bytes)?;
    regex::Regex::new(&b.pattern).map_err(|e| {
        ApiError::bad_request(format!(
            "Validation failed\n\npattern should be regular expression but is invalid: {e}\n"
        ))
    })?;
    const APPLY_TO: [&str; 6] = [
        "queues",
        "exchanges",
        "all",
        "classic_queues",
        "quorum_queues",
        "streams",
    ];
    if !APPLY_TO.contains(&b.apply_to.as_str()) {
        return Err(ApiError::bad_request(format!(
            "Validation failed\n\napply-to '{}' unrecognised; should be 'queues', 'exchanges' or 'all'\n",
            b.apply_to
        )));
    }
    Ok(PolicyView {
        vhost,
        name,
        pattern: b.pattern,
        apply_to: b.apply_to,
        priority: b.priority,
        definition: b.definition,
    })
}

/// RabbitMQ's aliveness test: declare `aliveness-test`, publish a message to it and get it back.
async fn aliveness<S: ManagementSource>(
    source: &S,
    user: &UserInfo,
    vhost: &str,
) -> Result<Response, ApiError> {
    const QUEUE: &str = "aliveness-test";
    source
        .declare_queue(user, vhost, QUEUE, QueueDeclare::default())
        .await?;
    let message = Publish {
        exchange: String::new(),
        routing_key: QUEUE.into(),
        payload: b"test_message".to_vec(),
        ..Default::default()
    };
    source.publish(user, vhost, message).await?;
    let got = source
        .get(user, vhost, QUEUE, 1, AckMode::AckRequeueFalse)
        .await?;
    if got.iter().any(|m| m.payload == b"test_message") {
        ok(json!({ "status": "ok" }))
    } else {
        Ok(json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "failed", "reason": "aliveness-test message not received"}),
        ))
    }
}

/// Monitors and administrators see the whole node; other users see totals over their own vhosts and
/// connections, without `consumers`, `node`, `listeners` and `contexts` (as RabbitMQ 3.10 answers).
fn overview_for<S: ManagementSource>(source: &S, user: &UserInfo) -> Value {
    let id = source.identity();
    let mut overview = source.overview();
    if user.is_monitor() {
        return overview_json(&id, &overview);
    }
    let queues: Vec<_> = source
        .queues(None)
        .into_iter()
        .filter(|q| user.can_access_vhost(&q.vhost))
        .collect();
    overview.queues = queues.len() as u64;
    overview.depth = Default::default();
    for q in &queues {
        overview.depth.ready.count += q.depth.ready.count;
        overview.depth.unacknowledged.count += q.depth.unacknowledged.count;
    }
    overview.exchanges = source
        .exchanges(None)
        .iter()
        .filter(|x| user.can_access_vhost(&x.vhost))
        .count() as u64;
    overview.connections = source
        .connections()
        .iter()
        .filter(|c| c.user == user.name)
        .count() as u64;
    overview.channels = source
        .channels()
        .iter()
        .filter(|c| c.user == user.name)
        .count() as u64;
    let mut value = overview_json(&id, &overview);
    if let Some(map) = value.as_object_mut() {
        for key in ["node", "listeners", "contexts"] {
            map.remove(key);
        }
    }
    if let Some(totals) = value
        .get_mut("object_totals")
        .and_then(Value::as_object_mut)
    {
        totals.remove("consumers");
    }
    value
}

/// RabbitMQ's protocol aliases for the listener health check (`amqp091`, `amqp0-9-1` → `amqp`).
fn normalize_protocol(protocol: &str) -> String {
    let p = protocol.to_ascii_lowercase();
    match p.as_str() {
        "amqp" | "amqp091" | "amqp0-9-1" | "amqp0.9.1" | "amqp0_9_1" => "amqp".into(),
        "amqps" | "amqp/ssl" | "amqp091/ssl" => "amqp/ssl".into(),
        "management" => "http".into(),
        "management/ssl" => "https".into(),
        _ => p,
    }
}
