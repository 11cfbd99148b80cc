//! Why access was refused, with RabbitMQ's texts (3.10.8's `rabbit_access_control`,
//! `rabbit_reader` and `rabbit_channel`, read from the broker's own code). The reply codes are
//! chosen in `crate::error`; this module never builds frames.

use super::permission::InvalidPattern;
use std::fmt;

/// A queue or an exchange, as RabbitMQ's `rabbit_misc:rs/1` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// A queue.
    Queue,
    /// An exchange (the default exchange is `amq.default`).
    Exchange,
}

impl ResourceKind {
    /// `queue` or `exchange`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Queue => "queue",
            ResourceKind::Exchange => "exchange",
        }
    }
}

/// A refusal after login: a permission, a limit, or a property the user may not set.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// 403 on the channel.
    #[error("access to {} '{name}' in vhost '{vhost}' refused for user '{user}'", kind.as_str())]
    Resource {
        /// Queue or exchange.
        kind: ResourceKind,
        /// Its name (`amq.default` for the default exchange).
        name: String,
        /// Its vhost.
        vhost: String,
        /// The user refused.
        user: String,
    },
    /// 403 on the channel. RabbitMQ's text names the exchange twice ("in exchange exchange").
    #[error("access to topic '{routing_key}' in exchange exchange '{exchange}' in vhost '{vhost}' refused for user '{user}'")]
    Topic {
        /// The routing or binding key.
        routing_key: String,
        /// The topic exchange.
        exchange: String,
        /// Its vhost.
        vhost: String,
        /// The user refused.
        user: String,
    },
    /// 530 on connection.open: no permission entry, or no such vhost.
    #[error("access to vhost '{vhost}' refused for user '{user}'")]
    Vhost {
        /// The vhost asked for.
        vhost: String,
        /// The user refused.
        user: String,
    },
    /// 530 on connection.open of a vhost that does not exist (checked first, with the limit).
    #[error("vhost {vhost} not found")]
    VhostNotFound {
        /// The vhost asked for.
        vhost: String,
    },
    /// 530 on connection.open.
    #[error("access to vhost '{vhost}' refused for user '{user}': connection limit ({limit}) is reached")]
    VhostConnectionLimit {
        /// The vhost.
        vhost: String,
        /// The user.
        user: String,
        /// Its `max-connections`.
        limit: u64,
    },
    /// 530 on connection.open.
    #[error("connection refused for user '{user}': user connection limit ({limit}) is reached")]
    UserConnectionLimit {
        /// The user.
        user: String,
        /// Its `max-connections`.
        limit: u64,
    },
    /// 530 on channel.open (a connection error in RabbitMQ).
    #[error("number of channels opened for user '{user}' has reached the maximum allowed user limit of ({limit})")]
    UserChannelLimit {
        /// The user.
        user: String,
        /// Its `max-channels`.
        limit: u64,
    },
    /// 406 on queue.declare.
    #[error("cannot declare queue '{queue}': queue limit in vhost '{vhost}' ({limit}) is reached")]
    QueueLimit {
        /// The queue being declared.
        queue: String,
        /// Its vhost.
        vhost: String,
        /// The vhost's `max-queues`.
        limit: u64,
    },
    /// 406 on basic.publish: `user-id` is another user and this one is no impersonator.
    #[error("user_id property set to '{claimed}' but authenticated user was '{actual}'")]
    UserIdMismatch {
        /// The message's `user-id`.
        claimed: String,
        /// The authenticated user.
        actual: String,
    },
}

/// Why a login was refused. The client only ever hears [`login_refused_text`]; this detail goes to
/// the log ([`AuthError::log_text`]), as RabbitMQ does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Mechanism not offered.
    UnknownMechanism(String),
    /// The SASL response could not be parsed.
    MalformedResponse,
    /// Unknown user, wrong or blank password, or a user without a password.
    InvalidCredentials(String),
    /// The user may only connect from loopback (RabbitMQ's `loopback_users`).
    LoopbackOnly(String),
    /// EXTERNAL without a verified peer certificate.
    NoPeerCertificate,
}

