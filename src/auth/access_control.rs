//! The access model: users, vhost records, permissions, topic permissions, limits and the
//! loopback-only users, behind one lock that only management, logins, channel opens and
//! permission-cache misses take (never a publish that hits its channel's cache). Every change
//! bumps an epoch, which is how open channels notice that their cache's misses must re-read.
//! Never touches sockets, frames or the disk: the store persists [`AccessDefinitions`].

use super::changes::{AccessJournal, Changes};
use super::channel_access::ChannelAccess;
use super::definitions::AccessDefinitions;
use super::error::{AccessError, AuthError, ManageError};
use super::password::{HashingAlgorithm, PasswordHash};
use super::permission::{Permission, TopicPermission};
use super::sasl::{self, Credentials};
use super::user::{is_over_limit, User, UserLimits, TAG_ADMINISTRATOR};
use super::vhost::{validate_queue_type, would_exceed_queue_limit, VhostInfo, VhostLimits};
use bytes::Bytes;
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// The default vhost.
pub const DEFAULT_VHOST: &str = "/";

/// A user's topic permissions in one vhost, by exchange name.
pub type TopicPermissions = BTreeMap<String, TopicPermission>;

/// The access model, shared by every connection (cheap to clone).
#[derive(Clone)]
pub struct AccessControl {
    inner: Arc<Inner>,
}

struct Inner {
    model: RwLock<Model>,
    epoch: AtomicU64,
    /// Where changes are written down; unset in tests and until the store is open.
    journal: OnceLock<Arc<dyn AccessJournal>>,
}

#[derive(Default)]
pub(super) struct Model {
    pub(super) users: HashMap<String, Arc<User>>,
    pub(super) vhosts: BTreeMap<String, Arc<VhostInfo>>,
    /// user → vhost → permission; nested so lookups by `&str` allocate nothing.
    pub(super) permissions: HashMap<String, HashMap<String, Arc<Permission>>>,
    /// user → vhost → exchange → topic permission.
    pub(super) topic_permissions: HashMap<String, HashMap<String, Arc<TopicPermissions>>>,
    pub(super) loopback_users: HashSet<String>,
}

/// A logged-in user, as the connection keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthUser {
    /// Login name.
    pub name: Arc<str>,
    /// Tags at login time.
    pub tags: Arc<[String]>,
}

impl AuthUser {
    /// Whether the user had `tag` at login.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

impl Default for AccessControl {
    /// RabbitMQ's empty node: the vhost `/`, no users.
    fn default() -> Self {
        let mut model = Model::default();
        model.vhosts.insert(
            DEFAULT_VHOST.to_owned(),
            Arc::new(VhostInfo::named(DEFAULT_VHOST)),
        );
        AccessControl::from_model(model)
    }
}

impl AccessControl {
    fn from_model(model: Model) -> Self {
        AccessControl {
            inner: Arc::new(Inner {
                model: RwLock::new(model),
                epoch: AtomicU64::new(1),
                journal: OnceLock::new(),
            }),
        }
    }

    /// A model with nothing in it, not even `/` (for imports and the store's recovery).
    pub fn empty() -> Self {
        Self::from_model(Model::default())
    }

    /// The change counter: bumped by every change. Channels compare it on a cache miss.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::Acquire)
    }

