//! Golden bytes: real client ↔ RabbitMQ traffic (captured by `tests/fixtures/capture.py` from pika
//! and amqplib sessions) decodes frame by frame, and every frame re-encodes to exactly the bytes
//! the client or RabbitMQ sent.
//!
//! Fixture format: `tests/fixtures/<client>.<c2s|s2c>.hex`, lowercase hex, 64 characters a line;
//! a `c2s` stream starts with the 8-byte protocol header. The test fails when the directory has no
//! `.hex` file, so it cannot pass by having nothing to check.

mod common;

use bytes::BytesMut;
use common::{decode_all, encode, frame_eq, Decoded};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use warren_protocol::{
    decode_frame, decode_protocol_header, Frame, Method, ProtocolHeader, PROTOCOL_HEADER,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// The fixture directory; `WARREN_PROTOCOL_FIXTURES` points the tests at another one (to check a
/// new capture before it replaces the committed one).
fn fixtures_dir() -> PathBuf {
    std::env::var_os("WARREN_PROTOCOL_FIXTURES")
        .map_or_else(|| PathBuf::from(FIXTURES), PathBuf::from)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Direction {
    ClientToServer,
    ServerToClient,
}

struct Stream {
    file: String,
    client: String,
    direction: Direction,
    bytes: Vec<u8>,
}

fn hex_files() -> Vec<PathBuf> {
    let dir = fixtures_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "hex"))
        .collect();
    files.sort();
    files
}

/// Reads one fixture, checking its format (lowercase hex, 64 characters a line, the last line
/// possibly shorter) and its name (`<client>.c2s.hex` or `<client>.s2c.hex`).
fn load(path: &Path) -> Stream {
    let file = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("UTF-8 file name")
        .to_owned();
    let stem = file.strip_suffix(".hex").expect("a .hex file");
    let (client, direction) = if let Some(client) = stem.strip_suffix(".c2s") {
        (client, Direction::ClientToServer)
    } else if let Some(client) = stem.strip_suffix(".s2c") {
        (client, Direction::ServerToClient)
    } else {
        panic!("{file}: fixture names end in .c2s.hex or .s2c.hex");
    };
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let lines: Vec<&str> = text.lines().collect();
    assert!(!lines.is_empty(), "{file}: empty fixture");
    for (i, line) in lines.iter().enumerate() {
        let last = i + 1 == lines.len();
        assert!(
            line.len() == 64 || (last && !line.is_empty() && line.len() < 64),
            "{file}:{}: {} hex characters, expected 64",
            i + 1,
            line.len()
        );
        assert!(
            line.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{file}:{}: not lowercase hex",
            i + 1
        );
    }
    let bytes = hex::decode(lines.concat()).unwrap_or_else(|e| panic!("{file}: {e}"));
    let client = client.to_owned();
    Stream {
        file,
        client,
        direction,
        bytes,
    }
}

fn load_all() -> Vec<Stream> {
    let files = hex_files();
    assert!(
        !files.is_empty(),
        "no *.hex fixtures in {}: capture them with tests/fixtures/capture.sh",
        fixtures_dir().display()
    );
    files.iter().map(|p| load(p)).collect()
}

/// The frames of a stream, after the protocol header on c2s.
fn frames_of(stream: &Stream) -> Vec<Decoded> {
    let file = &stream.file;
    let mut body = &stream.bytes[..];
    if stream.direction == Direction::ClientToServer {
        assert_eq!(
            decode_protocol_header(body),
            Some(ProtocolHeader::Amqp091),
            "{file}: must open with AMQP 0-9-1's protocol header"
        );
        assert_eq!(body[..8], PROTOCOL_HEADER);
        body = &body[8..];
    }
    let mut buf = BytesMut::from(body);
    let mut frames = Vec::new();
    let mut offset = stream.bytes.len() - body.len();
    loop {
        let before = buf.len();
        let snapshot = buf.clone().freeze();
        match decode_frame(&mut buf, 0) {
            Ok(Some(frame)) => {
                let used = before - buf.len();
                frames.push(Decoded {
                    frame,
                    bytes: snapshot.slice(..used),
                });
                offset += used;
            }
            Ok(None) => break,
            Err(e) => panic!(
                "{file}: frame {} at byte {offset}: {e}\n{}",
                frames.len(),
                hex::encode(&snapshot[..snapshot.len().min(64)])
            ),
        }
    }
    assert!(
        buf.is_empty(),
        "{file}: {} bytes after the last whole frame",
        buf.len()
    );
    assert!(!frames.is_empty(), "{file}: no frames");
    frames
}

