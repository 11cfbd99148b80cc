//! An in-memory broker for the HTTP layer's own tests ONLY: it lets every endpoint be exercised
//! without the real broker. It is not Warren's implementation of [`ManagementSource`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Map, Value};

use super::auth::{ManagementAuth, UserInfo};
use super::source::*;
use super::views::*;

pub const NODE: &str = "warren@test";

#[derive(Default)]
pub struct Inner {
    pub cluster_name: String,
    pub vhosts: Vec<VhostView>,
    pub exchanges: Vec<ExchangeView>,
    pub queues: Vec<(QueueView, VecDeque<GotMessage>)>,
    pub bindings: Vec<BindingView>,
    pub connections: Vec<ConnectionView>,
    pub channels: Vec<ChannelView>,
    pub consumers: Vec<ConsumerView>,
    pub users: Vec<(UserView, Option<String>)>,
    pub permissions: Vec<PermissionView>,
    pub policies: Vec<PolicyView>,
    pub alarms: Vec<String>,
    pub closed: Vec<(String, String)>,
    pub imported: Option<Definitions>,
    pub panic_on_overview: bool,
}

#[derive(Clone, Default)]
pub struct FakeBroker(pub Arc<Mutex<Inner>>);

fn args(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

impl FakeBroker {
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Two vhosts (`/` and `test/vh`), users for each tag, the standard exchanges, `q1` with messages,
    /// a connection with a channel and a consumer: the same scene as the captured fixtures.
    pub fn scene() -> FakeBroker {
        let fake = FakeBroker::default();
        {
            let mut b = fake.lock();
            b.cluster_name = "warren@test".into();
            for (name, description) in [("/", "Default virtual host"), ("test/vh", "fixture vhost")]
            {
                b.vhosts.push(VhostView {
                    name: name.into(),
                    description: description.into(),
                    message_stats: MessageStats {
                        publish: Some(Counter::new(4, 0.0)),
                        ..Default::default()
                    },
                    ..Default::default()
                });
                add_standard_exchanges(&mut b, name);
            }
            for (user, tags) in [
                ("guest", "administrator"),
                ("mon", "monitoring"),
                ("mgmt", "management"),
                ("pm", "policymaker"),
                ("notag", ""),
            ] {
                let tags: Vec<String> = tags
                    .split(',')
                    .filter(|t| !t.is_empty())
                    .map(String::from)
                    .collect();
                let view = UserView {
                    name: user.into(),
                    tags,
                    password_hash: "eWeAkRpULdNla4KqE3FKgaNAR3jYEmI+RqmT3xNIXcfyLwCv".into(),
                    hashing_algorithm: "rabbit_password_hashing_sha256".into(),
                    limits: Map::new(),
                };
                let password = if user == "guest" {
                    "guest".to_string()
                } else {
                    format!("{user}pw")
                };
                b.users.push((view, Some(password)));
                b.permissions.push(PermissionView {
                    user: user.into(),
                    vhost: "/".into(),
                    configure: ".*".into(),
                    write: ".*".into(),
                    read: ".*".into(),
                });
            }
            b.permissions.push(PermissionView {
                user: "guest".into(),
                vhost: "test/vh".into(),
                configure: ".*".into(),
                write: ".*".into(),
                read: ".*".into(),
            });
            b.policies.push(PolicyView {
                vhost: "/".into(),
                name: "maxlen".into(),
                pattern: "^q1$".into(),
                apply_to: "queues".into(),
                priority: 0,
                definition: args(&[("max-length", json!(1000))]),
            });
        }
        let admin = fake.user_info("guest");
        let rt = |f: &FakeBroker| f.clone();
        let f = rt(&fake);
        futures_lite::future::block_on(async {
            let declare = |durable| QueueDeclare {
                durable,
                ..Default::default()
            };
            f.declare_queue(
                &admin,
                "/",
                "q1",
                QueueDeclare {
                    durable: true,
                    auto_delete: false,
                    arguments: args(&[("x-max-length", json!(100))]),
                },
            )
            .await
            .unwrap();
            f.declare_queue(&admin, "/", "q/slash#hash", declare(false))
                .await
                .unwrap();
            f.declare_queue(
                &admin,
                "/",
                "q-consumed",
                QueueDeclare {
                    auto_delete: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            f.declare_queue(&admin, "test/vh", "qv", declare(true))
                .await
                .unwrap();
            let topic = ExchangeDeclare {
                kind: "topic".into(),
                durable: true,
                ..Default::default()
            };
            f.declare_exchange(&admin, "/", "ex1", topic).await.unwrap();
            let bind = |key: &str, arguments| BindingSpec {
                vhost: "/".into(),
                source: "ex1".into(),
                destination: "q1".into(),
                destination_type: DestinationType::Queue,
                routing_key: key.into(),
                arguments,
            };
            f.bind(&admin, bind("a.#", Map::new())).await.unwrap();
            f.bind(&admin, bind("", args(&[("x-match", json!("any"))])))
                .await
                .unwrap();
            for i in 0..3 {
                let properties = if i == 0 {
                    args(&[
                        ("content_type", json!("text/plain")),
                        ("headers", json!({"h": 0})),
                    ])
                } else {
                    Map::new()
                };
                let message = Publish {
                    exchange: String::new(),
                    routing_key: "q1".into(),
                    properties,
                    payload: format!("m{i}").into_bytes(),
                };
                f.publish(&admin, "/", message).await.unwrap();
            }
            let consumed = Publish {
                routing_key: "q-consumed".into(),
                payload: b"x".to_vec(),
                ..Default::default()
            };
            f.publish(&admin, "/", consumed).await.unwrap();
        });
        {
            let mut b = fake.lock();
            let connection = ConnectionRef {
                name: "127.0.0.1:37620 -> 127.0.0.1:5672".into(),
                peer_host: "127.0.0.1".into(),
                peer_port: 37620,
            };
            let mut client_properties = Map::new();
            client_properties.insert("connection_name".into(), json!("fixture-conn"));
            client_properties.insert("product".into(), json!("Pika Python Client Library"));
            client_properties.insert(
                "capabilities".into(),
                json!({"publisher_confirms": true, "basic.nack": true}),
            );
            for (name, user, port) in [
                (connection.name.clone(), "guest", 37620),
                (
                    "127.0.0.1:40000 -> 127.0.0.1:5672".to_string(),
                    "mgmt",
                    40000,
                ),
            ] {
                b.connections.push(ConnectionView {
                    name,
                    vhost: "/".into(),
                    user: user.into(),
                    host: "127.0.0.1".into(),
                    port: 5672,
                    peer_host: "127.0.0.1".into(),
                    peer_port: port,
                    connected_at_ms: 1_796_392_499_061,
                    channels: 1,
                    channel_max: 2047,
                    frame_max: 131072,
                    timeout: 60,
                    auth_mechanism: "PLAIN".into(),
                    client_properties: client_properties.clone(),
                    state: "running".into(),
                    ..Default::default()
                });
            }
            b.channels.push(ChannelView {
                connection: connection.clone(),
                number: 1,
                vhost: "/".into(),
                user: "guest".into(),
                state: "running".into(),
                consumer_count: 1,
                prefetch_count: 10,
                messages_unacknowledged: 1,
                idle_since_ms: Some(1_796_392_500_126),
                message_stats: MessageStats {
                    publish: Some(Counter::new(1, 0.0)),
                    deliver: Some(Counter::new(1, 0.0)),
                    ..Default::default()
                },
                ..Default::default()
            });
            b.consumers.push(ConsumerView {
                vhost: "/".into(),
                queue: "q-consumed".into(),
                consumer_tag: "fixture-ctag".into(),
                connection,
                channel_number: 1,
                user: "guest".into(),
                ack_required: true,
                prefetch_count: 10,
                active: true,
                ..Default::default()
            });
        }
        fake
    }

    pub fn user_info(&self, name: &str) -> UserInfo {
        let b = self.lock();
        let tags = b
            .users
            .iter()
            .find(|(u, _)| u.name == name)
            .map(|(u, _)| u.tags.clone())
            .unwrap_or_default();
        let vhosts = b
            .permissions
            .iter()
            .filter(|p| p.user == name)
            .map(|p| p.vhost.clone())
            .collect();
        UserInfo {
            name: name.into(),
            tags,
            vhosts,
        }
    }
}

fn add_standard_exchanges(b: &mut Inner, vhost: &str) {
    for (name, kind) in [
        ("", "direct"),
        ("amq.direct", "direct"),
        ("amq.fanout", "fanout"),
        ("amq.headers", "headers"),
        ("amq.match", "headers"),
        ("amq.rabbitmq.trace", "topic"),
        ("amq.topic", "topic"),
    ] {
        b.exchanges.push(ExchangeView {
            vhost: vhost.into(),
            name: name.into(),
            kind: kind.into(),
            durable: true,
            internal: name == "amq.rabbitmq.trace",
            message_stats: MessageStats {
                publish_in: name.is_empty().then_some(Counter::new(4, 0.0)),
                publish_out: name.is_empty().then_some(Counter::new(4, 0.0)),
                ..Default::default()
            },
            ..Default::default()
        });
    }
}

fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(p: &[&str], k: &[&str]) -> bool {
        match (p.first(), k.first()) {
            (None, None) => true,
            (Some(&"#"), _) => go(&p[1..], k) || (!k.is_empty() && go(p, &k[1..])),
            (Some(&"*"), Some(_)) => go(&p[1..], &k[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &k[1..]),
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    go(&p, &k)
}

impl ManagementAuth for FakeBroker {
    fn authenticate(
        &self,
        username: &str,
        password: &str,
        _peer: Option<std::net::IpAddr>,
    ) -> Option<UserInfo> {
        let ok = self
            .lock()
            .users
            .iter()
            .any(|(u, p)| u.name == username && p.as_deref() == Some(password));
        ok.then(|| self.user_info(username))
    }
}

impl ManagementSource for FakeBroker {
    fn identity(&self) -> NodeIdentity {
        NodeIdentity {
            node: NODE.into(),
            product_version: "0.1.0".into(),
            rabbitmq_version: "3.13.7".into(),
        }
    }
    fn node(&self) -> NodeView {
        NodeView {
            uptime_ms: 101_601,
            processors: 2,
            os_pid: 4242,
            fd_total: 1024,
            proc_total: 1_048_576,
            mem_limit: 1 << 30,
            disk_free_limit: 50_000_000,
            listeners: vec![ListenerView {
                protocol: "http".into(),
                ip_address: "127.0.0.1".into(),
                port: 15672,
                certificates: None,
            }],
            ..Default::default()
        }
    }
    fn overview(&self) -> OverviewView {
        let b = self.lock();
        if b.panic_on_overview {
            panic!("overview panics (test)");
        }
        OverviewView {
            cluster_name: b.cluster_name.clone(),
            message_stats: MessageStats {
                publish: Some(Counter::new(4, 0.5)),
                ..Default::default()
            },
            connections: b.connections.len() as u64,
            channels: b.channels.len() as u64,
            queues: b.queues.len() as u64,
            exchanges: b.exchanges.len() as u64,
            consumers: b.consumers.len() as u64,
            listeners: vec![ListenerView {
                protocol: "amqp".into(),
                ip_address: "::".into(),
                port: 5672,
                certificates: None,
            }],
            ..Default::default()
        }
    }
    fn cluster_name(&self) -> String {
        self.lock().cluster_name.clone()
    }
    fn vhosts(&self) -> Vec<VhostView> {
        self.lock().vhosts.clone()
    }
    fn exchanges(&self, vhost: Option<&str>) -> Vec<ExchangeView> {
        self.lock()
            .exchanges
            .iter()
            .filter(|x| vhost.is_none_or(|v| v == x.vhost))
            .cloned()
            .collect()
    }
    fn queues(&self, vhost: Option<&str>) -> Vec<QueueView> {
        self.lock()
            .queues
            .iter()
            .filter(|(q, _)| vhost.is_none_or(|v| v == q.vhost))
            .map(|(q, messages)| {
                let mut q = q.clone();
                q.depth.ready.count = messages.len() as u64;
                q.message_bytes_ready = messages.iter().map(|m| m.payload.len() as u64).sum();
                q
            })
            .collect()
    }
    fn bindings(&self, vhost: Option<&str>) -> Vec<BindingView> {
        self.lock()
            .bindings
            .iter()
            .filter(|x| vhost.is_none_or(|v| v == x.vhost))
            .cloned()
            .collect()
    }
    fn connections(&self) -> Vec<ConnectionView> {
        self.lock().connections.clone()
    }
    fn channels(&self) -> Vec<ChannelView> {
        self.lock().channels.clone()
    }
    fn consumers(&self, vhost: Option<&str>) -> Vec<ConsumerView> {
        self.lock()
            .consumers
            .iter()
            .filter(|x| vhost.is_none_or(|v| v == x.vhost))
            .cloned()
            .collect()
    }
    fn users(&self) -> Vec<UserView> {
        self.lock().users.iter().map(|(u, _)| u.clone()).collect()
    }
    fn permissions(&self) -> Vec<PermissionView> {
        self.lock().permissions.clone()
    }
    fn policies(&self, vhost: Option<&str>) -> Vec<PolicyView> {
        self.lock()
            .policies
            .iter()
            .filter(|x| vhost.is_none_or(|v| v == x.vhost))
            .cloned()
            .collect()
    }
    fn alarms(&self) -> Vec<String> {
        self.lock().alarms.clone()
    }

    async fn set_cluster_name(&self, name: String) -> Result<(), SourceError> {
        self.lock().cluster_name = name;
        Ok(())
    }
    async fn declare_queue(
        &self,
        _user: &UserInfo,
        vhost: &str,
        name: &str,
        spec: QueueDeclare,
    ) -> Result<Declared, SourceError> {
        let mut b = self.lock();
        if !b.vhosts.iter().any(|v| v.name == vhost) {
            return Err(SourceError::NotFound);
        }
        if let Some((q, _)) = b
            .queues
            .iter()
            .find(|(q, _)| q.vhost == vhost && q.name == name)
        {
            if q.durable != spec.durable {
                return Err(SourceError::BadRequest(format!(
                    "inequivalent arg 'durable' for queue '{name}' in vhost '{vhost}': received '{}' but current is '{}'",
                    spec.durable, q.durable
                )));
            }
            return Ok(Declared::Existed);
        }
        let policy = b
            .policies
            .iter()
            .find(|p| {
                p.vhost == vhost && regex::Regex::new(&p.pattern).is_ok_and(|r| r.is_match(name))
            })
            .cloned();
        let view = QueueView {
            vhost: vhost.into(),
            name: name.into(),
            queue_type: "classic".into(),
            durable: spec.durable,
            auto_delete: spec.auto_delete,
            arguments: spec.arguments,
            state: "running".into(),
            idle_since_ms: Some(1_796_392_500_027),
            policy: policy.as_ref().map(|p| p.name.clone()),
            effective_policy_definition: policy.map(|p| p.definition).unwrap_or_default(),
            ..Default::default()
        };
        b.queues.push((view, VecDeque::new()));
        b.bindings.push(BindingView {
            vhost: vhost.into(),
            source: String::new(),
            destination: name.into(),
            destination_type: DestinationType::Queue,
            routing_key: name.into(),
            arguments: Map::new(),
        });
        Ok(Declared::Created)
    }
    async fn delete_queue(
        &self,
        _user: &UserInfo,
        vhost: &str,
        name: &str,
        if_empty: bool,
        _if_unused: bool,
    ) -> Result<(), SourceError> {
        let mut b = self.lock();
        let index = b
            .queues
            .iter()
            .position(|(q, _)| q.vhost == vhost && q.name == name)
            .ok_or(SourceError::NotFound)?;
        if if_empty && !b.queues[index].1.is_empty() {
            return Err(SourceError::BadRequest(format!(
                "queue '{name}' in vhost '{vhost}' not empty"
            )));
        }
        b.queues.remove(index);
        b.bindings.retain(|x| {
            !(x.vhost == vhost
                && x.destination_type == DestinationType::Queue
                && x.destination == name)
        });
        Ok(())
    }
    async fn purge_queue(
        &self,
        _user: &UserInfo,
        vhost: &str,
        name: &str,
    ) -> Result<u64, SourceError> {
        let mut b = self.lock();
        let (_, messages) = b
            .queues
            .iter_mut()
            .find(|(q, _)| q.vhost == vhost && q.name == name)
            .ok_or(SourceError::NotFound)?;
        let n = messages.len() as u64;
        messages.clear();
        Ok(n)
    }
    async fn declare_exchange(
        &self,
        _user: &UserInfo,
        vhost: &str,
        name: &str,
        spec: ExchangeDeclare,
    ) -> Result<Declared, SourceError> {
        let mut b = self.lock();
        if !b.vhosts.iter().any(|v| v.name == vhost) {
            return Err(SourceError::NotFound);
        }
        if !["direct", "fanout", "topic", "headers"].contains(&spec.kind.as_str()) {
            return Err(SourceError::BadRequest(format!(
                "unknown exchange type '{}'",
                spec.kind
            )));
        }
        if b.exchanges
            .iter()
            .any(|x| x.vhost == vhost && x.name == name)
        {
            return Ok(Declared::Existed);
        }
        b.exchanges.push(ExchangeView {
            vhost: vhost.into(),
            name: name.into(),
            kind: spec.kind,
            durable: spec.durable,
            auto_delete: spec.auto_delete,
            internal: spec.internal,
            arguments: spec.arguments,
            ..Default::default()
        });
        Ok(Declared::Created)
    }
    async fn delete_exchange(
        &self,
        _user: &UserInfo,
        vhost: &str,
        name: &str,
        _if_unused: bool,
    ) -> Result<(), SourceError> {
        let mut b = self.lock();
        let index = b
            .exchanges
            .iter()
            .position(|x| x.vhost == vhost && x.name == name)
            .ok_or(SourceError::NotFound)?;
        b.exchanges.remove(index);
        Ok(())
    }
    async fn bind(&self, _user: &UserInfo, spec: BindingSpec) -> Result<(), SourceError> {
        let mut b = self.lock();
        let view = BindingView {
            vhost: spec.vhost,
            source: spec.source,
            destination: spec.destination,
            destination_type: spec.destination_type,
            routing_key: spec.routing_key,
            arguments: spec.arguments,
        };
        if !b.bindings.contains(&view) {
            b.bindings.push(view);
        }
        Ok(())
    }
    async fn unbind(&self, _user: &UserInfo, spec: BindingSpec) -> Result<(), SourceError> {
        let mut b = self.lock();
        let before = b.bindings.len();
        b.bindings.retain(|x| {
            !(x.vhost == spec.vhost
                && x.source == spec.source
                && x.destination == spec.destination
                && x.routing_key == spec.routing_key
                && x.arguments == spec.arguments)
        });
        if b.bindings.len() == before {
            return Err(SourceError::NotFound);
        }
        Ok(())
    }
    async fn publish(
        &self,
        _user: &UserInfo,
        vhost: &str,
        message: Publish,
    ) -> Result<bool, SourceError> {
        let mut b = self.lock();
        let Some(exchange) = b
            .exchanges
            .iter()
            .find(|x| x.vhost == vhost && x.name == message.exchange)
            .cloned()
        else {
            return Err(SourceError::BadRequest(format!(
                "404 NOT_FOUND - no exchange '{}' in vhost '{vhost}'",
                message.exchange
            )));
        };
        let targets: Vec<String> = b
            .bindings
            .iter()
            .filter(|x| {
                x.vhost == vhost
                    && x.source == exchange.name
                    && x.destination_type == DestinationType::Queue
            })
            .filter(|x| match exchange.kind.as_str() {
                "fanout" | "headers" => true,
                "topic" => topic_matches(&x.routing_key, &message.routing_key),
                _ => x.routing_key == message.routing_key,
            })
            .map(|x| x.destination.clone())
            .collect();
        for target in &targets {
            if let Some((q, messages)) = b
                .queues
                .iter_mut()
                .find(|(q, _)| q.vhost == vhost && &q.name == target)
            {
                let published = q.message_stats.publish.map_or(0, |c| c.count);
                q.message_stats.publish = Some(Counter::new(published + 1, 0.0));
                messages.push_back(GotMessage {
                    exchange: message.exchange.clone(),
                    routing_key: message.routing_key.clone(),
                    properties: message.properties.clone(),
                    payload: message.payload.clone(),
                    ..Default::default()
                });
            }
        }
        Ok(!targets.is_empty())
    }
    async fn get(
        &self,
        _user: &UserInfo,
        vhost: &str,
        queue: &str,
        count: u64,
        mode: AckMode,
    ) -> Result<Vec<GotMessage>, SourceError> {
        let mut b = self.lock();
        let (_, messages) = b
            .queues
            .iter_mut()
            .find(|(q, _)| q.vhost == vhost && q.name == queue)
            .ok_or(SourceError::NotFound)?;
        let mut got = Vec::new();
        while (got.len() as u64) < count {
            let Some(mut m) = messages.pop_front() else {
                break;
            };
            m.message_count = messages.len() as u64;
            got.push(m);
        }
        if mode.requeue() {
            for m in got.iter().rev() {
                let mut back = m.clone();
                back.redelivered = true;
                messages.push_front(back);
            }
        }
        Ok(got)
    }
    async fn close_connection(&self, name: &str, reason: &str) -> Result<(), SourceError> {
        let mut b = self.lock();
        let index = b
            .connections
            .iter()
            .position(|c| c.name == name)
            .ok_or(SourceError::NotFound)?;
        b.connections.remove(index);
        b.closed.push((name.into(), reason.into()));
        Ok(())
    }
    async fn put_user(&self, spec: UserSpec) -> Result<Declared, SourceError> {
        let mut b = self.lock();
        let password = match spec.password {
            PasswordSpec::Clear(p) => Some(p),
            _ => None,
        };
        let view = UserView {
            name: spec.name.clone(),
            tags: spec.tags,
            hashing_algorithm: "rabbit_password_hashing_sha256".into(),
            ..Default::default()
        };
        if let Some(existing) = b.users.iter_mut().find(|(u, _)| u.name == spec.name) {
            *existing = (view, password);
            return Ok(Declared::Existed);
        }
        b.users.push((view, password));
        Ok(Declared::Created)
    }
    async fn delete_user(&self, name: &str) -> Result<(), SourceError> {
        let mut b = self.lock();
        let index = b
            .users
            .iter()
            .position(|(u, _)| u.name == name)
            .ok_or(SourceError::NotFound)?;
        b.users.remove(index);
        b.permissions.retain(|p| p.user != name);
        Ok(())
    }
    async fn put_permission(&self, permission: PermissionView) -> Result<Declared, SourceError> {
        let mut b = self.lock();
        if !b.users.iter().any(|(u, _)| u.name == permission.user) {
            return Err(SourceError::BadRequest(format!(
                "user '{}' does not exist",
                permission.user
            )));
        }
        if let Some(existing) = b
            .permissions
            .iter_mut()
            .find(|p| p.user == permission.user && p.vhost == permission.vhost)
        {
            *existing = permission;
            return Ok(Declared::Existed);
        }
        b.permissions.push(permission);
        Ok(Declared::Created)
    }
    async fn delete_permission(&self, user: &str, vhost: &str) -> Result<(), SourceError> {
        let mut b = self.lock();
        let before = b.permissions.len();
        b.permissions
            .retain(|p| !(p.user == user && p.vhost == vhost));
        if before == b.permissions.len() {
            return Err(SourceError::NotFound);
        }
        Ok(())
    }
    async fn put_vhost(
        &self,
        creator: &UserInfo,
        name: &str,
        spec: VhostSpec,
    ) -> Result<Declared, SourceError> {
        let mut b = self.lock();
        if b.vhosts.iter().any(|v| v.name == name) {
            return Ok(Declared::Existed);
        }
        b.vhosts.push(VhostView {
            name: name.into(),
            description: spec.description,
            tags: spec.tags,
            ..Default::default()
        });
        add_standard_exchanges(&mut b, name);
        b.permissions.push(PermissionView {
            user: creator.name.clone(),
            vhost: name.into(),
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        });
        Ok(Declared::Created)
    }
    async fn delete_vhost(&self, name: &str) -> Result<(), SourceError> {
        let mut b = self.lock();
        let index = b
            .vhosts
            .iter()
            .position(|v| v.name == name)
            .ok_or(SourceError::NotFound)?;
        b.vhosts.remove(index);
        b.queues.retain(|(q, _)| q.vhost != name);
        b.exchanges.retain(|x| x.vhost != name);
        b.permissions.retain(|p| p.vhost != name);
        Ok(())
    }
    async fn put_policy(&self, policy: PolicyView) -> Result<Declared, SourceError> {
        let mut b = self.lock();
        if let Some(existing) = b
            .policies
            .iter_mut()
            .find(|p| p.vhost == policy.vhost && p.name == policy.name)
        {
            *existing = policy;
            return Ok(Declared::Existed);
        }
        b.policies.push(policy);
        Ok(Declared::Created)
    }
    async fn delete_policy(&self, vhost: &str, name: &str) -> Result<(), SourceError> {
        let mut b = self.lock();
        let index = b
            .policies
            .iter()
            .position(|p| p.vhost == vhost && p.name == name)
            .ok_or(SourceError::NotFound)?;
        b.policies.remove(index);
        Ok(())
    }
    async fn import_definitions(&self, definitions: Definitions) -> Result<(), SourceError> {
        if let Some(bad) = definitions
            .exchanges
            .iter()
            .find(|x| !["direct", "fanout", "topic", "headers"].contains(&x.kind.as_str()))
        {
            return Err(SourceError::BadRequest(format!(
                "unknown exchange type '{}'",
                bad.kind
            )));
        }
        self.lock().imported = Some(definitions);
        Ok(())
    }
}
