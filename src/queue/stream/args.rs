//! A stream's declare arguments (`x-max-age`, `x-stream-max-segment-size-bytes`, …) and a
//! consumer's (`x-stream-offset`, `x-stream-filter`, `x-stream-match-unfiltered`, the
//! offset-tracking name), checked with RabbitMQ 3.10.8's 406 texts (shared/RABBITMQ-FACTS.md,
//! measured with pika). Pure: no queue state.

use crate::queue::args::{invalid, unacceptable, ArgError, X_QUEUE_MODE};
use std::time::Duration;
use warren_protocol::{FieldTable, FieldValue};

/// How long messages are kept (`7D`, `12h`, …).
pub const X_MAX_AGE: &str = "x-max-age";
/// A segment file rolls over past this many bytes.
pub const X_STREAM_MAX_SEGMENT_SIZE_BYTES: &str = "x-stream-max-segment-size-bytes";
/// Where a consumer starts (basic.consume argument; also the header on each delivery).
pub const X_STREAM_OFFSET: &str = "x-stream-offset";
/// A message's filter value (message header, RabbitMQ 3.13).
pub const X_STREAM_FILTER_VALUE: &str = "x-stream-filter-value";
/// The filter values a consumer wants (basic.consume argument: a string or an array of them).
pub const X_STREAM_FILTER: &str = "x-stream-filter";
/// Whether a filtering consumer also gets messages without a filter value.
pub const X_STREAM_MATCH_UNFILTERED: &str = "x-stream-match-unfiltered";
/// Warren's server-side offset tracking: the name a consumer's position is stored under.
pub const X_STREAM_OFFSET_TRACKING_NAME: &str = "x-stream-offset-tracking-name";

/// RabbitMQ's default segment size (500 MB).
pub const DEFAULT_SEGMENT_SIZE: u64 = 500_000_000;

/// Arguments of the other queue types that RabbitMQ 3.10 refuses on a stream (every type's
/// `queue_arguments` minus `rabbit_stream_queue:capabilities/0`'s): 406 `invalid arg '<key>'
/// for queue '<q>' in vhost '<v>' of queue type rabbit_stream_queue` (each checked with pika).
const REFUSED_ARGUMENTS: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-priority",
    "x-overflow",
    X_QUEUE_MODE,
    "x-single-active-consumer",
    "x-queue-master-locator",
    "x-queue-version",
    "x-delivery-limit",
    "x-dead-letter-strategy",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-quorum-initial-group-size",
    "x-consumer-timeout",
    "x-message-deduplication",
];

/// What a stream's redeclare must repeat: `rabbit_stream_queue:capabilities/0`'s
/// `queue_arguments` (`x-queue-type` is compared separately, in vhost.rs).
pub(in crate::queue) const COMPARED_ARGUMENTS: &[&str] = &[
    "x-max-length-bytes",
    X_MAX_AGE,
    X_STREAM_MAX_SEGMENT_SIZE_BYTES,
    "x-initial-cluster-size",
    "x-queue-leader-locator",
];

/// A stream's retention and segment settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamConfig {
    /// `x-max-length-bytes`: whole old segments go once the stream is larger.
    pub max_bytes: Option<u64>,
    /// `x-max-age`: whole old segments go once their newest message is older.
    pub max_age: Option<Duration>,
    /// `x-stream-max-segment-size-bytes`.
    pub segment_size: u64,
}

impl StreamConfig {
    /// The settings of validated arguments (anything unparsable takes its default).
    pub fn of(arguments: &FieldTable) -> Self {
        let int = |k| arguments.get(k).and_then(FieldValue::as_i64);
        StreamConfig {
            max_bytes: int("x-max-length-bytes").and_then(|n| u64::try_from(n).ok()),
            max_age: arguments
                .get(X_MAX_AGE)
                .and_then(FieldValue::as_str)
                .and_then(parse_max_age),
            segment_size: int(X_STREAM_MAX_SEGMENT_SIZE_BYTES)
                .and_then(|n| u64::try_from(n).ok())
                .filter(|n| *n > 0)
                .unwrap_or(DEFAULT_SEGMENT_SIZE),
        }
    }
}

