//! Request bodies as the tools send them: rabbitmqadmin (1.x, Python) sends booleans and numbers as
//! strings (`"durable":"true"`, `"count":"2"`), so every flag and count accepts both forms.

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::error::ApiError;

/// Parses a JSON object body; an empty body is `{}` (RabbitMQ accepts a PUT without a body).
/// Malformed JSON is RabbitMQ's 400 `not_json`.
pub fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    let value: Value =
        serde_json::from_slice(body).map_err(|_| ApiError::bad_request("not_json"))?;
    if !value.is_object() {
        return Err(ApiError::bad_request("not_json"));
    }
    serde_json::from_value(value).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// RabbitMQ's 400 for a body without a mandatory key: `[{key_missing,properties}]`.
pub fn require_keys(body: &[u8], keys: &[&str]) -> Result<(), ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|_| ApiError::bad_request("not_json"))?;
    let object = value
        .as_object()
        .ok_or_else(|| ApiError::bad_request("not_json"))?;
    match keys.iter().find(|key| !object.contains_key(**key)) {
        Some(key) => Err(ApiError::bad_request(format!("[{{key_missing,{key}}}]"))),
        None => Ok(()),
    }
}

/// `true`, `"true"`; anything else that is not a boolean is an error naming the value.
pub fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Bool(b) => Ok(b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        other => Err(serde::de::Error::custom(format!(
            "{other} is not a boolean"
        ))),
    }
}

/// Like [`lenient_bool`] for an optional field (absent or null stays `None`).
pub fn lenient_opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        other => lenient_bool(other)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// A non-negative integer given as a number or a decimal string (`2`, `"2"`).
pub fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) if n.as_u64().is_some() => Ok(n.as_u64().unwrap_or_default()),
        Value::String(s) if s.trim().parse::<u64>().is_ok() => {
            Ok(s.trim().parse().unwrap_or_default())
        }
        other => Err(serde::de::Error::custom(format!(
            "{other} is not a non-negative integer"
        ))),
    }
}

/// Like [`lenient_u64`] for an optional field.
pub fn lenient_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        other => lenient_u64(other)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// `arguments` may be absent, null, an object, or (from some tools) an empty string or list.
pub fn arguments<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(Map::new()),
        Value::Object(map) => Ok(map),
        Value::String(s) if s.is_empty() => Ok(Map::new()),
        Value::Array(a) if a.is_empty() => Ok(Map::new()),
        other => Err(serde::de::Error::custom(format!(
            "arguments {other} is not an object"
        ))),
    }
}

/// `PUT /api/queues/{vhost}/{name}`. Queues created over HTTP default to non-durable.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct QueueDeclareBody {
    #[serde(deserialize_with = "lenient_bool")]
    pub durable: bool,
    #[serde(deserialize_with = "lenient_bool")]
    pub auto_delete: bool,
    #[serde(deserialize_with = "arguments")]
    pub arguments: Map<String, Value>,
    /// Ignored (single node), accepted because the UI and rabbitmqadmin send it.
    pub node: Option<String>,
}

/// `PUT /api/exchanges/{vhost}/{name}`. Without a type the exchange is `direct`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct ExchangeDeclareBody {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(deserialize_with = "lenient_bool")]
    pub durable: bool,
    #[serde(deserialize_with = "lenient_bool")]
    pub auto_delete: bool,
    #[serde(deserialize_with = "lenient_bool")]
    pub internal: bool,
    #[serde(deserialize_with = "arguments")]
    pub arguments: Map<String, Value>,
}

impl Default for ExchangeDeclareBody {
    fn default() -> Self {
        ExchangeDeclareBody {
            kind: "direct".to_string(),
            durable: false,
            auto_delete: false,
            internal: false,
            arguments: Map::new(),
        }
    }
}

/// `POST /api/bindings/{vhost}/e/{source}/q|e/{destination}`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct BindingBody {
    pub routing_key: String,
    #[serde(deserialize_with = "arguments")]
    pub arguments: Map<String, Value>,
}

/// `POST /api/exchanges/{vhost}/{name}/publish`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct PublishBody {
    #[serde(default)]
    pub routing_key: String,
    pub payload: String,
    #[serde(default = "string_encoding")]
    pub payload_encoding: String,
    #[serde(default, deserialize_with = "arguments")]
    pub properties: Map<String, Value>,
}

