//! AMQP errors the broker sends to a peer: a reply code, RabbitMQ's reply text, and the method
//! that caused it. Soft codes close a channel; hard codes close the connection.

use crate::vhost::{BindError, DeclareError, DeleteError, LookupError, PublishError};
use warren_protocol::{Method, ReplyCode};

/// A failure the peer must be told about, and how far it spreads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmqpError {
    /// The reply code.
    pub code: ReplyCode,
    /// Text after RabbitMQ's `CODE_NAME - ` prefix.
    pub text: String,
    /// Class of the method that failed (0 when none).
    pub class_id: u16,
    /// Method that failed (0 when none).
    pub method_id: u16,
}

impl AmqpError {
    /// An error with `code` and `text`.
    pub fn new(code: ReplyCode, text: impl Into<String>) -> Self {
        AmqpError {
            code,
            text: text.into(),
            class_id: 0,
            method_id: 0,
        }
    }

    /// 404: a queue or exchange that does not exist.
    pub fn not_found(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::NotFound, text)
    }

    /// 403: reserved names, permissions, exclusive consumers.
    pub fn access_refused(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::AccessRefused, text)
    }

    /// 405: another connection's exclusive queue.
    pub fn resource_locked(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::ResourceLocked, text)
    }

    /// 406: inequivalent redeclares, unknown delivery tags, in-use deletes.
    pub fn precondition_failed(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::PreconditionFailed, text)
    }

    /// 503: a method that is not valid now.
    pub fn command_invalid(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::CommandInvalid, text)
    }

    /// 504: frames on a channel that is not open.
    pub fn channel_error(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::ChannelError, text)
    }

    /// 505: a frame out of order.
    pub fn unexpected_frame(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::UnexpectedFrame, text)
    }

    /// 530: forbidden by the server (consumer tag reuse, missing vhost).
    pub fn not_allowed(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::NotAllowed, text)
    }

    /// 540: a method Warren does not implement.
    pub fn not_implemented(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::NotImplemented, text)
    }

    /// 541: a Warren bug; closes the connection, never the process.
    pub fn internal(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::InternalError, text)
    }

    /// Records the method that failed, for the close method's class-id/method-id.
    pub fn caused_by(mut self, method: &Method) -> Self {
        self.class_id = method.class_id();
        self.method_id = method.method_id();
        self
    }

    /// Records the class/method ids of the method that failed.
    pub fn with_method(mut self, class_id: u16, method_id: u16) -> Self {
        self.class_id = class_id;
        self.method_id = method_id;
        self
    }

    /// Whether only the channel closes.
    pub fn is_soft(&self) -> bool {
        self.code.is_soft()
    }

    /// The reply text as RabbitMQ writes it: `NOT_FOUND - no queue 'q' in vhost '/'`.
    pub fn reply_text(&self) -> String {
        format!("{} - {}", self.code.as_str(), self.text)
    }
}

impl std::fmt::Display for AmqpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code.code(), self.reply_text())
    }
}

impl std::error::Error for AmqpError {}

/// Shorthand for channel and connection handlers.
pub type AmqpResult<T> = Result<T, AmqpError>;

/// A refusal by the vhost (one type per operation, see `src/vhost/errors.rs`), answered with
/// RabbitMQ's reply code and words, which name the vhost.
pub trait Refusal {
    /// The reply for this refusal in `vhost`.
    fn reply(self, vhost: &str) -> AmqpError;
}

impl Refusal for LookupError {
    fn reply(self, vhost: &str) -> AmqpError {
        match self {
            LookupError::QueueNotFound(q) => {
                AmqpError::not_found(format!("no queue '{q}' in vhost '{vhost}'"))
            }
            LookupError::ExchangeNotFound(x) => {
                AmqpError::not_found(format!("no exchange '{x}' in vhost '{vhost}'"))
            }
            LookupError::Locked(q) => AmqpError::resource_locked(format!(
                "cannot obtain exclusive access to locked queue '{q}' in vhost '{vhost}'. It could be originally \
                 declared on another connection or the exclusive property value does not match that of the \
                 original declaration."
            )),
        }
    }
}

/// 403 for the default exchange, in the words RabbitMQ uses for every operation on it.
fn default_exchange() -> AmqpError {
    AmqpError::access_refused("operation not permitted on the default exchange")
}

