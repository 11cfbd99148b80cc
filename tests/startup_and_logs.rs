//! The `warren` binary as an operator meets it: startup errors that name what failed and what to
//! do (exit 1, one line, no backtrace even with RUST_BACKTRACE=1, nothing created), several
//! listeners including IPv6 loopback, settings from a TOML file, and the log lines RabbitMQ
//! writes for refused logins, channel errors and connection errors (text and JSON, stderr and
//! --log-file, SIGHUP).

mod common;

use common::*;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warren_protocol::Frame;

fn warren_command(args: &[&str], cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warren"));
    cmd.args(args)
        .current_dir(cwd)
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("WARREN_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Runs warren expecting it to refuse to start; returns its stderr after checking the manner
/// of the refusal.
fn refused_start(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> String {
    let mut cmd = warren_command(args, cwd);
    cmd.envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("warren runs");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("warren {args:?} did not exit: it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&stdout);
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
    assert!(
        !stdout.contains("listening"),
        "announced before failing: {stdout}"
    );
    assert!(
        stderr.starts_with("warren: ") && stderr.trim_end().lines().count() == 1,
        "one line: {stderr}"
    );
    assert!(
        !stderr.contains("backtrace")
            && !stderr.contains("panicked")
            && !stderr.contains("os error"),
        "no backtrace or Rust internals: {stderr}"
    );
    stderr
}

fn assert_mentions(text: &str, parts: &[&str]) {
    for p in parts {
        assert!(text.contains(p), "expected {p:?} in: {text}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

#[test]
fn a_taken_port_is_named_with_what_to_do_and_nothing_is_created() {
    let dir = tempfile::tempdir().expect("tmp");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let err = refused_start(&["--listen", &addr, "--data-dir", "data"], dir.path(), &[]);
    assert_mentions(
        &err,
        &[&addr, "--listen", "address already in use", "RabbitMQ"],
    );
    assert!(!dir.path().join("data").exists(), "data dir created anyway");
}

#[test]
fn a_data_dir_that_is_a_file_is_named() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("data"), "x").expect("file");
    let err = refused_start(
        &["--listen", "127.0.0.1:0", "--data-dir", "data"],
        dir.path(),
        &[],
    );
    assert_mentions(
        &err,
        &["data directory data", "not a directory", "--data-dir"],
    );
}

#[test]
fn a_data_dir_that_cannot_be_created_is_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let err = refused_start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "/proc/warren-nowhere/data",
        ],
        dir.path(),
        &[],
    );
    assert_mentions(
        &err,
        &[
            "cannot create",
            "/proc/warren-nowhere/data",
            "no such file or directory",
            "--data-dir",
        ],
    );
}

#[test]
fn an_unwritable_data_dir_is_refused_before_listening() {
    let dir = tempfile::tempdir().expect("tmp");
    // Root may write anywhere but in sysfs; anyone else is kept out by the mode.
    let unwritable = if is_root() {
        "/sys/kernel".to_owned()
    } else {
        use std::os::unix::fs::PermissionsExt;
        let d = dir.path().join("ro");
        std::fs::create_dir(&d).expect("mkdir");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o555)).expect("chmod");
        d.display().to_string()
    };
    let err = refused_start(
        &["--listen", "127.0.0.1:0", "--data-dir", &unwritable],
        dir.path(),
        &[],
    );
    assert_mentions(
        &err,
        &[
            "cannot write in",
            &unwritable,
            "permission denied",
            "--data-dir",
        ],
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn an_unusable_store_inside_the_data_dir_fails_before_announcing() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(dir.path().join("data")).expect("mkdir");
    // Where the journal's directory should be, a file.
    std::fs::write(dir.path().join("data/messages"), "x").expect("file");
    let err = refused_start(
        &["--listen", "127.0.0.1:0", "--data-dir", "data"],
        dir.path(),
        &[],
    );
    assert_mentions(
        &err,
        &[
            "cannot open the data directory data",
            "messages",
            "--data-dir",
        ],
    );
}

#[test]
fn a_bad_listen_value_names_the_flag_or_variable() {
    let dir = tempfile::tempdir().expect("tmp");
    let err = refused_start(&["--listen", "localhost:99999"], dir.path(), &[]);
    assert_mentions(&err, &["--listen", "localhost:99999", "port '99999'"]);
    let err = refused_start(&[], dir.path(), &[("WARREN_LISTEN", "nowhere")]);
    assert_mentions(&err, &["WARREN_LISTEN", "'nowhere'", "HOST:PORT"]);
    let err = refused_start(
        &["--listen", "127.0.0.1:0", "--memory-high-watermark", "lots"],
        dir.path(),
        &[],
    );
    assert_mentions(&err, &["--memory-high-watermark", "'lots'"]);
    assert!(!dir.path().join("data").exists());
}

#[test]
fn a_taken_management_port_asked_for_is_a_startup_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let err = refused_start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--management-listen",
            &addr,
            "--data-dir",
            "data",
        ],
        dir.path(),
        &[],
    );
    assert_mentions(&err, &[&addr, "--management-listen", "in use"]);
    assert!(!dir.path().join("data").exists());
}

