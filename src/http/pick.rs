//! `columns=` as a choice of keys, and JSON objects written straight to bytes under that choice.
//!
//! A list of 10,000 queues is ~15 MB of JSON; building a `serde_json::Value` per row first (a map
//! of ~45 heap keys, nested maps for every rate) and then cutting it down to the chosen columns
//! cost most of the answer's time (issue 13). Rows here write their fields in key order (the order
//! `serde_json::Map`, a `BTreeMap`, serialises in) through serde's map serializer, skipping the
//! keys not chosen, so the bytes are those of `serde_json::to_vec(&select_columns(json, columns))`.
//!
//! serde's derive cannot skip fields by a runtime choice, hence the small hand-written
//! [`Fields`] trait: a row says, field by field, whether each is a scalar or an object.

use std::collections::BTreeMap;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

/// Which keys of an object are written: all of them, or the chosen ones (each whole, or itself a
/// choice among its keys when it is an object). RabbitMQ's rules (`list::select_columns`): a
/// dotted column chooses inside an object only; on a scalar it chooses nothing; a column naming a
/// key wholly wins over dotted columns below it.
#[derive(Debug, Clone, PartialEq)]
pub enum Pick {
    All,
    Only(BTreeMap<String, Pick>),
}

static ALL: Pick = Pick::All;

impl Pick {
    /// The choice for dotted column paths; `None` (no `columns=`) chooses everything.
    pub fn of(columns: Option<&[Vec<String>]>) -> Pick {
        let Some(columns) = columns else {
            return Pick::All;
        };
        let mut pick = Pick::Only(BTreeMap::new());
        for column in columns {
            pick.add(column);
        }
        pick
    }

    fn add(&mut self, path: &[String]) {
        let Pick::Only(keys) = self else {
            return;
        };
        let Some((key, rest)) = path.split_first() else {
            return;
        };
        if rest.is_empty() {
            keys.insert(key.clone(), Pick::All);
        } else {
            keys.entry(key.clone())
                .or_insert_with(|| Pick::Only(BTreeMap::new()))
                .add(rest);
        }
    }

    /// The choice inside `key`; `None` when `key` is not written at all.
    pub fn get(&self, key: &str) -> Option<&Pick> {
        match self {
            Pick::All => Some(&ALL),
            Pick::Only(keys) => keys.get(key),
        }
    }
}

/// An object that writes its fields, in ascending key order, through [`FieldOut`].
pub trait Fields {
    fn fields<M: SerializeMap>(&self, out: &mut FieldOut<'_, M>) -> Result<(), M::Error>;
}

/// The map being written and the choice of its keys.
pub struct FieldOut<'p, M> {
    map: M,
    pick: &'p Pick,
}

impl<M: SerializeMap> FieldOut<'_, M> {
    /// A number, string, bool or null: written only when chosen whole.
    pub fn scalar<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), M::Error> {
        match self.pick.get(key) {
            Some(Pick::All) => self.map.serialize_entry(key, value),
            _ => Ok(()),
        }
    }

    /// A nested typed object: written with the choice inside it.
    pub fn object<T: Fields>(&mut self, key: &str, value: &T) -> Result<(), M::Error> {
        match self.pick.get(key) {
            Some(pick) => self.map.serialize_entry(key, &Picked(value, pick)),
            None => Ok(()),
        }
    }

    /// Any JSON value: an object with the choice inside it, anything else only when chosen whole.
    pub fn value(&mut self, key: &str, value: &Value) -> Result<(), M::Error> {
        match (self.pick.get(key), value) {
            (Some(Pick::All), _) => self.map.serialize_entry(key, value),
            (Some(pick), Value::Object(_)) => self.map.serialize_entry(key, &Picked(value, pick)),
            _ => Ok(()),
        }
    }

    /// A JSON object held as a map (arguments, policy definitions).
    pub fn map(
        &mut self,
        key: &str,
        value: &serde_json::Map<String, Value>,
    ) -> Result<(), M::Error> {
        match self.pick.get(key) {
            Some(Pick::All) => self.map.serialize_entry(key, value),
            Some(pick) => self.map.serialize_entry(key, &Picked(value, pick)),
            None => Ok(()),
        }
    }
}

/// `value` written under `pick`.
pub struct Picked<'a, T: ?Sized>(pub &'a T, pub &'a Pick);

impl<T: Fields + ?Sized> Serialize for Picked<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let map = serializer.serialize_map(None)?;
        let mut out = FieldOut { map, pick: self.1 };
        self.0.fields(&mut out)?;
        out.map.end()
    }
}

impl Fields for serde_json::Map<String, Value> {
    fn fields<M: SerializeMap>(&self, out: &mut FieldOut<'_, M>) -> Result<(), M::Error> {
        match out.pick {
            Pick::All => {
                for (key, value) in self {
                    out.map.serialize_entry(key, value)?;
                }
                Ok(())
            }
            // Chosen keys in ascending order, as the map itself is.
            Pick::Only(keys) => {
                for key in keys.keys() {
                    if let Some(value) = self.get(key) {
                        out.value(key, value)?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// A JSON value as a row: its fields when it is an object (other rows write as `{}`, as
/// `select_columns` makes of them).
impl Fields for Value {
    fn fields<M: SerializeMap>(&self, out: &mut FieldOut<'_, M>) -> Result<(), M::Error> {
        match self {
            Value::Object(map) => map.fields(out),
            _ => Ok(()),
        }
    }
}

/// A rate's `{"rate": …}`.
pub struct Rate(pub f64);

impl Fields for Rate {
    fn fields<M: SerializeMap>(&self, out: &mut FieldOut<'_, M>) -> Result<(), M::Error> {
        out.scalar("rate", &self.0)
    }
}

/// A JSON array of rows, each written under the same choice.
pub struct PickedRows<'a, T>(pub &'a [&'a T], pub &'a Pick);

impl<T: Fields> Serialize for PickedRows<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|row| Picked(*row, self.1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::list::select_columns;
    use serde_json::json;

    fn dotted(columns: &str) -> Vec<Vec<String>> {
        columns
            .split(',')
            .map(|c| c.split('.').map(str::to_string).collect())
            .collect()
    }

    #[test]
    fn picked_bytes_are_those_of_the_selected_json() {
        let row = json!({
            "name": "q", "n": 3, "f": 1.0, "null": null,
            "arguments": {"x-max-length": 10, "x-nested": {"a": 1, "b": [1, 2]}},
            "stats": {"publish": 1, "publish_details": {"rate": 0.5}},
            "empty": {},
        });
        for columns in [
            "name",
            "name,n,f,null",
            "arguments",
            "arguments.x-max-length",
            "arguments.x-nested.a,arguments.x-nested.zz",
            "arguments.x-max-length.deeper",
            "name.deeper,n.x",
            "stats.publish_details.rate,stats",
            "stats,stats.publish_details.rate",
            "stats.publish_details",
            "missing,missing.deeper,empty.x,empty",
            "f,name,arguments.x-nested,n",
        ] {
            let columns = dotted(columns);
            let pick = Pick::of(Some(&columns));
            let typed = serde_json::to_vec(&Picked(&row, &pick)).unwrap();
            let generic = serde_json::to_vec(&select_columns(&row, &columns)).unwrap();
            assert_eq!(
                String::from_utf8(typed).unwrap(),
                String::from_utf8(generic).unwrap(),
                "{columns:?}"
            );
        }
        let all = serde_json::to_vec(&Picked(&row, &Pick::All)).unwrap();
        assert_eq!(all, serde_json::to_vec(&row).unwrap());
    }
}
