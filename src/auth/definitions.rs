//! The access model as plain data, field for field as RabbitMQ's definitions JSON
//! (`rabbit_definitions:user_definition/1`, `vhost_definition/1`, `permission_definition/1`,
//! `topic_permission_definition/1`), for export/import and for the metadata store.

use super::access_control::{insert_permission, insert_topic_permission, validate_vhost, Model};
use super::changes::Changes;
use super::error::ManageError;
use super::password::{HashingAlgorithm, PasswordHash};
use super::permission::{Permission, TopicPermission};
use super::user::{parse_tags, User, UserLimits};
use super::vhost::{VhostInfo, VhostLimits};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The access part of a definitions document (the rest — queues, exchanges, bindings,
/// policies, parameters — belongs to other modules and is ignored here).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AccessDefinitions {
    /// `users`.
    #[serde(default)]
    pub users: Vec<UserDefinition>,
    /// `vhosts`.
    #[serde(default)]
    pub vhosts: Vec<VhostDefinition>,
    /// `permissions`.
    #[serde(default)]
    pub permissions: Vec<PermissionDefinition>,
    /// `topic_permissions`.
    #[serde(default)]
    pub topic_permissions: Vec<TopicPermissionDefinition>,
}

/// One entry of `users`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDefinition {
    /// `name`.
    pub name: String,
    /// `password_hash`: base64 of salt ‖ digest; `""` for a user without a password.
    #[serde(default)]
    pub password_hash: String,
    /// `hashing_algorithm` (RabbitMQ's default, SHA-256, when absent).
    #[serde(default)]
    pub hashing_algorithm: HashingAlgorithm,
    /// `tags`: a list (3.13+) or a comma-separated string (3.10–3.12) on import; a list on export.
    #[serde(default, deserialize_with = "tags_from_list_or_string")]
    pub tags: Vec<String>,
    /// `limits`: `max-connections`, `max-channels`.
    #[serde(default)]
    pub limits: BTreeMap<String, i64>,
}

/// One entry of `vhosts`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VhostDefinition {
    /// `name`.
    pub name: String,
    /// `limits`: `max-connections`, `max-queues`.
    #[serde(default)]
    pub limits: BTreeMap<String, i64>,
    /// `metadata` (RabbitMQ 3.11+).
    #[serde(default)]
    pub metadata: VhostMetadata,
    /// Top-level `description`, which some exports carry beside `metadata` (it wins on import,
    /// as in `rabbit_definitions:add_vhost/2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Top-level `tags`, likewise.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_tags"
    )]
    pub tags: Option<Vec<String>>,
}

/// A vhost's `metadata`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VhostMetadata {
    /// `description`.
    #[serde(default)]
    pub description: String,
    /// `tags`.
    #[serde(default, deserialize_with = "tags_from_list_or_string")]
    pub tags: Vec<String>,
    /// `default_queue_type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_queue_type: Option<String>,
}

/// One entry of `permissions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionDefinition {
    /// `user`.
    pub user: String,
    /// `vhost`.
    pub vhost: String,
    /// `configure`.
    pub configure: String,
    /// `write`.
    pub write: String,
    /// `read`.
    pub read: String,
}

/// One entry of `topic_permissions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicPermissionDefinition {
    /// `user`.
    pub user: String,
    /// `vhost`.
    pub vhost: String,
    /// `exchange`.
    pub exchange: String,
    /// `write`.
    pub write: String,
    /// `read`.
    pub read: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TagsField {
    List(Vec<String>),
    Text(String),
}

impl TagsField {
    fn into_tags(self) -> Vec<String> {
        match self {
            TagsField::List(list) => list.iter().flat_map(|t| parse_tags(t)).collect(),
            TagsField::Text(text) => parse_tags(&text),
        }
    }
}

fn tags_from_list_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(TagsField::deserialize(d)?.into_tags())
}

fn optional_tags<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    Ok(Some(TagsField::deserialize(d)?.into_tags()))
}

const MAX_CONNECTIONS: &str = "max-connections";
const MAX_CHANNELS: &str = "max-channels";
const MAX_QUEUES: &str = "max-queues";

/// A negative limit is RabbitMQ's "unlimited".
fn limit(map: &BTreeMap<String, i64>, key: &str) -> Option<u64> {
    map.get(key).and_then(|v| u64::try_from(*v).ok())
}

fn limits_map(entries: [(&str, Option<u64>); 2]) -> BTreeMap<String, i64> {
    entries
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_owned(), i64::try_from(v?).unwrap_or(i64::MAX))))
        .collect()
}

