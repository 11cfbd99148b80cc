//! Codec throughput for one published message: basic.publish + content header (a few properties,
//! a small headers table) + one body frame, with 16-byte and 4 KiB bodies.
//!
//! `cargo bench -p warren-protocol --bench codec -- --warm-up-time 1 --measurement-time 3`
//!
//! Each iteration handles one whole message; throughput is in bytes of encoded frames.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use warren_protocol::{
    basic, decode_frame, encode_content, BasicProperties, FieldTable, FieldValue, Frame, Method,
    ShortStr,
};

const FRAME_MAX: u32 = 131_072;
const BODY_SIZES: [(usize, &str); 2] = [(16, "16B"), (4096, "4KiB")];

fn publish() -> Method {
    basic::Publish {
        exchange: ShortStr::from_static("amq.topic"),
        routing_key: ShortStr::from_static("orders.eu.created"),
        mandatory: true,
        ..Default::default()
    }
    .into()
}

fn properties() -> BasicProperties {
    BasicProperties {
        content_type: Some(ShortStr::from_static("application/json")),
        delivery_mode: Some(2),
        message_id: Some(ShortStr::from_static(
            "5f1c2a9e-0d7b-4c1e-9a53-2b8f0e6d4a11",
        )),
        timestamp: Some(1_700_000_000),
        headers: Some(FieldTable(vec![
            (ShortStr::from_static("x-retries"), FieldValue::I32(2)),
            (ShortStr::from_static("tenant"), FieldValue::from("acme")),
        ])),
        ..Default::default()
    }
}

fn encoded_message(body: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    encode_content(1, &publish(), &properties(), body, FRAME_MAX, &mut out);
    out.freeze()
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (size, name) in BODY_SIZES {
        let bytes = encoded_message(&vec![0xab; size]);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || BytesMut::from(&bytes[..]),
                |buf| {
                    let mut frames = 0;
                    while let Some(frame) = decode_frame(buf, FRAME_MAX).expect("valid frames") {
                        black_box(&frame);
                        frames += 1;
                    }
                    assert_eq!(frames, 3);
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    let (method, props) = (publish(), properties());
    for (size, name) in BODY_SIZES {
        let body = vec![0xab; size];
        let len = encoded_message(&body).len();
        group.throughput(Throughput::Bytes(len as u64));
        let mut out = BytesMut::with_capacity(len);
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                encode_content(1, &method, &props, black_box(&body), FRAME_MAX, &mut out);
                assert_eq!(out.len(), len);
            })
        });
    }
    group.finish();
}

/// Sanity: what the benchmark decodes is what it encoded (checked once, outside the timing).
fn check() {
    let bytes = encoded_message(b"0123456789abcdef");
    let mut buf = BytesMut::from(&bytes[..]);
    let first = decode_frame(&mut buf, FRAME_MAX).expect("valid");
    assert!(matches!(first, Some(Frame::Method { method, .. }) if method == publish()));
}

fn benches(c: &mut Criterion) {
    check();
    decode(c);
    encode(c);
}

criterion_group!(codec, benches);
criterion_main!(codec);
