//! The disk free alarm and a full disk, on a small tmpfs mounted for the test (needs root, as
//! `.ci/run` has; the test says so and fails where it cannot mount). Warren runs as a process
//! (`CARGO_BIN_EXE_warren`) because a journal write that fails stops it on purpose.
//!
//! - Below `--disk-free-limit`, publishers get connection.blocked "low on disk"; when space
//!   returns (the tmpfs is grown), connection.unblocked.
//! - With the alarm off and the disk full, the broker stops rather than confirm a message it
//!   could not write: every message confirmed before it stopped is there after a restart.

mod common;

use bytes::{Bytes, BytesMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren_protocol::{
    basic, channel, confirm, connection, decode_frame, encode_content, encode_method, queue,
    BasicProperties, FieldTable, FieldValue, Frame, LongStr, Method, ShortStr, PROTOCOL_HEADER,
};

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> (tempfile::TempDir, Tmpfs) {
        let dir = tempfile::tempdir().expect("temp dir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "this test mounts a small tmpfs and needs root (mount -t tmpfs failed)"
        );
        let path = dir.path().to_path_buf();
        (dir, Tmpfs(path))
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("run mount");
        assert!(status.success(), "remount tmpfs");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

struct Warren {
    child: Child,
    addr: std::net::SocketAddr,
}

impl Warren {
    async fn start(data: &Path, disk_free_limit: u64) -> Warren {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_warren"));
        cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(["--disk-free-limit", &disk_free_limit.to_string()])
            .args(["--management-listen", "none", "--prometheus-listen", "none"])
            .env("RUST_LOG", "warn");
        let (child, addr) = common::spawn_warren(&mut cmd).await;
        Warren { child, addr }
    }
}

impl Drop for Warren {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Client {
    stream: TcpStream,
    buf: BytesMut,
}

impl Client {
    async fn open(addr: std::net::SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let mut c = Client {
            stream,
            buf: BytesMut::new(),
        };
        c.stream.write_all(&PROTOCOL_HEADER).await.expect("write");
        c.method().await.expect("start");
        let caps: FieldTable = [(ShortStr::from("connection.blocked"), FieldValue::Bool(true))]
            .into_iter()
            .collect();
        let props: FieldTable = [(ShortStr::from("capabilities"), FieldValue::Table(caps))]
            .into_iter()
            .collect();
        c.send(
            0,
            connection::StartOk {
                client_properties: props,
                mechanism: "PLAIN".into(),
                response: LongStr::from_static(b"\0guest\0guest"),
                locale: "en_US".into(),
            },
        )
        .await;
        let Some(Method::ConnectionTune(tune)) = c.method().await else {
            panic!("expected tune")
        };
        c.send(
            0,
            connection::TuneOk {
                channel_max: tune.channel_max,
                frame_max: tune.frame_max,
                heartbeat: 0,
            },
        )
        .await;
        c.send(
            0,
            connection::Open {
                virtual_host: "/".into(),
                ..Default::default()
            },
        )
        .await;
        c.method().await.expect("open-ok");
        c.send(1, channel::Open::default()).await;
        c.method().await.expect("channel open-ok");
        c
    }

    async fn send(&mut self, ch: u16, m: impl Into<Method>) {
        let mut out = BytesMut::new();
        encode_method(ch, &m.into(), &mut out);
        self.stream.write_all(&out).await.expect("write");
    }

    async fn publish(&mut self, q: &str, body: &[u8]) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        let publish: Method = basic::Publish {
            routing_key: ShortStr::try_new(q).expect("short"),
            ..Default::default()
        }
        .into();
        let props = BasicProperties {
            delivery_mode: Some(2),
            ..BasicProperties::NONE
        };
        encode_content(1, &publish, &props, body, 131_072, &mut out);
        self.stream.write_all(&out).await
    }

    /// The next method; None when the socket closed (or `wait` passed, for `method_within`).
    async fn method(&mut self) -> Option<Method> {
        self.method_within(Duration::from_secs(10)).await
    }

    async fn method_within(&mut self, wait: Duration) -> Option<Method> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match decode_frame(&mut self.buf, 0) {
                Ok(Some(Frame::Method { method, .. })) => return Some(method),
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => panic!("undecodable frame: {e}"),
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    async fn declare(&mut self, q: &str, passive: bool) -> u32 {
        self.send(
            1,
            queue::Declare {
                queue: ShortStr::try_new(q).expect("short"),
                durable: true,
                passive,
                ..Default::default()
            },
        )
        .await;
        match self.method().await {
            Some(Method::QueueDeclareOk(ok)) => ok.message_count,
            other => panic!("expected declare-ok, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn below_disk_free_limit_publishers_wait_until_space_returns() {
    let (_dir, fs) = Tmpfs::mount("24m");
    let warren = Warren::start(&fs.0, 12_000_000).await;
    let mut c = Client::open(warren.addr).await;
    c.declare("fill", false).await;
    let body = vec![7u8; 1 << 20];
    let mut blocked = None;
    for _ in 0..20 {
        c.publish("fill", &body).await.expect("publish");
        if let Some(m) = c.method_within(Duration::from_millis(200)).await {
            blocked = Some(m);
            break;
        }
    }
    let blocked = match blocked {
        Some(m) => m,
        None => c.method().await.expect("connection.blocked"),
    };
    let Method::ConnectionBlocked(b) = blocked else {
        panic!("expected connection.blocked, got {blocked:?}")
    };
    assert_eq!(b.reason.as_str(), "low on disk");
    fs.resize("256m");
    let unblocked = c.method().await;
    assert!(
        matches!(unblocked, Some(Method::ConnectionUnblocked(_))),
        "{unblocked:?}"
    );
    // Publishing goes on: the connection is read again.
    c.publish("fill", b"after").await.expect("publish");
    assert!(c.declare("fill", true).await >= 1);
}

#[tokio::test]
async fn on_a_full_disk_nothing_unwritten_is_confirmed() {
    let (_dir, fs) = Tmpfs::mount("6m");
    let mut confirmed = 0u64;
    {
        let warren = Warren::start(&fs.0, 0).await;
        let mut c = Client::open(warren.addr).await;
        c.declare("full", false).await;
        c.send(1, confirm::Select::default()).await;
        assert!(matches!(c.method().await, Some(Method::ConfirmSelectOk(_))));
        for i in 1..=200u64 {
            let mut body = i.to_be_bytes().to_vec();
            body.resize(128 * 1024, 0);
            if c.publish("full", &body).await.is_err() {
                break;
            }
            match c.method().await {
                Some(Method::BasicAck(ack)) => {
                    assert_eq!(ack.delivery_tag, i);
                    confirmed = i;
                }
                Some(other) => panic!("expected basic.ack, got {other:?}"),
                None => break, // the broker stopped: the write failed
            }
        }
        assert!(confirmed < 200, "6 MB cannot hold 200 x 128 KiB");
        assert!(confirmed > 0, "some messages fit");
    }
    // Space returns; a restarted broker has every confirmed message, in order.
    fs.resize("64m");
    let warren = Warren::start(&fs.0, 0).await;
    let mut c = Client::open(warren.addr).await;
    let count = c.declare("full", true).await;
    assert!(
        u64::from(count) >= confirmed,
        "{count} recovered, {confirmed} confirmed"
    );
    for i in 1..=confirmed {
        c.send(
            1,
            basic::Get {
                queue: "full".into(),
                no_ack: true,
                ..Default::default()
            },
        )
        .await;
        assert!(matches!(c.method().await, Some(Method::BasicGetOk(_))));
        let mut body = Vec::new();
        while body.len() < 128 * 1024 {
            loop {
                match decode_frame(&mut c.buf, 0) {
                    Ok(Some(Frame::Body { payload, .. })) => {
                        body.extend_from_slice(&payload);
                        break;
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => {
                        c.stream.read_buf(&mut c.buf).await.expect("read");
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
        assert_eq!(Bytes::from(body).slice(..8), &i.to_be_bytes()[..]);
    }
}