impl UserDefinition {
    /// The definition of `user`.
    pub fn from_user(user: &User) -> Self {
        UserDefinition {
            name: user.name.clone(),
            password_hash: user
                .password
                .as_ref()
                .map(PasswordHash::to_base64)
                .unwrap_or_default(),
            hashing_algorithm: user
                .password
                .as_ref()
                .map(PasswordHash::algorithm)
                .unwrap_or_default(),
            tags: user.tags.clone(),
            limits: limits_map([
                (MAX_CONNECTIONS, user.limits.max_connections),
                (MAX_CHANNELS, user.limits.max_channels),
            ]),
        }
    }

    /// The user it describes; a hash that cannot be used is refused.
    pub fn to_user(&self) -> Result<User, ManageError> {
        let password = PasswordHash::try_from_base64(self.hashing_algorithm, &self.password_hash)
            .map_err(|e| ManageError::InvalidPasswordHash {
            user: self.name.clone(),
            reason: e.to_string(),
        })?;
        if self.name.is_empty() {
            return Err(ManageError::EmptyName("user"));
        }
        Ok(User {
            name: self.name.clone(),
            password,
            tags: self.tags.clone(),
            limits: UserLimits {
                max_connections: limit(&self.limits, MAX_CONNECTIONS),
                max_channels: limit(&self.limits, MAX_CHANNELS),
            },
        })
    }
}

impl VhostDefinition {
    /// The definition of `info`, in RabbitMQ 3.13's export shape (`name`, `limits`, `metadata`).
    pub fn from_info(info: &VhostInfo) -> Self {
        VhostDefinition {
            name: info.name.clone(),
            limits: limits_map([
                (MAX_CONNECTIONS, info.limits.max_connections),
                (MAX_QUEUES, info.limits.max_queues),
            ]),
            metadata: VhostMetadata {
                description: info.description.clone(),
                tags: info.tags.clone(),
                default_queue_type: info.default_queue_type.clone(),
            },
            description: None,
            tags: None,
        }
    }

    /// The vhost record it describes.
    pub fn to_info(&self) -> VhostInfo {
        VhostInfo {
            name: self.name.clone(),
            description: self
                .description
                .clone()
                .unwrap_or_else(|| self.metadata.description.clone()),
            tags: self
                .tags
                .clone()
                .unwrap_or_else(|| self.metadata.tags.clone()),
            default_queue_type: self.metadata.default_queue_type.clone(),
            limits: VhostLimits {
                max_connections: limit(&self.limits, MAX_CONNECTIONS),
                max_queues: limit(&self.limits, MAX_QUEUES),
            },
        }
    }
}

/// Definitions checked and compiled, ready to apply under the lock.
pub(super) struct Parsed {
    vhosts: Vec<VhostInfo>,
    users: Vec<User>,
    permissions: Vec<(String, String, Permission)>,
    topic_permissions: Vec<(String, String, String, TopicPermission)>,
}

impl AccessDefinitions {
    pub(super) fn from_model(m: &Model) -> Self {
        let mut users: Vec<_> = m
            .users
            .values()
            .map(|u| UserDefinition::from_user(u))
            .collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        let vhosts = m
            .vhosts
            .values()
            .map(|v| VhostDefinition::from_info(v))
            .collect();
        let mut permissions = Vec::new();
        let mut topic_permissions = Vec::new();
        for (user, by_vhost) in &m.permissions {
            for (vhost, p) in by_vhost {
                permissions.push(PermissionDefinition {
                    user: user.clone(),
                    vhost: vhost.clone(),
                    configure: p.configure.as_str().to_owned(),
                    write: p.write.as_str().to_owned(),
                    read: p.read.as_str().to_owned(),
                });
            }
        }
        for (user, by_vhost) in &m.topic_permissions {
            for (vhost, by_exchange) in by_vhost {
                for (exchange, p) in by_exchange.iter() {
                    topic_permissions.push(TopicPermissionDefinition {
                        user: user.clone(),
                        vhost: vhost.clone(),
                        exchange: exchange.clone(),
                        write: p.write.as_str().to_owned(),
                        read: p.read.as_str().to_owned(),
                    });
                }
            }
        }
        permissions.sort_by(|a, b| (&a.user, &a.vhost).cmp(&(&b.user, &b.vhost)));
        topic_permissions.sort_by(|a, b| {
            (&a.user, &a.vhost, &a.exchange).cmp(&(&b.user, &b.vhost, &b.exchange))
        });
        AccessDefinitions {
            users,
            vhosts,
            permissions,
            topic_permissions,
        }
    }