#[test]
fn a_taken_prometheus_port_asked_for_is_a_startup_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    // Named as the operator wrote it: here the config file's key.
    std::fs::write(
        dir.path().join("warren.toml"),
        format!("prometheus_listen = \"{addr}\"\n"),
    )
    .expect("write");
    let err = refused_start(
        &["--listen", "127.0.0.1:0", "--config", "warren.toml"],
        dir.path(),
        &[],
    );
    assert_mentions(
        &err,
        &[&addr, "`prometheus_listen` in warren.toml", "in use"],
    );
    assert!(!dir.path().join("data").exists());
}

#[test]
fn the_default_prometheus_port_when_taken_is_skipped_with_a_warning() {
    let dir = tempfile::tempdir().expect("tmp");
    // Taken by this test, or already by something else on the machine: taken either way.
    let _taken = std::net::TcpListener::bind("0.0.0.0:15692");
    let w = Running::start(
        &["--listen", "127.0.0.1:0", "--management-listen", "none"],
        dir.path(),
    );
    let line = w.wait_for_line(&["Prometheus metrics not started", "0.0.0.0:15692"]);
    assert!(line.contains("WARN"), "{line}");
    let conn = std::net::TcpStream::connect(w.addrs[0]).expect("AMQP still served");
    drop(conn);
}

#[test]
fn tls_without_a_certificate_and_unknown_config_keys_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    // TLS is built: --amqps-listen without a certificate is refused for that reason.
    let err = refused_start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--amqps-listen",
            "127.0.0.1:5671",
        ],
        dir.path(),
        &[],
    );
    assert_mentions(&err, &["--amqps-listen", "--tls-cert", "--tls-key"]);
    assert!(!err.contains("not built"), "{err}");
    let config = dir.path().join("warren.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nfram_max = 8192\n").expect("write");
    let err = refused_start(&["--config", "warren.toml"], dir.path(), &[]);
    assert_mentions(&err, &["warren.toml", "fram_max"]);
    assert!(!dir.path().join("data").exists());
}

