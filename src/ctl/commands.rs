//! Each subcommand as requests to the API (RabbitMQ's paths and bodies) and the text it prints.

use super::args::{self, Cli, Command, Declare, Delete, DestinationType, Kind, Purge};
use super::client::{seg, Answer, Client};
use super::output::{default_columns, print_rows, Format};
use super::CtlError;
use serde_json::{json, Map, Value};

type Outcome = Result<String, CtlError>;

/// One request; an error status becomes [`CtlError::Api`] with the API's error and reason.
fn call(
    client: &Client,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Answer, CtlError> {
    call_with(client, method, path, body, &[])
}

fn call_with(
    client: &Client,
    method: &str,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> Result<Answer, CtlError> {
    let answer = client
        .request(method, path, body, headers)
        .map_err(|e| CtlError::Unreachable(e.0))?;
    if answer.is_success() {
        return Ok(answer);
    }
    Err(api_error(&answer))
}

/// `{"error": …, "reason": …}` as `error: reason`; any other body as it came.
fn api_error(answer: &Answer) -> CtlError {
    let text = match answer.json() {
        Some(v) if v.get("error").is_some() || v.get("reason").is_some() => {
            let field = |k: &str| match v.get(k) {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            // Health checks answer `status: failed` instead of an `error`.
            let error = match field("error") {
                e if e.is_empty() => field("status"),
                e => e,
            };
            format!("{error}: {}", field("reason").trim_end())
        }
        Some(v) => v.to_string(),
        None => String::from_utf8_lossy(&answer.body).trim().to_string(),
    };
    CtlError::Api {
        status: answer.status,
        text,
    }
}

fn get_json(client: &Client, path: &str) -> Result<Value, CtlError> {
    let answer = call(client, "GET", path, None)?;
    answer.json().ok_or_else(|| CtlError::Api {
        status: answer.status,
        text: "the answer is not JSON".into(),
    })
}

/// A JSON object given on the command line.
fn json_object(flag: &str, text: &str) -> Result<Map<String, Value>, CtlError> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(CtlError::Usage(format!("{flag} must be a JSON object"))),
        Err(e) => Err(CtlError::Usage(format!("{flag} is not valid JSON: {e}"))),
    }
}

fn tag_list(tags: &str) -> Vec<String> {
    tags.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect()
}

/// The default exchange is `amq.default` in paths.
fn exchange_seg(name: &str) -> String {
    if name.is_empty() {
        "amq.default".into()
    } else {
        seg(name)
    }
}

pub fn run(client: &Client, cli: &Cli) -> Outcome {
    let v = seg(&cli.vhost);
    match &cli.command {
        Command::List(a) => list(client, cli, a),
        Command::Declare(Declare::Queue(a)) => {
            let mut arguments = json_object("--arguments", &a.arguments)?;
            if let Some(t) = &a.queue_type {
                arguments.insert("x-queue-type".into(), json!(t));
            }
            let body =
                json!({"durable": a.durable, "auto_delete": a.auto_delete, "arguments": arguments});
            call(
                client,
                "PUT",
                &format!("/api/queues/{v}/{}", seg(&a.name)),
                Some(&body),
            )?;
            Ok("queue declared\n".into())
        }
        Command::Declare(Declare::Exchange(a)) => {
            let body = json!({
                "type": a.exchange_type, "durable": a.durable, "auto_delete": a.auto_delete,
                "internal": a.internal, "arguments": json_object("--arguments", &a.arguments)?,
            });
            call(
                client,
                "PUT",
                &format!("/api/exchanges/{v}/{}", seg(&a.name)),
                Some(&body),
            )?;
            Ok("exchange declared\n".into())
        }
        Command::Declare(Declare::Binding(a)) => {
            let body = json!({
                "routing_key": a.routing_key,
                "arguments": json_object("--arguments", &a.arguments)?,
            });
            call(client, "POST", &pair_path(&v, a), Some(&body))?;
            Ok("binding declared\n".into())
        }
        Command::Delete(Delete::Queue(a)) => {
            let mut path = format!("/api/queues/{v}/{}", seg(&a.name));
            let mut query = Vec::new();
            if a.if_unused {
                query.push("if-unused=true");
            }
            if a.if_empty {
                query.push("if-empty=true");
            }
            if !query.is_empty() {
                path = format!("{path}?{}", query.join("&"));
            }
            call(client, "DELETE", &path, None)?;
            Ok("queue deleted\n".into())
        }
        Command::Delete(Delete::Exchange(a)) => {
            let mut path = format!("/api/exchanges/{v}/{}", exchange_seg(&a.name));
            if a.if_unused {
                path.push_str("?if-unused=true");
            }
            call(client, "DELETE", &path, None)?;
            Ok("exchange deleted\n".into())
        }
        Command::Delete(Delete::Binding(a)) => delete_binding(client, &v, a),
        Command::Purge(Purge::Queue(a)) => {
            call(
                client,
                "DELETE",
                &format!("/api/queues/{v}/{}/contents", seg(&a.name)),
                None,
            )?;
            Ok("queue purged\n".into())
        }
        Command::Publish(a) => publish(client, &v, a),
        Command::Get(a) => get(client, &v, a),
        Command::AddUser(a) => {
            let body = json!({"password": a.user_password, "tags": a.tags});
            call(
                client,
                "PUT",
                &format!("/api/users/{}", seg(&a.name)),
                Some(&body),
            )?;
            Ok("user added\n".into())
        }
        Command::DeleteUser(a) => {
            call(
                client,
                "DELETE",
                &format!("/api/users/{}", seg(&a.name)),
                None,
            )?;
            Ok("user deleted\n".into())
        }
        Command::ChangePassword(a) => {
            // A PUT replaces the whole user: the tags it had go along.
            let path = format!("/api/users/{}", seg(&a.name));
            let user = get_json(client, &path)?;
            let body = json!({"password": a.new_password, "tags": tags_of(&user)});
            call(client, "PUT", &path, Some(&body))?;
            Ok("password changed\n".into())
        }
        Command::SetUserTags(a) => {
            // The stored hash goes back unchanged, so the password keeps working.
            let path = format!("/api/users/{}", seg(&a.name));
            let user = get_json(client, &path)?;
            let body = json!({
                "password_hash": user.get("password_hash").cloned().unwrap_or(json!("")),
                "hashing_algorithm": user.get("hashing_algorithm").cloned()
                    .unwrap_or(json!("rabbit_password_hashing_sha256")),
                "tags": tag_list(&a.tags).join(","),
            });
            call(client, "PUT", &path, Some(&body))?;
            Ok("tags set\n".into())
        }
        Command::AddVhost(a) => {
            let mut body = Map::new();
            if let Some(d) = &a.description {
                body.insert("description".into(), json!(d));
            }
            if let Some(t) = &a.tags {
                body.insert("tags".into(), json!(t));
            }
            if let Some(q) = &a.default_queue_type {
                body.insert("default_queue_type".into(), json!(q));
            }
            if a.tracing {
                body.insert("tracing".into(), json!(true));
            }
            call(
                client,
                "PUT",
                &format!("/api/vhosts/{}", seg(&a.name)),
                Some(&Value::Object(body)),
            )?;
            Ok("vhost added\n".into())
        }
        Command::DeleteVhost(a) => {
            call(
                client,
                "DELETE",
                &format!("/api/vhosts/{}", seg(&a.name)),
                None,
            )?;
            Ok("vhost deleted\n".into())
        }
        Command::SetPermissions(a) => {
            let body = json!({"configure": a.configure, "write": a.write, "read": a.read});
            call(
                client,
                "PUT",
                &format!("/api/permissions/{v}/{}", seg(&a.user)),
                Some(&body),
            )?;
            Ok("permissions set\n".into())
        }
        Command::ClearPermissions(a) => {
            call(
                client,
                "DELETE",
                &format!("/api/permissions/{v}/{}", seg(&a.user)),
                None,
            )?;
            Ok("permissions cleared\n".into())
        }
        Command::SetTopicPermissions(a) => {
            let body = json!({"exchange": a.exchange, "write": a.write, "read": a.read});
            let path = format!("/api/topic-permissions/{v}/{}", seg(&a.user));
            call(client, "PUT", &path, Some(&body))?;
            Ok("topic permissions set\n".into())
        }
        Command::ClearTopicPermissions(a) => {
            let path = format!("/api/topic-permissions/{v}/{}", seg(&a.user));
            call(client, "DELETE", &path, None)?;
            Ok("topic permissions cleared\n".into())
        }
        Command::SetPolicy(a) => {
            let body = json!({
                "pattern": a.pattern,
                "definition": json_object("--definition", &a.definition)?,
                "priority": a.priority,
                "apply-to": a.apply_to,
            });
            call(
                client,
                "PUT",
                &format!("/api/policies/{v}/{}", seg(&a.name)),
                Some(&body),
            )?;
            Ok("policy set\n".into())
        }
        Command::ClearPolicy(a) => {
            call(
                client,
                "DELETE",
                &format!("/api/policies/{v}/{}", seg(&a.name)),
                None,
            )?;
            Ok("policy cleared\n".into())
        }
        Command::SetVhostLimits(a) => {
            let limits = json_object("--definition", &a.definition)?;
            if limits.is_empty() {
                return Err(CtlError::Usage("--definition names no limit".into()));
            }
            for (name, value) in &limits {
                let path = format!("/api/vhost-limits/{v}/{}", seg(name));
                call(client, "PUT", &path, Some(&json!({ "value": value })))?;
            }
            Ok("limits set\n".into())
        }
        Command::ClearVhostLimits(a) => {
            let all = a.names.is_empty();
            let names: Vec<String> = if all {
                vec!["max-connections".into(), "max-queues".into()]
            } else {
                a.names.clone()
            };
            for name in names {
                let path = format!("/api/vhost-limits/{v}/{}", seg(&name));
                match call(client, "DELETE", &path, None) {
                    // Clearing "all" clears those that are set.
                    Err(CtlError::Api { status: 404, .. }) if all => {}
                    other => {
                        other?;
                    }
                }
            }
            Ok("limits cleared\n".into())
        }
        Command::CloseConnection(a) => {
            let path = format!("/api/connections/{}", seg(&a.name));
            call_with(
                client,
                "DELETE",
                &path,
                None,
                &[("X-Reason", &header_safe(&a.reason))],
            )?;
            Ok("connection closed\n".into())
        }
        Command::Export(a) => {
            let path = if a.vhost_only {
                format!("/api/definitions/{v}")
            } else {
                "/api/definitions".into()
            };
            let definitions = get_json(client, &path)?;
            let mut text = serde_json::to_string_pretty(&definitions).unwrap_or_default();
            text.push('\n');
            match a.file.as_deref() {
                None | Some("-") => Ok(text),
                Some(file) => {
                    std::fs::write(file, text)
                        .map_err(|e| CtlError::Usage(format!("cannot write {file}: {e}")))?;
                    Ok(format!("definitions exported to {file}\n"))
                }
            }
        }
        Command::Import(a) => {
            let text = if a.file == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                    .map_err(|e| CtlError::Usage(format!("cannot read standard input: {e}")))?;
                s
            } else {
                std::fs::read_to_string(&a.file)
                    .map_err(|e| CtlError::Usage(format!("cannot read {}: {e}", a.file)))?
            };
            let document: Value = serde_json::from_str(&text)
                .map_err(|e| CtlError::Usage(format!("{} is not JSON: {e}", a.file)))?;
            let path = if a.vhost_only {
                format!("/api/definitions/{v}")
            } else {
                "/api/definitions".into()
            };
            call(client, "POST", &path, Some(&document))?;
            Ok("definitions imported\n".into())
        }
        Command::TraceOn | Command::TraceOff => {
            let on = matches!(cli.command, Command::TraceOn);
            // A PUT replaces the vhost's metadata (RabbitMQ 3.10 clears a description left out),
            // so what it has goes back along with the switch.
            let path = format!("/api/vhosts/{v}");
            let current = get_json(client, &path)?;
            let mut body = Map::new();
            for key in ["description", "default_queue_type"] {
                // A vhost without a default queue type shows "undefined", which a PUT refuses.
                if let Some(value) = current
                    .get(key)
                    .filter(|v| v.is_string() && v.as_str() != Some("undefined"))
                {
                    body.insert(key.into(), value.clone());
                }
            }
            body.insert("tags".into(), json!(tags_of(&current)));
            body.insert("tracing".into(), json!(on));
            call(client, "PUT", &path, Some(&Value::Object(body)))?;
            Ok(format!(
                "tracing {} in vhost {}\n",
                if on { "started" } else { "stopped" },
                cli.vhost
            ))
        }
        Command::Status(f) => status(client, f.format),
        Command::Health(a) => health(client, &v, a.check),
    }
}

