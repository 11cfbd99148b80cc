//! The Prometheus endpoint against a running broker, over real HTTP: every metric name the
//! RabbitMQ Grafana dashboards (3.10 "RabbitMQ-Overview" and 4.x) and the usual alerts query,
//! with RabbitMQ's type and labels, and counters that move by what real AMQP traffic did.

use crate::common::*;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions, QueueDeleteOptions};
use lapin::BasicProperties;
use std::collections::{BTreeMap, HashMap};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One parsed scrape.
#[derive(Debug, Default)]
struct Scrape {
    types: HashMap<String, String>,
    helps: HashMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    /// The samples named `name` (exactly).
    fn named(&self, name: &str) -> Vec<&(String, BTreeMap<String, String>, f64)> {
        self.samples.iter().filter(|(n, _, _)| n == name).collect()
    }

    /// The value of the one sample `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<_> = self
            .named(name)
            .into_iter()
            .filter(|(_, l, _)| {
                labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert_eq!(found.len(), 1, "one sample {name}{labels:?}, got {found:?}");
        found[0].2
    }

    /// Checks a family: its TYPE, a HELP, and that every sample has exactly `labels`.
    fn assert_family(&self, name: &str, kind: &str, labels: &[&str]) {
        assert_eq!(
            self.types.get(name).map(String::as_str),
            Some(kind),
            "TYPE of {name}"
        );
        assert!(
            self.helps.get(name).is_some_and(|h| !h.is_empty()),
            "HELP of {name}"
        );
        let sample_names: Vec<String> = if kind == "histogram" {
            ["_bucket", "_sum", "_count"]
                .iter()
                .map(|s| format!("{name}{s}"))
                .collect()
        } else {
            vec![name.to_owned()]
        };
        let mut seen = 0;
        for sample in &sample_names {
            for (_, l, _) in self.named(sample) {
                seen += 1;
                let mut keys: Vec<&str> = l.keys().map(String::as_str).collect();
                keys.retain(|k| *k != "le" || !sample.ends_with("_bucket"));
                let mut want = labels.to_vec();
                want.sort_unstable();
                assert_eq!(keys, want, "labels of {sample}");
            }
        }
        assert!(seen > 0, "{name} has samples");
    }
}

fn parse(text: &str) -> Scrape {
    let mut s = Scrape::default();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            let old = s.types.insert(name.into(), kind.into());
            assert!(old.is_none(), "{name} has one TYPE line");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP line");
            s.helps.insert(name.into(), help.into());
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line}");
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').expect("}"))),
            None => (series, BTreeMap::new()),
        };
        s.samples.push((name.into(), labels, value));
    }
    s
}

/// `a="x",b="y\"z"` (values escaped as the text format says).
fn parse_labels(mut text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !text.is_empty() {
        let (key, rest) = text.split_once("=\"").expect("label=");
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (_, '\\') => match chars.next().expect("escape").1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_owned(), value);
        text = rest[end + 1..].trim_start_matches(',');
    }
    labels
}

/// GET `path` from the broker's Prometheus listener: status, content type, body.
async fn http_get(broker: &TestBroker, path: &str) -> (u16, String, String) {
    let addr = broker.handle.prometheus_addr.expect("Prometheus started");
    within(&format!("GET {path}"), async {
        let mut stream = TcpStream::connect(addr).await.expect("connects");
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("sends");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("reads");
        let raw = String::from_utf8(raw).expect("UTF-8");
        let (head, body) = raw.split_once("\r\n\r\n").expect("end of headers");
        assert!(
            !head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "a sized body"
        );
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let content_type = head
            .lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_default();
        (status, content_type, body.to_owned())
    })
    .await
}

