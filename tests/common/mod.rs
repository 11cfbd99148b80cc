//! Shared test helpers: an in-process broker on 127.0.0.1:0, lapin connections to it, and a
//! raw-frame client for protocol violations no client library would send.

#![allow(dead_code)]

mod amqp;
pub mod pki;

#[allow(unused_imports)] // the durability and flow_control binaries use only part of it
pub use amqp::*;

use bytes::BytesMut;
use lapin::{Connection, ConnectionProperties};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren::{BrokerHandle, Config};
use warren_protocol::{
    channel, connection, decode_frame, encode_frame, FieldTable, FieldValue, Frame, LongStr,
    Method, ReplyCode, ShortStr,
};

/// How long a test waits for any one thing before failing.
pub const WAIT: Duration = Duration::from_secs(5);

/// A broker started for one test; stopped when the test ends.
pub struct TestBroker {
    pub handle: BrokerHandle,
    _data: tempfile::TempDir,
}

impl TestBroker {
    pub async fn start() -> Self {
        Self::start_with(Config::default()).await
    }

    pub async fn start_with(mut config: Config) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        config.data_dir = data.path().to_path_buf();
        let handle = BrokerHandle::start(config, "127.0.0.1:0")
            .await
            .expect("broker starts");
        TestBroker {
            handle,
            _data: data,
        }
    }

    /// A broker that also serves the management HTTP API on 127.0.0.1:0.
    pub async fn start_with_management() -> Self {
        Self::start_with_management_config(Config::default()).await
    }

    /// [`TestBroker::start_with_management`] with settings of the test's choosing.
    pub async fn start_with_management_config(mut config: Config) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        config.data_dir = data.path().to_path_buf();
        let handle = BrokerHandle::start_with_management(config, "127.0.0.1:0", "127.0.0.1:0")
            .await
            .expect("broker starts");
        TestBroker {
            handle,
            _data: data,
        }
    }

    /// A broker that also serves Prometheus metrics on 127.0.0.1:0.
    pub async fn start_with_prometheus() -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let config = Config {
            data_dir: data.path().to_path_buf(),
            ..Config::default()
        };
        let handle = BrokerHandle::start_with_prometheus(config, "127.0.0.1:0", "127.0.0.1:0")
            .await
            .expect("broker starts");
        TestBroker {
            handle,
            _data: data,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.handle.addr
    }

    pub fn url(&self) -> String {
        self.handle.url()
    }

    /// A lapin connection on the test's tokio runtime.
    pub async fn connect(&self) -> Connection {
        connect_url(&self.url()).await.expect("lapin connects")
    }

    /// A connection and one channel on it.
    pub async fn channel(&self) -> (Connection, lapin::Channel) {
        let conn = self.connect().await;
        let ch = conn.create_channel().await.expect("channel opens");
        (conn, ch)
    }

    pub async fn raw(&self) -> RawClient {
        RawClient::connect(self.addr()).await
    }

    /// Teardown check, the last line of each broker test: stops the broker (each connection
    /// still open gets connection.close 320, so its channels close, unacked deliveries go back
    /// and consumers leave) and fails if anything a connection held is left: a running
    /// connection task, a consumer, an exclusive or reply-to queue, a binding to a deleted queue.
    pub async fn finish(self) {
        let leftovers = within("the broker to shut down", self.handle.shutdown_and_audit())
            .await
            .expect("broker stops");
        assert!(
            leftovers.is_empty(),
            "left behind once every connection closed:\n{}",
            leftovers.join("\n")
        );
    }
}

pub fn lapin_properties() -> ConnectionProperties {
    ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio)
}

pub async fn connect_url(url: &str) -> lapin::Result<Connection> {
    tokio::time::timeout(WAIT, Connection::connect(url, lapin_properties()))
        .await
        .unwrap_or_else(|_| panic!("connecting to {url} timed out"))
}

/// Waits for a future, failing the test after [`WAIT`].
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// The AMQP code and text of a lapin error caused by a broker close.
pub fn amqp_error(e: &lapin::Error) -> Option<(u16, String)> {
    match e {
        lapin::Error::ProtocolError(e) => Some((e.get_id(), e.get_message().to_string())),
        lapin::Error::InvalidChannelState(lapin::ChannelState::Closed) => None,
        _ => None,
    }
}

