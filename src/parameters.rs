//! Global runtime parameters (RabbitMQ's `rabbitmqctl set_global_parameter`,
//! `/api/global-parameters`): named JSON values, durable in the metadata store. As in RabbitMQ,
//! the cluster name lives here (`cluster_name`), and `internal_cluster_id` is made once, on the
//! first start, and kept.
//!
//! Read by the management API only (never on the data path), so one `RwLock` over a sorted map
//! is enough.

use crate::store::Store;
use parking_lot::RwLock;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The parameter `rabbitmqctl set_cluster_name` and `PUT /api/cluster-name` write.
pub const CLUSTER_NAME: &str = "cluster_name";
/// The cluster's identity, made on first start (RabbitMQ 3.8+ has one per cluster).
pub const INTERNAL_CLUSTER_ID: &str = "internal_cluster_id";

pub struct GlobalParameters {
    values: RwLock<BTreeMap<String, Value>>,
    store: Option<Arc<Store>>,
}

impl GlobalParameters {
    /// The parameters read back from the store (`stored`: name and JSON text). A value that is
    /// not JSON (written by hand?) is skipped with a warning rather than refusing the start.
    pub(crate) fn restore(store: Arc<Store>, stored: Vec<(String, String)>) -> Self {
        let mut values = BTreeMap::new();
        for (name, text) in stored {
            match serde_json::from_str(&text) {
                Ok(value) => {
                    values.insert(name, value);
                }
                Err(e) => tracing::warn!(parameter = %name, "stored global parameter skipped: {e}"),
            }
        }
        let parameters = GlobalParameters {
            values: RwLock::new(values),
            store: Some(store),
        };
        if parameters.get(INTERNAL_CLUSTER_ID).is_none() {
            parameters.put(INTERNAL_CLUSTER_ID, Value::String(new_cluster_id()));
        }
        parameters
    }

    /// Every parameter, sorted by name.
    pub fn list(&self) -> Vec<(String, Value)> {
        let values = self.values.read();
        values.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub fn get(&self, name: &str) -> Option<Value> {
        self.values.read().get(name).cloned()
    }

    /// Sets a parameter and hands it to the metadata writer; returns whether it is new.
    pub fn put(&self, name: &str, value: Value) -> bool {
        let mut values = self.values.write();
        if let Some(store) = &self.store {
            store.put_global_parameter(name, value.to_string());
        }
        values.insert(name.to_owned(), value).is_none()
    }

    /// Clears a parameter; returns whether it existed.
    pub fn delete(&self, name: &str) -> bool {
        let mut values = self.values.write();
        let existed = values.remove(name).is_some();
        if existed {
            if let Some(store) = &self.store {
                store.remove_global_parameter(name);
            }
        }
        existed
    }

    /// The cluster name: the `cluster_name` parameter when set, else `default`.
    pub fn cluster_name(&self, default: &str) -> String {
        match self.get(CLUSTER_NAME) {
            Some(Value::String(name)) => name,
            _ => default.to_owned(),
        }
    }
}

/// `rabbitmq-cluster-id-` and 22 characters of URL-safe base64 from 16 random bytes, the form
/// RabbitMQ gives its own.
fn new_cluster_id() -> String {
    use base64::Engine;
    let bytes: [u8; 16] = rand::random();
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    format!("rabbitmq-cluster-id-{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_look_like_rabbitmqs_and_differ() {
        let (a, b) = (new_cluster_id(), new_cluster_id());
        assert_ne!(a, b);
        let tail = a.strip_prefix("rabbitmq-cluster-id-").expect(&a);
        assert_eq!(tail.len(), 22, "{a}");
    }
}