/// What a frame is, for the coverage check: a method's name, or `header`, `header+headers`,
/// `body`, `heartbeat`.
fn kind(frame: &Frame) -> String {
    match frame {
        Frame::Method { method, .. } => method.name().to_owned(),
        Frame::Header { header, .. } => match &header.properties.headers {
            Some(h) if !h.is_empty() => "header+headers".into(),
            _ => "header".into(),
        },
        Frame::Body { .. } => "body".into(),
        Frame::Heartbeat => "heartbeat".into(),
    }
}

#[test]
fn every_captured_frame_reencodes_to_the_same_bytes() {
    let mut total = 0;
    for stream in load_all() {
        let frames = frames_of(&stream);
        for (i, d) in frames.iter().enumerate() {
            let again = encode(&d.frame);
            assert!(
                again == d.bytes,
                "{}: frame {i} ({}) re-encodes differently\noriginal  {}\nre-encoded {}",
                stream.file,
                kind(&d.frame),
                hex::encode(&d.bytes),
                hex::encode(&again)
            );
        }
        total += frames.len();
    }
    assert!(total > 100, "only {total} frames in all fixtures");
}

#[test]
fn streams_decode_the_same_when_they_arrive_in_pieces() {
    for stream in load_all() {
        let whole = frames_of(&stream);
        let start = if stream.direction == Direction::ClientToServer {
            8
        } else {
            0
        };
        for chunk in [1, 7, 1000, 65_536] {
            let mut buf = BytesMut::new();
            let mut frames = Vec::new();
            for piece in stream.bytes[start..].chunks(chunk) {
                buf.extend_from_slice(piece);
                frames.extend(
                    decode_all(&mut buf, 0)
                        .unwrap_or_else(|e| panic!("{} in {chunk}-byte pieces: {e}", stream.file)),
                );
            }
            assert!(buf.is_empty(), "{}: bytes left over", stream.file);
            assert_eq!(frames.len(), whole.len(), "{}: {chunk}", stream.file);
            for (a, b) in frames.iter().zip(&whole) {
                assert!(frame_eq(&a.frame, &b.frame), "{}: {chunk}", stream.file);
                assert_eq!(a.bytes, b.bytes);
            }
        }
    }
}

#[test]
fn captured_frames_fit_the_negotiated_frame_max() {
    let streams = load_all();
    let mut by_client: BTreeMap<&str, Vec<&Stream>> = BTreeMap::new();
    for s in &streams {
        by_client.entry(&s.client).or_default().push(s);
    }
    for (client, streams) in by_client {
        let mut negotiated = None;
        let mut all = Vec::new();
        for s in streams {
            for d in frames_of(s) {
                if let Frame::Method {
                    method: Method::ConnectionTuneOk(t),
                    ..
                } = &d.frame
                {
                    negotiated = Some(t.frame_max);
                }
                all.push((s.file.clone(), d));
            }
        }
        let frame_max = negotiated.unwrap_or_else(|| panic!("{client}: no connection.tune-ok"));
        assert!(frame_max >= 4096, "{client}: frame_max {frame_max}");
        for (file, d) in all {
            let mut buf = BytesMut::from(&d.bytes[..]);
            let again = decode_frame(&mut buf, frame_max)
                .unwrap_or_else(|e| panic!("{file}: {e} with frame_max {frame_max}"));
            assert!(again.is_some_and(|f| frame_eq(&f, &d.frame)));
        }
    }
}

#[test]
fn content_methods_are_followed_by_a_header_and_their_body() {
    for stream in load_all() {
        let file = &stream.file;
        // Per channel: bytes of body still expected, or None between messages.
        let mut pending: HashMap<u16, Option<u64>> = HashMap::new();
        let mut awaiting_header: BTreeSet<u16> = BTreeSet::new();
        let mut messages = 0;
        for d in frames_of(&stream) {
            match &d.frame {
                Frame::Method { channel, method } => {
                    assert!(
                        !awaiting_header.contains(channel),
                        "{file}: {} before the content header on channel {channel}",
                        method.name()
                    );
                    if let Some(Some(left)) = pending.get(channel) {
                        assert_eq!(*left, 0, "{file}: body cut short on channel {channel}");
                    }
                    if method.has_content() {
                        awaiting_header.insert(*channel);
                        messages += 1;
                    }
                }
                Frame::Header { channel, header } => {
                    assert!(
                        awaiting_header.remove(channel),
                        "{file}: content header without a content method on channel {channel}"
                    );
                    assert_eq!(header.class_id, 60, "{file}");
                    pending.insert(*channel, Some(header.body_size));
                }
                Frame::Body { channel, payload } => {
                    let left = pending
                        .get_mut(channel)
                        .and_then(Option::as_mut)
                        .unwrap_or_else(|| panic!("{file}: body frame outside a message"));
                    *left = left
                        .checked_sub(payload.len() as u64)
                        .unwrap_or_else(|| panic!("{file}: more body than body-size"));
                }
                Frame::Heartbeat => {}
            }
        }
        assert!(
            awaiting_header.is_empty(),
            "{file}: stream ends mid-message"
        );
        assert!(messages > 0, "{file}: no content-carrying method at all");
    }
}

