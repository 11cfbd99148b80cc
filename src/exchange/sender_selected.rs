//! Sender-selected distribution, RabbitMQ's extension: a publisher lists extra routing keys in
//! the `CC` and `BCC` headers (arrays of long strings). Direct and topic exchanges, and the
//! default exchange, route with every one of them as well as the routing key; `BCC` is removed
//! before any queue or consumer sees the message. Never routes anything itself.

use crate::message::Message;
use std::sync::Arc;
use warren_protocol::{FieldTable, FieldValue};

/// Header of routing keys that stays in the delivered message.
pub const CC: &str = "CC";
/// Header of routing keys that is removed before delivery.
pub const BCC: &str = "BCC";

/// A `CC` or `BCC` header that is not an array: RabbitMQ refuses the message (406).
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidRoutingHeader {
    /// `CC` or `BCC`.
    pub header: &'static str,
    /// RabbitMQ's name for the type it had (`longstr`, `signedint`).
    pub type_name: &'static str,
}

/// Checks the routing headers at publish time (inside a transaction too, as RabbitMQ does):
/// each may be absent or an array; elements that are not long strings are ignored later.
pub fn check(headers: Option<&FieldTable>) -> Result<(), InvalidRoutingHeader> {
    let Some(headers) = headers else {
        return Ok(());
    };
    for header in [CC, BCC] {
        match headers.get(header) {
            None | Some(FieldValue::Array(_)) => {}
            Some(other) => {
                return Err(InvalidRoutingHeader {
                    header,
                    type_name: crate::fields::field_type_name(other),
                })
            }
        }
    }
    Ok(())
}

/// Every key a message routes with: its routing key, then the long strings of `CC`, then those
/// of `BCC` (RabbitMQ's `rabbit_basic:header_routes`). Keys that are not UTF-8 cannot equal a
/// binding key or a queue name and are skipped. Allocates nothing.
pub fn routing_keys<'a>(
    routing_key: &'a str,
    headers: Option<&'a FieldTable>,
) -> impl Iterator<Item = &'a str> + Clone + 'a {
    std::iter::once(routing_key)
        .chain(header_keys(headers, CC))
        .chain(header_keys(headers, BCC))
}

/// Whether the message names keys beyond its routing key (the slow path of routing).
pub fn has_extra_keys(headers: Option<&FieldTable>) -> bool {
    headers.is_some_and(|h| h.get(CC).is_some() || h.get(BCC).is_some())
}

fn header_keys<'a>(
    headers: Option<&'a FieldTable>,
    header: &'static str,
) -> impl Iterator<Item = &'a str> + Clone + 'a {
    let values: &'a [FieldValue] = match headers.and_then(|h| h.get(header)) {
        Some(FieldValue::Array(values)) => values,
        _ => &[],
    };
    values.iter().filter_map(|v| match v {
        FieldValue::LongStr(bytes) => std::str::from_utf8(bytes).ok(),
        _ => None,
    })
}

/// The message as queues and consumers get it: without its `BCC` header. A new message only
/// when there is one to remove; the body is shared, not copied. Like RabbitMQ, the headers
/// table stays (possibly empty) when `BCC` was its only entry.
pub fn without_bcc(message: Arc<Message>) -> Arc<Message> {
    let has_bcc = message
        .properties
        .headers
        .as_ref()
        .is_some_and(|h| h.get(BCC).is_some());
    if !has_bcc {
        return message;
    }
    let mut properties = warren_protocol::BasicProperties::clone(&message.properties);
    if let Some(headers) = &mut properties.headers {
        headers.remove(BCC);
    }
    Arc::new(Message::new(
        message.exchange().clone(),
        message.routing_key().clone(),
        properties,
        message.body.clone(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use warren_protocol::{BasicProperties, ShortStr};

    fn table(entries: Vec<(&'static str, FieldValue)>) -> FieldTable {
        entries
            .into_iter()
            .map(|(k, v)| (ShortStr::from(k), v))
            .collect()
    }

    fn keys(values: &[&str]) -> FieldValue {
        FieldValue::Array(values.iter().map(|v| FieldValue::from(*v)).collect())
    }

    #[test]
    fn routing_keys_are_the_key_then_cc_then_bcc_long_strings() {
        let mut cc = vec![FieldValue::from("b"), FieldValue::I32(5)];
        cc.push(FieldValue::ByteArray(Bytes::from_static(b"bytes")));
        let h = table(vec![("BCC", keys(&["c"])), ("CC", FieldValue::Array(cc))]);
        let all: Vec<&str> = routing_keys("a", Some(&h)).collect();
        assert_eq!(all, ["a", "b", "c"]);
        assert_eq!(routing_keys("a", None).collect::<Vec<_>>(), ["a"]);
        assert!(has_extra_keys(Some(&h)));
        assert!(!has_extra_keys(Some(&table(vec![("cc", keys(&["x"]))]))));
    }

    #[test]
    fn a_routing_header_that_is_not_an_array_is_refused() {
        assert_eq!(check(None), Ok(()));
        assert_eq!(check(Some(&table(vec![("CC", keys(&["a"]))]))), Ok(()));
        assert_eq!(
            check(Some(&table(vec![
                ("CC", keys(&[])),
                ("BCC", FieldValue::I32(7))
            ]))),
            Err(InvalidRoutingHeader {
                header: "BCC",
                type_name: "signedint"
            })
        );
        assert_eq!(
            check(Some(&table(vec![("CC", FieldValue::from("a"))]))),
            Err(InvalidRoutingHeader {
                header: "CC",
                type_name: "longstr"
            })
        );
    }

    #[test]
    fn bcc_is_removed_into_a_new_message_only_when_present() {
        let message = |headers| {
            Arc::new(Message::new(
                ShortStr::from("x"),
                ShortStr::from("k"),
                BasicProperties {
                    headers,
                    ..Default::default()
                },
                Bytes::from_static(b"body"),
            ))
        };
        let plain = message(Some(table(vec![("CC", keys(&["a"]))])));
        assert!(Arc::ptr_eq(&without_bcc(plain.clone()), &plain));
        let bcc = message(Some(table(vec![("BCC", keys(&["a"]))])));
        let stripped = without_bcc(bcc.clone());
        assert!(!Arc::ptr_eq(&stripped, &bcc));
        assert_eq!(stripped.properties.headers, Some(FieldTable::new()));
        assert_eq!(stripped.body, bcc.body);
    }
}