async fn scrape(broker: &TestBroker, path: &str) -> Scrape {
    let (status, content_type, body) = http_get(broker, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    assert_eq!(content_type, "text/plain; version=0.0.4");
    parse(&body)
}

const CLASSIC: [(&str, &str); 2] = [
    ("protocol", "amqp091"),
    ("queue_type", "rabbit_classic_queue"),
];
const AMQP: [(&str, &str); 1] = [("protocol", "amqp091")];

/// Every name the issue lists, with RabbitMQ's type and labels.
fn assert_rabbitmq_names(s: &Scrape) {
    let node = [
        "rabbitmq_node",
        "rabbitmq_cluster",
        "rabbitmq_cluster_permanent_id",
        "rabbitmq_endpoint",
    ];
    s.assert_family("rabbitmq_identity_info", "untyped", &node);
    s.assert_family(
        "rabbitmq_build_info",
        "untyped",
        &[
            "product_name",
            "product_version",
            "rabbitmq_version",
            "prometheus_plugin_version",
            "prometheus_client_version",
        ],
    );
    for name in [
        "rabbitmq_queue_messages_ready",
        "rabbitmq_queue_messages_unacked",
        "rabbitmq_queue_messages",
        "rabbitmq_queue_consumers",
        "rabbitmq_queue_messages_ready_bytes",
        "rabbitmq_queue_messages_unacked_bytes",
        "rabbitmq_queue_consumer_utilisation",
        "rabbitmq_queues",
        "rabbitmq_connections",
        "rabbitmq_channels",
        "rabbitmq_consumers",
        "rabbitmq_channel_consumers",
        "rabbitmq_process_resident_memory_bytes",
        "rabbitmq_resident_memory_limit_bytes",
        "rabbitmq_disk_space_available_bytes",
        "rabbitmq_disk_space_available_limit_bytes",
        "rabbitmq_process_open_fds",
        "rabbitmq_process_max_fds",
        "rabbitmq_process_open_tcp_sockets",
        "rabbitmq_process_max_tcp_sockets",
        "rabbitmq_erlang_uptime_seconds",
    ] {
        s.assert_family(name, "gauge", &[]);
    }
    for name in [
        "rabbitmq_queues_declared_total",
        "rabbitmq_queues_created_total",
        "rabbitmq_queues_deleted_total",
        "rabbitmq_connections_opened_total",
        "rabbitmq_connections_closed_total",
        "rabbitmq_channels_opened_total",
        "rabbitmq_channels_closed_total",
        "rabbitmq_connection_incoming_bytes_total",
        "rabbitmq_connection_outgoing_bytes_total",
    ] {
        s.assert_family(name, "counter", &[]);
    }
    for name in [
        "received",
        "received_confirm",
        "confirmed",
        "routed",
        "unroutable_dropped",
        "unroutable_returned",
    ] {
        s.assert_family(
            &format!("rabbitmq_global_messages_{name}_total"),
            "counter",
            &["protocol"],
        );
    }
    for name in [
        "delivered_consume_auto_ack",
        "delivered_consume_manual_ack",
        "delivered_get_auto_ack",
        "delivered_get_manual_ack",
        "get_empty",
        "redelivered",
        "acknowledged",
        "delivered",
    ] {
        let name = format!("rabbitmq_global_messages_{name}_total");
        s.assert_family(&name, "counter", &["protocol", "queue_type"]);
        for kind in [
            "rabbit_classic_queue",
            "rabbit_quorum_queue",
            "rabbit_stream_queue",
        ] {
            s.value(&name, &[("protocol", "amqp091"), ("queue_type", kind)]);
        }
    }
    s.assert_family("rabbitmq_global_publishers", "gauge", &["protocol"]);
    s.assert_family("rabbitmq_global_consumers", "gauge", &["protocol"]);
    s.assert_family("rabbitmq_message_size_bytes", "histogram", &["protocol"]);
    s.assert_family("warren_journal_fsync_seconds", "histogram", &[]);
    s.assert_family("warren_journal_batch_records", "histogram", &[]);
    for alarm in [
        "memory_used_watermark",
        "free_disk_space_watermark",
        "file_descriptor_limit",
    ] {
        s.assert_family(&format!("rabbitmq_alarms_{alarm}"), "untyped", &[]);
    }
}

#[tokio::test]
async fn metrics_have_rabbitmq_names_and_count_what_clients_did() {
    let broker = TestBroker::start_with_prometheus().await;
    let before = scrape(&broker, "/metrics").await;
    assert_rabbitmq_names(&before);
    let identity = &before.named("rabbitmq_identity_info")[0].1;
    assert!(
        identity["rabbitmq_node"].starts_with("warren@"),
        "{identity:?}"
    );
    assert!(!identity["rabbitmq_cluster"].is_empty());
    assert!(identity["rabbitmq_cluster_permanent_id"].starts_with("rabbitmq-cluster-id-"));
    assert_eq!(identity["rabbitmq_endpoint"], "aggregated");

    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let confirm_ch = confirm_channel_on(&conn).await;
    declare(&ch, "prom.q", &[]).await;
    declare(&ch, "prom.q", &[]).await; // declared again, not created
    let body = [7u8; 16];
    for _ in 0..3 {
        assert!(publish_confirm(&confirm_ch, "prom.q", body).await.is_ack());
    }
    publish(&ch, "prom.q", body).await;
    publish(&ch, "nowhere", body).await; // unroutable, dropped
    let returned = ch
        .basic_publish(
            "",
            "nowhere",
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &body,
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    drop(returned);
    wait_ready(&ch, "prom.q", 4).await;
    // A persistent message to a durable queue: one journal batch at least, fsynced.
    ch.queue_declare(
        "prom.durable",
        lapin::options::QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        Default::default(),
    )
    .await
    .expect("durable queue");
    let persistent = confirm_ch
        .basic_publish(
            "",
            "prom.durable",
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("publish");
    assert!(within("a confirm", persistent)
        .await
        .expect("confirm")
        .is_ack());
    // get with ack, then nack it back: redelivered on the next get.
    let first = get_one(&ch, "prom.q").await;
    first
        .delivery
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
        .expect("nack");
    let again = get_one(&ch, "prom.q").await;
    assert!(again.delivery.redelivered);
    again
        .delivery
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
    assert!(get_body(&ch, "prom.q").await.is_some()); // get, no-ack
    let mut consumer = consume(&ch, "prom.q", "c1").await;
    for _ in 0..2 {
        let d = next(&mut consumer).await;
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    assert!(get(&ch, "prom.q").await.is_none()); // get-empty

    let after = eventually("the acks to be counted", || async {
        let s = scrape(&broker, "/metrics").await;
        let acked = s.value("rabbitmq_global_messages_acknowledged_total", &CLASSIC)
            - before.value("rabbitmq_global_messages_acknowledged_total", &CLASSIC);
        (acked == 3.0).then_some(s)
    })
    .await;
    assert_rabbitmq_names(&after);
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    let g = |n: &str| format!("rabbitmq_global_messages_{n}_total");
    assert!(delta("warren_journal_fsync_seconds_count", &[]) >= 1.0);
    assert!(delta("warren_journal_batch_records_count", &[]) >= 1.0);
    assert!(delta("warren_journal_batch_records_sum", &[]) >= 1.0);
    assert_eq!(delta(&g("received"), &AMQP), 7.0);
    assert_eq!(delta(&g("received_confirm"), &AMQP), 4.0);
    assert_eq!(delta(&g("confirmed"), &AMQP), 4.0);
    assert_eq!(delta(&g("routed"), &AMQP), 5.0);
    assert_eq!(delta(&g("unroutable_dropped"), &AMQP), 1.0);
    assert_eq!(delta(&g("unroutable_returned"), &AMQP), 1.0);
    assert_eq!(delta(&g("delivered_get_manual_ack"), &CLASSIC), 2.0);
    assert_eq!(delta(&g("delivered_get_auto_ack"), &CLASSIC), 1.0);
    assert_eq!(delta(&g("delivered_consume_manual_ack"), &CLASSIC), 2.0);
    assert_eq!(delta(&g("delivered_consume_auto_ack"), &CLASSIC), 0.0);
    assert_eq!(delta(&g("delivered"), &CLASSIC), 5.0);
    assert_eq!(delta(&g("redelivered"), &CLASSIC), 1.0);
    assert_eq!(delta(&g("get_empty"), &CLASSIC), 1.0);
    let quorum = [
        ("protocol", "amqp091"),
        ("queue_type", "rabbit_quorum_queue"),
    ];
    assert_eq!(delta(&g("delivered"), &quorum), 0.0);
    assert_eq!(delta("rabbitmq_queues_declared_total", &[]), 3.0);
    assert_eq!(delta("rabbitmq_queues_created_total", &[]), 2.0);
    assert_eq!(delta("rabbitmq_connections_opened_total", &[]), 1.0);
    assert_eq!(delta("rabbitmq_channels_opened_total", &[]), 2.0);
    assert_eq!(after.value("rabbitmq_connections", &[]), 1.0);
    assert_eq!(after.value("rabbitmq_channels", &[]), 2.0);
    assert_eq!(after.value("rabbitmq_queues", &[]), 2.0);
    assert_eq!(after.value("rabbitmq_consumers", &[]), 1.0);
    assert_eq!(after.value("rabbitmq_global_consumers", &AMQP), 1.0);
    assert_eq!(after.value("rabbitmq_global_publishers", &AMQP), 2.0);
    assert_eq!(after.value("rabbitmq_channel_consumers", &[]), 1.0);
    assert_eq!(after.value("rabbitmq_queue_consumers", &[]), 1.0);
    assert_eq!(after.value("rabbitmq_queue_messages", &[]), 1.0); // the persistent message
    assert_eq!(after.value("rabbitmq_queue_consumer_utilisation", &[]), 1.0);
    assert_eq!(after.value("rabbitmq_process_open_tcp_sockets", &[]), 1.0);
    assert!(after.value("rabbitmq_connection_incoming_bytes_total", &[]) > 7.0 * 16.0);
    assert!(after.value("rabbitmq_connection_outgoing_bytes_total", &[]) > 5.0 * 16.0);
    // 16-byte bodies: all in the first bucket (le 100), and in every bucket above it.
    let size = "rabbitmq_message_size_bytes";
    assert_eq!(delta(&format!("{size}_count"), &AMQP), 7.0);
    assert_eq!(delta(&format!("{size}_sum"), &AMQP), 112.0);
    for le in ["100", "1000", "100000000"] {
        let bucket = format!("{size}_bucket");
        if after.named(&bucket).iter().any(|(_, l, _)| l["le"] == le) {
            assert_eq!(delta(&bucket, &[("le", le)]), 7.0, "bucket le={le}");
        }
    }
    assert_eq!(delta(&format!("{size}_bucket"), &[("le", "+Inf")]), 7.0);
    for gauge in [
        "rabbitmq_process_resident_memory_bytes",
        "rabbitmq_resident_memory_limit_bytes",
        "rabbitmq_disk_space_available_bytes",
        "rabbitmq_process_open_fds",
        "rabbitmq_process_max_fds",
    ] {
        assert!(after.value(gauge, &[]) > 0.0, "{gauge}");
    }
    assert_eq!(
        after.value("rabbitmq_alarms_memory_used_watermark", &[]),
        0.0
    );

    // A deleted queue's counts stay in the totals; the churn counters see it go.
    ch.basic_cancel("c1", Default::default())
        .await
        .expect("cancel");
    ch.queue_delete("prom.q", QueueDeleteOptions::default())
        .await
        .expect("delete");
    conn.close(200, "bye").await.expect("close");
    let gone = eventually("the connection to be gone", || async {
        let s = scrape(&broker, "/metrics").await;
        (s.value("rabbitmq_connections", &[]) == 0.0).then_some(s)
    })
    .await;
    let kept =
        |name: &str, labels: &[(&str, &str)]| gone.value(name, labels) - before.value(name, labels);
    assert_eq!(kept(&g("delivered"), &CLASSIC), 5.0);
    assert_eq!(kept(&g("acknowledged"), &CLASSIC), 3.0);
    assert_eq!(kept(&g("received"), &AMQP), 7.0);
    assert_eq!(kept(&format!("{size}_count"), &AMQP), 7.0);
    assert_eq!(kept("rabbitmq_queues_deleted_total", &[]), 1.0);
    assert_eq!(kept("rabbitmq_connections_closed_total", &[]), 1.0);
    assert_eq!(kept("rabbitmq_channels_closed_total", &[]), 2.0);
    assert_eq!(gone.value("rabbitmq_queues", &[]), 1.0); // the durable one
                                                         // Aggregated: no sample names an object.
    for (name, labels, _) in &gone.samples {
        for key in ["vhost", "queue", "channel"] {
            assert!(
                !labels.contains_key(key),
                "{name} has per-object label {key}"
            );
        }
    }
    broker.finish().await;
}

#[tokio::test]
async fn per_object_metrics_label_queues_channels_and_connections() {
    let broker = TestBroker::start_with_prometheus().await;
    let (conn, ch) = broker.channel().await;
    declare(&ch, "po.ready", &[]).await;
    declare(&ch, "po.busy \"quoted\"", &[]).await;
    publish(&ch, "po.ready", "12345").await;
    publish(&ch, "po.ready", "67890").await;
    publish(&ch, "po.busy \"quoted\"", "x").await;
    wait_ready(&ch, "po.ready", 2).await;
    let consumer_ch = conn.create_channel().await.expect("channel");
    let mut consumer = consume(&consumer_ch, "po.busy \"quoted\"", "busy").await;
    let held = next(&mut consumer).await; // unacked until the end

    let s = eventually("the delivery to show", || async {
        let s = scrape(&broker, "/metrics/per-object").await;
        let busy = [("vhost", "/"), ("queue", "po.busy \"quoted\"")];
        (s.value("rabbitmq_queue_messages_unacked", &busy) == 1.0).then_some(s)
    })
    .await;
    assert_rabbitmq_names_per_object(&s);
    let ready = [("vhost", "/"), ("queue", "po.ready")];
    let busy = [("vhost", "/"), ("queue", "po.busy \"quoted\"")];
    assert_eq!(s.value("rabbitmq_queue_messages_ready", &ready), 2.0);
    assert_eq!(s.value("rabbitmq_queue_messages_ready_bytes", &ready), 10.0);
    assert_eq!(s.value("rabbitmq_queue_messages", &ready), 2.0);
    assert_eq!(s.value("rabbitmq_queue_consumers", &ready), 0.0);
    assert_eq!(s.value("rabbitmq_queue_messages_ready", &busy), 0.0);
    assert_eq!(s.value("rabbitmq_queue_messages", &busy), 1.0);
    assert_eq!(s.value("rabbitmq_queue_messages_unacked_bytes", &busy), 1.0);
    assert_eq!(s.value("rabbitmq_queue_messages_bytes", &busy), 1.0);
    assert_eq!(
        s.value("rabbitmq_queue_messages_unacked_bytes", &ready),
        0.0
    );
    assert_eq!(s.value("rabbitmq_queue_messages_bytes", &ready), 10.0);
    assert_eq!(s.value("rabbitmq_queue_consumers", &busy), 1.0);
    assert_eq!(
        s.value("rabbitmq_queue_messages_delivered_ack_total", &busy),
        1.0
    );
    assert_eq!(
        s.value(
            "rabbitmq_queue_info",
            &[
                ("queue", "po.ready"),
                ("queue_type", "rabbit_classic_queue")
            ]
        ),
        1.0
    );
    // Channels by `channel` (RabbitMQ's label for channel and connection processes alike).
    let channels = s.named("rabbitmq_channel_messages_published_total");
    assert_eq!(channels.len(), 2, "{channels:?}");
    let publisher = channels
        .iter()
        .find(|(_, _, v)| *v == 3.0)
        .expect("the publishing channel");
    let consumers = s.named("rabbitmq_channel_consumers");
    assert!(consumers
        .iter()
        .any(|(_, l, v)| *v == 1.0 && l["channel"] != publisher.1["channel"]));
    assert_eq!(
        s.value(
            "rabbitmq_channel_messages_unacked",
            &[("channel", &publisher.1["channel"])]
        ),
        0.0
    );
    let incoming = s.named("rabbitmq_connection_incoming_bytes_total");
    assert_eq!(incoming.len(), 1);
    assert!(incoming[0].2 > 0.0);
    assert!(publisher.1["channel"].starts_with(&incoming[0].1["channel"]));
    assert_eq!(s.value("rabbitmq_connection_channels", &[]), 2.0);
    assert_eq!(
        s.named("rabbitmq_identity_info")[0].1["rabbitmq_endpoint"],
        "per-object"
    );

    held.ack(BasicAckOptions::default()).await.expect("ack");
    conn.close(200, "bye").await.expect("close");
    broker.finish().await;
}

fn assert_rabbitmq_names_per_object(s: &Scrape) {
    let queue = ["vhost", "queue"];
    for name in [
        "rabbitmq_queue_messages_ready",
        "rabbitmq_queue_messages_unacked",
        "rabbitmq_queue_messages",
        "rabbitmq_queue_consumers",
        "rabbitmq_queue_messages_ready_bytes",
        "rabbitmq_queue_messages_unacked_bytes",
        "rabbitmq_queue_messages_bytes",
        "rabbitmq_queue_consumer_utilisation",
    ] {
        s.assert_family(name, "gauge", &queue);
    }
    s.assert_family(
        "rabbitmq_queue_info",
        "gauge",
        &["vhost", "queue", "queue_type", "membership"],
    );
    s.assert_family("rabbitmq_channel_consumers", "gauge", &["channel"]);
    s.assert_family(
        "rabbitmq_channel_messages_published_total",
        "counter",
        &["channel"],
    );
    s.assert_family(
        "rabbitmq_connection_incoming_bytes_total",
        "counter",
        &["channel"],
    );
    s.assert_family(
        "rabbitmq_connection_outgoing_bytes_total",
        "counter",
        &["channel"],
    );
    // Node-wide families stay unlabelled, as in RabbitMQ's per-object endpoint.
    s.assert_family("rabbitmq_queues", "gauge", &[]);
    s.assert_family(
        "rabbitmq_global_messages_received_total",
        "counter",
        &["protocol"],
    );
}

#[tokio::test]
async fn detailed_metrics_give_only_the_chosen_families_and_vhosts() {
    let broker = TestBroker::start_with_prometheus().await;
    let (conn, ch) = broker.channel().await;
    declare(&ch, "d.q", &[]).await;
    publish(&ch, "d.q", "a").await;
    wait_ready(&ch, "d.q", 1).await;

    let s = scrape(
        &broker,
        "/metrics/detailed?family=queue_coarse_metrics&family=connection_churn_metrics&vhost=%2F",
    )
    .await;
    let q = [("vhost", "/"), ("queue", "d.q")];
    assert_eq!(s.value("rabbitmq_detailed_queue_messages_ready", &q), 1.0);
    s.assert_family(
        "rabbitmq_detailed_queue_messages",
        "gauge",
        &["vhost", "queue"],
    );
    s.assert_family(
        "rabbitmq_detailed_queue_info",
        "gauge",
        &["vhost", "queue", "queue_type", "membership"],
    );
    assert!(s.value("rabbitmq_detailed_connections_opened_total", &[]) >= 1.0);
    assert_eq!(
        s.named("rabbitmq_identity_info")[0].1["rabbitmq_endpoint"],
        "detailed"
    );
    let names: Vec<&str> = s.types.keys().map(String::as_str).collect();
    for name in &names {
        assert!(
            name.starts_with("rabbitmq_detailed_queue_messages")
                || name.starts_with("rabbitmq_detailed_queue_info")
                || name.starts_with("rabbitmq_detailed_connections_")
                || name.starts_with("rabbitmq_detailed_channels_")
                || name.starts_with("rabbitmq_detailed_queues_")
                || *name == "rabbitmq_identity_info"
                || *name == "rabbitmq_build_info",
            "{name} was not asked for"
        );
    }
    assert!(!names.contains(&"rabbitmq_detailed_queue_consumers"));

    // Another vhost's queues are left out; the families stay, empty.
    let s = scrape(
        &broker,
        "/metrics/detailed?family=queue_coarse_metrics&vhost=other",
    )
    .await;
    assert!(s
        .types
        .contains_key("rabbitmq_detailed_queue_messages_ready"));
    assert!(s.named("rabbitmq_detailed_queue_messages_ready").is_empty());
    // No family: only who answers.
    let s = scrape(&broker, "/metrics/detailed").await;
    let mut names: Vec<&str> = s.types.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["rabbitmq_build_info", "rabbitmq_identity_info"]);
    // Cluster-wide families have their own prefix.
    let s = scrape(
        &broker,
        "/metrics/detailed?family=vhost_status&family=exchange_names",
    )
    .await;
    assert_eq!(
        s.value("rabbitmq_cluster_vhost_status", &[("vhost", "/")]),
        1.0
    );
    assert_eq!(
        s.value(
            "rabbitmq_cluster_exchange_name",
            &[("exchange", "amq.topic"), ("type", "topic")]
        ),
        1.0
    );
    let (status, _, _) = http_get(&broker, "/metrics/nothing").await;
    assert_eq!(status, 404);

    conn.close(200, "bye").await.expect("close");
    broker.finish().await;
}