/// A running warren whose stderr (the log) is collected line by line.
struct Running {
    child: Child,
    addrs: Vec<SocketAddr>,
    /// The AMQPS listeners the banner names after `; AMQPS on `.
    amqps: Vec<SocketAddr>,
    /// The whole first line of stdout.
    banner: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(args: &[&str], cwd: &Path) -> Self {
        let mut child = warren_command(args, cwd)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("warren runs");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("lock").push(line);
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            let _ = tx.send(lines.next().unwrap_or_default());
            lines.for_each(drop); // keep the pipe open and drained
        });
        let banner = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no banner; log: {:?}", log.lock().expect("lock")));
        let addrs = banner
            .split(" listening on ")
            .nth(1)
            .and_then(|rest| rest.split(" (data dir").next())
            .unwrap_or_else(|| {
                panic!(
                    "no banner: {banner:?}; log: {:?}",
                    log.lock().expect("lock")
                )
            })
            .split(", ")
            .map(|a| a.parse().expect("an address"))
            .collect();
        let amqps = banner
            .split("; AMQPS on ")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .map(|list| {
                list.split(", ")
                    .map(|a| a.trim().parse().expect("an address"))
                    .collect()
            })
            .unwrap_or_default();
        Running {
            child,
            addrs,
            amqps,
            banner,
            log,
        }
    }

    fn url(&self, i: usize) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addrs[i])
    }

    /// The first log line containing every one of `parts` (waits up to 10 s for it).
    fn wait_for_line(&self, parts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self
                .log
                .lock()
                .expect("lock")
                .iter()
                .find(|l| parts.iter().all(|p| l.contains(p)))
            {
                return line.clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "no log line with {parts:?} in:\n{}",
                    self.log.lock().expect("lock").join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A full AMQP handshake and a channel over `addr` (lapin's URIs cannot name an IPv6 host,
/// so the raw client stands in for one that resolved `localhost` to ::1).
async fn amqp_session(addr: SocketAddr) {
    let mut raw = RawClient::connect(addr).await;
    raw.handshake().await;
    raw.open_channel(1).await;
}

#[tokio::test]
async fn listens_on_ipv6_and_ipv4_loopback_and_a_bare_port_means_both() {
    let dir = tempfile::tempdir().expect("tmp");
    let w = Running::start(
        &["--listen", "[::1]:0", "--listen", "127.0.0.1:0"],
        dir.path(),
    );
    assert!(
        w.addrs[0].is_ipv6() && w.addrs[1].is_ipv4(),
        "{:?}",
        w.addrs
    );
    amqp_session(w.addrs[0]).await;
    let conn = connect_url(&w.url(1)).await.expect("connects over IPv4");
    conn.close(200, "bye").await.expect("close");
    drop(w);
    // A bare port: [::] and 0.0.0.0, as RabbitMQ's default listeners.
    let port = free_port();
    let w = Running::start(&["--listen", &port.to_string()], dir.path());
    let listening: Vec<String> = w.addrs.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        listening,
        [format!("[::]:{port}"), format!("0.0.0.0:{port}")]
    );
    amqp_session(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port))).await;
    amqp_session(SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port))).await;
}

#[tokio::test]
async fn settings_come_from_the_file_unless_a_flag_says_otherwise() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("warren.toml"),
        "listen = [\"127.0.0.1:0\"]\nframe_max = 8192\nheartbeat = 7\n",
    )
    .expect("write");
    let w = Running::start(
        &["--config", "warren.toml", "--frame-max", "16384"],
        dir.path(),
    );
    let mut raw = RawClient::connect(w.addrs[0]).await;
    raw.handshake().await;
    assert_eq!(raw.frame_max, 16384, "the flag wins over the file");
    drop(w);
    let w = Running::start(&["--config", "warren.toml"], dir.path());
    let mut raw = RawClient::connect(w.addrs[0]).await;
    raw.handshake().await;
    assert_eq!(raw.frame_max, 8192, "the file wins over the default");
    drop(w);
    let w = Running::start(
        &["--listen", "127.0.0.1:0", "--frame-max", "10"],
        dir.path(),
    );
    w.wait_for_line(&[
        "WARN",
        "--frame-max 10 is below AMQP's minimum frame size; using 4096",
    ]);
}

