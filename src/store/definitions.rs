//! Durable definitions (exchanges, queues, bindings) in one small JSON file, replaced atomically
//! (write a temporary file, fsync, rename, fsync the directory) on every change. Declares are
//! rare next to messages, so one rewrite per change costs nothing that matters; the file stays
//! readable by a person.

use super::StoreError;
use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
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

/// Everything durable but messages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Definitions {
    pub exchanges: Vec<ExchangeDef>,
    pub queues: Vec<QueueDef>,
    pub bindings: Vec<BindingDef>,
    pub next_queue_id: u32,
}

const FILE: &str = "definitions.json";

impl Definitions {
    /// Reads the file in `dir`, or empty definitions when there is none yet.
    pub fn load(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Definitions(path, e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Definitions {
                next_queue_id: 1,
                ..Default::default()
            }),
            Err(e) => Err(StoreError::Io(path, e)),
        }
    }

    /// Replaces the file in `dir` with these definitions, durably.
    pub fn save(&self, dir: &Path) -> Result<(), StoreError> {
        let path = dir.join(FILE);
        let tmp: PathBuf = dir.join(format!("{FILE}.tmp"));
        let io = |e| StoreError::Io(path.clone(), e);
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| StoreError::Definitions(path.clone(), e.to_string()))?;
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(&json).and_then(|()| f.sync_all()).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(())
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
    if hex.len() % 2 != 0 {
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

    #[test]
    fn definitions_survive_save_and_load() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut d = Definitions::load(dir.path()).expect("empty");
        d.queues.push(QueueDef {
            vhost: "/".into(),
            name: "q".into(),
            id: 1,
            arguments: table_to_hex(&FieldTable::new()),
        });
        d.save(dir.path()).expect("saved");
        assert_eq!(Definitions::load(dir.path()).expect("loaded"), d);
    }
}