    /// Blocks every reader of the model while the guard lives (tests prove cache hits never read).
    #[cfg(test)]
    pub(super) fn lock_for_test(&self) -> parking_lot::RwLockWriteGuard<'_, Model> {
        self.inner.model.write()
    }

    pub(super) fn read<T>(&self, f: impl FnOnce(&Model) -> T) -> T {
        f(&self.inner.model.read())
    }

    /// From now on every change is handed to `journal` (the store), in order. Set once.
    pub fn attach_journal(&self, journal: Arc<dyn AccessJournal>) {
        let _ = self.inner.journal.set(journal);
    }

    /// Applies a change and bumps the epoch while still holding the lock, so a reader that sees
    /// the new epoch also sees the change; what `f` notes in its [`Changes`] goes to the
    /// journal under the same lock, so the store writes changes in the order they happened.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut Model, &mut Changes) -> Result<T, ManageError>,
    ) -> Result<T, ManageError> {
        let mut model = self.inner.model.write();
        let mut changes = Changes::default();
        let result = f(&mut model, &mut changes)?;
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        if let (Some(journal), false) = (self.inner.journal.get(), changes.0.is_empty()) {
            journal.record(changes.0);
        }
        Ok(result)
    }

    /// Writes the whole model down (the first start of a data directory: the default vhost
    /// and user).
    pub fn journal_everything(&self) {
        let _ = self.write(|m, c| {
            let vhosts: Vec<String> = m.vhosts.keys().cloned().collect();
            for v in &vhosts {
                c.vhost(m, v);
            }
            let users: Vec<String> = m.users.keys().cloned().collect();
            for u in &users {
                c.user(m, u);
            }
            let permissions: Vec<(String, String)> = m
                .permissions
                .iter()
                .flat_map(|(u, by)| by.keys().map(move |v| (u.clone(), v.clone())))
                .collect();
            for (u, v) in &permissions {
                c.permission(m, u, v);
            }
            let topics: Vec<(String, String, String)> = m
                .topic_permissions
                .iter()
                .flat_map(|(u, by)| {
                    by.iter().flat_map(move |(v, x)| {
                        x.keys().map(move |x| (u.clone(), v.clone(), x.clone()))
                    })
                })
                .collect();
            for (u, v, x) in &topics {
                c.topic_permission(m, u, v, x);
            }
            Ok(())
        });
    }

    // ---- compatibility with the single-user broker -------------------------------------------

    /// Adds or replaces a user as the broker's default user: tag `administrator`, full
    /// permissions on `/`, and loopback-only if asked (RabbitMQ's `guest`).
    pub fn add(&self, name: &str, password: &str, loopback_only: bool) {
        let user = User {
            name: name.to_owned(),
            password: Some(PasswordHash::new(HashingAlgorithm::Sha256, password)),
            tags: vec![TAG_ADMINISTRATOR.to_owned()],
            limits: UserLimits::default(),
        };
        self.put_user(user);
        self.set_loopback_only(name, loopback_only);
        if self.vhost(DEFAULT_VHOST).is_some() {
            let all = Permission::try_new(".*", ".*", ".*").expect(".* compiles");
            let _ = self.write(|m, c| {
                insert_permission(m, name, DEFAULT_VHOST, all);
                c.permission(m, name, DEFAULT_VHOST);
                Ok(())
            });
        }
    }

    /// Checks a connection.start-ok response and returns the user name (the handshake's call
    /// before TLS; see [`AccessControl::login`]).
    pub fn authenticate(
        &self,
        mechanism: &str,
        response: &Bytes,
        peer: IpAddr,
    ) -> Result<String, AuthError> {
        self.login(mechanism, response, peer, None)
            .map(|u| u.name.to_string())
    }

    // ---- login and connection.open ------------------------------------------------------------

    /// Checks a connection.start-ok response: credentials first, then the loopback rule, as
    /// RabbitMQ's `rabbit_reader:auth_phase/2`. `peer_identity` is the name taken from a verified
    /// client certificate (EXTERNAL), `None` on plaintext or without one.
    pub fn login(
        &self,
        mechanism: &str,
        response: &[u8],
        peer: IpAddr,
        peer_identity: Option<&str>,
    ) -> Result<AuthUser, AuthError> {
        let credentials = sasl::parse_response(mechanism, response, peer_identity)?;
        let (name, password) = match &credentials {
            Credentials::Password { username, password } => (username, Some(password.as_str())),
            Credentials::External { username } => (username, None),
        };
        let model = self.inner.model.read();
        let user = model
            .users
            .get(name)
            .ok_or_else(|| AuthError::InvalidCredentials(name.clone()))?;
        if let Some(password) = password {
            let verified = user.password.as_ref().is_some_and(|h| h.verify(password));
            if !verified {
                return Err(AuthError::InvalidCredentials(name.clone()));
            }
        }
        if model.loopback_users.contains(name) && !is_loopback(peer) {
            return Err(AuthError::LoopbackOnly(name.clone()));
        }
        Ok(AuthUser {
            name: Arc::from(name.as_str()),
            tags: Arc::from(user.tags.clone()),
        })
    }

    /// connection.open's checks, in RabbitMQ's order (`rabbit_reader:handle_method0/2`): the
    /// vhost's connection limit, the user's connection limit, then access to the vhost (it must
    /// exist and the user needs a permission entry there, whatever its patterns). The counts are
    /// the connections already open, not counting this one.
    pub fn check_connection_open(
        &self,
        user: &str,
        vhost: &str,
        vhost_connections: u64,
        user_connections: u64,
    ) -> Result<(), AccessError> {
        let model = self.inner.model.read();
        let Some(info) = model.vhosts.get(vhost) else {
            return Err(AccessError::VhostNotFound {
                vhost: vhost.to_owned(),
            });
        };
        if is_over_limit(info.limits.max_connections, vhost_connections) {
            return Err(AccessError::VhostConnectionLimit {
                vhost: vhost.to_owned(),
                user: user.to_owned(),
                limit: info.limits.max_connections.unwrap_or_default(),
            });
        }
        let user_limit = model.users.get(user).and_then(|u| u.limits.max_connections);
        if is_over_limit(user_limit, user_connections) {
            return Err(AccessError::UserConnectionLimit {
                user: user.to_owned(),
                limit: user_limit.unwrap_or_default(),
            });
        }
        let has_entry = model
            .permissions
            .get(user)
            .is_some_and(|by_vhost| by_vhost.contains_key(vhost));
        if !has_entry {
            return Err(AccessError::Vhost {
                vhost: vhost.to_owned(),
                user: user.to_owned(),
            });
        }
        Ok(())
    }

    /// channel.open: the user's `max-channels` (counting the channels it has open on every
    /// connection), then a fresh permission cache for the channel. `client_id` feeds the
    /// `{client_id}` variable of topic permissions.
    pub fn open_channel(
        &self,
        user: &AuthUser,
        vhost: &str,
        client_id: Option<&str>,
        user_channels: u64,
    ) -> Result<ChannelAccess, AccessError> {
        let limit = self.read(|m| m.users.get(&*user.name).and_then(|u| u.limits.max_channels));
        if is_over_limit(limit, user_channels) {
            return Err(AccessError::UserChannelLimit {
                user: user.name.to_string(),
                limit: limit.unwrap_or_default(),
            });
        }
        Ok(ChannelAccess::new(self.clone(), user, vhost, client_id))
    }

    /// queue.declare of a new queue: the vhost's `max-queues`, given how many queues it has.
    pub fn check_queue_limit(
        &self,
        vhost: &str,
        queue: &str,
        queues: u64,
    ) -> Result<(), AccessError> {
        let limit = self.read(|m| m.vhosts.get(vhost).and_then(|v| v.limits.max_queues));
        if would_exceed_queue_limit(limit, queues) {
            return Err(AccessError::QueueLimit {
                queue: queue.to_owned(),
                vhost: vhost.to_owned(),
                limit: limit.unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// The current permission and topic permissions of `user` in `vhost`, with the epoch they
    /// belong to (read together under the lock).
    pub(super) fn grant(
        &self,
        user: &str,
        vhost: &str,
    ) -> (u64, Option<Arc<Permission>>, Option<Arc<TopicPermissions>>) {
        let model = self.inner.model.read();
        let permission = model
            .permissions
            .get(user)
            .and_then(|v| v.get(vhost))
            .cloned();
        let topics = model
            .topic_permissions
            .get(user)
            .and_then(|v| v.get(vhost))
            .cloned();
        (self.epoch(), permission, topics)
    }

    // ---- users --------------------------------------------------------------------------------

    /// `rabbitmqctl add_user`: a new user with a SHA-256 hash of `password`.
    pub fn add_user(
        &self,
        name: &str,
        password: &str,
        tags: Vec<String>,
    ) -> Result<(), ManageError> {
        non_empty(name, "user")?;
        let user = User {
            name: name.to_owned(),
            password: Some(PasswordHash::new(HashingAlgorithm::Sha256, password)),
            tags,
            limits: UserLimits::default(),
        };
        self.write(|m, c| {
            if m.users.contains_key(name) {
                return Err(ManageError::UserExists(name.to_owned()));
            }
            m.users.insert(name.to_owned(), Arc::new(user));
            c.user(m, name);
            Ok(())
        })
    }

    /// Creates or replaces a user whole (definitions import, management PUT). Permissions stay.
    pub fn put_user(&self, user: User) {
        let _ = self.write(|m, c| {
            let name = user.name.clone();
            m.users.insert(name.clone(), Arc::new(user));
            c.user(m, &name);
            Ok(())
        });
    }

    /// `rabbitmqctl change_password`.
    pub fn change_password(&self, name: &str, password: &str) -> Result<(), ManageError> {
        let hash = PasswordHash::new(HashingAlgorithm::Sha256, password);
        self.update_user(name, |u| u.password = Some(hash))
    }

    /// `rabbitmqctl clear_password`: only EXTERNAL can log this user in afterwards.
    pub fn clear_password(&self, name: &str) -> Result<(), ManageError> {
        self.update_user(name, |u| u.password = None)
    }

    /// `rabbitmqctl set_user_tags` (replaces all tags; unknown tags are kept).
    pub fn set_tags(&self, name: &str, tags: Vec<String>) -> Result<(), ManageError> {
        self.update_user(name, |u| u.tags = tags)
    }

    /// `rabbitmqctl set_user_limits`.
    pub fn set_user_limits(&self, name: &str, limits: UserLimits) -> Result<(), ManageError> {
        self.update_user(name, |u| u.limits = limits)
    }

    fn update_user(&self, name: &str, change: impl FnOnce(&mut User)) -> Result<(), ManageError> {
        self.write(|m, c| {
            let user = m
                .users
                .get_mut(name)
                .ok_or_else(|| ManageError::NoSuchUser(name.to_owned()))?;
            change(Arc::make_mut(user));
            c.user(m, name);
            Ok(())
        })
    }

    /// `rabbitmqctl delete_user`: the user and all its permissions. The caller closes the user's
    /// connections with 320 and [`super::user_deleted_text`].
    pub fn delete_user(&self, name: &str) -> Result<(), ManageError> {
        self.write(|m, c| {
            m.users
                .remove(name)
                .ok_or_else(|| ManageError::NoSuchUser(name.to_owned()))?;
            m.permissions.remove(name);
            m.topic_permissions.remove(name);
            c.user(m, name);
            Ok(())
        })
    }

    /// A user by name.
    pub fn user(&self, name: &str) -> Option<Arc<User>> {
        self.read(|m| m.users.get(name).cloned())
    }

    /// All users, by name.
    pub fn users(&self) -> Vec<Arc<User>> {
        let mut users: Vec<_> = self.read(|m| m.users.values().cloned().collect());
        users.sort_by(|a, b| a.name.cmp(&b.name));
        users
    }

    /// Makes `name` loopback-only or not (RabbitMQ's `loopback_users`; `guest` by default).
    pub fn set_loopback_only(&self, name: &str, loopback_only: bool) {
        let _ = self.write(|m, _| {
            if loopback_only {
                m.loopback_users.insert(name.to_owned());
            } else {
                m.loopback_users.remove(name);
            }
            Ok(())
        });
    }

    // ---- vhosts -------------------------------------------------------------------------------

    /// `rabbitmqctl add_vhost`.
    pub fn add_vhost(&self, info: VhostInfo) -> Result<(), ManageError> {
        validate_vhost(&info)?;
        self.write(|m, c| {
            if m.vhosts.contains_key(&info.name) {
                return Err(ManageError::VhostExists(info.name.clone()));
            }
            let name = info.name.clone();
            m.vhosts.insert(name.clone(), Arc::new(info));
            c.vhost(m, &name);
            Ok(())
        })
    }

    /// Creates or updates a vhost's record (management PUT, definitions import).
    pub fn put_vhost(&self, info: VhostInfo) -> Result<(), ManageError> {
        validate_vhost(&info)?;
        self.write(|m, c| {
            let name = info.name.clone();
            m.vhosts.insert(name.clone(), Arc::new(info));
            c.vhost(m, &name);
            Ok(())
        })
    }

    /// `rabbitmqctl set_vhost_limits`.
    pub fn set_vhost_limits(&self, name: &str, limits: VhostLimits) -> Result<(), ManageError> {
        self.write(|m, c| {
            let info = m
                .vhosts
                .get_mut(name)
                .ok_or_else(|| ManageError::NoSuchVhost(name.to_owned()))?;
            Arc::make_mut(info).limits = limits;
            c.vhost(m, name);
            Ok(())
        })
    }

    /// `rabbitmqctl delete_vhost`: the record and every permission in it. The caller removes
    /// its objects and messages and closes its connections with 320 and
    /// [`super::vhost_deleted_text`].
    pub fn delete_vhost(&self, name: &str) -> Result<Arc<VhostInfo>, ManageError> {
        self.write(|m, c| {
            let info = m
                .vhosts
                .remove(name)
                .ok_or_else(|| ManageError::NoSuchVhost(name.to_owned()))?;
            for by_vhost in m.permissions.values_mut() {
                by_vhost.remove(name);
            }
            for by_vhost in m.topic_permissions.values_mut() {
                by_vhost.remove(name);
            }
            c.vhost(m, name);
            Ok(info)
        })
    }

    /// A vhost's record.
    pub fn vhost(&self, name: &str) -> Option<Arc<VhostInfo>> {
        self.read(|m| m.vhosts.get(name).cloned())
    }

    /// All vhosts, by name.
    pub fn vhosts(&self) -> Vec<Arc<VhostInfo>> {
        self.read(|m| m.vhosts.values().cloned().collect())
    }

    // ---- permissions --------------------------------------------------------------------------

    /// `rabbitmqctl set_permissions`: patterns are compiled first, so a garbage regex is refused
    /// before anything else is looked at (RabbitMQ's order).
    pub fn set_permissions(
        &self,
        user: &str,
        vhost: &str,
        configure: &str,
        write: &str,
        read: &str,
    ) -> Result<(), ManageError> {
        let permission = Permission::try_new(configure, write, read)?;
        self.write(|m, c| {
            require_user_and_vhost(m, user, vhost)?;
            insert_permission(m, user, vhost, permission);
            c.permission(m, user, vhost);
            Ok(())
        })
    }

    /// `rabbitmqctl clear_permissions`: the user can no longer open the vhost; open connections
    /// stay (RabbitMQ does not close them).
    pub fn clear_permissions(&self, user: &str, vhost: &str) -> Result<(), ManageError> {
        self.write(|m, c| {
            if let Some(by_vhost) = m.permissions.get_mut(user) {
                by_vhost.remove(vhost);
            }
            c.permission(m, user, vhost);
            Ok(())
        })
    }

    /// The permission of `user` in `vhost`.
    pub fn permission(&self, user: &str, vhost: &str) -> Option<Arc<Permission>> {
        self.read(|m| m.permissions.get(user).and_then(|v| v.get(vhost)).cloned())
    }

    /// `rabbitmqctl set_topic_permissions`.
    pub fn set_topic_permissions(
        &self,
        user: &str,
        vhost: &str,
        exchange: &str,
        write: &str,
        read: &str,
    ) -> Result<(), ManageError> {
        let permission = TopicPermission::try_new(write, read)?;
        self.write(|m, c| {
            require_user_and_vhost(m, user, vhost)?;
            insert_topic_permission(m, user, vhost, exchange, permission);
            c.topic_permission(m, user, vhost, exchange);
            Ok(())
        })
    }

    /// `rabbitmqctl clear_topic_permissions`: one exchange's entry, or all of the user's in the
    /// vhost when `exchange` is `None`.
    pub fn clear_topic_permissions(
        &self,
        user: &str,
        vhost: &str,
        exchange: Option<&str>,
    ) -> Result<(), ManageError> {
        self.write(|m, c| {
            let Some(by_vhost) = m.topic_permissions.get_mut(user) else {
                return Ok(());
            };
            let cleared: Vec<String> = match exchange {
                None => by_vhost
                    .remove(vhost)
                    .map(|map| map.keys().cloned().collect())
                    .unwrap_or_default(),
                Some(exchange) => {
                    if let Some(map) = by_vhost.get_mut(vhost) {
                        Arc::make_mut(map).remove(exchange);
                    }
                    vec![exchange.to_owned()]
                }
            };
            for exchange in &cleared {
                c.topic_permission(m, user, vhost, exchange);
            }
            Ok(())
        })
    }

    /// The topic permissions of `user` in `vhost`, by exchange.
    pub fn topic_permissions(&self, user: &str, vhost: &str) -> Option<Arc<TopicPermissions>> {
        self.read(|m| {
            m.topic_permissions
                .get(user)
                .and_then(|v| v.get(vhost))
                .cloned()
        })
    }

    // ---- snapshots ----------------------------------------------------------------------------

    /// The whole model as plain data, in RabbitMQ's definitions shape.
    pub fn snapshot(&self) -> AccessDefinitions {
        self.read(AccessDefinitions::from_model)
    }

    /// Whether [`AccessControl::import`] of `defs` would succeed now, changing nothing.
    pub fn check_import(&self, defs: &AccessDefinitions) -> Result<(), ManageError> {
        let parsed = defs.parse()?;
        self.read(|m| parsed.check_references(m))
    }

    /// Merges definitions into the model, as RabbitMQ's import: vhosts, then users, then
    /// permissions and topic permissions (existing entries are replaced, nothing is removed).
    /// Everything is checked before anything is applied, so a bad entry changes nothing.
    pub fn import(&self, defs: &AccessDefinitions) -> Result<(), ManageError> {
        let parsed = defs.parse()?;
        self.write(|m, c| parsed.apply(m, c))
    }
}

pub(super) fn insert_permission(m: &mut Model, user: &str, vhost: &str, p: Permission) {
    m.permissions
        .entry(user.to_owned())
        .or_default()
        .insert(vhost.to_owned(), Arc::new(p));
}

pub(super) fn insert_topic_permission(
    m: &mut Model,
    user: &str,
    vhost: &str,
    exchange: &str,
    p: TopicPermission,
) {
    let map = m
        .topic_permissions
        .entry(user.to_owned())
        .or_default()
        .entry(vhost.to_owned())
        .or_default();
    Arc::make_mut(map).insert(exchange.to_owned(), p);
}

pub(super) fn require_user_and_vhost(
    m: &Model,
    user: &str,
    vhost: &str,
) -> Result<(), ManageError> {
    if !m.vhosts.contains_key(vhost) {
        return Err(ManageError::NoSuchVhost(vhost.to_owned()));
    }
    if !m.users.contains_key(user) {
        return Err(ManageError::NoSuchUser(user.to_owned()));
    }
    Ok(())
}

pub(super) fn validate_vhost(info: &VhostInfo) -> Result<(), ManageError> {
    non_empty(&info.name, "vhost")?;
    if let Some(queue_type) = &info.default_queue_type {
        validate_queue_type(queue_type).map_err(ManageError::InvalidQueueType)?;
    }
    Ok(())
}

fn non_empty(name: &str, what: &'static str) -> Result<(), ManageError> {
    if name.is_empty() {
        return Err(ManageError::EmptyName(what));
    }
    Ok(())
}

/// Loopback, including IPv4 loopback mapped into IPv6 (`::ffff:127.0.0.1`), which a dual-stack
/// listener reports for IPv4 clients.
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}
