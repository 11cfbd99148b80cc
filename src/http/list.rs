//! RabbitMQ's list parameters over JSON rows: `sort`, `sort_reverse`, `columns`, and (only with `page`)
//! `name` + `use_regex` filtering and `page`/`page_size` paging.
//!
//! Behaviour measured on RabbitMQ 3.10.8 (tests/fixtures/management/queues_*.json): name filters are
//! case-insensitive substrings or regexes and apply only to paged requests; a page is out of range only
//! when it starts past the end (`(page-1)*page_size > filtered`); a missing sort key sorts first.

use std::cmp::Ordering;

use regex::RegexBuilder;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use super::error::ApiError;
use super::pick::{Fields, Pick, PickedRows};

/// RabbitMQ's `?MAX_PAGE_SIZE` and `?DEFAULT_PAGE_SIZE`.
pub const MAX_PAGE_SIZE: i64 = 500;
pub const DEFAULT_PAGE_SIZE: i64 = 100;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListQuery {
    /// Dotted column paths (`message_stats.publish_details.rate`), split on dots.
    pub columns: Option<Vec<Vec<String>>>,
    /// Dotted sort key; `None` keeps the endpoint's default order.
    pub sort: Option<Vec<String>>,
    pub sort_reverse: bool,
    pub page: Option<Pagination>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pagination {
    pub page: i64,
    pub page_size: i64,
    pub name: Option<NameFilter>,
}

#[derive(Debug, Clone)]
pub enum NameFilter {
    /// Case-insensitive substring (lowercased).
    Substring(String),
    Regex(regex::Regex),
}

impl PartialEq for NameFilter {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (NameFilter::Substring(a), NameFilter::Substring(b)) => a == b,
            (NameFilter::Regex(a), NameFilter::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl NameFilter {
    fn matches(&self, name: &str) -> bool {
        match self {
            NameFilter::Substring(needle) => name.to_lowercase().contains(needle.as_str()),
            NameFilter::Regex(regex) => regex.is_match(name),
        }
    }
}

fn invalid_pagination() -> ApiError {
    ApiError::bad_request("Pagination parameters are invalid")
}

fn dotted(path: &str) -> Vec<String> {
    path.split('.').map(str::to_string).collect()
}

impl Pagination {
    /// How many filtered rows come before this page; RabbitMQ's 400 when it starts past the end.
    fn skip(&self, filtered_count: usize) -> Result<usize, ApiError> {
        let skip = (self.page as usize - 1).saturating_mul(self.page_size as usize);
        if skip > filtered_count {
            return Err(ApiError::BadRequestKind {
                error: "page_out_of_range",
                reason: format!(
                    "Page out of range, page: {} page size: {}, len: {}",
                    self.page, self.page_size, filtered_count
                ),
            });
        }
        Ok(skip)
    }

    #[cfg(test)]
    fn envelope(&self, items: Vec<Value>, filtered_count: usize, total_count: usize) -> Value {
        serde_json::json!({
            "filtered_count": filtered_count,
            "item_count": items.len(),
            "items": items,
            "page": self.page,
            "page_count": filtered_count.div_ceil(self.page_size as usize),
            "page_size": self.page_size,
            "total_count": total_count,
        })
    }
}

impl ListQuery {
    /// Reads the list parameters from decoded query pairs; RabbitMQ's 400s for bad paging.
    pub fn parse(pairs: &[(String, String)]) -> Result<ListQuery, ApiError> {
        let get = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let columns = get("columns").filter(|c| !c.is_empty()).map(|c| {
            c.split(',')
                .filter(|col| !col.is_empty())
                .map(dotted)
                .collect()
        });
        let sort = get("sort").filter(|s| !s.is_empty()).map(dotted);
        let sort_reverse = get("sort_reverse") == Some("true");
        let page = match get("page") {
            None => None,
            Some(page) => {
                let page: i64 = page.trim().parse().map_err(|_| invalid_pagination())?;
                let page_size = match get("page_size") {
                    None => None,
                    Some(size) => Some(
                        size.trim()
                            .parse::<i64>()
                            .map_err(|_| invalid_pagination())?,
                    ),
                };
                let valid_size = page_size.is_none_or(|s| s > 0 && s <= MAX_PAGE_SIZE);
                if page <= 0 || !valid_size {
                    let size = page_size.map_or("undefined".to_string(), |s| s.to_string());
                    return Err(ApiError::BadRequestKind {
                        error: "invalid_pagination_parameters",
                        reason: format!(
                            "Invalid pagination parameters: page number {page}, page size {size}"
                        ),
                    });
                }
                let use_regex = get("use_regex") == Some("true");
                let name = match get("name").filter(|n| !n.is_empty()) {
                    None => None,
                    Some(name) if use_regex => Some(NameFilter::Regex(
                        RegexBuilder::new(name)
                            .case_insensitive(true)
                            .size_limit(1 << 20)
                            .build()
                            .map_err(|_| invalid_pagination())?,
                    )),
                    Some(name) => Some(NameFilter::Substring(name.to_lowercase())),
                };
                Some(Pagination {
                    page,
                    page_size: page_size.unwrap_or(DEFAULT_PAGE_SIZE),
                    name,
                })
            }
        };
        Ok(ListQuery {
            columns,
            sort,
            sort_reverse,
            page,
        })
    }

    /// Sorts, filters, pages and selects columns of JSON rows, written to bytes (lists that are
    /// small, or have no typed rows): [`ListQuery::apply_typed`] with the rows as their own keys.
    pub fn apply_json(&self, rows: Vec<Value>) -> Result<Vec<u8>, ApiError> {
        self.apply_typed(
            rows,
            |row| row.get("name").and_then(Value::as_str).unwrap_or(""),
            |row, key| Some(lookup(row, key).cloned()),
            Value::clone,
        )
    }

    /// The reference the byte-writing paths are tested against: sorts, filters, pages and
    /// selects columns on `serde_json::Value` rows, as RabbitMQ does on its proplists.
    #[cfg(test)]
    pub fn apply(&self, mut rows: Vec<Value>) -> Result<Value, ApiError> {
        if let Some(sort) = &self.sort {
            // Stable: rows with equal keys keep the default order.
            rows.sort_by(|a, b| compare_values(lookup(a, sort), lookup(b, sort)));
        }
        if self.sort_reverse {
            rows.reverse();
        }
        let Some(pagination) = &self.page else {
            return Ok(Value::Array(self.select(rows)));
        };
        let total_count = rows.len();
        if let Some(filter) = &pagination.name {
            rows.retain(|row| {
                filter.matches(row.get("name").and_then(Value::as_str).unwrap_or(""))
            });
        }
        let filtered_count = rows.len();
        let skip = pagination.skip(filtered_count)?;
        let items: Vec<Value> = rows
            .into_iter()
            .skip(skip)
            .take(pagination.page_size as usize)
            .collect();
        Ok(pagination.envelope(self.select(items), filtered_count, total_count))
    }

    /// `apply` over typed rows, written straight to JSON bytes: the name filter reads `name`, the
    /// sort reads `cheap_key` where it knows the key (else the row's JSON, built for that alone),
    /// and rows are written field by field under the `columns=` choice ([`pick`]), never as a
    /// `serde_json::Value`. Answers the bytes of `apply` over the rows' JSON: the filter keeps
    /// order, so filtering before the (stable) sort changes nothing.
    pub fn apply_typed<T: Fields>(
        &self,
        rows: Vec<T>,
        name: impl Fn(&T) -> &str,
        cheap_key: impl Fn(&T, &[String]) -> Option<Option<Value>>,
        to_json: impl Fn(&T) -> Value,
    ) -> Result<Vec<u8>, ApiError> {
        let total_count = rows.len();
        // Rows are only referred to from here on: a row (a queue's view is ~600 bytes) is
        // never moved by the filter or the sort.
        let mut order: Vec<&T> = rows.iter().collect();
        if let Some(Pagination {
            name: Some(filter), ..
        }) = &self.page
        {
            order.retain(|row| filter.matches(name(row)));
        }
        if let Some(sort) = &self.sort {
            let mut keyed: Vec<(Option<Value>, &T)> = order
                .into_iter()
                .map(|row| match cheap_key(row, sort) {
                    Some(key) => (key, row),
                    None => (lookup(&to_json(row), sort).cloned(), row),
                })
                .collect();
            // Stable: rows with equal keys keep the default order.
            keyed.sort_by(|a, b| compare_values(a.0.as_ref(), b.0.as_ref()));
            order = keyed.into_iter().map(|(_, row)| row).collect();
        }
        if self.sort_reverse {
            order.reverse();
        }
        let pick = Pick::of(self.columns.as_deref());
        let Some(pagination) = &self.page else {
            return Ok(to_bytes(&PickedRows(&order, &pick)));
        };
        let filtered_count = order.len();
        let skip = pagination.skip(filtered_count)?;
        let end = skip
            .saturating_add(pagination.page_size as usize)
            .min(filtered_count);
        Ok(to_bytes(&Envelope {
            pagination,
            items: PickedRows(&order[skip..end], &pick),
            filtered_count,
            total_count,
        }))
    }

    #[cfg(test)]
    fn select(&self, rows: Vec<Value>) -> Vec<Value> {
        match &self.columns {
            None => rows,
            Some(columns) => rows
                .iter()
                .map(|row| select_columns(row, columns))
                .collect(),
        }
    }
}

fn lookup<'a>(row: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(row, |value, key| value.get(key))
}

/// A row holding only the given columns: a single object's answer (`mod.rs`), and the reference
/// the list writer [`super::pick`] is tested against. As RabbitMQ does, a column whose parent
/// exists but whose leaf does not still yields the (empty) parent object; a missing top-level
/// key is left out.
pub fn select_columns(row: &Value, columns: &[Vec<String>]) -> Value {
    let mut out = Map::new();
    for column in columns {
        copy_path(row, column, &mut out);
    }
    Value::Object(out)
}

fn copy_path(source: &Value, path: &[String], out: &mut Map<String, Value>) {
    let Some((key, rest)) = path.split_first() else {
        return;
    };
    let Some(value) = source.get(key) else {
        return;
    };
    if rest.is_empty() || !value.is_object() {
        if rest.is_empty() {
            out.insert(key.clone(), value.clone());
        }
        return;
    }
    let child = out
        .entry(key.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(child) = child {
        copy_path(value, rest, child);
    }
}

/// Missing < null < booleans < numbers < strings < arrays/objects, numbers numerically, strings
/// byte-wise (as Erlang's term order puts numbers before binaries).
fn compare_values(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    fn rank(v: Option<&Value>) -> u8 {
        match v {
            None => 0,
            Some(Value::Null) => 1,
            Some(Value::Bool(_)) => 2,
            Some(Value::Number(_)) => 3,
            Some(Value::String(_)) => 4,
            Some(_) => 5,
        }
    }
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

fn to_bytes(value: &impl Serialize) -> Vec<u8> {
    // Writing plain data to a Vec cannot fail (no maps with non-string keys here).
    serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec())
}

/// RabbitMQ's paged answer, keys in the order `serde_json::Map` writes them.
struct Envelope<'a, T> {
    pagination: &'a Pagination,
    items: PickedRows<'a, T>,
    filtered_count: usize,
    total_count: usize,
}

impl<T: Fields> Serialize for Envelope<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let p = self.pagination;
        let mut map = serializer.serialize_map(Some(7))?;
        map.serialize_entry("filtered_count", &self.filtered_count)?;
        map.serialize_entry("item_count", &self.items.0.len())?;
        map.serialize_entry("items", &self.items)?;
        map.serialize_entry("page", &p.page)?;
        map.serialize_entry(
            "page_count",
            &self.filtered_count.div_ceil(p.page_size as usize),
        )?;
        map.serialize_entry("page_size", &p.page_size)?;
        map.serialize_entry("total_count", &self.total_count)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(query: &str) -> Vec<(String, String)> {
        super::super::path::query_pairs(Some(query))
    }

    fn rows() -> Vec<Value> {
        vec![
            json!({"name": "q-consumed", "vhost": "/", "messages": 0, "message_stats": {"publish_details": {"rate": 1.5}}}),
            json!({"name": "q/slash#hash", "vhost": "/", "messages": 7}),
            json!({"name": "q1", "vhost": "/", "messages": 4, "arguments": {"x-max-length": 100}}),
            json!({"name": "qv", "vhost": "test/vh", "messages": 2, "arguments": {}}),
        ]
    }

    fn names(value: &Value) -> Vec<&str> {
        let items = value.get("items").unwrap_or(value);
        items
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect()
    }

    fn apply(query: &str) -> Result<Value, ApiError> {
        ListQuery::parse(&pairs(query))?.apply(rows())
    }

    #[test]
    fn sorts_numerically_and_by_dotted_keys_and_reverses() {
        assert_eq!(
            names(&apply("sort=messages").unwrap()),
            ["q-consumed", "qv", "q1", "q/slash#hash"]
        );
        assert_eq!(
            names(&apply("sort=messages&sort_reverse=true").unwrap()),
            ["q/slash#hash", "q1", "qv", "q-consumed"]
        );
        // Missing keys sort first, ties keep the default order.
        assert_eq!(
            names(&apply("sort=message_stats.publish_details.rate").unwrap()),
            ["q/slash#hash", "q1", "qv", "q-consumed"]
        );
        assert_eq!(
            names(&apply("sort=nonexistent").unwrap()),
            ["q-consumed", "q/slash#hash", "q1", "qv"]
        );
    }

    /// A typed row for the tests: its name apart, its fields written from its JSON.
    #[derive(Clone)]
    struct Typed {
        name: String,
        json: Value,
    }

    impl Fields for Typed {
        fn fields<M: SerializeMap>(
            &self,
            out: &mut crate::http::pick::FieldOut<'_, M>,
        ) -> Result<(), M::Error> {
            self.json.fields(out)
        }
    }

    #[test]
    fn typed_rows_get_the_same_bytes_as_json_rows() {
        // Rows as typed data: JSON is built from them only for a sort key they do not know.
        let typed: Vec<Typed> = rows()
            .into_iter()
            .map(|json| Typed {
                name: json["name"].as_str().unwrap_or("").to_string(),
                json,
            })
            .collect();
        let cheap = |row: &Typed, key: &[String]| match key {
            [k] if k == "messages" => Some(row.json.get("messages").cloned()),
            _ => None,
        };
        for query in [
            "",
            "sort=messages",
            "sort=messages&sort_reverse=true",
            "sort=message_stats.publish_details.rate&sort_reverse=true",
            "sort=nonexistent&sort_reverse=true",
            "columns=name,messages",
            "columns=name,arguments.x-max-length,message_stats.publish_details.rate",
            "columns=message_stats.publish_details,name.x,arguments&sort=name&sort_reverse=true",
            "sort=messages&columns=vhost,messages",
            "page=1&page_size=2&sort=messages",
            "page=2&page_size=2&sort=name&sort_reverse=true&columns=name",
            "page=1&name=Q&sort=messages",
            "page=1&name=%5EQ%5B0-9v%5D&use_regex=true&sort_reverse=true",
            "page=1&columns=arguments.x-max-length,messages",
            "page=3&page_size=2",
            "page=9&page_size=2",
        ] {
            let q = ListQuery::parse(&pairs(query)).unwrap();
            let expected = q
                .apply(rows())
                .map(|v| String::from_utf8(serde_json::to_vec(&v).unwrap()).unwrap());
            let bytes = |b: Vec<u8>| String::from_utf8(b).unwrap();
            let typed = q
                .apply_typed(typed.clone(), |r| &r.name, cheap, |r| r.json.clone())
                .map(bytes);
            assert_eq!(typed, expected, "{query}");
            assert_eq!(q.apply_json(rows()).map(bytes), expected, "{query}");
        }
    }

    #[test]
    fn columns_select_nested_keys_like_rabbitmq() {
        let out = apply("columns=name,arguments.x-max-length,message_stats.publish_details.rate")
            .unwrap();
        assert_eq!(
            out,
            json!([
                {"name": "q-consumed", "message_stats": {"publish_details": {"rate": 1.5}}},
                {"name": "q/slash#hash"},
                {"name": "q1", "arguments": {"x-max-length": 100}},
                {"name": "qv", "arguments": {}},
            ])
        );
    }

    #[test]
    fn name_filter_applies_only_with_paging() {
        assert_eq!(names(&apply("name=Q1").unwrap()).len(), 4);
        let out = apply("page=1&name=Q1").unwrap();
        assert_eq!(names(&out), ["q1"]);
        assert_eq!(out["filtered_count"], 1);
        assert_eq!(out["total_count"], 4);
        let out = apply("page=1&name=%5EQ%5B0-9v%5D&use_regex=true").unwrap();
        assert_eq!(names(&out), ["q1", "qv"]);
    }

    #[test]
    fn paging_answers_rabbitmqs_envelope() {
        let out = apply("page=2&page_size=3&columns=name").unwrap();
        assert_eq!(
            out,
            json!({"filtered_count": 4, "item_count": 1, "items": [{"name": "qv"}], "page": 2,
                   "page_count": 2, "page_size": 3, "total_count": 4})
        );
        // Starting exactly at the end is an empty page, not an error (RabbitMQ's lists:sublist).
        let out = apply("page=3&page_size=2").unwrap();
        assert_eq!(out["item_count"], 0);
        let out = apply("page=1&name=zzz").unwrap();
        assert_eq!(
            (out["page_count"].as_u64(), out["page_size"].as_u64()),
            (Some(0), Some(100))
        );
    }

    #[test]
    fn bad_paging_gets_rabbitmqs_errors() {
        let err = |q: &str| apply(q).unwrap_err();
        assert_eq!(
            err("page=0"),
            ApiError::BadRequestKind {
                error: "invalid_pagination_parameters",
                reason: "Invalid pagination parameters: page number 0, page size undefined".into()
            }
        );
        assert_eq!(
            err("page=1&page_size=501").body().unwrap().1,
            "Invalid pagination parameters: page number 1, page size 501"
        );
        assert_eq!(
            err("page=-1&page_size=2").body().unwrap().1,
            "Invalid pagination parameters: page number -1, page size 2"
        );
        assert_eq!(
            err("page=9&page_size=2"),
            ApiError::BadRequestKind {
                error: "page_out_of_range",
                reason: "Page out of range, page: 9 page size: 2, len: 4".into()
            }
        );
        assert_eq!(
            err("page=abc"),
            ApiError::bad_request("Pagination parameters are invalid")
        );
        assert_eq!(
            err("page=1&page_size=x"),
            ApiError::bad_request("Pagination parameters are invalid")
        );
        assert_eq!(
            err("page=1&name=(&use_regex=true"),
            ApiError::bad_request("Pagination parameters are invalid")
        );
    }

    #[test]
    fn error_shapes_match_the_captured_rabbitmq_answers() {
        for (fixture, query) in [
            ("queues_page_zero", "page=0"),
            ("queues_page_size_too_big", "page=1&page_size=501"),
            ("queues_page_not_number", "page=abc"),
            ("queues_bad_regex", "page=1&name=(&use_regex=true"),
        ] {
            let captured = crate::http::tests::fixture(fixture);
            let err = apply(query).unwrap_err();
            let (error, reason) = err.body().unwrap();
            assert_eq!(captured["status"], 400, "{fixture}");
            assert_eq!(captured["body"]["error"], error, "{fixture}");
            assert_eq!(captured["body"]["reason"], reason, "{fixture}");
        }
    }
}