#[tokio::test]
async fn refused_logins_channel_errors_and_connection_errors_are_logged_with_their_connection() {
    let dir = tempfile::tempdir().expect("tmp");
    let w = Running::start(&["--listen", "127.0.0.1:0"], dir.path());

    // A refused login: one error line, with the peer and RabbitMQ's words.
    let bad = format!("amqp://guest:wrong@{}/%2f", w.addrs[0]);
    assert!(connect_url(&bad).await.is_err());
    w.wait_for_line(&[
        "ERROR",
        "connection{id=",
        "peer=127.0.0.1:",
        "authentication failed: PLAIN login refused: user 'guest' - invalid credentials",
    ]);

    // A user name cannot forge a log line.
    let forged = format!("amqp://x%0AFORGED:wrong@{}/%2f", w.addrs[0]);
    assert!(connect_url(&forged).await.is_err());
    w.wait_for_line(&["user 'x\\nFORGED' - invalid credentials"]);
    assert!(!w
        .log
        .lock()
        .expect("lock")
        .iter()
        .any(|l| l.starts_with("FORGED")));

    // A refused vhost (530), with the user.
    let missing_vhost = format!("amqp://guest:guest@{}/nope", w.addrs[0]);
    assert!(connect_url(&missing_vhost).await.is_err());
    w.wait_for_line(&[
        "ERROR",
        "user=guest",
        "code=530",
        "NOT_ALLOWED - vhost nope not found",
    ]);

    // Channel errors (404, 406): connection, user, vhost and channel.
    let conn = connect_url(&w.url(0)).await.expect("connects");
    let ch = conn.create_channel().await.expect("channel");
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    assert!(ch
        .queue_declare("missing", passive, FieldTable::default())
        .await
        .is_err());
    let line = w.wait_for_line(&["ERROR", "code=404", "NOT_FOUND - no queue 'missing'"]);
    assert_mentions(&line, &["user=guest", "vhost=/", "channel{channel=1}"]);
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare("q", QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("declare");
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    assert!(ch
        .queue_declare("q", durable, FieldTable::default())
        .await
        .is_err());
    w.wait_for_line(&[
        "ERROR",
        "code=406",
        "PRECONDITION_FAILED - inequivalent arg 'durable'",
    ]);
    conn.close(200, "bye").await.expect("close");
    w.wait_for_line(&["INFO", "connection closed", "client closed the connection"]);

    // Connection errors: a content frame on channel 0 (505) and a bad frame end (501).
    let mut raw = RawClient::connect(w.addrs[0]).await;
    raw.handshake().await;
    raw.send(Frame::Body {
        channel: 0,
        payload: bytes::Bytes::from_static(b"x"),
    })
    .await;
    raw.read_to_end().await;
    w.wait_for_line(&["ERROR", "code=505", "connection error: UNEXPECTED_FRAME"]);
    let mut raw = RawClient::connect(w.addrs[0]).await;
    raw.handshake().await;
    raw.send_bytes(&[8, 0, 0, 0, 0, 0, 0, 0x00]).await;
    raw.read_to_end().await;
    w.wait_for_line(&["ERROR", "code=501", "connection error: FRAME_ERROR"]);

    // A client that vanishes: a warning in words, not a debug dump.
    let mut raw = RawClient::connect(w.addrs[0]).await;
    raw.handshake().await;
    drop(raw);
    w.wait_for_line(&["WARN", "client unexpectedly closed TCP connection"]);

    let log = w.log.lock().expect("lock").join("\n");
    assert!(
        !log.contains('\x1b'),
        "colour codes in a log that is not a terminal"
    );
    assert!(
        !log.contains("PeerGone") && !log.contains("Kind("),
        "debug dumps: {log}"
    );
}

#[tokio::test]
async fn json_logs_carry_the_connection_fields() {
    let dir = tempfile::tempdir().expect("tmp");
    let w = Running::start(
        &["--listen", "127.0.0.1:0", "--log-format", "json"],
        dir.path(),
    );
    let bad = format!("amqp://guest:wrong@{}/%2f", w.addrs[0]);
    assert!(connect_url(&bad).await.is_err());
    let line = w.wait_for_line(&["authentication failed"]);
    let v: serde_json::Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(v["level"], "ERROR");
    assert_eq!(v["span"]["name"], "connection");
    assert!(v["span"]["peer"]
        .as_str()
        .is_some_and(|p| p.starts_with("127.0.0.1:")));
}

#[tokio::test]
async fn log_file_is_reopened_and_the_level_reloaded_on_sighup() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("warren.toml");
    std::fs::write(&config, "log_level = \"warn\"\n").expect("write");
    let w = Running::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--config",
            "warren.toml",
            "--log-file",
            "warren.log",
        ],
        dir.path(),
    );
    let log = dir.path().join("warren.log");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let conn = connect_url(&w.url(0)).await.expect("connects");
    conn.close(200, "bye").await.expect("close");
    let bad = format!("amqp://guest:wrong@{}/%2f", w.addrs[0]);
    assert!(connect_url(&bad).await.is_err());
    eventually_contains(&log, "authentication failed");
    assert!(
        !read(&log).contains("connection opened"),
        "info is filtered at warn"
    );
    assert!(w.log.lock().expect("lock").is_empty(), "nothing on stderr");

    // logrotate moves the file, then sends SIGHUP; the level changes in the file meanwhile.
    std::fs::rename(&log, dir.path().join("warren.log.1")).expect("rotate");
    std::fs::write(&config, "log_level = \"info\"\n").expect("write");
    w.signal("HUP");
    eventually_contains(&log, "log level reloaded");
    let conn = connect_url(&w.url(0)).await.expect("connects");
    eventually_contains(&log, "connection opened");
    conn.close(200, "bye").await.expect("close");
    assert!(!read(&dir.path().join("warren.log.1")).contains("connection opened"));
}

