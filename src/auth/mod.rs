//! Access control: users (RabbitMQ's password hashes, tags, limits), vhost records, permissions
//! and topic permissions, login over SASL PLAIN/AMQPLAIN/EXTERNAL, and the per-channel
//! permission cache. Never sees a frame or a socket: callers turn [`AccessError`] into replies
//! (`crate::error`) and [`AuthError`] into the login refusal.
//!
//! Who calls what:
//! - handshake: [`offered_mechanisms`], [`AccessControl::login`] (then [`login_refused_text`] on
//!   error), [`AccessControl::check_connection_open`] on connection.open;
//! - connection, on channel.open: [`AccessControl::open_channel`] → a [`ChannelAccess`] kept by
//!   the channel;
//! - channel: [`ChannelAccess::check_queue`] / [`ChannelAccess::check_exchange`] /
//!   [`ChannelAccess::check_any`] / [`ChannelAccess::check_topic`] /
//!   [`ChannelAccess::check_user_id`], and [`AccessControl::check_queue_limit`];
//! - management and the store: the mutators of [`AccessControl`], [`AccessControl::snapshot`]
//!   and [`AccessControl::import`].

mod access_control;
mod changes;
mod channel_access;
mod definitions;
mod error;
mod password;
mod permission;
mod sasl;
mod user;
mod vhost;

#[cfg(test)]
mod tests;

pub use access_control::{AccessControl, AuthUser, TopicPermissions, DEFAULT_VHOST};
pub use changes::{AccessChange, AccessJournal};
pub use channel_access::{ChannelAccess, DEFAULT_EXCHANGE_NAME};
pub use definitions::{
    vhost_limits_from_parameter, AccessDefinitions, PermissionDefinition,
    TopicPermissionDefinition, UserDefinition, VhostDefinition, VhostMetadata,
    VHOST_LIMITS_COMPONENT,
};
pub use error::{
    login_refused_text, user_deleted_text, vhost_deleted_text, AccessError, AuthError, ManageError,
    ResourceKind,
};
pub use password::{HashingAlgorithm, PasswordHash, PasswordHashError};
pub use permission::{
    Access, InvalidPattern, Pattern, Permission, TopicPattern, TopicPermission, TopicVariables,
};
pub use sasl::{
    offered_mechanisms, parse_response, Credentials, MECHANISMS, MECHANISMS_WITH_EXTERNAL,
};
pub use user::{
    parse_tags, User, UserLimits, TAG_ADMINISTRATOR, TAG_IMPERSONATOR, TAG_MANAGEMENT,
    TAG_MONITORING, TAG_POLICYMAKER,
};
pub use vhost::{validate_queue_type, VhostInfo, VhostLimits, QUEUE_TYPES};

/// The broker's user database (the name today's callers use).
pub type Users = AccessControl;