fn tags_of(user: &Value) -> String {
    match user.get("tags") {
        Some(Value::Array(tags)) => tags
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

/// A header value cannot hold control characters.
fn header_safe(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}

fn list(client: &Client, cli: &Cli, a: &args::ListArgs) -> Outcome {
    let v = seg(&cli.vhost);
    let scoped = |kind: &str| {
        if a.all_vhosts {
            format!("/api/{kind}")
        } else {
            format!("/api/{kind}/{v}")
        }
    };
    let (path, columns_key) = match a.kind {
        Kind::Queues => (scoped("queues"), "queues"),
        Kind::Exchanges => (scoped("exchanges"), "exchanges"),
        Kind::Bindings => (scoped("bindings"), "bindings"),
        Kind::Consumers => (scoped("consumers"), "consumers"),
        Kind::Policies => (scoped("policies"), "policies"),
        Kind::Connections => ("/api/connections".into(), "connections"),
        Kind::Channels => ("/api/channels".into(), "channels"),
        Kind::Users => ("/api/users".into(), "users"),
        Kind::Vhosts => ("/api/vhosts".into(), "vhosts"),
        Kind::Permissions if a.all_vhosts => ("/api/permissions".into(), "permissions"),
        Kind::Permissions => (format!("/api/vhosts/{v}/permissions"), "permissions"),
        Kind::TopicPermissions if a.all_vhosts => {
            ("/api/topic-permissions".into(), "topic_permissions")
        }
        Kind::TopicPermissions => (
            format!("/api/vhosts/{v}/topic-permissions"),
            "topic_permissions",
        ),
    };
    let rows = match get_json(client, &path)? {
        Value::Array(rows) => rows,
        other => {
            return Err(CtlError::Api {
                status: 200,
                text: format!("expected a list, got {other}"),
            })
        }
    };
    let columns: Vec<String> = if a.columns.is_empty() {
        default_columns(columns_key)
            .iter()
            .map(|c| c.to_string())
            .collect()
    } else {
        a.columns.clone()
    };
    Ok(print_rows(&rows, &columns, a.format.format))
}

/// `/api/bindings/{v}/e/{source}/{q|e}/{destination}`.
fn pair_path(v: &str, a: &args::BindingArgs) -> String {
    let kind = match a.destination_type {
        DestinationType::Queue => "q",
        DestinationType::Exchange => "e",
    };
    format!(
        "/api/bindings/{v}/e/{}/{kind}/{}",
        exchange_seg(&a.source),
        seg(&a.destination)
    )
}

/// Deletes the bindings with this routing key (and these arguments, when given) between the
/// pair: the API deletes by properties key, which it lists.
fn delete_binding(client: &Client, v: &str, a: &args::BindingArgs) -> Outcome {
    let pair = pair_path(v, a);
    let arguments = json_object("--arguments", &a.arguments)?;
    let listed = get_json(client, &pair)?;
    let keys: Vec<String> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b.get("routing_key").and_then(Value::as_str) == Some(a.routing_key.as_str()))
        .filter(|b| {
            arguments.is_empty()
                || b.get("arguments").and_then(Value::as_object) == Some(&arguments)
        })
        .filter_map(|b| b.get("properties_key").and_then(Value::as_str))
        .map(String::from)
        .collect();
    if keys.is_empty() {
        return Err(CtlError::Api {
            status: 404,
            text: "Object Not Found: no such binding".into(),
        });
    }
    for key in keys {
        call(client, "DELETE", &format!("{pair}/{}", seg(&key)), None)?;
    }
    Ok("binding deleted\n".into())
}

fn publish(client: &Client, v: &str, a: &args::PublishArgs) -> Outcome {
    let bytes = match &a.payload {
        Some(p) => p.clone().into_bytes(),
        None => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .map_err(|e| CtlError::Usage(format!("cannot read standard input: {e}")))?;
            buf
        }
    };
    let (payload, encoding) = match String::from_utf8(bytes) {
        Ok(text) => (text, "string"),
        Err(e) => {
            use base64::Engine;
            let encoded = base64::engine::general_purpose::STANDARD.encode(e.as_bytes());
            (encoded, "base64")
        }
    };
    let body = json!({
        "properties": json_object("--properties", &a.properties)?,
        "routing_key": a.routing_key,
        "payload": payload,
        "payload_encoding": encoding,
    });
    let path = format!("/api/exchanges/{v}/{}/publish", exchange_seg(&a.exchange));
    let answer = call(client, "POST", &path, Some(&body))?;
    let routed = answer
        .json()
        .and_then(|r| r.get("routed").and_then(Value::as_bool))
        .unwrap_or(false);
    Ok(if routed {
        "Message published\n".into()
    } else {
        "Message published but NOT routed\n".into()
    })
}

