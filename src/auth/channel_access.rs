//! One channel's permission checks, cached as RabbitMQ's channel caches them: a check that
//! passed is remembered for the channel's life, so an open channel keeps what it already used
//! even if the permission is revoked; a name not seen yet is checked against the *current*
//! permissions (re-read when the model's epoch moved), and a new channel starts empty, so it
//! sees every change at once. A publish that hits the cache costs one hash lookup by `&str`;
//! with a `.*` pattern it costs nothing. Owned by the channel task: no lock, no atomics on a hit.

use super::access_control::{AccessControl, AuthUser, TopicPermissions};
use super::error::{AccessError, ResourceKind};
use super::permission::{Access, Pattern, Permission, TopicVariables};
use super::user::TAG_IMPERSONATOR;
use std::collections::{HashMap, HashSet};

/// Names are short and hashed on every publish; foldhash is several times cheaper than SipHash
/// and, with a per-process random seed, still resists chosen collisions from clients.
type FastBuild = foldhash::fast::RandomState;
type FastSet = HashSet<Box<str>, FastBuild>;
use std::sync::Arc;
use tracing::warn;

/// Names remembered per (access, kind) and routing keys per exchange before the cache is cleared.
/// RabbitMQ keeps 12 per channel; a little more keeps a channel that cycles through a few dozen
/// queues on the fast path. Clearing only costs re-checks, never a wrong answer.
const MAX_CACHED: usize = 64;

/// The name the default exchange is checked and reported under.
pub const DEFAULT_EXCHANGE_NAME: &str = "amq.default";

/// A channel's view of its user's permissions in its vhost.
pub struct ChannelAccess {
    control: AccessControl,
    user: Arc<str>,
    vhost: Arc<str>,
    client_id: Option<Arc<str>>,
    is_impersonator: bool,
    epoch: u64,
    permission: Option<Arc<Permission>>,
    topics: Option<Arc<TopicPermissions>>,
    /// What passed so far; made by the first check that needs it (a user with `.*`
    /// permissions, as guest has, needs none: its idle channels hold no cache).
    remembered: Option<Box<Remembered>>,
}

/// The names a channel's checks let through, for its life (see the module doc).
#[derive(Default)]
struct Remembered {
    /// Names that passed, by `slot(access, kind)`.
    passed: [FastSet; 6],
    /// Expanded topic patterns per exchange: (write, read), `None` where expansion failed.
    topic_patterns: HashMap<Box<str>, [Option<Pattern>; 2], FastBuild>,
    /// Routing keys that passed, per exchange, by `access` (0 = write, 1 = read).
    topic_passed: [HashMap<Box<str>, FastSet, FastBuild>; 2],
}

fn slot(access: Access, kind: ResourceKind) -> usize {
    let a = match access {
        Access::Configure => 0,
        Access::Write => 1,
        Access::Read => 2,
    };
    a * 2 + usize::from(kind == ResourceKind::Exchange)
}

fn topic_slot(access: Access) -> usize {
    usize::from(access == Access::Read)
}

impl ChannelAccess {
    pub(super) fn new(
        control: AccessControl,
        user: &AuthUser,
        vhost: &str,
        client_id: Option<&str>,
    ) -> Self {
        let (epoch, permission, topics) = control.grant(&user.name, vhost);
        ChannelAccess {
            control,
            user: user.name.clone(),
            vhost: Arc::from(vhost),
            client_id: client_id.map(Arc::from),
            is_impersonator: user.has_tag(TAG_IMPERSONATOR),
            epoch,
            permission,
            topics,
            remembered: None,
        }
    }

    /// Re-reads the permissions if anything changed since they were read (only on a miss).
    fn refresh(&mut self) {
        if self.control.epoch() == self.epoch {
            return;
        }
        let (epoch, permission, topics) = self.control.grant(&self.user, &self.vhost);
        if let (false, Some(r)) = (opt_arc_eq(&topics, &self.topics), &mut self.remembered) {
            r.topic_patterns.clear();
        }
        self.epoch = epoch;
        self.permission = permission;
        self.topics = topics;
    }

    /// `access` on queue `name` (server-named queues under their `amq.gen-…` name).
    pub fn check_queue(&mut self, access: Access, name: &str) -> Result<(), AccessError> {
        self.check(access, ResourceKind::Queue, name)
    }

    /// `access` on exchange `name`; `""` is checked and reported as `amq.default`.
    pub fn check_exchange(&mut self, access: Access, name: &str) -> Result<(), AccessError> {
        let name = if name.is_empty() {
            DEFAULT_EXCHANGE_NAME
        } else {
            name
        };
        self.check(access, ResourceKind::Exchange, name)
    }

    /// A passive declare: any one of configure, write or read (RabbitMQ 4.x's rule; 3.10 checked
    /// nothing and let users probe names).
    pub fn check_any(&mut self, kind: ResourceKind, name: &str) -> Result<(), AccessError> {
        let name = match (kind, name) {
            (ResourceKind::Exchange, "") => DEFAULT_EXCHANGE_NAME,
            _ => name,
        };
        for access in [Access::Configure, Access::Write, Access::Read] {
            if self.check(access, kind, name).is_ok() {
                return Ok(());
            }
        }
        Err(self.refused(kind, name))
    }

