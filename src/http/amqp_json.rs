//! AMQP field tables and basic properties as RabbitMQ's management API writes them in JSON, and
//! back: JSON integers become `long` (`l`), other numbers `double`, strings `longstr`, objects
//! tables and arrays arrays, as `rabbit_mgmt_format:to_amqp_table/1` does.

use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use warren_protocol::{BasicProperties, FieldTable, FieldValue, ShortStr};

/// A field value in JSON (byte arrays as base64-free strings where they are UTF-8, as RabbitMQ's
/// formatter prints binaries).
pub fn value_to_json(value: &FieldValue) -> Value {
    match value {
        FieldValue::Bool(b) => json!(b),
        FieldValue::I8(n) => json!(n),
        FieldValue::U8(n) => json!(n),
        FieldValue::I16(n) => json!(n),
        FieldValue::U16(n) => json!(n),
        FieldValue::I32(n) => json!(n),
        FieldValue::U32(n) => json!(n),
        FieldValue::I64(n) => json!(n),
        FieldValue::I64Upper(n) => json!(*n as u64),
        FieldValue::F32(f) => json!(f),
        FieldValue::F64(f) => json!(f),
        FieldValue::Decimal(d) => json!(format!("{d:?}")),
        FieldValue::LongStr(b) | FieldValue::ByteArray(b) => bytes_to_json(b),
        FieldValue::Array(items) => Value::Array(items.iter().map(value_to_json).collect()),
        FieldValue::Timestamp(t) => json!(t),
        FieldValue::Table(t) => Value::Object(table_to_json(t)),
        FieldValue::Void => Value::Null,
    }
}

fn bytes_to_json(b: &Bytes) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => json!(s),
        Err(_) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
    }
}

/// A field table as a JSON object.
pub fn table_to_json(table: &FieldTable) -> Map<String, Value> {
    table
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), value_to_json(v)))
        .collect()
}

/// A JSON value as an AMQP field value; `Err` names what cannot be one (a key too long).
pub fn json_to_value(value: &Value) -> Result<FieldValue, String> {
    Ok(match value {
        Value::Null => FieldValue::Void,
        Value::Bool(b) => FieldValue::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => FieldValue::I64(i),
            (None, Some(f)) => FieldValue::F64(f),
            (None, None) => return Err(format!("number {n} out of range")),
        },
        Value::String(s) => FieldValue::LongStr(Bytes::copy_from_slice(s.as_bytes())),
        Value::Array(items) => {
            FieldValue::Array(items.iter().map(json_to_value).collect::<Result<_, _>>()?)
        }
        Value::Object(map) => FieldValue::Table(json_to_table(map)?),
    })
}

/// A JSON object as a field table.
pub fn json_to_table(map: &Map<String, Value>) -> Result<FieldTable, String> {
    let mut table = FieldTable::new();
    for (key, value) in map {
        let name = ShortStr::try_new(key.clone())
            .ok_or_else(|| format!("field name too long: '{}…'", short(key)))?;
        table.insert(name, json_to_value(value)?);
    }
    Ok(table)
}

fn short(s: &str) -> &str {
    let mut end = s.len().min(32);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Basic properties as the management API shows them (`get`'s `properties`): only those set.
pub fn properties_to_json(p: &BasicProperties) -> Map<String, Value> {
    let mut map = Map::new();
    let mut text = |name: &str, v: &Option<ShortStr>| {
        if let Some(v) = v {
            map.insert(name.to_owned(), json!(v.as_str()));
        }
    };
    text("content_type", &p.content_type);
    text("content_encoding", &p.content_encoding);
    text("correlation_id", &p.correlation_id);
    text("reply_to", &p.reply_to);
    text("expiration", &p.expiration);
    text("message_id", &p.message_id);
    text("type", &p.kind);
    text("user_id", &p.user_id);
    text("app_id", &p.app_id);
    text("cluster_id", &p.cluster_id);
    if let Some(h) = &p.headers {
        map.insert("headers".into(), Value::Object(table_to_json(h)));
    }
    if let Some(d) = p.delivery_mode {
        map.insert("delivery_mode".into(), json!(d));
    }
    if let Some(pr) = p.priority {
        map.insert("priority".into(), json!(pr));
    }
    if let Some(t) = p.timestamp {
        map.insert("timestamp".into(), json!(t));
    }
    map
}

/// Basic properties from a publish request's `properties` (numbers may come as strings, as
/// rabbitmqadmin sends them). Unknown keys are ignored, as RabbitMQ ignores them.
pub fn json_to_properties(map: &Map<String, Value>) -> Result<BasicProperties, String> {
    let text = |name: &str| -> Result<Option<ShortStr>, String> {
        match map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => ShortStr::try_new(s.clone())
                .map(Some)
                .ok_or_else(|| format!("property {name} too long")),
            Some(other) => ShortStr::try_new(other.to_string())
                .map(Some)
                .ok_or_else(|| format!("property {name} too long")),
        }
    };
    let number = |name: &str| -> Result<Option<u64>, String> {
        match map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("property {name}: {n} is not a non-negative integer")),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| format!("property {name}: '{s}' is not a number")),
            Some(other) => Err(format!("property {name}: {other} is not a number")),
        }
    };
    let small = |name: &str| -> Result<Option<u8>, String> {
        number(name)?
            .map(|n| u8::try_from(n).map_err(|_| format!("property {name}: {n} is too large")))
            .transpose()
    };
    let headers = match map.get("headers") {
        None | Some(Value::Null) => None,
        Some(Value::Object(h)) => Some(json_to_table(h)?),
        Some(_) => return Err("property headers must be an object".into()),
    };
    Ok(BasicProperties {
        content_type: text("content_type")?,
        content_encoding: text("content_encoding")?,
        headers,
        delivery_mode: small("delivery_mode")?,
        priority: small("priority")?,
        correlation_id: text("correlation_id")?,
        reply_to: text("reply_to")?,
        expiration: text("expiration")?,
        message_id: text("message_id")?,
        timestamp: number("timestamp")?,
        kind: text("type")?,
        user_id: text("user_id")?,
        app_id: text("app_id")?,
        cluster_id: text("cluster_id")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_round_trip_with_rabbitmqs_types() {
        let args = json!({"x-max-length": 10, "x-dead-letter-exchange": "dlx", "ratio": 0.5,
                          "flag": true, "list": [1, "a"], "nested": {"k": null}});
        let table = json_to_table(args.as_object().unwrap()).unwrap();
        assert_eq!(table.get("x-max-length"), Some(&FieldValue::I64(10)));
        assert_eq!(table.get("ratio"), Some(&FieldValue::F64(0.5)));
        assert_eq!(Value::Object(table_to_json(&table)), args);
    }

    #[test]
    fn properties_take_strings_for_numbers_and_refuse_nonsense() {
        let p = json!({"delivery_mode": "2", "priority": 3, "headers": {"h": "v"},
                       "content_type": "text/plain"});
        let props = json_to_properties(p.as_object().unwrap()).unwrap();
        assert_eq!(props.delivery_mode, Some(2));
        assert_eq!(props.priority, Some(3));
        assert_eq!(
            Value::Object(properties_to_json(&props)),
            json!({"delivery_mode": 2, "priority": 3, "headers": {"h": "v"},
                   "content_type": "text/plain"})
        );
        for bad in [
            json!({"delivery_mode": "two"}),
            json!({"priority": 300}),
            json!({"headers": 1}),
        ] {
            assert!(
                json_to_properties(bad.as_object().unwrap()).is_err(),
                "{bad}"
            );
        }
    }
}
