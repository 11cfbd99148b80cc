//! Why a vhost refused an operation: one error type per operation (declare, delete, bind,
//! publish), each holding only the refusals that operation can meet, and [`LookupError`] for
//! the names that do not resolve, which every operation shares. `src/error.rs` turns each into
//! RabbitMQ's reply code and text.

use warren_protocol::ShortStr;

/// 404 / 405: a name that does not resolve to something this connection may use.
#[derive(Debug, PartialEq, Eq)]
pub enum LookupError {
    /// 404 no such queue.
    QueueNotFound(ShortStr),
    /// 404 no such exchange.
    ExchangeNotFound(ShortStr),
    /// 405 another connection's exclusive queue.
    Locked(ShortStr),
}

/// Why an exchange.declare or queue.declare was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum DeclareError {
    /// The queue is another connection's exclusive queue (405).
    Lookup(LookupError),
    /// 406 redeclared with other properties, the values already in RabbitMQ's wording (`'true'`,
    /// `none`, `the value '10' of type 'long'`).
    Inequivalent {
        what: &'static str,
        name: ShortStr,
        field: String,
        received: String,
        current: String,
    },
    /// 403 `amq.` prefix.
    ReservedName { what: &'static str, name: ShortStr },
    /// 403 the default exchange cannot be declared.
    DefaultExchange,
    /// 503 unknown exchange type.
    UnknownExchangeType(String),
    /// 406 queue arguments that do not validate (the text is RabbitMQ's).
    BadArguments(String),
    /// 406 an argument of the wrong type, e.g. a non-string `alternate-exchange`.
    InvalidArgumentType {
        what: &'static str,
        name: ShortStr,
        argument: &'static str,
        type_name: &'static str,
    },
}

/// Why an exchange.delete or queue.delete was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum DeleteError {
    /// 405 another connection's exclusive queue.
    Lookup(LookupError),
    /// 403 the default exchange cannot be deleted.
    DefaultExchange,
    /// 403 exchanges named `amq.*` cannot be deleted.
    SystemExchange(ShortStr),
    /// 406 delete if-unused of a queue with consumers / an exchange with bindings.
    InUse { what: &'static str, name: ShortStr },
    /// 406 delete if-empty of a queue with messages.
    NotEmpty(ShortStr),
    /// 540 if-unused / if-empty on a quorum queue (`rabbit_quorum_queue:delete/4`).
    QuorumConditional {
        /// `if-unused` or `if-empty`.
        flag: &'static str,
        /// The queue.
        name: ShortStr,
    },
}

/// Why a queue.bind, exchange.bind or an unbind was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum BindError {
    /// 404 an end that does not exist, 405 another connection's exclusive queue.
    Lookup(LookupError),
    /// 403 the default exchange cannot be bound.
    DefaultExchange,
    /// 406 bad binding arguments.
    BadArguments(String),
}

/// Why a basic.publish was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum PublishError {
    /// 404 no such exchange.
    Lookup(LookupError),
    /// 403 publishing to an internal exchange.
    Internal(ShortStr),
}

macro_rules! from_lookup {
    ($($t:ident),*) => {$(
        impl From<LookupError> for $t {
            fn from(e: LookupError) -> Self {
                $t::Lookup(e)
            }
        }
    )*};
}
from_lookup!(DeclareError, DeleteError, BindError, PublishError);