fn string_encoding() -> String {
    "string".to_string()
}

/// `POST /api/queues/{vhost}/{name}/get`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct GetBody {
    #[serde(deserialize_with = "lenient_u64")]
    pub count: u64,
    pub ackmode: String,
    #[serde(default = "auto_encoding")]
    pub encoding: String,
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    pub truncate: Option<u64>,
}

fn auto_encoding() -> String {
    "auto".to_string()
}

/// `PUT /api/users/{name}`: a password, a hash, or neither (a user who cannot log in by password).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct UserBody {
    pub password: Option<String>,
    pub password_hash: Option<String>,
    pub hashing_algorithm: Option<String>,
    /// A comma-separated string (`"administrator,monitoring"`) or a list.
    #[serde(deserialize_with = "tags")]
    pub tags: Vec<String>,
}

/// Tags arrive as `"a,b"` (RabbitMQ's documented form) or `["a","b"]` (3.13+).
pub fn tags<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()
    };
    match Value::deserialize(d)? {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(split(&s)),
        Value::Array(items) => Ok(items
            .iter()
            .filter_map(Value::as_str)
            .flat_map(split)
            .collect()),
        other => Err(serde::de::Error::custom(format!(
            "tags {other} is not a string or list"
        ))),
    }
}

/// `PUT /api/permissions/{vhost}/{user}`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct PermissionBody {
    pub configure: String,
    pub write: String,
    pub read: String,
}

/// `PUT /api/vhosts/{name}`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct VhostBody {
    pub description: Option<String>,
    #[serde(deserialize_with = "tags")]
    pub tags: Vec<String>,
    pub default_queue_type: Option<String>,
    #[serde(deserialize_with = "lenient_opt_bool")]
    pub tracing: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rabbitmqadmin_strings_for_booleans_and_numbers() {
        let q: QueueDeclareBody = parse(br#"{"durable":"true","auto_delete":"false"}"#).unwrap();
        assert!(q.durable && !q.auto_delete);
        let g: GetBody =
            parse(br#"{"count":"2","ackmode":"ack_requeue_true","truncate":"50000"}"#).unwrap();
        assert_eq!(
            (g.count, g.truncate, g.encoding.as_str()),
            (2, Some(50000), "auto")
        );
        let g: GetBody =
            parse(br#"{"count":3,"ackmode":"reject_requeue_false","encoding":"base64"}"#).unwrap();
        assert_eq!((g.count, g.truncate), (3, None));
    }

    #[test]
    fn defaults_match_rabbitmq() {
        let q: QueueDeclareBody = parse(b"").unwrap();
        assert!(!q.durable && q.arguments.is_empty());
        let x: ExchangeDeclareBody = parse(b"{}").unwrap();
        assert_eq!(x.kind, "direct");
        assert!(!x.durable);
        let b: BindingBody = parse(br#"{"arguments":""}"#).unwrap();
        assert_eq!(b.routing_key, "");
        let u: UserBody = parse(br#"{"password":"p","tags":"administrator, monitoring"}"#).unwrap();
        assert_eq!(u.tags, ["administrator", "monitoring"]);
        let u: UserBody = parse(br#"{"password_hash":"h","tags":["management"]}"#).unwrap();
        assert_eq!(u.tags, ["management"]);
    }

    #[test]
    fn malformed_and_wrong_types_are_400s() {
        assert_eq!(
            parse::<QueueDeclareBody>(b"{not json").unwrap_err(),
            ApiError::bad_request("not_json")
        );
        assert_eq!(
            parse::<QueueDeclareBody>(b"[1]").unwrap_err(),
            ApiError::bad_request("not_json")
        );
        let err = parse::<QueueDeclareBody>(br#"{"durable":"yes"}"#).unwrap_err();
        assert!(
            matches!(err, ApiError::BadRequest(ref r) if r.contains("not a boolean")),
            "{err:?}"
        );
        let err = parse::<GetBody>(br#"{"count":"-1","ackmode":"x"}"#).unwrap_err();
        assert!(matches!(err, ApiError::BadRequest(_)));
        let err = parse::<GetBody>(br#"{"ackmode":"x"}"#).unwrap_err();
        assert!(
            matches!(err, ApiError::BadRequest(ref r) if r.contains("count")),
            "{err:?}"
        );
    }
}