fn get(client: &Client, v: &str, a: &args::GetArgs) -> Outcome {
    let ackmode = match a.ackmode {
        args::AckMode::AckRequeueTrue => "ack_requeue_true",
        args::AckMode::AckRequeueFalse => "ack_requeue_false",
        args::AckMode::RejectRequeueTrue => "reject_requeue_true",
        args::AckMode::RejectRequeueFalse => "reject_requeue_false",
    };
    let mut body = json!({"count": a.count, "ackmode": ackmode, "encoding": "auto"});
    if let Some(t) = a.truncate {
        body["truncate"] = json!(t);
    }
    let path = format!("/api/queues/{v}/{}/get", seg(&a.queue));
    let answer = call(client, "POST", &path, Some(&body))?;
    let rows = answer
        .json()
        .and_then(|r| r.as_array().cloned())
        .unwrap_or_default();
    let columns: Vec<String> = [
        "routing_key",
        "exchange",
        "message_count",
        "payload",
        "payload_bytes",
        "payload_encoding",
        "redelivered",
    ]
    .iter()
    .map(|c| c.to_string())
    .collect();
    if a.format.format == Format::Json {
        let mut text = serde_json::to_string_pretty(&rows).unwrap_or_default();
        text.push('\n');
        return Ok(text);
    }
    Ok(print_rows(&rows, &columns, a.format.format))
}

