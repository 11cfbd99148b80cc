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
