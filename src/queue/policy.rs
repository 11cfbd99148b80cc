//! Policies and operator policies (RabbitMQ's `rabbit_policy` / `rabbit_policies`): what they
//! are, how a definition is validated, which one applies to a queue or exchange, and what a
//! queue's effective arguments become. Pure: the vhost keeps the set and applies the result
//! (`src/vhost/policies.rs`).
//!
//! RabbitMQ's rules, kept here:
//! - the matching policy with the highest priority wins; among equal priorities the first by
//!   name (RabbitMQ sorts the matches stably, and lists parameters ordered by name);
//! - an operator policy is merged into it: for the numeric keys the lower value wins
//!   (`policy_merge_strategy`), otherwise the policy's value;
//! - queue x-arguments against the merged definition (`rabbit_amqqueue_process:
//!   process_args_policy`): for `expires`, `message-ttl`, `max-length`, `max-length-bytes`,
//!   `consumer-timeout` (`rabbit_channel:get_queue_consumer_timeout`) and `delivery-limit`
//!   (`rabbit_quorum_queue`, taken by the quorum backend with its `x-delivery-limit`) the
//!   lower value wins; for `dead-letter-exchange`, `dead-letter-routing-key`, `overflow` and
//!   `queue-mode` the argument wins. An exchange's `alternate-exchange` argument wins too.

use super::args::{Overflow, QueueArgs};
use serde_json::{Map, Value};
use warren_protocol::ShortStr;

/// Which of the two sets a policy belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// `/api/policies`, `rabbitmqctl set_policy`.
    User,
    /// `/api/operator-policies`, `rabbitmqctl set_operator_policy`: limits that users' policies
    /// cannot raise.
    Operator,
}

/// What a policy applies to (`apply-to`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyTo {
    Queues,
    Exchanges,
    All,
    ClassicQueues,
    QuorumQueues,
    Streams,
}

impl ApplyTo {
    /// Parses `apply-to`; the error is RabbitMQ's text.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "queues" => ApplyTo::Queues,
            "exchanges" => ApplyTo::Exchanges,
            "all" => ApplyTo::All,
            "classic_queues" => ApplyTo::ClassicQueues,
            "quorum_queues" => ApplyTo::QuorumQueues,
            "streams" => ApplyTo::Streams,
            other => {
                return Err(format!(
                    "apply-to '{other}' unrecognised; should be 'queues', 'exchanges' or 'all'"
                ))
            }
        })
    }

    /// The name in `apply-to`.
    pub fn name(self) -> &'static str {
        match self {
            ApplyTo::Queues => "queues",
            ApplyTo::Exchanges => "exchanges",
            ApplyTo::All => "all",
            ApplyTo::ClassicQueues => "classic_queues",
            ApplyTo::QuorumQueues => "quorum_queues",
            ApplyTo::Streams => "streams",
        }
    }

    fn covers(self, target: Target<'_>) -> bool {
        match (self, target) {
            (ApplyTo::All, _) => true,
            (ApplyTo::Exchanges, Target::Exchange) => true,
            (ApplyTo::Queues, Target::Queue(_)) => true,
            (ApplyTo::ClassicQueues, Target::Queue(t)) => t == "classic",
            (ApplyTo::QuorumQueues, Target::Queue(t)) => t == "quorum",
            (ApplyTo::Streams, Target::Queue(t)) => t == "stream",
            _ => false,
        }
    }
}

/// What a policy is matched against: an exchange, or a queue of a type (`classic`, `quorum`,
/// `stream`).
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    Exchange,
    Queue(&'a str),
}

/// One policy, validated.
#[derive(Clone, Debug)]
pub struct Policy {
    pub kind: PolicyKind,
    pub vhost: String,
    pub name: String,
    pub pattern: String,
    regex: regex::Regex,
    pub apply_to: ApplyTo,
    pub priority: i64,
    pub definition: Map<String, Value>,
}

