//! Criterion baselines for the delivery and journal hot paths changed in issue 16, so that a
//! regression shows: `cargo bench --bench delivery`.
//!
//! - `outbound/deliver_16b`: one delivery (basic.deliver + header + 16 B body) encoded into a
//!   connection's outbound buffer, with its writer wakeup per message (no batch) and inside a
//!   `WakeBatch` (one wakeup per connection per batch of 100, as a connection task does).
//! - `outbound/fanout_10`: one message encoded for 10 connections, batched.
//! - `journal/settle`: appending one settle record (held in the submitter, no writer wakeup).
//! - `journal/window_100x1k`: 100 persistent 1 KiB publish records appended and waited for
//!   until synced (one fdatasync round trip: this one depends on the disk).

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use warren::outbound::{Outbound, WakeBatch};
use warren::stats::ConnectionCounters;
use warren::store::journal::{Effect, Journal};
use warren::store::record::Record;
use warren_protocol::{basic, BasicProperties, Method, ShortStr};

fn deliver_method() -> Method {
    Method::BasicDeliver(basic::Deliver {
        consumer_tag: ShortStr::from("amq.ctag-bench"),
        delivery_tag: 1,
        redelivered: false,
        exchange: ShortStr::empty(),
        routing_key: ShortStr::from("perf"),
    })
}

/// An outbound buffer whose writer is a task that just drops what it gets.
fn outbound(rt: &tokio::runtime::Runtime) -> Arc<Outbound> {
    let out = Outbound::new(131_072, Arc::new(ConnectionCounters::default()));
    rt.spawn(out.clone().run_writer(tokio::io::sink()));
    out
}

fn deliveries(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let method = deliver_method();
    let properties = BasicProperties::default();
    let body = [7u8; 16];
    let mut group = c.benchmark_group("outbound");
    group.throughput(Throughput::Elements(100));
    let one = outbound(&rt);
    group.bench_function("deliver_16b_x100_wake_each", |b| {
        b.iter(|| {
            for _ in 0..100 {
                one.send_content(1, black_box(&method), &properties, &body);
            }
        })
    });
    group.bench_function("deliver_16b_x100_batched", |b| {
        b.iter(|| {
            let _batch = WakeBatch::begin();
            for _ in 0..100 {
                one.send_content(1, black_box(&method), &properties, &body);
            }
        })
    });
    let ten: Vec<_> = (0..10).map(|_| outbound(&rt)).collect();
    group.throughput(Throughput::Elements(10 * 10));
    group.bench_function("fanout_10_x10_batched", |b| {
        b.iter(|| {
            let _batch = WakeBatch::begin();
            for _ in 0..10 {
                for out in &ten {
                    out.send_content(1, black_box(&method), &properties, &body);
                }
            }
        })
    });
    group.finish();
    for out in std::iter::once(&one).chain(&ten) {
        out.close();
    }
}

fn publish_record(id: u64, body: &Bytes) -> Record {
    let mut header = BytesMut::new();
    header.extend_from_slice(&[0u8; 14]);
    Record::Publish {
        id,
        queues: vec![1],
        delivered: false,
        exchange: ShortStr::empty(),
        routing_key: ShortStr::from("perf"),
        header: header.freeze(),
        body: body.clone(),
    }
}

fn journal(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = Journal::start(dir.path(), HashMap::new(), Vec::new()).expect("journal");
    let body = Bytes::from(vec![1u8; 1024]);
    let mut group = c.benchmark_group("journal");
    let mut id = 0u64;
    group.throughput(Throughput::Elements(1));
    group.bench_function("settle", |b| {
        b.iter(|| {
            id += 1;
            journal.append(
                &Record::Settle { id, queue: 1 },
                Effect::Settle { id, queue: 1 },
            )
        })
    });
    group.throughput(Throughput::Elements(100));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    let mut synced = journal.synced();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    group.bench_function("window_100x1k", |b| {
        b.iter(|| {
            let mut last = 0;
            for _ in 0..100 {
                id += 1;
                last = journal.append(
                    &publish_record(id, &body),
                    Effect::Publish {
                        id,
                        queues: vec![1],
                    },
                );
            }
            rt.block_on(async {
                while *synced.borrow_and_update() < last {
                    let _ = synced.changed().await;
                }
            });
        })
    });
    group.finish();
}

criterion_group!(benches, deliveries, journal);
criterion_main!(benches);