/// The error lapin reports once the broker closed `ch` (register before the failing call).
pub fn on_channel_close(ch: &lapin::Channel) -> tokio::sync::oneshot::Receiver<lapin::Error> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    ch.on_error(move |e| {
        if let Some(tx) = tx.lock().expect("lock").take() {
            let _ = tx.send(e);
        }
    });
    rx
}

/// The reply code and text of the close reported through [`on_channel_close`].
pub async fn closed_with(rx: tokio::sync::oneshot::Receiver<lapin::Error>) -> (u16, String) {
    let e = within("the channel to be closed", rx)
        .await
        .expect("error handler dropped");
    amqp_error(&e).unwrap_or_else(|| panic!("not an AMQP close: {e:?}"))
}

/// Speaks frames through warren-protocol, for what no client library would send.
pub struct RawClient {
    pub stream: TcpStream,
    buf: BytesMut,
    pub frame_max: u32,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("tcp connect");
        RawClient {
            stream,
            buf: BytesMut::new(),
            frame_max: 131_072,
        }
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    pub async fn send(&mut self, frame: Frame) {
        let mut out = BytesMut::new();
        encode_frame(&frame, &mut out);
        self.send_bytes(&out).await;
    }

    pub async fn send_method(&mut self, channel: u16, method: impl Into<Method>) {
        self.send(Frame::Method {
            channel,
            method: method.into(),
        })
        .await;
    }

