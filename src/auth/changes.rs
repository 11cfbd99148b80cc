//! What the store writes down when the access model changes: one [`AccessChange`] per user,
//! vhost, permission or topic permission touched, in the order the model applied them. The
//! model hands them to its [`AccessJournal`] under its lock, so the store sees them in order.

use super::access_control::Model;
use super::definitions::{
    PermissionDefinition, TopicPermissionDefinition, UserDefinition, VhostDefinition,
};
use serde::{Deserialize, Serialize};

/// One durable change to the access model. Limits travel inside the user and vhost records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AccessChange {
    /// Creates or replaces a user.
    PutUser(UserDefinition),
    /// Removes a user with its permissions and topic permissions.
    DeleteUser(String),
    /// Creates or replaces a vhost record.
    PutVhost(VhostDefinition),
    /// Removes a vhost with every permission, topic permission and object in it.
    DeleteVhost(String),
    /// Sets a user's permission in a vhost.
    PutPermission(PermissionDefinition),
    /// Clears a user's permission in a vhost.
    DeletePermission {
        /// The user.
        user: String,
        /// The vhost.
        vhost: String,
    },
    /// Sets a user's topic permission on one exchange.
    PutTopicPermission(TopicPermissionDefinition),
    /// Clears a user's topic permission on one exchange.
    DeleteTopicPermission {
        /// The user.
        user: String,
        /// The vhost.
        vhost: String,
        /// The exchange.
        exchange: String,
    },
}

/// Where the model's changes go to be made durable (the metadata store). Called under the
/// model's write lock: it must only queue the changes, never wait for a disk.
pub trait AccessJournal: Send + Sync {
    /// Writes `changes` down in order.
    fn record(&self, changes: Vec<AccessChange>);
}

/// Collects the changes of one mutation from the model as it is after the mutation.
#[derive(Default)]
pub(super) struct Changes(pub(super) Vec<AccessChange>);

impl Changes {
    /// `user`'s record as it is now (removed if it is gone).
    pub(super) fn user(&mut self, m: &Model, user: &str) {
        self.0.push(match m.users.get(user) {
            Some(u) => AccessChange::PutUser(UserDefinition::from_user(u)),
            None => AccessChange::DeleteUser(user.to_owned()),
        });
    }

    /// `vhost`'s record as it is now (removed if it is gone).
    pub(super) fn vhost(&mut self, m: &Model, vhost: &str) {
        self.0.push(match m.vhosts.get(vhost) {
            Some(v) => AccessChange::PutVhost(VhostDefinition::from_info(v)),
            None => AccessChange::DeleteVhost(vhost.to_owned()),
        });
    }

    /// `user`'s permission in `vhost` as it is now.
    pub(super) fn permission(&mut self, m: &Model, user: &str, vhost: &str) {
        let found = m.permissions.get(user).and_then(|v| v.get(vhost));
        self.0.push(match found {
            Some(p) => AccessChange::PutPermission(PermissionDefinition {
                user: user.to_owned(),
                vhost: vhost.to_owned(),
                configure: p.configure.as_str().to_owned(),
                write: p.write.as_str().to_owned(),
                read: p.read.as_str().to_owned(),
            }),
            None => AccessChange::DeletePermission {
                user: user.to_owned(),
                vhost: vhost.to_owned(),
            },
        });
    }

    /// `user`'s topic permission on `exchange` in `vhost` as it is now.
    pub(super) fn topic_permission(&mut self, m: &Model, user: &str, vhost: &str, exchange: &str) {
        let found = m
            .topic_permissions
            .get(user)
            .and_then(|v| v.get(vhost))
            .and_then(|x| x.get(exchange));
        self.0.push(match found {
            Some(p) => AccessChange::PutTopicPermission(TopicPermissionDefinition {
                user: user.to_owned(),
                vhost: vhost.to_owned(),
                exchange: exchange.to_owned(),
                write: p.write.as_str().to_owned(),
                read: p.read.as_str().to_owned(),
            }),
            None => AccessChange::DeleteTopicPermission {
                user: user.to_owned(),
                vhost: vhost.to_owned(),
                exchange: exchange.to_owned(),
            },
        });
    }
}
