//! Criterion benchmarks of the broker's hot functions: topic routing with many bindings, direct
//! routing, queue push/pop, and building a message from its frames (body copied out of the read
//! buffer, shared route, properties detached). Run: `cargo bench --bench broker`.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::sync::Arc;
use warren::exchange::{Destination, Exchange, ExchangeKind, ExchangeOptions};
use warren::message::{Body, Message, Route, RouteCache};
use warren::queue::{Queue, QueueOptions};
use warren_protocol::{BasicProperties, FieldTable, ShortStr};

fn queue(name: &str) -> Arc<Queue> {
    let options = QueueOptions {
        durable: false,
        auto_delete: false,
        exclusive_owner: None,
        arguments: FieldTable::new(),
    };
    Queue::new(ShortStr::truncated(name), options)
}

fn exchange(kind: ExchangeKind) -> Arc<Exchange> {
    let options = ExchangeOptions {
        kind,
        durable: false,
        auto_delete: false,
        internal: false,
        arguments: FieldTable::new(),
    };
    Exchange::new(ShortStr::from("bench"), options)
}

fn routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("route");
    group.throughput(Throughput::Elements(1));
    // 10,000 topic bindings: stock.<region>.<n>, plus wildcard ones every 100.
    let topic = exchange(ExchangeKind::Topic);
    let q = queue("q");
    for i in 0..10_000 {
        let key = if i % 100 == 0 {
            format!("stock.*.{i}")
        } else {
            format!("stock.r{}.{i}", i % 7)
        };
        topic
            .bind(
                Destination::Queue(q.clone()),
                ShortStr::truncated(&key),
                FieldTable::new(),
            )
            .expect("bind");
    }
    topic
        .bind(
            Destination::Queue(q.clone()),
            ShortStr::from("stock.#"),
            FieldTable::new(),
        )
        .expect("bind");
    let mut out = Vec::with_capacity(8);
    group.bench_function("topic_10k_bindings", |b| {
        b.iter(|| {
            out.clear();
            topic.route(black_box("stock.r3.4242"), None, &mut out);
            black_box(out.len())
        })
    });
    let direct = exchange(ExchangeKind::Direct);
    for i in 0..10_000 {
        direct
            .bind(
                Destination::Queue(q.clone()),
                ShortStr::truncated(&format!("key-{i}")),
                FieldTable::new(),
            )
            .expect("bind");
    }
    group.bench_function("direct_10k_bindings", |b| {
        b.iter(|| {
            out.clear();
            direct.route(black_box("key-4242"), None, &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

fn queue_push_pop(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue");
    group.throughput(Throughput::Elements(1));
    let q = queue("bench");
    let message = Arc::new(Message::new(
        ShortStr::empty(),
        ShortStr::from("bench"),
        BasicProperties::default(),
        Bytes::from_static(b"0123456789abcdef"),
    ));
    group.bench_function("push_then_get_no_ack", |b| {
        b.iter(|| {
            let _ = q.push(message.clone());
            black_box(q.get(true))
        })
    });
    group.bench_function("push_1000_then_drain", |b| {
        b.iter(|| {
            for _ in 0..1000 {
                let _ = q.push(message.clone());
            }
            while q.get(true).is_some() {}
        })
    });
    group.finish();
}

/// What the publish path does per message once its body frames are in: the body out of the
/// read buffer (a slice of a 64 KiB buffer, as the reader hands it over) and the message on the
/// channel's shared route.
fn message_from_frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("message");
    group.throughput(Throughput::Elements(1));
    let read_buffer = Bytes::from(vec![7u8; 64 * 1024]);
    let route = Route::new("", "bench");
    let plain = BasicProperties::default();
    let with_strings = BasicProperties {
        content_type: Some(ShortStr::from("application/json")),
        message_id: Some(ShortStr::from("0123456789abcdef")),
        delivery_mode: Some(2),
        ..Default::default()
    };
    for (name, size) in [("16b", 16usize), ("1kib", 1024), ("16kib", 16 * 1024)] {
        group.bench_function(format!("body_from_frame_{name}"), |b| {
            b.iter(|| black_box(Body::from_frames(vec![read_buffer.slice(100..100 + size)])))
        });
    }
    group.bench_function("new_16b_no_properties", |b| {
        b.iter(|| {
            let body = Body::from_frames(vec![read_buffer.slice(100..116)]);
            black_box(Arc::new(Message::with_route(
                route.clone(),
                plain.clone(),
                body,
            )))
        })
    });
    group.bench_function("new_16b_string_properties", |b| {
        b.iter(|| {
            let body = Body::from_frames(vec![read_buffer.slice(100..116)]);
            black_box(Arc::new(Message::with_route(
                route.clone(),
                with_strings.clone(),
                body,
            )))
        })
    });
    // The route check per publish (issue 16): a publisher repeating its pair, the exchange and
    // routing key as slices of the read buffer, compared with the channel's inline copy.
    let frame = Bytes::from_static(b"amq.directorders.eu.created");
    let (exchange, key) = (
        ShortStr::from_utf8(frame.slice(0..10)).expect("utf-8"),
        ShortStr::from_utf8(frame.slice(10..)).expect("utf-8"),
    );
    let mut cache = RouteCache::default();
    group.bench_function("route_of_repeated_pair", |b| {
        b.iter(|| black_box(cache.route_of(black_box(&exchange), black_box(&key))))
    });
    group.finish();
}

criterion_group!(benches, routing, queue_push_pop, message_from_frames);
criterion_main!(benches);