impl AuthError {
    /// RabbitMQ's log line for this refusal (`rabbit_reader:auth_fail/5`), e.g.
    /// `PLAIN login refused: user 'guest' - invalid credentials`. Never contains a password;
    /// names the client sent are escaped, so a user name with a newline cannot forge a log line.
    pub fn log_text(&self, mechanism: &str) -> String {
        let detail = match self {
            AuthError::UnknownMechanism(m) => {
                let m = crate::logging::log_safe(m);
                return format!("unsupported authentication mechanism '{m}'");
            }
            AuthError::MalformedResponse => "malformed SASL response".to_owned(),
            AuthError::InvalidCredentials(u) => {
                let u = crate::logging::log_safe(u);
                format!("user '{u}' - invalid credentials")
            }
            AuthError::LoopbackOnly(u) => {
                let u = crate::logging::log_safe(u);
                format!("user '{u}' can only connect via localhost")
            }
            AuthError::NoPeerCertificate => "no peer certificate".to_owned(),
        };
        format!("{mechanism} login refused: {detail}")
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.log_text("SASL"))
    }
}

impl std::error::Error for AuthError {}

/// What a client is told when its login is refused (403 ACCESS_REFUSED), whatever the reason.
pub fn login_refused_text(mechanism: &str) -> String {
    format!(
        "Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."
    )
}

/// The 320 CONNECTION_FORCED text for connections of a deleted vhost.
pub fn vhost_deleted_text(vhost: &str) -> String {
    format!("vhost '{vhost}' is deleted")
}

/// The 320 CONNECTION_FORCED text for connections of a deleted user.
pub fn user_deleted_text(user: &str) -> String {
    format!("user '{user}' is deleted")
}

/// A refused change to users, vhosts or permissions (management, ctl, definitions import).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManageError {
    /// No such user.
    #[error("user '{0}' does not exist")]
    NoSuchUser(String),
    /// No such vhost.
    #[error("virtual host '{0}' does not exist")]
    NoSuchVhost(String),
    /// `add_user` of an existing user.
    #[error("user '{0}' already exists")]
    UserExists(String),
    /// `add_vhost` of an existing vhost.
    #[error("virtual host '{0}' already exists")]
    VhostExists(String),
    /// A permission pattern that does not compile.
    #[error(transparent)]
    InvalidPattern(#[from] InvalidPattern),
    /// An imported password hash that cannot be used.
    #[error("user '{user}': {reason}")]
    InvalidPasswordHash {
        /// The user.
        user: String,
        /// What is wrong.
        reason: String,
    },
    /// A `default_queue_type` that is not a queue type.
    #[error("{0}")]
    InvalidQueueType(String),
    /// A blank name.
    #[error("{0} name must not be empty")]
    EmptyName(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_rabbitmqs() {
        let e = AccessError::Resource {
            kind: ResourceKind::Queue,
            name: "q".into(),
            vhost: "/".into(),
            user: "u".into(),
        };
        assert_eq!(
            e.to_string(),
            "access to queue 'q' in vhost '/' refused for user 'u'"
        );
        let v = AccessError::Vhost {
            vhost: "/".into(),
            user: "u".into(),
        };
        assert_eq!(v.to_string(), "access to vhost '/' refused for user 'u'");
        let t = AccessError::Topic {
            routing_key: "a.b".into(),
            exchange: "amq.topic".into(),
            vhost: "/".into(),
            user: "u".into(),
        };
        assert_eq!(
            t.to_string(),
            "access to topic 'a.b' in exchange exchange 'amq.topic' in vhost '/' refused for user 'u'"
        );
        assert_eq!(
            login_refused_text("PLAIN"),
            "Login was refused using authentication mechanism PLAIN. For details see the broker logfile."
        );
        assert_eq!(
            AuthError::LoopbackOnly("guest".into()).log_text("PLAIN"),
            "PLAIN login refused: user 'guest' can only connect via localhost"
        );
        assert_eq!(
            AccessError::UserChannelLimit { user: "u".into(), limit: 2 }.to_string(),
            "number of channels opened for user 'u' has reached the maximum allowed user limit of (2)"
        );
        assert_eq!(vhost_deleted_text("v"), "vhost 'v' is deleted");
    }
}