/// The stream type's own argument checks, after the shared ones: other types' arguments are
/// refused (the first in table order), its own are checked for type and range.
pub(in crate::queue) fn validate_arguments(arguments: &FieldTable) -> Result<(), ArgError> {
    for (key, value) in arguments.iter() {
        if let Some(refused) = REFUSED_ARGUMENTS.iter().find(|a| **a == key.as_str()) {
            return Err(ArgError::NotForQueueType {
                key: refused,
                queue_type: "rabbit_stream_queue",
            });
        }
        match key.as_str() {
            X_MAX_AGE => match value {
                FieldValue::LongStr(b) => {
                    // RabbitMQ 3.10.8 crashes (541) on `bogus` and `-1h`: a 406 here.
                    parse_max_age(&String::from_utf8_lossy(b))
                        .ok_or_else(|| invalid(X_MAX_AGE, "invalid_max_age".into()))?;
                }
                other => return Err(invalid(X_MAX_AGE, unacceptable(other))),
            },
            X_STREAM_MAX_SEGMENT_SIZE_BYTES => {
                non_negative(X_STREAM_MAX_SEGMENT_SIZE_BYTES, value)?
            }
            "x-initial-cluster-size" => non_negative("x-initial-cluster-size", value)?,
            "x-queue-leader-locator" => match value {
                FieldValue::LongStr(b)
                    if ["client-local", "balanced", "random", "least-leaders"]
                        .iter()
                        .any(|a| a.as_bytes() == &b[..]) => {}
                FieldValue::LongStr(_) => {
                    return Err(invalid(
                        "x-queue-leader-locator",
                        "invalid_queue_locator_arg".into(),
                    ))
                }
                other => return Err(invalid("x-queue-leader-locator", unacceptable(other))),
            },
            _ => {}
        }
    }
    Ok(())
}

fn non_negative(key: &'static str, v: &FieldValue) -> Result<(), ArgError> {
    let integer = matches!(
        v,
        FieldValue::I8(_)
            | FieldValue::U8(_)
            | FieldValue::I16(_)
            | FieldValue::U16(_)
            | FieldValue::I32(_)
            | FieldValue::U32(_)
            | FieldValue::I64(_)
    );
    match v.as_i64() {
        Some(n) if integer && n < 0 => Err(invalid(key, format!("{{value_negative,{n}}}"))),
        Some(_) if integer => Ok(()),
        _ => Err(invalid(
            key,
            format!(
                "\"expected integer, got {}\"",
                crate::fields::field_type_name(v)
            ),
        )),
    }
}

/// `x-max-age`: a positive integer and one unit of `Y M D h m s` (RabbitMQ's units; `7d` and
/// `0D` are refused as RabbitMQ refuses them).
pub fn parse_max_age(s: &str) -> Option<Duration> {
    duration_secs(s)
        .filter(|secs| *secs > 0)
        .map(Duration::from_secs)
}

/// RabbitMQ's duration units (`Y M D h m s`) in seconds.
const UNITS: &[(char, u64)] = &[
    ('Y', 365 * 86_400),
    ('M', 30 * 86_400),
    ('D', 86_400),
    ('h', 3_600),
    ('m', 60),
    ('s', 1),
];

/// Digits then one unit letter of [`UNITS`], in seconds.
fn duration_secs(s: &str) -> Option<u64> {
    let unit = s.chars().last()?;
    let digits = &s[..s.len() - unit.len_utf8()];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let (_, per) = UNITS.iter().find(|(u, _)| *u == unit)?;
    n.checked_mul(*per)
}

/// Where a consumer starts reading (`x-stream-offset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The oldest message kept.
    First,
    /// The start of the last chunk.
    Last,
    /// Only messages published from now on (the default).
    Next,
    /// This offset (clamped to what is kept; past the end waits for it).
    Offset(u64),
    /// The first chunk whose timestamp is at or after this time (Unix ms).
    Timestamp(i64),
}

/// The consumer's `x-stream-offset`: `first`, `last`, `next`, an integer, an AMQP timestamp
/// or an interval back from now (`1h`, `30m`, `7D`). Anything else is a 406 text reason
/// (RabbitMQ 3.10.8 crashes the connection with 541 instead).
pub fn parse_offset(value: Option<&FieldValue>, now_ms: i64) -> Result<OffsetSpec, String> {
    let Some(value) = value else {
        return Ok(OffsetSpec::Next);
    };
    match value {
        FieldValue::LongStr(b) => {
            let s = String::from_utf8_lossy(b);
            match s.as_ref() {
                "first" => Ok(OffsetSpec::First),
                "last" => Ok(OffsetSpec::Last),
                "next" => Ok(OffsetSpec::Next),
                other => match duration_secs(other) {
                    Some(secs) => Ok(OffsetSpec::Timestamp(now_ms.saturating_sub(
                        i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX),
                    ))),
                    None => Err(format!("invalid offset specification '{other}'")),
                },
            }
        }
        FieldValue::Timestamp(secs) => Ok(OffsetSpec::Timestamp(
            i64::try_from(*secs)
                .unwrap_or(i64::MAX)
                .saturating_mul(1000),
        )),
        FieldValue::I8(_)
        | FieldValue::U8(_)
        | FieldValue::I16(_)
        | FieldValue::U16(_)
        | FieldValue::I32(_)
        | FieldValue::U32(_)
        | FieldValue::I64(_) => {
            // A negative offset starts at the first message (RabbitMQ 3.10.8 with pika: -5).
            Ok(OffsetSpec::Offset(
                value.as_i64().map_or(0, |n| u64::try_from(n).unwrap_or(0)),
            ))
        }
        other => Err(format!(
            "invalid offset specification of type {}",
            crate::fields::field_type_name(other)
        )),
    }
}