fn eventually_contains(path: &Path, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(path)
        .unwrap_or_default()
        .contains(text)
    {
        assert!(
            Instant::now() < deadline,
            "{} never contained {text:?}: {}",
            path.display(),
            std::fs::read_to_string(path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_log_file_that_cannot_be_opened_is_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let err = refused_start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--log-file",
            "/proc/warren-nowhere/warren.log",
        ],
        dir.path(),
        &[],
    );
    assert_mentions(
        &err,
        &[
            "cannot open the log file /proc/warren-nowhere/warren.log",
            "--log-file",
        ],
    );
    assert!(!dir.path().join("data").exists());
}

#[test]
fn tls_files_that_cannot_be_used_stop_the_start_naming_the_file_and_the_flag() {
    let pki = pki::Pki::new("Warren test CA");
    let other = pki::Pki::new("Another CA");
    let dir = pki.dir.path();
    let cert = pki.server_cert.to_str().expect("utf-8");
    let key = pki.server_key.to_str().expect("utf-8");
    let other_key = other.server_key.to_str().expect("utf-8");
    let start = |cert: &str, key: &str| {
        refused_start(
            &[
                "--listen",
                "127.0.0.1:0",
                "--amqps-listen",
                "127.0.0.1:0",
                "--tls-cert",
                cert,
                "--tls-key",
                key,
                "--data-dir",
                "data",
            ],
            dir,
            &[],
        )
    };
    let err = start("missing.pem", key);
    assert_mentions(&err, &["--tls-cert", "missing.pem", "no such file"]);
    let err = start(cert, other_key);
    assert_mentions(&err, &["--tls-key", other_key, cert, "does not match"]);
    std::fs::write(dir.join("garbage.key"), "not a key").expect("write");
    let err = start(cert, "garbage.key");
    assert_mentions(&err, &["--tls-key", "garbage.key"]);
    let err = start(key, key);
    assert_mentions(&err, &["--tls-cert", key]);
    assert!(!dir.join("data").exists(), "data dir created anyway");
}

#[tokio::test]
async fn amqps_logs_refused_peers_and_reloads_certificates_on_sighup() {
    let pki = pki::Pki::new("First CA");
    let renewed = pki::Pki::new("Second CA");
    let other = pki::Pki::new("Untrusted CA");
    let paths = [&pki.server_cert, &pki.server_key, &pki.ca_pem]
        .map(|p| p.to_str().expect("utf-8").to_owned());
    let w = Running::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--amqps-listen",
            "127.0.0.1:0",
            "--tls-cert",
            &paths[0],
            "--tls-key",
            &paths[1],
            "--tls-ca",
            &paths[2],
            "--tls-verify-peer",
            "--data-dir",
            "data",
        ],
        pki.dir.path(),
    );
    let amqps = w.amqps[0];
    let before = pki::connect_tls(amqps, pki.client_config(&[], None), "")
        .await
        .expect("lapin over TLS");
    w.wait_for_line(&["connection opened"]);

    // An untrusted client certificate: refused and logged.
    let untrusted = other.client_cert("app-1");
    let config =
        pki::client_config_trusting(&pki.ca_pem, &[&rustls::version::TLS12], Some(&untrusted));
    pki::connect_tls(amqps, config, "")
        .await
        .expect_err("untrusted certificate");
    w.wait_for_line(&["TLS handshake failed", "127.0.0.1"]);
    // Plaintext AMQP on the TLS port, TLS on the plaintext port: closed and logged.
    let mut raw = RawClient::connect(amqps).await;
    raw.send_bytes(b"AMQP\x00\x00\x09\x01").await;
    let _ = within("the TLS port to close", raw.read_to_end()).await;
    w.wait_for_line(&["plaintext data on the AMQPS (TLS) port"]);
    let tcp = tokio::net::TcpStream::connect(w.addrs[0])
        .await
        .expect("tcp");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = tokio_rustls::TlsConnector::from(pki.client_config(&[], None));
    assert!(within(
        "a TLS handshake on the plaintext port",
        tls.connect(name, tcp)
    )
    .await
    .is_err());
    w.wait_for_line(&["TLS handshake received on the plaintext AMQP port"]);

    // Renewed certificates, SIGHUP: new handshakes use them, the open connection stays.
    pki.install_server_of(&renewed);
    w.signal("HUP");
    w.wait_for_line(&["TLS certificates reloaded"]);
    let after = pki::connect_tls(amqps, renewed.client_config(&[], None), "")
        .await
        .expect("the renewed certificate");
    for conn in [before, after] {
        let ch = conn
            .create_channel()
            .await
            .expect("the connection is still open");
        ch.queue_declare("", QueueDeclareOptions::default(), FieldTable::default())
            .await
            .expect("declare");
        conn.close(200, "bye").await.expect("close");
    }
}

