//! Criterion benchmarks of the broker's hot functions: topic routing with many bindings, direct
//! routing, and queue push/pop. Run: `cargo bench --bench broker`.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::sync::Arc;
use warren::exchange::{Destination, Exchange, ExchangeKind, ExchangeOptions};
use warren::message::Message;
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

criterion_group!(benches, routing, queue_push_pop);
criterion_main!(benches);