/// What a consumer wants to see: the filter values (`x-stream-filter`) and whether messages
/// without one pass (`x-stream-match-unfiltered`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Wanted values; empty: no filtering.
    pub values: Vec<Vec<u8>>,
    /// Messages without `x-stream-filter-value` pass too.
    pub match_unfiltered: bool,
}

impl Filter {
    /// The consumer's filter arguments, or the reason to refuse them.
    pub fn parse(arguments: &FieldTable) -> Result<Self, String> {
        let values = match arguments.get(X_STREAM_FILTER) {
            None => Vec::new(),
            Some(FieldValue::LongStr(b)) => vec![b.to_vec()],
            Some(FieldValue::Array(items)) => items
                .iter()
                .map(|v| match v {
                    FieldValue::LongStr(b) => Ok(b.to_vec()),
                    _ => Err("x-stream-filter must be a string or an array of strings".to_string()),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("x-stream-filter must be a string or an array of strings".into()),
        };
        let match_unfiltered = match arguments.get(X_STREAM_MATCH_UNFILTERED) {
            None => false,
            Some(FieldValue::Bool(b)) => *b,
            Some(_) => return Err("x-stream-match-unfiltered must be a boolean".into()),
        };
        Ok(Filter {
            values,
            match_unfiltered,
        })
    }

    /// Whether a message with this `x-stream-filter-value` (if any) goes to the consumer.
    pub fn passes(&self, value: Option<&[u8]>) -> bool {
        if self.values.is_empty() {
            return true;
        }
        match value {
            None => self.match_unfiltered,
            Some(v) => self.values.iter().any(|w| w.as_slice() == v),
        }
    }
}

/// The consumer's offset-tracking name, if it gave one (a non-empty string).
pub fn tracking_name(arguments: &FieldTable) -> Result<Option<String>, String> {
    match arguments.get(X_STREAM_OFFSET_TRACKING_NAME) {
        None => Ok(None),
        Some(FieldValue::LongStr(b)) if !b.is_empty() && b.len() <= 255 => {
            Ok(Some(String::from_utf8_lossy(b).into_owned()))
        }
        Some(_) => Err(format!(
            "{X_STREAM_OFFSET_TRACKING_NAME} must be a string of 1 to 255 bytes"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_takes_rabbitmq_units_only() {
        assert_eq!(parse_max_age("7D"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_max_age("12h"), Some(Duration::from_secs(12 * 3_600)));
        assert_eq!(parse_max_age("30m"), Some(Duration::from_secs(1_800)));
        assert_eq!(parse_max_age("1Y"), Some(Duration::from_secs(365 * 86_400)));
        for bad in ["7d", "0D", "-1h", "bogus", "", "h", "1.5h"] {
            assert_eq!(parse_max_age(bad), None, "{bad}");
        }
    }

    #[test]
    fn offsets_parse_like_rabbitmq_and_nonsense_is_refused() {
        let s = |v: &str| FieldValue::LongStr(bytes::Bytes::copy_from_slice(v.as_bytes()));
        let now = 10_000_000;
        assert_eq!(parse_offset(None, now), Ok(OffsetSpec::Next));
        assert_eq!(parse_offset(Some(&s("first")), now), Ok(OffsetSpec::First));
        assert_eq!(parse_offset(Some(&s("last")), now), Ok(OffsetSpec::Last));
        assert_eq!(
            parse_offset(Some(&FieldValue::I64(90)), now),
            Ok(OffsetSpec::Offset(90))
        );
        assert_eq!(
            parse_offset(Some(&FieldValue::I32(-5)), now),
            Ok(OffsetSpec::Offset(0))
        );
        assert_eq!(
            parse_offset(Some(&s("1h")), now),
            Ok(OffsetSpec::Timestamp(now - 3_600_000))
        );
        assert_eq!(
            parse_offset(Some(&FieldValue::Timestamp(5)), now),
            Ok(OffsetSpec::Timestamp(5_000))
        );
        assert!(parse_offset(Some(&s("nonsense")), now).is_err());
        assert!(parse_offset(Some(&FieldValue::Bool(true)), now).is_err());
    }

    #[test]
    fn filters_pass_wanted_values_and_optionally_unfiltered() {
        let f = Filter {
            values: vec![b"eu".to_vec()],
            match_unfiltered: false,
        };
        assert!(f.passes(Some(b"eu")));
        assert!(!f.passes(Some(b"us")));
        assert!(!f.passes(None));
        let g = Filter {
            match_unfiltered: true,
            ..f
        };
        assert!(g.passes(None));
        assert!(Filter::default().passes(Some(b"any")));
    }
}