impl Refusal for DeclareError {
    fn reply(self, vhost: &str) -> AmqpError {
        match self {
            DeclareError::Lookup(e) => e.reply(vhost),
            DeclareError::Inequivalent { what, name, field, received, current } => AmqpError::precondition_failed(format!(
                "inequivalent arg '{field}' for {what} '{name}' in vhost '{vhost}': received {received} but current is {current}"
            )),
            DeclareError::ReservedName { what, name } => {
                AmqpError::access_refused(format!("{what} name '{name}' contains reserved prefix 'amq.*'"))
            }
            DeclareError::DefaultExchange => default_exchange(),
            DeclareError::UnknownExchangeType(t) => AmqpError::command_invalid(format!("unknown exchange type '{t}'")),
            DeclareError::BadArguments(text) => AmqpError::precondition_failed(text),
            DeclareError::InvalidArgumentType { what, name, argument, type_name } => AmqpError::precondition_failed(format!(
                "invalid type '{type_name}' for arg '{argument}' in {what} '{name}' in vhost '{vhost}'"
            )),
        }
    }
}

impl Refusal for DeleteError {
    fn reply(self, vhost: &str) -> AmqpError {
        match self {
            DeleteError::Lookup(e) => e.reply(vhost),
            DeleteError::DefaultExchange => default_exchange(),
            DeleteError::SystemExchange(x) => AmqpError::access_refused(format!(
                "deletion of system exchange '{x}' in vhost '{vhost}' not allowed"
            )),
            DeleteError::InUse { what, name } => {
                AmqpError::precondition_failed(format!("{what} '{name}' in vhost '{vhost}' in use"))
            }
            DeleteError::NotEmpty(q) => {
                AmqpError::precondition_failed(format!("queue '{q}' in vhost '{vhost}' not empty"))
            }
            DeleteError::QuorumConditional { flag, name } => AmqpError::not_implemented(format!(
                "cannot delete queue '{name}' in vhost '{vhost}'. queue.delete operations with \
                 {flag} flag set are not supported by quorum queues"
            )),
        }
    }
}

impl Refusal for BindError {
    fn reply(self, vhost: &str) -> AmqpError {
        match self {
            BindError::Lookup(e) => e.reply(vhost),
            BindError::DefaultExchange => default_exchange(),
            BindError::BadArguments(text) => AmqpError::precondition_failed(text),
        }
    }
}

impl Refusal for PublishError {
    fn reply(self, vhost: &str) -> AmqpError {
        match self {
            PublishError::Lookup(e) => e.reply(vhost),
            PublishError::Internal(x) => AmqpError::access_refused(format!(
                "cannot publish to internal exchange '{x}' in vhost '{vhost}'"
            )),
        }
    }
}

impl From<crate::exchange::sender_selected::InvalidRoutingHeader> for AmqpError {
    /// RabbitMQ's words for a `CC`/`BCC` header that is not an array (Erlang's printing of
    /// `{unacceptable_type_in_header, "CC", longstr}`).
    fn from(e: crate::exchange::sender_selected::InvalidRoutingHeader) -> Self {
        Self::precondition_failed(format!(
            "invalid message: {{unacceptable_type_in_header,\"{}\",{}}}",
            e.header, e.type_name
        ))
    }
}

impl From<crate::auth::AccessError> for AmqpError {
    /// Reply codes of refused access, as RabbitMQ: permissions 403 (channel), vhost access and
    /// connection/channel limits 530 (connection), queue limit and `user-id` 406 (channel).
    fn from(e: crate::auth::AccessError) -> Self {
        use crate::auth::AccessError as A;
        let text = e.to_string();
        match e {
            A::Resource { .. } | A::Topic { .. } => Self::access_refused(text),
            A::Vhost { .. }
            | A::VhostNotFound { .. }
            | A::VhostConnectionLimit { .. }
            | A::UserConnectionLimit { .. }
            | A::UserChannelLimit { .. } => Self::not_allowed(text),
            A::QueueLimit { .. } | A::UserIdMismatch { .. } => Self::precondition_failed(text),
        }
    }
}

#[cfg(test)]
mod access_error_tests {
    use super::*;
    use crate::auth::{AccessError, ResourceKind};

    #[test]
    fn access_errors_get_rabbitmqs_codes_and_texts() {
        let e: AmqpError = AccessError::Resource {
            kind: ResourceKind::Queue,
            name: "q".into(),
            vhost: "/".into(),
            user: "u".into(),
        }
        .into();
        assert_eq!(e.code, ReplyCode::AccessRefused);
        assert_eq!(
            e.reply_text(),
            "ACCESS_REFUSED - access to queue 'q' in vhost '/' refused for user 'u'"
        );
        let v: AmqpError = AccessError::Vhost {
            vhost: "/".into(),
            user: "u".into(),
        }
        .into();
        assert_eq!(
            v.reply_text(),
            "NOT_ALLOWED - access to vhost '/' refused for user 'u'"
        );
        assert!(!v.is_soft());
        let q: AmqpError = AccessError::QueueLimit {
            queue: "q".into(),
            vhost: "/".into(),
            limit: 1,
        }
        .into();
        assert_eq!(q.code, ReplyCode::PreconditionFailed);
    }
}
