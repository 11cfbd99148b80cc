//! Queue x-arguments: parsed once when a queue is created, and validated the way RabbitMQ 3.10
//! validates them (`rabbit_amqqueue:declare_args/0`), so a client sees the same 406 texts.
//! Only new queues are validated: a redeclare is compared for equivalence instead (vhost.rs),
//! which is also what RabbitMQ does. Never touches queue state.

use super::kind::QueueType;
use crate::fields::field_type_name;
use warren_protocol::{FieldTable, FieldValue, ShortStr};

/// Per-queue message TTL in milliseconds.
pub const X_MESSAGE_TTL: &str = "x-message-ttl";
/// Delete the queue after this many milliseconds unused.
pub const X_EXPIRES: &str = "x-expires";
/// Exchange that dead-lettered messages are published to.
pub const X_DEAD_LETTER_EXCHANGE: &str = "x-dead-letter-exchange";
/// Routing key for dead-lettered messages (default: their own routing keys).
pub const X_DEAD_LETTER_ROUTING_KEY: &str = "x-dead-letter-routing-key";
/// Most ready messages the queue holds.
pub const X_MAX_LENGTH: &str = "x-max-length";
/// Most ready body bytes the queue holds.
pub const X_MAX_LENGTH_BYTES: &str = "x-max-length-bytes";
/// What happens when a length limit is reached.
pub const X_OVERFLOW: &str = "x-overflow";
/// Highest message priority the queue sorts by.
pub const X_MAX_PRIORITY: &str = "x-max-priority";
/// Only one consumer receives at a time.
pub const X_SINGLE_ACTIVE_CONSUMER: &str = "x-single-active-consumer";
/// classic / quorum / stream.
pub const X_QUEUE_TYPE: &str = "x-queue-type";
/// default / lazy (accepted; Warren keeps every queue the same way).
pub const X_QUEUE_MODE: &str = "x-queue-mode";
/// Milliseconds a delivery from this queue may stay unacknowledged (RabbitMQ 3.12+).
pub const X_CONSUMER_TIMEOUT: &str = "x-consumer-timeout";
/// Consumer priority, a basic.consume argument.
pub const X_PRIORITY: &str = "x-priority";

/// Arguments RabbitMQ 3.10.8 knows only for quorum or stream queues. A new classic queue that
/// names one is refused (`invalid arg '<key>' for queue '<q>' in vhost '<v>' of queue type
/// rabbit_classic_queue`, the first in table order, after every other argument check), and a
/// redeclare ignores them (vhost.rs). Both found with amqplib against 3.10.8 (interop/node):
/// Warren used to accept `x-delivery-limit` silently and then refuse a redeclare adding it.
pub const OTHER_QUEUE_TYPE_ARGUMENTS: &[&str] = &[
    "x-delivery-limit",
    "x-dead-letter-strategy",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-quorum-initial-group-size",
    "x-queue-leader-locator",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
    "x-initial-cluster-size",
];

/// RabbitMQ's `?MAX_EXPIRY_TIMER`: TTLs and expiries above ten years are refused (boundary
/// found with pika against 3.10.8: 315360000000 is accepted, one more is not).
pub const MAX_EXPIRY_MS: u64 = 315_360_000_000;

/// RabbitMQ caps `x-max-priority` at 255 (`?MAX_SUPPORTED_PRIORITY`).
pub const MAX_SUPPORTED_PRIORITY: i64 = 255;

/// `x-overflow`: what a full queue does with one more message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overflow {
    /// Drop (or dead-letter) the oldest ready messages.
    #[default]
    DropHead,
    /// Refuse the new message (nack to a confirming publisher).
    RejectPublish,
    /// Refuse it and dead-letter it.
    RejectPublishDlx,
}

/// The x-arguments a queue acts on, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueArgs {
    /// `x-message-ttl` in ms.
    pub message_ttl: Option<u64>,
    /// `x-expires` in ms (never 0).
    pub expires: Option<u64>,
    /// `x-dead-letter-exchange` (may be `""`, the default exchange).
    pub dead_letter_exchange: Option<ShortStr>,
    /// `x-dead-letter-routing-key`.
    pub dead_letter_routing_key: Option<ShortStr>,
    /// `x-max-length`.
    pub max_length: Option<u64>,
    /// `x-max-length-bytes`.
    pub max_length_bytes: Option<u64>,
    /// `x-overflow`.
    pub overflow: Overflow,
    /// Whether `x-overflow` was given (it then wins over a policy's `overflow`).
    pub overflow_declared: bool,
    /// `x-max-priority`, only when it makes a difference (1..=255).
    pub max_priority: Option<u8>,
    /// `x-single-active-consumer`.
    pub single_active_consumer: bool,
    /// `x-consumer-timeout` in ms: overrides the broker's `consumer_timeout` for deliveries
    /// from this queue.
    pub consumer_timeout: Option<u64>,
    /// A `delivery-limit` policy (quorum queues; their `x-delivery-limit` argument is read by
    /// the quorum backend, which takes the lower of the two).
    pub delivery_limit: Option<i64>,
}