    /// The next frame (heartbeats skipped); `None` when the broker closed the socket.
    pub async fn recv(&mut self) -> Option<Frame> {
        within("a frame from the broker", async {
            loop {
                match decode_frame(&mut self.buf, 0) {
                    Ok(Some(Frame::Heartbeat)) => continue,
                    Ok(Some(frame)) => return Some(frame),
                    Ok(None) => {}
                    Err(e) => panic!("broker sent an undecodable frame: {e}"),
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
    }

    /// Raw bytes until the broker closes the socket.
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        let mut all = self.buf.to_vec();
        within(
            "the broker to close the socket",
            self.stream.read_to_end(&mut all),
        )
        .await
        .ok();
        all
    }

    pub async fn expect_method(&mut self) -> (u16, Method) {
        match self.recv().await {
            Some(Frame::Method { channel, method }) => (channel, method),
            other => panic!("expected a method frame, got {other:?}"),
        }
    }

    /// Runs the handshake as guest/guest (PLAIN), no client capabilities, heartbeats off.
    pub async fn handshake(&mut self) {
        self.handshake_with(FieldTable::new(), 0).await;
    }

    /// Runs the handshake as guest/guest (PLAIN) with these client `capabilities`, accepting the
    /// broker's channel_max and frame_max and asking for `heartbeat` seconds.
    pub async fn handshake_with(&mut self, capabilities: FieldTable, heartbeat: u16) {
        self.send_bytes(b"AMQP\x00\x00\x09\x01").await;
        let (_, start) = self.expect_method().await;
        assert!(matches!(start, Method::ConnectionStart(_)), "{start:?}");
        self.send_method(0, start_ok_with_caps("guest", "guest", capabilities))
            .await;
        let (_, tune) = self.expect_method().await;
        let Method::ConnectionTune(tune) = tune else {
            panic!("expected tune, got {tune:?}")
        };
        self.frame_max = tune.frame_max;
        let tune_ok = connection::TuneOk {
            channel_max: tune.channel_max,
            frame_max: tune.frame_max,
            heartbeat,
        };
        self.send_method(0, tune_ok).await;
        self.send_method(
            0,
            connection::Open {
                virtual_host: "/".into(),
                ..Default::default()
            },
        )
        .await;
        let (_, open_ok) = self.expect_method().await;
        assert!(
            matches!(open_ok, Method::ConnectionOpenOk(_)),
            "{open_ok:?}"
        );
    }

    pub async fn open_channel(&mut self, id: u16) {
        self.send_method(id, channel::Open::default()).await;
        let (ch, m) = self.expect_method().await;
        assert_eq!(ch, id);
        assert!(matches!(m, Method::ChannelOpenOk(_)), "{m:?}");
    }

    /// Expects connection.close with `code`, answers close-ok, and returns the reply text.
    pub async fn expect_connection_close(&mut self, code: ReplyCode) -> String {
        loop {
            match self.recv().await {
                Some(Frame::Method {
                    channel: 0,
                    method: Method::ConnectionClose(c),
                }) => {
                    assert_eq!(
                        c.reply_code,
                        code.code(),
                        "connection.close: {}",
                        c.reply_text
                    );
                    self.send_method(0, connection::CloseOk {}).await;
                    return c.reply_text.to_string();
                }
                Some(_) => continue,
                None => panic!("socket closed without connection.close {}", code.code()),
            }
        }
    }

    /// Expects channel.close with `code` on `id`, answers close-ok, returns the reply text.
    pub async fn expect_channel_close(&mut self, id: u16, code: ReplyCode) -> String {
        loop {
            match self.recv().await {
                Some(Frame::Method {
                    channel,
                    method: Method::ChannelClose(c),
                }) if channel == id => {
                    assert_eq!(c.reply_code, code.code(), "channel.close: {}", c.reply_text);
                    self.send_method(id, channel::CloseOk {}).await;
                    return c.reply_text.to_string();
                }
                Some(Frame::Method {
                    method: Method::ConnectionClose(c),
                    ..
                }) => {
                    panic!(
                        "expected channel.close {}, got connection.close {} {}",
                        code.code(),
                        c.reply_code,
                        c.reply_text
                    )
                }
                Some(_) => continue,
                None => panic!("socket closed without channel.close {}", code.code()),
            }
        }
    }
}

pub fn start_ok(user: &str, pass: &str) -> connection::StartOk {
    start_ok_with_caps(user, pass, FieldTable::new())
}

pub fn start_ok_with_caps(user: &str, pass: &str, capabilities: FieldTable) -> connection::StartOk {
    let mut props = FieldTable::new();
    props.insert(
        ShortStr::from("capabilities"),
        FieldValue::Table(capabilities),
    );
    connection::StartOk {
        client_properties: props,
        mechanism: "PLAIN".into(),
        response: LongStr::from(format!("\0{user}\0{pass}").into_bytes()),
        locale: "en_US".into(),
    }
}

/// Spawns `warren` (its command set to `--listen 127.0.0.1:0`, stdout not yet redirected) and
/// reads the address it listens on from its banner. Port 0 and the banner, because a port picked
/// by the test and bound later could be taken in between by another test's broker. Whatever it
/// prints afterwards is drained, so it never writes into a closed pipe. Recovery comes before
/// the banner, hence the long wait.
pub async fn spawn_warren(cmd: &mut std::process::Command) -> (std::process::Child, SocketAddr) {
    let (child, banner) = spawn_warren_banner(cmd).await;
    (child, banner_amqp_address(&banner))
}

/// The first AMQP address the banner names (`… listening on ADDR[, ADDR] (data dir …`).
pub fn banner_amqp_address(banner: &str) -> SocketAddr {
    banner
        .split(" listening on ")
        .nth(1)
        .and_then(|rest| rest.split([' ', ',']).next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in the banner: {banner}"))
}

/// The first address the banner names after `; {label} on ` (e.g. "management API"), for
/// listeners started on port 0.
pub fn banner_address(banner: &str, label: &str) -> Option<SocketAddr> {
    banner
        .split(&format!("; {label} on "))
        .nth(1)?
        .split([',', ';'])
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Starts warren (stdout piped) and returns it with its banner line; the rest of stdout is
/// drained so the broker never blocks on a full pipe.
pub async fn spawn_warren_banner(cmd: &mut std::process::Command) -> (std::process::Child, String) {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("warren starts");
    let stdout = child.stdout.take().expect("stdout");
    let banner = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut reader = std::io::BufReader::new(stdout);
        let mut line = String::new();
        let read = reader.read_line(&mut line).map(|_| line);
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        read
    });
    let banner = match tokio::time::timeout(Duration::from_secs(120), banner).await {
        Ok(read) => read.expect("join").expect("read the banner"),
        Err(_) => {
            let _ = child.kill();
            panic!("warren did not announce its address")
        }
    };
    (child, banner)
}
