//! The shapes of durable definitions (exchanges, queues, bindings) as the store keeps them, and
//! the reader of `definitions.json`, the whole-file format earlier versions rewrote on every
//! declare (now only imported once into `metadata.rs`).

use super::StoreError;
use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use std::path::Path;
use warren_protocol::{decode_field_table, encode_field_table, FieldTable};

/// A durable exchange.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeDef {
    pub vhost: String,
    pub name: String,
    pub kind: String,
    pub auto_delete: bool,
    pub internal: bool,
    /// The arguments table in AMQP wire encoding, hex.
    pub arguments: String,
}

/// A durable queue and the id its journal records use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDef {
    pub vhost: String,
    pub name: String,
    pub id: u32,
    pub arguments: String,
}

/// A binding between durable things.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingDef {
    pub vhost: String,
    pub source: String,
    /// `queue` or `exchange`.
    pub destination_kind: String,
    pub destination: String,
    pub routing_key: String,
    pub arguments: String,
}

/// A policy or operator policy (`kind`: `policy` / `operator_policy`); the definition is its
/// JSON object as text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDef {
    pub vhost: String,
    pub kind: String,
    pub name: String,
    pub pattern: String,
    pub apply_to: String,
    pub priority: i64,
    pub definition: String,
}

/// Everything durable but messages.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Definitions {
    pub exchanges: Vec<ExchangeDef>,
    pub queues: Vec<QueueDef>,
    pub bindings: Vec<BindingDef>,
    pub next_queue_id: u32,
    /// Users, vhosts, permissions and limits; `None` until the access model was first written
    /// (a new data directory, or one from before it was durable).
    #[serde(skip)]
    pub access: Option<crate::auth::AccessDefinitions>,
    /// Policies and operator policies (absent from files written before them).
    #[serde(default)]
    pub policies: Vec<PolicyDef>,
    /// Global runtime parameters: (name, JSON text of the value).
    #[serde(default)]
    pub global_parameters: Vec<(String, String)>,
}

impl Definitions {
    /// Reads a legacy `definitions.json`.
    pub fn load_legacy(path: &Path) -> Result<Self, StoreError> {
        let bytes = std::fs::read(path).map_err(|e| StoreError::Io(path.to_path_buf(), e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Definitions(path.to_path_buf(), e.to_string()))
    }
}

/// A table as hex of its wire encoding (round-trips every field type exactly).
pub fn table_to_hex(table: &FieldTable) -> String {
    let mut out = BytesMut::new();
    encode_field_table(table, &mut out);
    out.iter().map(|b| format!("{b:02x}")).collect()
}

/// The table written by [`table_to_hex`]; `None` if the text is not one.
pub fn table_from_hex(hex: &str) -> Option<FieldTable> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    decode_field_table(&bytes?.into()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_protocol::{FieldValue, ShortStr};

    #[test]
    fn tables_round_trip_through_hex() {
        let mut t = FieldTable::new();
        t.insert(ShortStr::from("x-message-ttl"), FieldValue::I64(1000));
        t.insert(ShortStr::from("x-dead-letter-exchange"), "dlx".into());
        assert_eq!(table_from_hex(&table_to_hex(&t)), Some(t));
        assert_eq!(table_from_hex("zz"), None);
    }
}
