//! `warren ctl` (the management CLI, the built binary) against an in-process broker with its
//! management API on 127.0.0.1:0: what it prints, its exit codes, and its effects as an AMQP
//! client (lapin) sees them; and the firehose (`trace_on`, `amq.rabbitmq.trace`) end to end.

mod common;

use common::*;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use serde_json::Value;

/// What one `warren ctl` run did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `warren ctl ARGS` against `broker`'s API (in a blocking task: the broker runs on this
/// runtime meanwhile).
async fn ctl(broker: &TestBroker, args: &[&str]) -> Run {
    let url = format!(
        "http://{}",
        broker
            .handle
            .management_addr
            .expect("management API started")
    );
    ctl_at(&url, args).await
}

async fn ctl_at(url: &str, args: &[&str]) -> Run {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_warren"));
    cmd.arg("ctl").args(args).env("WARREN_CTL_URL", url);
    for key in ["WARREN_CTL_USER", "WARREN_CTL_PASSWORD"] {
        cmd.env_remove(key);
    }
    let what = format!("warren ctl {args:?}");
    let output = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs a command that must succeed; its standard output.
async fn ok(broker: &TestBroker, args: &[&str]) -> String {
    let run = ctl(broker, args).await;
    assert_eq!(
        run.code, 0,
        "warren ctl {args:?}: {}{}",
        run.stdout, run.stderr
    );
    run.stdout
}

/// TSV output as rows of cells, header first.
fn tsv(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.split('\t').map(String::from).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declare_publish_get_purge_delete_as_an_amqp_client_sees_them() {
    let broker = TestBroker::start_with_management().await;
    let (_conn, ch) = broker.channel().await;

    ok(
        &broker,
        &["declare", "exchange", "--name", "orders", "--type", "topic"],
    )
    .await;
    ok(
        &broker,
        &[
            "declare",
            "queue",
            "--name",
            "eu",
            "--arguments",
            r#"{"x-max-length": 5}"#,
        ],
    )
    .await;
    ok(
        &broker,
        &[
            "declare",
            "binding",
            "--source",
            "orders",
            "--destination",
            "eu",
            "--routing-key",
            "eu.#",
        ],
    )
    .await;

    // lapin publishes through what the CLI declared.
    ch.basic_publish(
        "orders",
        "eu.de",
        BasicPublishOptions::default(),
        b"from lapin",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    wait_ready(&ch, "eu", 1).await;

    let rows = tsv(&ok(
        &broker,
        &[
            "list",
            "queues",
            "--columns",
            "name,messages,arguments.x-max-length",
            "--format",
            "tsv",
        ],
    )
    .await);
    assert_eq!(rows[0], ["name", "messages", "arguments.x-max-length"]);
    assert!(
        rows.contains(&vec!["eu".into(), "1".into(), "5".into()]),
        "{rows:?}"
    );

    let bindings = tsv(&ok(
        &broker,
        &[
            "list",
            "bindings",
            "-f",
            "tsv",
            "-c",
            "source,destination,routing_key",
        ],
    )
    .await);
    assert!(
        bindings.contains(&vec!["orders".into(), "eu".into(), "eu.#".into()]),
        "{bindings:?}"
    );

    // get (requeued by default) shows the message; JSON output parses.
    let got: Value =
        serde_json::from_str(&ok(&broker, &["get", "--queue", "eu", "--format", "json"]).await)
            .expect("JSON");
    assert_eq!(got[0]["payload"], "from lapin", "{got}");
    assert_eq!(got[0]["routing_key"], "eu.de");
    assert_eq!(
        ready_count(&ch, "eu").await,
        1,
        "ack_requeue_true put it back"
    );

    ok(&broker, &["purge", "queue", "--name", "eu"]).await;
    assert_eq!(ready_count(&ch, "eu").await, 0, "purged");

    // The CLI publishes; lapin gets it, properties included.
    let out = ok(
        &broker,
        &[
            "publish",
            "--exchange",
            "orders",
            "--routing-key",
            "eu.fr",
            "--payload",
            "from ctl",
            "--properties",
            r#"{"content_type": "text/plain", "headers": {"n": 7}}"#,
        ],
    )
    .await;
    assert_eq!(out.trim(), "Message published");
    let m = get_one(&ch, "eu").await;
    assert_eq!(text(&m.delivery), "from ctl");
    assert_eq!(
        m.delivery
            .properties
            .content_type()
            .as_ref()
            .map(|s| s.as_str()),
        Some("text/plain")
    );
    assert!(
        header(&m.delivery.properties, "n").is_some(),
        "{:?}",
        m.delivery.properties
    );
    let out = ok(
        &broker,
        &[
            "publish",
            "--exchange",
            "orders",
            "--routing-key",
            "us.ny",
            "--payload",
            "x",
        ],
    )
    .await;
    assert_eq!(out.trim(), "Message published but NOT routed");

    // Unbinding by routing key: the next publish is unroutable.
    ok(
        &broker,
        &[
            "delete",
            "binding",
            "--source",
            "orders",
            "--destination",
            "eu",
            "--routing-key",
            "eu.#",
        ],
    )
    .await;
    let out = ok(
        &broker,
        &[
            "publish",
            "--exchange",
            "orders",
            "--routing-key",
            "eu.de",
            "--payload",
            "x",
        ],
    )
    .await;
    assert_eq!(out.trim(), "Message published but NOT routed");
    let again = ctl(
        &broker,
        &[
            "delete",
            "binding",
            "--source",
            "orders",
            "--destination",
            "eu",
            "--routing-key",
            "eu.#",
        ],
    )
    .await;
    assert_eq!(again.code, 1, "{}", again.stderr);

    ok(&broker, &["delete", "queue", "--name", "eu"]).await;
    ok(&broker, &["delete", "exchange", "--name", "orders"]).await;
    let conn = broker.connect().await;
    assert!(!queue_exists(&conn, "eu").await, "deleted");
    drop(ch);
    broker.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_and_the_apis_reason() {
    let broker = TestBroker::start_with_management().await;
    ok(
        &broker,
        &["declare", "queue", "--name", "d", "--durable", "true"],
    )
    .await;

    // 1: the API refused; its error and reason are printed.
    let run = ctl(
        &broker,
        &["declare", "queue", "--name", "d", "--durable", "false"],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("inequivalent arg 'durable'"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("bad_request"), "{}", run.stderr);
    let run = ctl(&broker, &["purge", "queue", "--name", "missing"]).await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("Not Found"), "{}", run.stderr);
    let run = ctl(&broker, &["--password", "wrong", "list", "queues"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("HTTP 401"), "{}", run.stderr);

    // A command's `--user` names its subject, never the API login (`--username`): whatever the
    // API answers, it is not a failed login.
    let run = ctl(
        &broker,
        &[
            "set_permissions",
            "--user",
            "nobody",
            "--configure",
            ".*",
            "--write",
            ".*",
            "--read",
            ".*",
        ],
    )
    .await;
    assert!(!run.stderr.contains("HTTP 401"), "{}", run.stderr);

    // 2: usage errors, before any request.
    let run = ctl(&broker, &["list", "gizmos"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let run = ctl(&broker, &["declare", "queue"]).await;
    assert_eq!(run.code, 2, "--name is required: {}", run.stderr);
    let run = ctl(
        &broker,
        &[
            "declare",
            "queue",
            "--name",
            "e",
            "--arguments",
            "{not json",
        ],
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("--arguments is not valid JSON"),
        "{}",
        run.stderr
    );

    // 0 with help, on every level.
    for args in [
        &["--help"][..],
        &["list", "--help"],
        &["declare", "binding", "--help"],
    ] {
        let run = ctl(&broker, args).await;
        assert_eq!(run.code, 0, "{args:?}");
        assert!(
            run.stdout.contains("Usage: warren ctl"),
            "{args:?}: {}",
            run.stdout
        );
    }

    // 69: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let run = ctl_at(&url, &["list", "queues"]).await;
    assert_eq!(run.code, 69, "{}", run.stderr);
    assert!(run.stderr.contains("cannot connect"), "{}", run.stderr);
    broker.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_connections_closes_one_and_reports_health() {
    let broker = TestBroker::start_with_management().await;
    let (conn, ch) = broker.channel().await;
    declare(&ch, "held", &[]).await;

    let rows = tsv(&ok(
        &broker,
        &["list", "connections", "-f", "tsv", "-c", "name,user,vhost"],
    )
    .await);
    assert_eq!(rows.len(), 2, "one connection: {rows:?}");
    let name = rows[1][0].clone();
    assert!(name.contains(" -> "), "RabbitMQ's connection name: {name}");
    assert_eq!(rows[1][1..], ["guest", "/"]);
    let channels = tsv(&ok(&broker, &["list", "channels", "-f", "tsv", "-c", "number"]).await);
    assert_eq!(channels[1], ["1"]);

    for (kind, expected) in [
        ("users", "guest"),
        ("vhosts", "/"),
        ("permissions", "guest"),
    ] {
        let out = ok(&broker, &["list", kind]).await;
        assert!(
            out.lines().nth(1).is_some_and(|l| l.contains(expected)),
            "{kind}: {out}"
        );
    }
    let exchanges: Value = serde_json::from_str(
        &ok(
            &broker,
            &["list", "exchanges", "-f", "json", "-c", "name,internal"],
        )
        .await,
    )
    .expect("JSON");
    assert!(
        exchanges
            .as_array()
            .expect("rows")
            .iter()
            .any(|x| x["name"] == "amq.rabbitmq.trace" && x["internal"] == true),
        "{exchanges}"
    );

    let status = ok(&broker, &["status"]).await;
    assert!(
        status.contains("object_totals.connections") && status.contains("listener"),
        "{status}"
    );
    assert_eq!(ok(&broker, &["health"]).await.trim(), "ok");
    assert_eq!(ok(&broker, &["health", "aliveness"]).await.trim(), "ok");

    let exported: Value =
        serde_json::from_str(&ok(&broker, &["export"]).await).expect("definitions JSON");
    assert!(
        exported["queues"]
            .as_array()
            .expect("queues")
            .iter()
            .any(|q| q["name"] == "held"),
        "{exported}"
    );
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let path = file.path().to_str().expect("utf-8 path");
    ok(&broker, &["export", path, "--vhost-only"]).await;
    let per_vhost: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("written")).expect("JSON");
    assert!(per_vhost["queues"].is_array(), "{per_vhost}");

    ok(
        &broker,
        &[
            "close_connection",
            "--name",
            &name,
            "--reason",
            "maintenance",
        ],
    )
    .await;
    eventually("the connection to close", || async {
        (!conn.status().connected()).then_some(())
    })
    .await;
    let rows = tsv(&ok(&broker, &["list", "connections", "-f", "tsv"]).await);
    assert_eq!(rows.len(), 1, "only the header left: {rows:?}");
    broker.finish().await;
}

/// RabbitMQ's firehose: with tracing on, `publish.<exchange>` and `deliver.<queue>` copies with
/// RabbitMQ's headers reach a queue bound to `amq.rabbitmq.trace`; with tracing off, nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_firehose_traces_publishes_and_deliveries_while_on() {
    let broker = TestBroker::start_with_management().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "work", &[]).await;
    declare(&ch, "trace", &[]).await;
    // Everything: reading the trace queue is not traced back in (its messages come from the
    // trace exchange, which RabbitMQ never traces).
    ch.queue_bind(
        "trace",
        "amq.rabbitmq.trace",
        "#",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind to the trace exchange");

    publish(&ch, "work", "before").await;
    let _ = get_one(&ch, "work").await;
    assert_eq!(
        ready_count(&ch, "trace").await,
        0,
        "tracing is off by default"
    );

    assert!(ok(&broker, &["trace_on"]).await.contains("tracing started"));
    let vhosts = tsv(&ok(
        &broker,
        &["list", "vhosts", "-f", "tsv", "-c", "name,tracing"],
    )
    .await);
    assert_eq!(vhosts[1], ["/", "true"]);

    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(table(&[("a", s("b"))]));
    ch.basic_publish("", "work", BasicPublishOptions::default(), b"traced", props)
        .await
        .expect("publish");
    let mut consumer = consume(&ch, "work", "c1").await;
    let delivered = next(&mut consumer).await;
    assert_eq!(text(&delivered), "traced");
    delivered.ack(Default::default()).await.expect("ack");

    wait_ready(&ch, "trace", 2).await;
    let published = get_one(&ch, "trace").await.delivery;
    assert_eq!(published.exchange.as_str(), "amq.rabbitmq.trace");
    assert_eq!(
        published.routing_key.as_str(),
        "publish.",
        "publish.<default exchange>"
    );
    assert_eq!(text(&published), "traced");
    let p = &published.properties;
    assert_eq!(header_str(p, "exchange_name").as_deref(), Some(""));
    assert_eq!(header_str(p, "vhost").as_deref(), Some("/"));
    assert_eq!(header_str(p, "user").as_deref(), Some("guest"));
    assert!(
        header_str(p, "connection").is_some_and(|c| c.contains(" -> ")),
        "{p:?}"
    );
    assert!(
        header_str(p, "node").is_some_and(|n| n.starts_with("warren@")),
        "{p:?}"
    );
    assert_eq!(header(p, "channel"), Some(&AMQPValue::LongInt(1)));
    let strings = |v: Option<&AMQPValue>| match v {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .map(|x| match x {
                AMQPValue::LongString(s) => s.to_string(),
                other => format!("{other:?}"),
            })
            .collect::<Vec<_>>(),
        other => panic!("not an array: {other:?}"),
    };
    assert_eq!(strings(header(p, "routing_keys")), ["work"]);
    assert_eq!(strings(header(p, "routed_queues")), ["work"]);
    let Some(AMQPValue::FieldTable(original)) = header(p, "properties") else {
        panic!("properties table: {p:?}");
    };
    let inner = original.inner();
    assert_eq!(
        inner.get("delivery_mode"),
        Some(&AMQPValue::LongInt(2)),
        "{inner:?}"
    );
    assert!(
        matches!(inner.get("headers"), Some(AMQPValue::FieldTable(h)) if h.inner().contains_key("a")),
        "{inner:?}"
    );
    assert_eq!(
        p.delivery_mode(),
        &None,
        "the trace copy itself is transient"
    );

    let deliver = get_one(&ch, "trace").await.delivery;
    assert_eq!(deliver.routing_key.as_str(), "deliver.work");
    assert_eq!(text(&deliver), "traced");
    assert_eq!(
        header(&deliver.properties, "redelivered"),
        Some(&AMQPValue::LongInt(0))
    );
    assert_eq!(
        header_str(&deliver.properties, "exchange_name").as_deref(),
        Some("")
    );

    // Getting from the trace queue is not traced back into it (no feedback loop).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        ready_count(&ch, "trace").await,
        0,
        "{:?}",
        get(&ch, "trace").await.map(|m| m.delivery.routing_key)
    );

    // Clients may bind to the trace exchange, not publish to it (internal: 403).
    let other = broker
        .connect()
        .await
        .create_channel()
        .await
        .expect("channel");
    other
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    let sent = other
        .basic_publish(
            "amq.rabbitmq.trace",
            "x",
            BasicPublishOptions::default(),
            b"no",
            BasicProperties::default(),
        )
        .await;
    let code = match sent {
        Ok(confirm) => refused(within("the publish to be refused", confirm).await).0,
        Err(e) => refused::<()>(Err(e)).0,
    };
    assert_eq!(code, 403, "amq.rabbitmq.trace is internal");

    // What the management API publishes is traced too (RabbitMQ publishes it through a direct
    // connection, which the firehose sees).
    ok(
        &broker,
        &[
            "publish",
            "--exchange",
            "amq.default",
            "--routing-key",
            "nowhere",
            "--payload",
            "over http",
        ],
    )
    .await;
    wait_ready(&ch, "trace", 1).await;
    let via_http = get_one(&ch, "trace").await.delivery;
    assert_eq!(via_http.routing_key.as_str(), "publish.");
    assert_eq!(text(&via_http), "over http");
    assert_eq!(
        header_str(&via_http.properties, "user").as_deref(),
        Some("guest")
    );

    ok(&broker, &["trace_off"]).await;
    publish(&ch, "work", "after").await;
    let after = next(&mut consumer).await;
    assert_eq!(text(&after), "after");
    after.ack(Default::default()).await.expect("ack");
    // Traces are published by a task: give one time to show up if it was wrongly sent.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        ready_count(&ch, "trace").await,
        0,
        "nothing traced once off"
    );
    broker.finish().await;
}