/// The keys a user policy may set (RabbitMQ 3.12's `policy_validator` registrations without
/// mirroring and federation), each with its check.
const POLICY_KEYS: &[&str] = &[
    "alternate-exchange",
    "consumer-timeout",
    "dead-letter-exchange",
    "dead-letter-routing-key",
    "dead-letter-strategy",
    "message-ttl",
    "expires",
    "max-length",
    "max-length-bytes",
    "max-in-memory-length",
    "max-in-memory-bytes",
    "queue-mode",
    "queue-version",
    "overflow",
    "delivery-limit",
    "max-age",
    "stream-max-segment-size-bytes",
    "queue-leader-locator",
    "initial-cluster-size",
];

/// The keys an operator policy may set (`operator_policy_validator`); all merge by minimum.
const OPERATOR_POLICY_KEYS: &[&str] = &[
    "expires",
    "message-ttl",
    "max-length",
    "max-length-bytes",
    "max-in-memory-length",
    "max-in-memory-bytes",
    "delivery-limit",
];

/// Keys whose operator-policy value wins when lower (`policy_merge_strategy`).
const MIN_MERGED: &[&str] = OPERATOR_POLICY_KEYS;

impl Policy {
    /// A policy from what the API or a definitions file gave; the error is RabbitMQ's
    /// validation text (the API wraps it in `Validation failed\n\n…\n`).
    pub fn new(
        kind: PolicyKind,
        vhost: &str,
        name: &str,
        pattern: &str,
        apply_to: &str,
        priority: i64,
        definition: Map<String, Value>,
    ) -> Result<Self, String> {
        let regex = regex::Regex::new(pattern)
            .map_err(|e| format!("pattern should be regular expression but is invalid: {e}"))?;
        let apply_to = ApplyTo::parse(apply_to)?;
        validate_definition(kind, &definition)?;
        Ok(Policy {
            kind,
            vhost: vhost.to_owned(),
            name: name.to_owned(),
            pattern: pattern.to_owned(),
            regex,
            apply_to,
            priority,
            definition,
        })
    }

    /// Whether this policy applies to `name` of `target`.
    pub fn matches(&self, name: &str, target: Target<'_>) -> bool {
        self.apply_to.covers(target) && self.regex.is_match(name)
    }
}

/// Checks a definition the way `rabbit_policies:validate_policy0` does.
pub fn validate_definition(
    kind: PolicyKind,
    definition: &Map<String, Value>,
) -> Result<(), String> {
    if definition.is_empty() {
        return Err("no policy provided".into());
    }
    let known = match kind {
        PolicyKind::User => POLICY_KEYS,
        PolicyKind::Operator => OPERATOR_POLICY_KEYS,
    };
    let unknown: Vec<String> = definition
        .iter()
        .filter(|(k, _)| !known.contains(&k.as_str()))
        .map(|(k, v)| format!("{{<<\"{k}\">>,{}}}", erlang_term(v)))
        .collect();
    for (key, value) in definition {
        if known.contains(&key.as_str()) {
            validate_value(key, value)?;
        }
    }
    if !unknown.is_empty() {
        return Err(format!(
            "[{}] are not recognised policy settings",
            unknown.join(",")
        ));
    }
    Ok(())
}

fn validate_value(key: &str, value: &Value) -> Result<(), String> {
    let int_at_least = |min: i64| value.as_i64().is_some_and(|n| n >= min);
    let is_str = value.is_string();
    let (ok, what) = match key {
        "alternate-exchange" => (is_str, "is not a valid alternate exchange name"),
        "dead-letter-exchange" => (is_str, "is not a valid dead letter exchange name"),
        "dead-letter-routing-key" => (is_str, "is not a valid dead letter routing key"),
        "message-ttl" => (int_at_least(0), "is not a valid message TTL"),
        "expires" => (int_at_least(1), "is not a valid queue expiry"),
        "max-length" => (int_at_least(0), "is not a valid maximum length"),
        "max-length-bytes" => (int_at_least(0), "is not a valid maximum length in bytes"),
        "max-in-memory-length" => (int_at_least(0), "is not a valid maximum memory in length"),
        "max-in-memory-bytes" => (int_at_least(0), "is not a valid maximum memory in bytes"),
        "delivery-limit" => (int_at_least(0), "is not a valid delivery limit"),
        "consumer-timeout" => (int_at_least(0), "is not a valid consumer timeout"),
        "queue-mode" => (
            matches!(value.as_str(), Some("default" | "lazy")),
            "is not a valid queue-mode value",
        ),
        "overflow" => (
            matches!(
                value.as_str(),
                Some("drop-head" | "reject-publish" | "reject-publish-dlx")
            ),
            "is not a valid overflow value",
        ),
        // Settings of queue types Warren keeps as given.
        _ => (true, ""),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{} {what}", erlang_term(value)))
    }
}

