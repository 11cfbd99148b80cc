//! 10,000 concurrent AMQP connections to a `warren` process, and its RSS per connection.
//! Not in `cargo test`'s default set (Cargo.toml: `test = false`): it wants release mode and
//! 20,000 file descriptors (both processes raise their soft limit to the hard one). Run with
//!
//!     cargo test --release --test many_connections -- --nocapture
//!
//! `WARREN_CONNECTIONS=N` changes the count. Fails if any connection is refused or dropped, or
//! if the broker cannot serve one more client once all are open.

use bytes::BytesMut;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren_protocol::{Method, PROTOCOL_HEADER};

#[path = "common/handshake.rs"]
mod handshake;

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .expect("VmRSS")
}

async fn next_method(stream: &mut TcpStream, buf: &mut BytesMut) -> Method {
    loop {
        if let Some(method) = handshake::take_method(buf) {
            return method;
        }
        if stream.read_buf(buf).await.expect("read") == 0 {
            panic!("the broker closed a connection");
        }
    }
}

/// A connection through connection.open-ok and channel.open-ok, heartbeats off.
async fn open(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut buf = BytesMut::new();
    stream.write_all(&PROTOCOL_HEADER).await.expect("write");
    assert!(matches!(
        next_method(&mut stream, &mut buf).await,
        Method::ConnectionStart(_)
    ));
    stream
        .write_all(&handshake::start_ok())
        .await
        .expect("write");
    let Method::ConnectionTune(tune) = next_method(&mut stream, &mut buf).await else {
        panic!("expected connection.tune")
    };
    stream
        .write_all(&handshake::tune_ok_and_open(&tune))
        .await
        .expect("write");
    assert!(matches!(
        next_method(&mut stream, &mut buf).await,
        Method::ConnectionOpenOk(_)
    ));
    assert!(matches!(
        next_method(&mut stream, &mut buf).await,
        Method::ChannelOpenOk(_)
    ));
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connections() {
    let count: usize = std::env::var("WARREN_CONNECTIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let limit = warren::alarm::raise_open_file_limit().unwrap_or(0);
    assert!(
        limit as usize > count + 100,
        "this process may open only {limit} files; {count} connections need more"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let data = tempfile::tempdir().expect("temp dir");
    let child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("warren starts");
    let broker = Broker(child);
    let pid = broker.0.id();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "warren did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = rss_kib(pid);

    let started = Instant::now();
    let mut conns = Vec::with_capacity(count);
    // 200 handshakes in flight at a time: the listen backlog is not what is measured here.
    for batch in (0..count).collect::<Vec<_>>().chunks(200) {
        let tasks: Vec<_> = batch.iter().map(|_| tokio::spawn(open(addr))).collect();
        for t in tasks {
            conns.push(t.await.expect("connection task"));
        }
    }
    let opened_in = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded = rss_kib(pid);
    // All still there, and one more client is served.
    let extra = open(addr).await;
    drop(extra);
    let per_conn = (loaded.saturating_sub(idle) as f64 * 1024.0) / count as f64;
    println!(
        "{count} connections (one channel each) opened in {:.1} s; warren RSS idle {idle} KiB, \
         loaded {loaded} KiB: {per_conn:.0} bytes per connection",
        opened_in.as_secs_f64()
    );
    assert_eq!(conns.len(), count);
    drop(conns);
}