#[test]
fn methods_travel_in_the_direction_the_spec_allows() {
    for stream in load_all() {
        for d in frames_of(&stream) {
            if let Frame::Method { method, .. } = &d.frame {
                let allowed = match stream.direction {
                    Direction::ClientToServer => method.is_sent_by_client(),
                    Direction::ServerToClient => method.is_sent_by_server(),
                };
                assert!(
                    allowed,
                    "{}: {} in the wrong direction",
                    stream.file,
                    method.name()
                );
            }
        }
    }
}

#[test]
fn fixtures_cover_the_handshake_publishing_delivery_and_close() {
    let required: &[(Direction, &str)] = &[
        (Direction::ServerToClient, "connection.start"),
        (Direction::ClientToServer, "connection.start-ok"),
        (Direction::ServerToClient, "connection.tune"),
        (Direction::ClientToServer, "connection.tune-ok"),
        (Direction::ClientToServer, "connection.open"),
        (Direction::ServerToClient, "connection.open-ok"),
        (Direction::ClientToServer, "channel.open"),
        (Direction::ServerToClient, "channel.open-ok"),
        (Direction::ClientToServer, "exchange.declare"),
        (Direction::ClientToServer, "queue.declare"),
        (Direction::ServerToClient, "queue.declare-ok"),
        (Direction::ClientToServer, "queue.bind"),
        (Direction::ClientToServer, "basic.publish"),
        (Direction::ClientToServer, "header+headers"),
        (Direction::ClientToServer, "body"),
        (Direction::ClientToServer, "basic.consume"),
        (Direction::ServerToClient, "basic.deliver"),
        (Direction::ServerToClient, "header+headers"),
        (Direction::ClientToServer, "basic.ack"),
        (Direction::ClientToServer, "connection.close"),
        (Direction::ServerToClient, "connection.close-ok"),
    ];
    let streams = load_all();
    let clients: BTreeSet<&str> = streams.iter().map(|s| s.client.as_str()).collect();
    for client in &clients {
        let mut seen: BTreeSet<(Direction, String)> = BTreeSet::new();
        for s in streams.iter().filter(|s| s.client == *client) {
            seen.extend(frames_of(s).iter().map(|d| (s.direction, kind(&d.frame))));
        }
        for dir in [Direction::ClientToServer, Direction::ServerToClient] {
            assert!(
                seen.iter().any(|(d, _)| *d == dir),
                "{client}: no {dir:?} fixture"
            );
        }
        let missing: Vec<String> = required
            .iter()
            .filter(|(d, k)| !seen.contains(&(*d, (*k).to_owned())))
            .map(|(d, k)| format!("{k} ({d:?})"))
            .collect();
        assert!(
            missing.is_empty(),
            "{client}: fixtures lack {}",
            missing.join(", ")
        );
    }
    assert!(
        clients.len() >= 2,
        "expected captures from at least two client libraries, found {clients:?}"
    );
}

/// All frames of one client's capture, with their direction.
fn client_frames(streams: &[Stream], client: &str) -> Vec<(Direction, Frame)> {
    streams
        .iter()
        .filter(|s| s.client == client)
        .flat_map(|s| {
            frames_of(s)
                .into_iter()
                .map(move |d| (s.direction, d.frame))
        })
        .collect()
}

fn methods(frames: &[(Direction, Frame)], dir: Direction) -> impl Iterator<Item = &Method> {
    frames.iter().filter_map(move |(d, f)| match f {
        Frame::Method { method, .. } if *d == dir => Some(method),
        _ => None,
    })
}