/// How Erlang's `~p` prints a JSON value that RabbitMQ decoded (strings are binaries).
fn erlang_term(v: &Value) -> String {
    match v {
        Value::String(s) => format!("<<\"{s}\">>"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// The best of `candidates` for `name`: highest priority, then first by name.
pub fn best<'a>(
    candidates: impl IntoIterator<Item = &'a Policy>,
    name: &str,
    target: Target<'_>,
) -> Option<&'a Policy> {
    candidates
        .into_iter()
        .filter(|p| p.matches(name, target))
        .min_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then_with(|| a.name.cmp(&b.name))
        })
}

/// What applies to one queue or exchange: the names shown in the management API and the merged
/// definition (`effective_policy_definition`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    pub policy: Option<String>,
    pub operator_policy: Option<String>,
    pub definition: Map<String, Value>,
}

impl Applied {
    /// `rabbit_policy:merge_operator_definitions`.
    pub fn merge(policy: Option<&Policy>, operator: Option<&Policy>) -> Self {
        let mut definition = policy.map(|p| p.definition.clone()).unwrap_or_default();
        if let Some(op) = operator {
            for (key, op_value) in &op.definition {
                match definition.get(key) {
                    None => {
                        definition.insert(key.clone(), op_value.clone());
                    }
                    Some(value) if MIN_MERGED.contains(&key.as_str()) => {
                        if let (Some(a), Some(b)) = (value.as_i64(), op_value.as_i64()) {
                            definition.insert(key.clone(), Value::from(a.min(b)));
                        }
                    }
                    Some(_) => {}
                }
            }
        }
        Applied {
            policy: policy.map(|p| p.name.clone()),
            operator_policy: operator.map(|p| p.name.clone()),
            definition,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.policy.is_none() && self.operator_policy.is_none()
    }

    fn u64_of(&self, key: &str) -> Option<u64> {
        self.definition.get(key).and_then(Value::as_u64)
    }

    fn str_of(&self, key: &str) -> Option<&str> {
        self.definition.get(key).and_then(Value::as_str)
    }

    /// An exchange's alternate exchange: its own argument wins.
    pub fn alternate_exchange(&self, argument: Option<&ShortStr>) -> Option<ShortStr> {
        argument
            .cloned()
            .or_else(|| self.str_of("alternate-exchange").map(ShortStr::truncated))
    }

    /// A queue's effective arguments: `declared` (its x-arguments) with this merged in.
    pub fn queue_args(&self, declared: &QueueArgs) -> QueueArgs {
        let min = |arg: Option<u64>, pol: Option<u64>| match (arg, pol) {
            (Some(a), Some(p)) => Some(a.min(p)),
            (a, p) => a.or(p),
        };
        let mut out = declared.clone();
        out.message_ttl = min(declared.message_ttl, self.u64_of("message-ttl"));
        out.expires = min(declared.expires, self.u64_of("expires").filter(|e| *e > 0));
        out.max_length = min(declared.max_length, self.u64_of("max-length"));
        out.max_length_bytes = min(declared.max_length_bytes, self.u64_of("max-length-bytes"));
        out.consumer_timeout = min(declared.consumer_timeout, self.u64_of("consumer-timeout"));
        out.delivery_limit = self
            .definition
            .get("delivery-limit")
            .and_then(Value::as_i64);
        if declared.dead_letter_exchange.is_none() {
            out.dead_letter_exchange = self.str_of("dead-letter-exchange").map(ShortStr::truncated);
        }
        if declared.dead_letter_routing_key.is_none() {
            out.dead_letter_routing_key = self
                .str_of("dead-letter-routing-key")
                .map(ShortStr::truncated);
        }
        if !declared.overflow_declared {
            out.overflow = match self.str_of("overflow") {
                Some("reject-publish") => Overflow::RejectPublish,
                Some("reject-publish-dlx") => Overflow::RejectPublishDlx,
                _ => declared.overflow,
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn policy(kind: PolicyKind, name: &str, pattern: &str, priority: i64, d: Value) -> Policy {
        Policy::new(kind, "/", name, pattern, "queues", priority, def(d)).expect("valid")
    }

    #[test]
    fn highest_priority_wins_then_name() {
        let a = policy(PolicyKind::User, "a", "^q", 1, json!({"max-length": 1}));
        let b = policy(PolicyKind::User, "b", "^q", 5, json!({"max-length": 2}));
        let c = policy(PolicyKind::User, "c", "^q", 5, json!({"max-length": 3}));
        let all = [a, c, b];
        let won = best(&all, "q1", Target::Queue("classic")).map(|p| p.name.as_str());
        assert_eq!(won, Some("b"));
        assert!(best(&all, "x", Target::Queue("classic")).is_none());
        assert!(best(&all, "q1", Target::Exchange).is_none());
    }

    #[test]
    fn operator_policy_lower_numeric_value_wins() {
        let p = policy(
            PolicyKind::User,
            "p",
            ".*",
            0,
            json!({"max-length": 100, "message-ttl": 5}),
        );
        let o = policy(
            PolicyKind::Operator,
            "o",
            ".*",
            0,
            json!({"max-length": 10, "message-ttl": 50, "expires": 9}),
        );
        let applied = Applied::merge(Some(&p), Some(&o));
        assert_eq!(
            Value::Object(applied.definition),
            json!({"max-length": 10, "message-ttl": 5, "expires": 9})
        );
    }

    #[test]
    fn queue_arguments_win_or_lower_value_wins() {
        let p = policy(
            PolicyKind::User,
            "p",
            ".*",
            0,
            json!({"max-length": 5, "dead-letter-exchange": "pol", "overflow": "reject-publish"}),
        );
        let applied = Applied::merge(Some(&p), None);
        let declared = QueueArgs {
            max_length: Some(3),
            dead_letter_exchange: Some(ShortStr::from("arg")),
            ..QueueArgs::default()
        };
        let eff = applied.queue_args(&declared);
        assert_eq!(eff.max_length, Some(3));
        assert_eq!(eff.dead_letter_exchange.as_deref(), Some("arg"));
        assert_eq!(eff.overflow, Overflow::RejectPublish);
        let declared = QueueArgs {
            max_length: Some(30),
            overflow_declared: true,
            ..QueueArgs::default()
        };
        let eff = applied.queue_args(&declared);
        assert_eq!(eff.max_length, Some(5));
        assert_eq!(eff.overflow, Overflow::DropHead);
    }

    #[test]
    fn bad_definitions_get_rabbitmq_reasons() {
        let bad = |kind, d: Value| {
            Policy::new(kind, "/", "p", ".*", "all", 0, def(d)).expect_err("refused")
        };
        assert_eq!(
            bad(PolicyKind::User, json!({"max-length": -1})),
            "-1 is not a valid maximum length"
        );
        assert_eq!(
            bad(PolicyKind::User, json!({"overflow": "x"})),
            "<<\"x\">> is not a valid overflow value"
        );
        assert_eq!(bad(PolicyKind::User, json!({})), "no policy provided");
        assert_eq!(
            bad(PolicyKind::User, json!({"foo": 1})),
            "[{<<\"foo\">>,1}] are not recognised policy settings"
        );
        assert_eq!(
            bad(PolicyKind::Operator, json!({"dead-letter-exchange": "x"})),
            "[{<<\"dead-letter-exchange\">>,<<\"x\">>}] are not recognised policy settings"
        );
        assert!(Policy::new(
            PolicyKind::User,
            "/",
            "p",
            "(",
            "all",
            0,
            def(json!({"max-length": 1}))
        )
        .expect_err("bad regex")
        .starts_with("pattern should be regular expression"));
        assert!(Policy::new(
            PolicyKind::User,
            "/",
            "p",
            ".*",
            "zzz",
            0,
            def(json!({"max-length": 1}))
        )
        .is_err());
    }
}