/// `--management-tls-listen`: the API over HTTPS with the AMQPS certificate (guest from
/// loopback, as over HTTP), named in the banner; without a certificate, a startup error that
/// says which flags are missing.
#[tokio::test]
async fn the_management_api_is_served_over_tls_with_the_server_certificate() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = pki::Pki::new("Management CA");
    let paths = [&pki.server_cert, &pki.server_key].map(|p| p.to_str().expect("utf-8").to_owned());
    let err = refused_start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--management-tls-listen",
            "127.0.0.1:0",
        ],
        pki.dir.path(),
        &[],
    );
    assert_mentions(
        &err,
        &["--management-tls-listen", "--tls-cert", "--tls-key"],
    );

    let w = Running::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--management-listen",
            "none",
            "--management-tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            &paths[0],
            "--tls-key",
            &paths[1],
            "--data-dir",
            "data",
        ],
        pki.dir.path(),
    );
    let https = banner_address(&w.banner, "management API over TLS")
        .unwrap_or_else(|| panic!("no HTTPS address in the banner: {}", w.banner));
    let tcp = tokio::net::TcpStream::connect(https).await.expect("tcp");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let connector = tokio_rustls::TlsConnector::from(pki.client_config(&[], None));
    let mut tls = within("the TLS handshake", connector.connect(name, tcp))
        .await
        .expect("handshake with the server certificate");
    tls.write_all(
        b"GET /api/whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
          Authorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n\r\n",
    )
    .await
    .expect("request");
    let mut answer = Vec::new();
    within("the answer", tls.read_to_end(&mut answer))
        .await
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""name":"guest""#), "{answer}");
}

/// A plain HTTP/1.1 GET as guest: the status code and the body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Authorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.expect("request");
    let mut answer = Vec::new();
    within("the answer", tcp.read_to_end(&mut answer))
        .await
        .expect("read");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {answer}"));
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, body.to_owned())
}