/// Byte-identical re-encoding cannot tell a codec that reads a field into the wrong place but
/// writes it back from the same wrong place (two bits swapped, two property flags swapped, `I`
/// read as unsigned). So: decoded values must be what the scenario scripts
/// (`tests/fixtures/scenario_pika.py`, `node/scenario_amqplib.js`) sent and what RabbitMQ answered.
#[test]
fn decoded_values_are_what_the_clients_and_rabbitmq_sent() {
    use warren_protocol::{Decimal, FieldValue};
    let streams = load_all();
    for client in ["pika", "amqplib"] {
        let frames = client_frames(&streams, client);
        assert!(!frames.is_empty(), "no {client} fixtures");
        let c2s = Direction::ClientToServer;
        let s2c = Direction::ServerToClient;
        let name = |n: &str| format!("warren.fx.{client}.{n}");

        // connection.tune: RabbitMQ's defaults (frame_max 131072 splits the 300 KiB body in 3).
        let tune = methods(&frames, s2c)
            .find_map(|m| match m {
                Method::ConnectionTune(t) => Some(t.clone()),
                _ => None,
            })
            .expect("connection.tune");
        assert_eq!(tune.frame_max, 131_072, "{client}");
        assert_eq!(tune.channel_max, 2047, "{client}");

        // exchange.declare(internal, topic, auto_delete, internal): bits in the right places.
        let internal = methods(&frames, c2s)
            .find_map(|m| match m {
                Method::ExchangeDeclare(d) if d.exchange == *name("internal") => Some(d.clone()),
                _ => None,
            })
            .expect("exchange.declare of the internal exchange");
        assert_eq!(internal.kind, "topic", "{client}");
        assert!(
            internal.auto_delete && internal.internal,
            "{client}: {internal:?}"
        );
        assert!(!internal.passive && !internal.durable && !internal.no_wait);
        let direct = methods(&frames, c2s)
            .find_map(|m| match m {
                Method::ExchangeDeclare(d) if d.exchange == *name("direct") => Some(d.clone()),
                _ => None,
            })
            .expect("exchange.declare of the direct exchange");
        assert!(
            direct.durable && !direct.auto_delete && !direct.passive,
            "{client}"
        );

        // queue.declare(q1, exclusive, arguments) and (q2, durable), (q3, auto_delete).
        let declares: Vec<_> = methods(&frames, c2s)
            .filter_map(|m| match m {
                Method::QueueDeclare(d) if !d.passive => Some(d.clone()),
                _ => None,
            })
            .collect();
        let q = |n: &str| {
            declares
                .iter()
                .find(|d| d.queue == *name(n))
                .unwrap_or_else(|| panic!("{client}: queue.declare {n}"))
        };
        let q1 = q("q1");
        // (amqplib's assertQueue defaults to durable, pika's queue_declare does not.)
        assert!(q1.exclusive && !q1.auto_delete, "{client}: {q1:?}");
        assert_eq!(q1.durable, client == "amqplib", "{client}: {q1:?}");
        let arg = |k: &str| q1.arguments.get(k).and_then(FieldValue::as_i64);
        assert_eq!(arg("x-message-ttl"), Some(60_000), "{client}");
        assert_eq!(arg("x-max-priority"), Some(10), "{client}");
        assert_eq!(arg("x-max-length"), Some(100), "{client}");
        assert!(q("q2").durable && !q("q2").exclusive, "{client}");
        assert_eq!(
            q("q2")
                .arguments
                .get("x-queue-type")
                .and_then(FieldValue::as_str),
            Some("classic")
        );
        assert!(q("q3").auto_delete && !q("q3").durable, "{client}");

        // basic.qos(prefetch 50, global) and the mandatory publish RabbitMQ returned.
        assert!(
            methods(&frames, c2s).any(|m| matches!(m,
                Method::BasicQos(q) if q.prefetch_count == 50 && q.global && q.prefetch_size == 0)),
            "{client}: basic.qos(50, global)"
        );
        assert!(
            methods(&frames, c2s).any(|m| matches!(m,
                Method::BasicPublish(p) if p.routing_key == "no.such.key" && p.mandatory && !p.immediate)),
            "{client}: mandatory publish"
        );
        let returned = methods(&frames, s2c)
            .find_map(|m| match m {
                Method::BasicReturn(r) => Some(r.clone()),
                _ => None,
            })
            .expect("basic.return");
        assert_eq!(returned.reply_code, 312, "{client}");
        assert_eq!(returned.reply_text, "NO_ROUTE");
        assert_eq!(returned.routing_key, "no.such.key");

        // The message with every property, as published (c2s) and as RabbitMQ delivered it.
        for dir in [c2s, s2c] {
            let p = frames
                .iter()
                .find_map(|(d, f)| match f {
                    Frame::Header { header, .. }
                        if *d == dir && header.properties.priority == Some(7) =>
                    {
                        Some(header.properties.clone())
                    }
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{client} {dir:?}: the all-properties message"));
            let s = |v: &Option<warren_protocol::ShortStr>| v.as_ref().map(|s| s.to_string());
            assert_eq!(s(&p.content_type).as_deref(), Some("application/json"));
            assert_eq!(s(&p.content_encoding).as_deref(), Some("utf-8"));
            assert_eq!(p.delivery_mode, Some(2));
            assert_eq!(s(&p.correlation_id).as_deref(), Some("corr-0001"));
            assert_eq!(
                s(&p.reply_to).as_deref(),
                Some("amq.rabbitmq.reply-to.fixture")
            );
            assert_eq!(s(&p.expiration).as_deref(), Some("60000"));
            assert_eq!(s(&p.message_id).as_deref(), Some("msg-0001"));
            assert_eq!(p.timestamp, Some(1_700_000_000));
            assert_eq!(s(&p.kind).as_deref(), Some("fixture.full"));
            assert_eq!(s(&p.user_id).as_deref(), Some("guest"));
            assert_eq!(
                s(&p.app_id),
                Some(format!("warren-fixture-{client}")),
                "{client}"
            );
            assert_eq!(s(&p.cluster_id).as_deref(), Some("warren-cluster"));
            let h = p.headers.expect("headers");
            let get = |k: &str| {
                h.get(k)
                    .unwrap_or_else(|| panic!("{client} {dir:?}: header {k}"))
            };
            assert_eq!(get("str").as_str(), Some("hello"));
            assert_eq!(get("utf8").as_str(), Some("h\u{e9}llo \u{2713}"));
            assert_eq!(get("empty-str").as_str(), Some(""));
            assert_eq!(get("true"), &FieldValue::Bool(true));
            assert_eq!(get("false"), &FieldValue::Bool(false));
            assert_eq!(get("void"), &FieldValue::Void);
            assert_eq!(get("timestamp"), &FieldValue::Timestamp(1_700_000_000));
            match get("bytes") {
                FieldValue::ByteArray(b) | FieldValue::LongStr(b) => {
                    assert_eq!(&b[..], &[0x00, 0x01, 0x02, 0xfe, 0xff])
                }
                other => panic!("{client}: bytes header is {other:?}"),
            }
            let FieldValue::Table(table) = get("table") else {
                panic!("{client}: table header is {:?}", get("table"));
            };
            let Some(FieldValue::Table(nested)) = table.get("nested") else {
                panic!("{client}: nested table");
            };
            assert_eq!(nested.get("deep").and_then(FieldValue::as_i64), Some(1));
            assert_eq!(table.get("k").and_then(FieldValue::as_str), Some("v"));
            let FieldValue::Array(array) = get("array") else {
                panic!("{client}: array header is {:?}", get("array"));
            };
            assert_eq!(array.len(), 9, "{client}");
            assert_eq!(array[0].as_i64(), Some(1));
            assert_eq!(array[1].as_str(), Some("two"));
            assert_eq!(array[2], FieldValue::Bool(true));
            assert_eq!(array[3], FieldValue::Void);
            assert_eq!(array[8], FieldValue::Timestamp(1_700_000_000));
            assert_eq!(get("empty-table"), &FieldValue::Table(Default::default()));
            assert_eq!(get("empty-array"), &FieldValue::Array(Vec::new()));
            if client == "pika" {
                assert_eq!(get("int").as_i64(), Some(42));
                assert_eq!(get("neg-int").as_i64(), Some(-7));
                assert_eq!(get("int64").as_i64(), Some(1 << 40));
                assert_eq!(get("int64-min"), &FieldValue::I64(i64::MIN));
                assert_eq!(
                    get("decimal"),
                    &FieldValue::Decimal(Decimal {
                        scale: 5,
                        value: 314_159
                    })
                );
            } else {
                // amqplib lets the scenario pick every type letter.
                assert_eq!(get("byte"), &FieldValue::I8(-5));
                assert_eq!(get("short"), &FieldValue::I16(1000));
                assert_eq!(get("int"), &FieldValue::I32(100_000));
                assert_eq!(get("long"), &FieldValue::I64(1 << 40));
                assert_eq!(get("uint8"), &FieldValue::U8(200));
                assert_eq!(get("uint16"), &FieldValue::U16(60_000));
                assert_eq!(get("uint32"), &FieldValue::U32(4_000_000_000));
                assert_eq!(get("int64"), &FieldValue::I64(-(1 << 53) + 1));
                #[allow(clippy::approx_constant)] // the value the scenario sends, not π
                let double = 3.14159;
                assert_eq!(get("double"), &FieldValue::F64(double));
                assert_eq!(get("float"), &FieldValue::F32(1.5));
                assert_eq!(
                    get("decimal"),
                    &FieldValue::Decimal(Decimal {
                        scale: 2,
                        value: 314
                    })
                );
            }
        }
    }
}
