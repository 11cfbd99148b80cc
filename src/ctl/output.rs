//! Rows of JSON objects printed as an aligned table, tab-separated values or JSON, with the
//! columns asked for (dotted keys reach into nested objects, as the API's `columns=`).

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Tsv,
    Json,
}

/// The value at a dotted path (`message_stats.publish`), if any.
pub fn pick<'a>(row: &'a Value, column: &str) -> Option<&'a Value> {
    column.split('.').try_fold(row, |v, key| v.get(key))
}

/// A cell: strings bare, null and missing empty, objects and arrays as compact JSON.
fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        // Tags and similar lists of names read best as `a,b`.
        Some(Value::Array(items)) if items.iter().all(|v| !v.is_array() && !v.is_object()) => items
            .iter()
            .map(|v| cell(Some(v)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

/// Prints `rows` (an array of objects) in `format`, only `columns`.
pub fn print_rows(rows: &[Value], columns: &[String], format: Format) -> String {
    match format {
        Format::Json => {
            let picked: Vec<Value> = rows
                .iter()
                .map(|row| {
                    let mut out = serde_json::Map::new();
                    for c in columns {
                        out.insert(c.clone(), pick(row, c).cloned().unwrap_or(Value::Null));
                    }
                    Value::Object(out)
                })
                .collect();
            let mut text = serde_json::to_string_pretty(&picked).unwrap_or_default();
            text.push('\n');
            text
        }
        Format::Tsv => {
            let mut text = columns.join("\t");
            text.push('\n');
            for row in rows {
                let cells: Vec<String> = columns
                    .iter()
                    // A tab or newline inside a value would break the row: escaped.
                    .map(|c| {
                        cell(pick(row, c))
                            .replace('\\', "\\\\")
                            .replace('\t', "\\t")
                            .replace('\n', "\\n")
                    })
                    .collect();
                text.push_str(&cells.join("\t"));
                text.push('\n');
            }
            text
        }
        Format::Table => {
            let grid: Vec<Vec<String>> = rows
                .iter()
                .map(|row| columns.iter().map(|c| cell(pick(row, c))).collect())
                .collect();
            let widths: Vec<usize> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    grid.iter()
                        .map(|r| r[i].chars().count())
                        .chain(std::iter::once(c.chars().count()))
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |cells: &[String]| {
                let padded: Vec<String> = cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                let mut l = padded.join("  ").trim_end().to_string();
                l.push('\n');
                l
            };
            let mut text = line(columns);
            for r in &grid {
                text.push_str(&line(r));
            }
            text
        }
    }
}

/// The columns `rabbitmqctl list_*` shows by default for each kind.
pub fn default_columns(kind: &str) -> &'static [&'static str] {
    match kind {
        "queues" => &["vhost", "name", "type", "messages", "consumers", "state"],
        "exchanges" => &[
            "vhost",
            "name",
            "type",
            "durable",
            "auto_delete",
            "internal",
        ],
        "bindings" => &[
            "vhost",
            "source",
            "destination",
            "destination_type",
            "routing_key",
            "properties_key",
        ],
        "connections" => &["name", "user", "vhost", "state", "channels"],
        "channels" => &["name", "user", "vhost", "number", "consumer_count"],
        "consumers" => &[
            "queue.vhost",
            "queue.name",
            "consumer_tag",
            "ack_required",
            "prefetch_count",
        ],
        "users" => &["name", "tags"],
        "vhosts" => &["name", "description", "tracing"],
        "permissions" => &["vhost", "user", "configure", "write", "read"],
        "topic_permissions" => &["vhost", "user", "exchange", "write", "read"],
        "policies" => &[
            "vhost",
            "name",
            "pattern",
            "apply-to",
            "priority",
            "definition",
        ],
        _ => &["name"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_rows() {
        let rows = vec![
            json!({"name": "a", "n": 1, "s": {"x": true}}),
            json!({"name": "long\tname", "n": null}),
        ];
        let cols = vec!["name".to_string(), "n".to_string(), "s.x".to_string()];
        assert_eq!(
            print_rows(&rows, &cols, Format::Tsv),
            "name\tn\ts.x\na\t1\ttrue\nlong\\tname\t\t\n"
        );
        assert_eq!(
            print_rows(&rows[..1], &cols, Format::Table),
            "name  n  s.x\na     1  true\n"
        );
        let json: Value = serde_json::from_str(&print_rows(&rows[..1], &cols, Format::Json))
            .expect("json output");
        assert_eq!(json, json!([{"name": "a", "n": 1, "s.x": true}]));
    }
}