/// The management API lists the AMQPS listener as `amqp/ssl` and checks its certificate files'
/// expiry as RabbitMQ's `health/checks/certificate-expiration/{within}/{unit}` does.
#[tokio::test]
async fn the_certificate_expiration_check_reads_the_tls_listeners_files() {
    let pki = pki::Pki::new("Expiry CA");
    let paths = [&pki.server_cert, &pki.server_key, &pki.ca_pem]
        .map(|p| p.to_str().expect("utf-8").to_owned());
    let w = Running::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--amqps-listen",
            "127.0.0.1:0",
            "--tls-cert",
            &paths[0],
            "--tls-key",
            &paths[1],
            "--tls-ca",
            &paths[2],
            "--management-listen",
            "127.0.0.1:0",
            "--prometheus-listen",
            "none",
            "--data-dir",
            "data",
        ],
        pki.dir.path(),
    );
    let api = banner_address(&w.banner, "management API")
        .unwrap_or_else(|| panic!("no management address in the banner: {}", w.banner));
    let (status, overview) = http_get(api, "/api/overview").await;
    assert_eq!(status, 200, "{overview}");
    let overview: serde_json::Value = serde_json::from_str(&overview).expect("json");
    let ssl_port = overview["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .find(|l| l["protocol"] == "amqp/ssl")
        .map(|l| l["port"].as_u64().expect("port"));
    assert_eq!(ssl_port, Some(u64::from(w.amqps[0].port())), "{overview}");
    let (status, _) = http_get(api, "/api/health/checks/protocol-listener/amqps").await;
    assert_eq!(status, 200);

    // rcgen's certificates end on 4096-01-01: fine for a month, not for three thousand years.
    let (status, body) = http_get(api, "/api/health/checks/certificate-expiration/1/months").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, body) =
        http_get(api, "/api/health/checks/certificate-expiration/3000/years").await;
    assert_eq!(status, 503, "{body}");
    let failed: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(failed["reason"], "Certificates expiring");
    let expired = &failed["expired"][0];
    assert_eq!(expired["protocol"], "amqp/ssl");
    assert_eq!(expired["port"], u64::from(w.amqps[0].port()));
    assert_eq!(expired["certfile"], paths[0].as_str());
    assert_eq!(expired["cacertfile"], paths[2].as_str());
    assert_eq!(expired["certfile_expires_on"][0], "4096-01-01 0:00:00");
    assert_eq!(expired["cacertfile_expires_on"][0], "4096-01-01 0:00:00");

    // The files are read at each check: a CA file that lost its certificate fails at once.
    std::fs::write(&pki.ca_pem, "no PEM here\n").expect("write");
    let (status, body) = http_get(api, "/api/health/checks/certificate-expiration/1/days").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("does not contain any PEM entry"), "{body}");
    let (status, body) = http_get(api, "/api/health/checks/certificate-expiration/1/eons").await;
    assert_eq!(
        (status, body.as_str()),
        (
            400,
            r#"{"error":"bad_request","reason":"Time unit not recognised. Supported units: days, weeks, months, years."}"#
        )
    );
}

#[test]
fn a_definitions_file_that_cannot_be_imported_stops_startup_naming_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--management-listen",
        "none",
        "--load-definitions",
        "defs.json",
    ];
    // Missing or not JSON: refused before the data directory is touched.
    let err = refused_start(&args, dir.path(), &[]);
    assert_mentions(&err, &["defs.json", "--load-definitions", "not found"]);
    std::fs::write(dir.path().join("defs.json"), "{nope").expect("write");
    let err = refused_start(&args, dir.path(), &[]);
    assert_mentions(&err, &["defs.json", "not a definitions document"]);
    assert!(!dir.path().join("data").exists());
    // Valid JSON that cannot be imported: refused after recovery, naming the file and why.
    std::fs::write(
        dir.path().join("defs.json"),
        r#"{"permissions": [{"user": "ghost", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}]}"#,
    )
    .expect("write");
    let output = warren_command(&args, dir.path())
        .output()
        .expect("warren runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert_mentions(
        last,
        &["warren: ", "defs.json", "--load-definitions", "ghost"],
    );
}