/// Why a queue.declare's arguments were refused, as RabbitMQ words it (406 each).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgError {
    /// `invalid arg '<key>' for queue '<q>' in vhost '<v>': <reason>`; `reason` is the Erlang
    /// term RabbitMQ prints (`{value_negative,-1}`, `"expected integer, got longstr"`).
    Invalid {
        /// The argument.
        key: &'static str,
        /// The Erlang-formatted reason.
        reason: String,
    },
    /// `invalid type '<type>' for arg '<key>' in queue '<q>' in vhost '<v>'` (the DLX name).
    InvalidType {
        /// The argument.
        key: &'static str,
        /// RabbitMQ's name of the type received.
        type_name: &'static str,
    },
    /// `invalid property '<p>' for queue '<q>' in vhost '<v>'` (quorum/stream queues that are
    /// exclusive, auto-delete or not durable).
    InvalidProperty(&'static str),
    /// `invalid arg '<key>' for queue '<q>' in vhost '<v>' of queue type rabbit_classic_queue`:
    /// one of [`OTHER_QUEUE_TYPE_ARGUMENTS`].
    NotForClassicQueues(&'static str),
    /// The same for another queue type (`rabbit_quorum_queue`, ...).
    NotForQueueType {
        /// The argument.
        key: &'static str,
        /// RabbitMQ's module name of the type.
        queue_type: &'static str,
    },
}

impl ArgError {
    /// The reply text after `PRECONDITION_FAILED - `.
    pub fn text(&self, queue: &str, vhost: &str) -> String {
        match self {
            ArgError::Invalid { key, reason } => {
                format!("invalid arg '{key}' for queue '{queue}' in vhost '{vhost}': {reason}")
            }
            ArgError::InvalidType { key, type_name } => format!(
                "invalid type '{type_name}' for arg '{key}' in queue '{queue}' in vhost '{vhost}'"
            ),
            ArgError::InvalidProperty(p) => {
                format!("invalid property '{p}' for queue '{queue}' in vhost '{vhost}'")
            }
            ArgError::NotForClassicQueues(key) => format!(
                "invalid arg '{key}' for queue '{queue}' in vhost '{vhost}' of queue type rabbit_classic_queue"
            ),
            ArgError::NotForQueueType { key, queue_type } => format!(
                "invalid arg '{key}' for queue '{queue}' in vhost '{vhost}' of queue type {queue_type}"
            ),
        }
    }
}

/// What a queue.declare asked for besides its arguments, for the queue-type checks.
#[derive(Clone, Copy, Debug)]
pub struct DeclaredFlags {
    /// durable bit.
    pub durable: bool,
    /// auto-delete bit.
    pub auto_delete: bool,
    /// exclusive bit.
    pub exclusive: bool,
}

impl QueueArgs {
    /// Parses and validates a new queue's arguments. Unknown arguments are ignored, as in
    /// RabbitMQ.
    /// `x-queue-type` picks the type (`kind.rs`), which then checks its own arguments.
    pub fn try_parse(args: &FieldTable, flags: DeclaredFlags) -> Result<Self, ArgError> {
        let out = Self::try_parse_shared(args)?;
        let queue_type = QueueType::of_declare(args, flags)?;
        queue_type.validate_arguments(args)?;
        Ok(out)
    }

    /// Parses and validates the arguments every queue type reads (TTLs, dead-lettering,
    /// length limits, priorities, single active consumer, mode), in RabbitMQ's order; the
    /// queue type and its own arguments are checked after these.
    pub fn try_parse_shared(args: &FieldTable) -> Result<Self, ArgError> {
        // RabbitMQ's channel checks the DLX name's type before the queue validates the rest.
        let dlx = match args.get(X_DEAD_LETTER_EXCHANGE) {
            None => None,
            Some(FieldValue::LongStr(b)) => Some(short_str(b)),
            Some(other) => {
                return Err(ArgError::InvalidType {
                    key: X_DEAD_LETTER_EXCHANGE,
                    type_name: field_type_name(other),
                })
            }
        };
        let mut out = QueueArgs {
            expires: opt(args, X_EXPIRES, expires_arg)?,
            message_ttl: opt(args, X_MESSAGE_TTL, expiry)?,
            dead_letter_exchange: dlx,
            ..QueueArgs::default()
        };
        if let Some(v) = args.get(X_DEAD_LETTER_ROUTING_KEY) {
            out.dead_letter_routing_key =
                Some(dead_letter_routing_key(v, args, X_DEAD_LETTER_ROUTING_KEY)?);
        }
        out.max_length = opt(args, X_MAX_LENGTH, non_negative)?;
        out.consumer_timeout = opt(args, X_CONSUMER_TIMEOUT, non_negative)?;
        out.max_length_bytes = opt(args, X_MAX_LENGTH_BYTES, non_negative)?;
        let max_priority = opt(args, X_MAX_PRIORITY, max_priority)?;
        // 0 means a single priority level: an ordinary FIFO queue.
        out.max_priority = max_priority
            .and_then(|p| u8::try_from(p).ok())
            .filter(|p| *p > 0);
        if let Some(v) = args.get(X_OVERFLOW) {
            out.overflow = overflow(v).map_err(|reason| invalid(X_OVERFLOW, reason))?;
            out.overflow_declared = true;
        }
        if let Some(v) = args.get(X_QUEUE_MODE) {
            queue_mode(v).map_err(|reason| invalid(X_QUEUE_MODE, reason))?;
        }
        if let Some(v) = args.get(crate::dedup::X_MESSAGE_DEDUPLICATION) {
            use crate::dedup::{X_CACHE_SIZE, X_CACHE_TTL, X_MESSAGE_DEDUPLICATION};
            if !matches!(v, FieldValue::Bool(_)) {
                return Err(invalid(X_MESSAGE_DEDUPLICATION, unacceptable(v)));
            }
            opt(args, X_CACHE_SIZE, non_negative)?;
            opt(args, X_CACHE_TTL, non_negative)?;
        }
        if let Some(v) = args.get(X_SINGLE_ACTIVE_CONSUMER) {
            out.single_active_consumer = match v {
                FieldValue::Bool(b) => *b,
                other => return Err(invalid(X_SINGLE_ACTIVE_CONSUMER, unacceptable(other))),
            };
        }
        Ok(out)
    }

    /// Best-effort parse of arguments already validated once (a restored queue): anything
    /// invalid is left out rather than refused.
    pub fn parse_lenient(args: &FieldTable) -> Self {
        let flags = DeclaredFlags {
            durable: true,
            auto_delete: false,
            exclusive: false,
        };
        let mut clean = args.clone();
        clean.remove(X_QUEUE_TYPE);
        // Queues declared before these were refused keep their other arguments.
        for key in OTHER_QUEUE_TYPE_ARGUMENTS {
            clean.remove(key);
        }
        Self::try_parse(&clean, flags).unwrap_or_default()
    }

    /// Whether a length limit applies.
    pub fn has_limits(&self) -> bool {
        self.max_length.is_some() || self.max_length_bytes.is_some()
    }
}

/// A consumer's `x-priority` (basic.consume arguments); any integer, as in RabbitMQ.
pub fn consumer_priority(args: &FieldTable) -> Result<i64, ArgError> {
    match args.get(X_PRIORITY) {
        None => Ok(0),
        Some(v) => integer(v).map_err(|reason| invalid(X_PRIORITY, reason)),
    }
}

/// Why a per-message `expiration` property was refused: the text after
/// `PRECONDITION_FAILED - ` is `invalid expiration '<value>': <reason>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpirationError(pub String);

/// Parses a message's `expiration` property the way RabbitMQ does (`string:to_integer`, then
/// the expiry bounds): optional sign, digits, nothing after them.
pub fn parse_expiration(value: &str) -> Result<u64, ExpirationError> {
    let bytes = value.as_bytes();
    let sign_len = usize::from(matches!(bytes.first(), Some(b'+' | b'-')));
    let digits = bytes[sign_len..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 {
        return Err(ExpirationError("no_integer".into()));
    }
    let end = sign_len + digits;
    if end < bytes.len() {
        return Err(ExpirationError(format!(
            "{{leftover_string,{}}}",
            erlang_string(&value[end..])
        )));
    }
    let magnitude = value[sign_len..end].bytes().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    let negative = bytes.first() == Some(&b'-') && magnitude > 0;
    if negative {
        return Err(ExpirationError(format!("{{value_negative,-{magnitude}}}")));
    }
    if magnitude > MAX_EXPIRY_MS {
        return Err(ExpirationError(format!(
            "{{value_too_large,{}}}",
            &value[sign_len..end].trim_start_matches('0')
        )));
    }
    Ok(magnitude)
}

fn short_str(b: &[u8]) -> ShortStr {
    ShortStr::truncated(&String::from_utf8_lossy(b))
}

pub(crate) fn invalid(key: &'static str, reason: String) -> ArgError {
    ArgError::Invalid { key, reason }
}

fn opt<T>(
    args: &FieldTable,
    key: &'static str,
    check: fn(&FieldValue) -> Result<T, String>,
) -> Result<Option<T>, ArgError> {
    args.get(key)
        .map(|v| check(v).map_err(|reason| invalid(key, reason)))
        .transpose()
}

/// RabbitMQ's integer argument types; a timestamp, float or decimal is not one.
fn integer(v: &FieldValue) -> Result<i64, String> {
    match v {
        FieldValue::I8(_)
        | FieldValue::U8(_)
        | FieldValue::I16(_)
        | FieldValue::U16(_)
        | FieldValue::I32(_)
        | FieldValue::U32(_)
        | FieldValue::I64(_)
        | FieldValue::I64Upper(_) => v.as_i64().ok_or_else(|| unacceptable(v)),
        other => Err(format!(
            "\"expected integer, got {}\"",
            field_type_name(other)
        )),
    }
}

pub(crate) fn unacceptable(v: &FieldValue) -> String {
    format!("{{unacceptable_type,{}}}", field_type_name(v))
}

fn non_negative(v: &FieldValue) -> Result<u64, String> {
    let n = integer(v)?;
    u64::try_from(n).map_err(|_| format!("{{value_negative,{n}}}"))
}

fn expiry(v: &FieldValue) -> Result<u64, String> {
    let n = non_negative(v)?;
    if n > MAX_EXPIRY_MS {
        return Err(format!("{{value_too_large,{n}}}"));
    }
    Ok(n)
}

fn expires_arg(v: &FieldValue) -> Result<u64, String> {
    if integer(v)? == 0 {
        return Err("{value_zero,0}".into());
    }
    expiry(v)
}

fn max_priority(v: &FieldValue) -> Result<u64, String> {
    let n = non_negative(v)?;
    if n > MAX_SUPPORTED_PRIORITY as u64 {
        return Err(format!("{{max_value_exceeded,{n}}}"));
    }
    Ok(n)
}

fn dead_letter_routing_key(
    v: &FieldValue,
    args: &FieldTable,
    key: &'static str,
) -> Result<ShortStr, ArgError> {
    match v {
        FieldValue::LongStr(b) if args.get(X_DEAD_LETTER_EXCHANGE).is_some() => Ok(short_str(b)),
        FieldValue::LongStr(_) => Err(invalid(key, "routing_key_but_no_dlx_defined".into())),
        other => Err(invalid(key, unacceptable(other))),
    }
}

fn overflow(v: &FieldValue) -> Result<Overflow, String> {
    match v {
        FieldValue::LongStr(b) => match &b[..] {
            b"drop-head" => Ok(Overflow::DropHead),
            b"reject-publish" => Ok(Overflow::RejectPublish),
            b"reject-publish-dlx" => Ok(Overflow::RejectPublishDlx),
            _ => Err("invalid_overflow".into()),
        },
        other => Err(unacceptable(other)),
    }
}

fn queue_mode(v: &FieldValue) -> Result<(), String> {
    match v {
        FieldValue::LongStr(b) if matches!(&b[..], b"default" | b"lazy") => Ok(()),
        FieldValue::LongStr(b) => Err(format!(
            "\"unsupported queue mode '{}'\"",
            String::from_utf8_lossy(b)
        )),
        other => Err(unacceptable(other)),
    }
}

/// A string as Erlang's `~p` prints it.
fn erlang_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&'static str, FieldValue)]) -> FieldTable {
        entries
            .iter()
            .map(|(k, v)| (ShortStr::from(*k), v.clone()))
            .collect()
    }

    const CLASSIC: DeclaredFlags = DeclaredFlags {
        durable: false,
        auto_delete: false,
        exclusive: false,
    };

    fn reason(entries: &[(&'static str, FieldValue)]) -> String {
        match QueueArgs::try_parse(&table(entries), CLASSIC) {
            Err(e) => e.text("q", "/"),
            Ok(a) => panic!("accepted: {a:?}"),
        }
    }

    #[test]
    fn texts_match_rabbitmq() {
        assert_eq!(
            reason(&[(X_MESSAGE_TTL, FieldValue::I32(-1))]),
            "invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}"
        );
        assert_eq!(
            reason(&[(X_MESSAGE_TTL, "10".into())]),
            "invalid arg 'x-message-ttl' for queue 'q' in vhost '/': \"expected integer, got longstr\""
        );
        assert_eq!(
            reason(&[(X_EXPIRES, FieldValue::I64(0))]),
            "invalid arg 'x-expires' for queue 'q' in vhost '/': {value_zero,0}"
        );
        assert_eq!(
            reason(&[(X_DEAD_LETTER_EXCHANGE, FieldValue::I32(5))]),
            "invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'"
        );
        assert_eq!(
            reason(&[(X_DEAD_LETTER_ROUTING_KEY, "k".into())]),
            "invalid arg 'x-dead-letter-routing-key' for queue 'q' in vhost '/': routing_key_but_no_dlx_defined"
        );
        assert_eq!(
            reason(&[(X_MAX_PRIORITY, FieldValue::I32(256))]),
            "invalid arg 'x-max-priority' for queue 'q' in vhost '/': {max_value_exceeded,256}"
        );
        assert_eq!(
            reason(&[(X_OVERFLOW, "bogus".into())]),
            "invalid arg 'x-overflow' for queue 'q' in vhost '/': invalid_overflow"
        );
        assert_eq!(
            reason(&[(X_SINGLE_ACTIVE_CONSUMER, FieldValue::I32(1))]),
            "invalid arg 'x-single-active-consumer' for queue 'q' in vhost '/': {unacceptable_type,signedint}"
        );
        assert_eq!(
            reason(&[(X_QUEUE_TYPE, "quorum".into())]),
            "invalid property 'non-durable' for queue 'q' in vhost '/'"
        );
        assert_eq!(
            reason(&[
                ("x-max-age", "1D".into()),
                ("x-delivery-limit", FieldValue::I32(5))
            ]),
            "invalid arg 'x-max-age' for queue 'q' in vhost '/' of queue type rabbit_classic_queue"
        );
        // Checked after the others, in table order (3.10.8 with amqplib).
        assert_eq!(
            reason(&[
                ("x-delivery-limit", FieldValue::I32(5)),
                (X_OVERFLOW, "bogus".into()),
                ("x-max-age", "1D".into()),
            ]),
            "invalid arg 'x-overflow' for queue 'q' in vhost '/': invalid_overflow"
        );
        assert_eq!(
            reason(&[(X_MESSAGE_TTL, FieldValue::I64(315_360_000_001))]),
            "invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_too_large,315360000001}"
        );
    }

    #[test]
    fn valid_arguments_parse() {
        let a = QueueArgs::try_parse(
            &table(&[
                (X_MESSAGE_TTL, FieldValue::I64(0)),
                (X_MAX_PRIORITY, FieldValue::U8(10)),
                (X_OVERFLOW, "reject-publish-dlx".into()),
                (X_DEAD_LETTER_EXCHANGE, "".into()),
                (X_DEAD_LETTER_ROUTING_KEY, "k".into()),
                (X_QUEUE_TYPE, "classic".into()),
            ]),
            CLASSIC,
        )
        .expect("valid");
        assert_eq!(a.message_ttl, Some(0));
        assert_eq!(a.max_priority, Some(10));
        assert_eq!(a.overflow, Overflow::RejectPublishDlx);
        assert_eq!(a.dead_letter_exchange.as_deref(), Some(""));
        assert_eq!(a.dead_letter_routing_key.as_deref(), Some("k"));
    }

    #[test]
    fn expiration_parses_like_erlang_string_to_integer() {
        assert_eq!(parse_expiration("0"), Ok(0));
        assert_eq!(parse_expiration("+10"), Ok(10));
        assert_eq!(parse_expiration("0010"), Ok(10));
        let err = |s: &str| parse_expiration(s).expect_err("refused").0;
        assert_eq!(err("abc"), "no_integer");
        assert_eq!(err(""), "no_integer");
        assert_eq!(err(" 10"), "no_integer");
        assert_eq!(err("-1"), "{value_negative,-1}");
        assert_eq!(err("1.5"), "{leftover_string,\".5\"}");
        assert_eq!(err("10 "), "{leftover_string,\" \"}");
        assert_eq!(err("99999999999999"), "{value_too_large,99999999999999}");
    }
}