fn status(client: &Client, format: Format) -> Outcome {
    let overview = get_json(client, "/api/overview")?;
    if format == Format::Json {
        let mut text = serde_json::to_string_pretty(&overview).unwrap_or_default();
        text.push('\n');
        return Ok(text);
    }
    let keys = [
        "cluster_name",
        "node",
        "product_name",
        "product_version",
        "rabbitmq_version",
        "management_version",
        "object_totals.connections",
        "object_totals.channels",
        "object_totals.queues",
        "object_totals.exchanges",
        "object_totals.consumers",
        "queue_totals.messages",
        "queue_totals.messages_ready",
        "queue_totals.messages_unacknowledged",
    ];
    let mut rows: Vec<Value> = keys
        .iter()
        .filter_map(|k| super::output::pick(&overview, k).map(|v| json!({"key": k, "value": v})))
        .collect();
    for l in overview
        .get("listeners")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let text = format!(
            "{} {}:{}",
            l.get("protocol").and_then(Value::as_str).unwrap_or("?"),
            l.get("ip_address").and_then(Value::as_str).unwrap_or("?"),
            l.get("port").map(Value::to_string).unwrap_or_default()
        );
        rows.push(json!({"key": "listener", "value": text}));
    }
    Ok(print_rows(&rows, &["key".into(), "value".into()], format))
}

fn health(client: &Client, v: &str, check: args::HealthCheck) -> Outcome {
    let path = match check {
        args::HealthCheck::Alarms => "/api/health/checks/alarms".to_string(),
        args::HealthCheck::LocalAlarms => "/api/health/checks/local-alarms".into(),
        args::HealthCheck::VirtualHosts => "/api/health/checks/virtual-hosts".into(),
        args::HealthCheck::Aliveness => format!("/api/aliveness-test/{v}"),
    };
    let answer = call(client, "GET", &path, None)?;
    let status = answer
        .json()
        .and_then(|r| r.get("status").and_then(Value::as_str).map(String::from))
        .unwrap_or_else(|| "ok".into());
    Ok(format!("{status}\n"))
}