    pub(super) fn parse(&self) -> Result<Parsed, ManageError> {
        let vhosts = self
            .vhosts
            .iter()
            .map(|v| {
                let info = v.to_info();
                validate_vhost(&info).map(|_| info)
            })
            .collect::<Result<_, _>>()?;
        let users = self
            .users
            .iter()
            .map(UserDefinition::to_user)
            .collect::<Result<_, _>>()?;
        let permissions = self
            .permissions
            .iter()
            .map(|p| {
                Permission::try_new(&p.configure, &p.write, &p.read)
                    .map(|c| (p.user.clone(), p.vhost.clone(), c))
            })
            .collect::<Result<_, _>>()?;
        let topic_permissions = self
            .topic_permissions
            .iter()
            .map(|p| {
                TopicPermission::try_new(&p.write, &p.read)
                    .map(|c| (p.user.clone(), p.vhost.clone(), p.exchange.clone(), c))
            })
            .collect::<Result<_, _>>()?;
        Ok(Parsed {
            vhosts,
            users,
            permissions,
            topic_permissions,
        })
    }
}

impl Parsed {
    /// Applies in RabbitMQ's import order; a permission naming a user or vhost that exists
    /// neither in the model nor in the document is refused before anything changes.
    pub(super) fn apply(self, m: &mut Model, c: &mut Changes) -> Result<(), ManageError> {
        self.check_references(m)?;
        self.apply_checked(m, c);
        Ok(())
    }

    /// A permission naming a user or vhost that exists neither in the model nor in the
    /// document is refused.
    pub(super) fn check_references(&self, m: &Model) -> Result<(), ManageError> {
        let has_user =
            |m: &Model, u: &str| m.users.contains_key(u) || self.users.iter().any(|x| x.name == u);
        let has_vhost = |m: &Model, v: &str| {
            m.vhosts.contains_key(v) || self.vhosts.iter().any(|x| x.name == v)
        };
        let refs = self
            .permissions
            .iter()
            .map(|(u, v, _)| (u, v))
            .chain(self.topic_permissions.iter().map(|(u, v, _, _)| (u, v)));
        for (user, vhost) in refs {
            if !has_vhost(m, vhost) {
                return Err(ManageError::NoSuchVhost(vhost.clone()));
            }
            if !has_user(m, user) {
                return Err(ManageError::NoSuchUser(user.clone()));
            }
        }
        Ok(())
    }

    fn apply_checked(self, m: &mut Model, c: &mut Changes) {
        for info in self.vhosts {
            let name = info.name.clone();
            m.vhosts.insert(name.clone(), Arc::new(info));
            c.vhost(m, &name);
        }
        for user in self.users {
            let name = user.name.clone();
            m.users.insert(name.clone(), Arc::new(user));
            c.user(m, &name);
        }
        for (user, vhost, p) in self.permissions {
            insert_permission(m, &user, &vhost, p);
            c.permission(m, &user, &vhost);
        }
        for (user, vhost, exchange, p) in self.topic_permissions {
            insert_topic_permission(m, &user, &vhost, &exchange, p);
            c.topic_permission(m, &user, &vhost, &exchange);
        }
    }
}

/// The runtime-parameter component RabbitMQ 3.10–3.12 keeps vhost limits in (definitions
/// `parameters[{vhost, component: "vhost-limits", name: "limits", value}]`).
pub const VHOST_LIMITS_COMPONENT: &str = "vhost-limits";

/// Reads a `vhost-limits` parameter value such as `{"max-connections": 10, "max-queues": -1}`
/// (negative: unlimited), refusing what `rabbit_vhost_limit` refuses: non-integers and unknown
/// keys.
pub fn vhost_limits_from_parameter(value: &serde_json::Value) -> Result<VhostLimits, String> {
    let map = value.as_object().ok_or_else(|| {
        format!("{VHOST_LIMITS_COMPONENT} must be an object, actually was {value}")
    })?;
    let mut limits = VhostLimits::default();
    for (key, v) in map {
        let n = v
            .as_i64()
            .ok_or_else(|| format!("{key} should be a number, actually was {v}"))?;
        let n = u64::try_from(n).ok();
        match key.as_str() {
            MAX_CONNECTIONS => limits.max_connections = n,
            MAX_QUEUES => limits.max_queues = n,
            _ => {
                return Err(format!(
                    "Unrecognised terms [{key}] in {VHOST_LIMITS_COMPONENT}"
                ))
            }
        }
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vhost_limits_parameters_of_rabbitmq_310_parse() {
        assert_eq!(
            vhost_limits_from_parameter(&json!({"max-connections": 10, "max-queues": -1})),
            Ok(VhostLimits {
                max_connections: Some(10),
                max_queues: None
            })
        );
        assert!(vhost_limits_from_parameter(&json!({"max-connections": "ten"})).is_err());
        assert!(vhost_limits_from_parameter(&json!({"max-exchanges": 1})).is_err());
        assert!(vhost_limits_from_parameter(&json!([1])).is_err());
    }
}