    fn check(&mut self, access: Access, kind: ResourceKind, name: &str) -> Result<(), AccessError> {
        // `.*` (guest's) needs no cache; the epoch test keeps revocations visible to new names.
        if let Some(p) = &self.permission {
            if p.pattern(access).matches_all() && self.control.epoch() == self.epoch {
                return Ok(());
            }
        }
        let s = slot(access, kind);
        if self
            .remembered
            .as_ref()
            .is_some_and(|r| r.passed[s].contains(name))
        {
            return Ok(());
        }
        self.refresh();
        let allowed = self
            .permission
            .as_ref()
            .is_some_and(|p| p.pattern(access).is_match(name));
        if !allowed {
            return Err(self.refused(kind, name));
        }
        remember(&mut self.remembered().passed[s], name);
        Ok(())
    }

    fn refused(&self, kind: ResourceKind, name: &str) -> AccessError {
        AccessError::Resource {
            kind,
            name: name.to_owned(),
            vhost: self.vhost.to_string(),
            user: self.user.to_string(),
        }
    }

    /// A topic permission check: `Write` on publish (the routing key), `Read` on queue.bind,
    /// queue.unbind and exchange.bind/unbind from this exchange (the binding key). Call it only
    /// for topic exchanges, after the resource check. An exchange without an entry allows
    /// everything; with no topic permissions in this vhost this is one `Option` test.
    pub fn check_topic(
        &mut self,
        access: Access,
        exchange: &str,
        routing_key: &str,
    ) -> Result<(), AccessError> {
        if self.topics.is_none() && self.control.epoch() == self.epoch {
            return Ok(());
        }
        let t = topic_slot(access);
        if self.remembered.as_ref().is_some_and(|r| {
            r.topic_passed[t]
                .get(exchange)
                .is_some_and(|keys| keys.contains(routing_key))
        }) {
            return Ok(());
        }
        self.refresh();
        let Some(pattern) = self.topic_pattern(exchange, access) else {
            return Ok(());
        };
        if !pattern.is_some_and(|p| p.is_match(routing_key)) {
            return Err(AccessError::Topic {
                routing_key: routing_key.to_owned(),
                exchange: exchange.to_owned(),
                vhost: self.vhost.to_string(),
                user: self.user.to_string(),
            });
        }
        let passed = &mut self.remembered().topic_passed[t];
        if passed.len() >= MAX_CACHED && !passed.contains_key(exchange) {
            passed.clear();
        }
        remember(passed.entry(Box::from(exchange)).or_default(), routing_key);
        Ok(())
    }

    /// The expanded pattern for `exchange`: `None` when the exchange has no entry (allowed),
    /// `Some(None)` when the expansion does not compile (refused, and logged once per channel).
    fn topic_pattern(&mut self, exchange: &str, access: Access) -> Option<Option<&Pattern>> {
        let entry = self.topics.as_ref()?.get(exchange)?;
        let remembered = self.remembered.get_or_insert_with(Box::default);
        if !remembered.topic_patterns.contains_key(exchange) {
            let vars = TopicVariables {
                username: &self.user,
                vhost: &self.vhost,
                client_id: self.client_id.as_deref(),
            };
            let expand = |a: Access| {
                entry
                    .pattern(a)
                    .expand(&vars)
                    .map_err(|e| warn!(exchange, user = %self.user, error = %e, "topic permission does not compile once expanded; refusing"))
                    .ok()
            };
            let patterns = [expand(Access::Write), expand(Access::Read)];
            if remembered.topic_patterns.len() >= MAX_CACHED {
                remembered.topic_patterns.clear();
            }
            remembered
                .topic_patterns
                .insert(Box::from(exchange), patterns);
        }
        let patterns = remembered.topic_patterns.get(exchange)?;
        Some(patterns[topic_slot(access)].as_ref())
    }

    /// basic.publish's `user-id` property: must be the user's own name unless it has the
    /// `impersonator` tag (RabbitMQ's `check_user_id_header/2`, 406).
    pub fn check_user_id(&self, claimed: &str) -> Result<(), AccessError> {
        if claimed == &*self.user || self.is_impersonator {
            return Ok(());
        }
        Err(AccessError::UserIdMismatch {
            claimed: claimed.to_owned(),
            actual: self.user.to_string(),
        })
    }

    fn remembered(&mut self) -> &mut Remembered {
        self.remembered.get_or_insert_with(Box::default)
    }

    /// The channel's user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The channel's vhost.
    pub fn vhost(&self) -> &str {
        &self.vhost
    }
}

fn remember(set: &mut FastSet, name: &str) {
    if set.len() >= MAX_CACHED {
        set.clear();
    }
    set.insert(Box::from(name));
}

fn opt_arc_eq<T>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}
