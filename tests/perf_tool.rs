//! `warren-perf` as a newcomer runs it: it names no broker by default (so it never benchmarks
//! whatever holds port 5672), and a run leaves no queue behind, durable ones included.

mod common;

use common::*;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use std::process::Command;

#[test]
fn the_broker_url_is_required() {
    let out = Command::new(env!("CARGO_BIN_EXE_warren-perf"))
        .args(["throughput", "-C", "10"])
        .output()
        .expect("warren-perf runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--uri"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_run_deletes_its_durable_queue() {
    let broker = TestBroker::start().await;
    let url = broker.url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_warren-perf"))
            .args([
                "throughput",
                "--uri",
                &url,
                "--persistent",
                "-C",
                "200",
                "--quiet",
            ])
            .args(["-c", "50"])
            .output()
            .expect("warren-perf runs")
    })
    .await
    .expect("join");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("\"persistent\":true"), "{report}");
    let (_conn, ch) = broker.channel().await;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let e = ch
        .queue_declare("perf", passive, FieldTable::default())
        .await
        .expect_err("the perf queue is gone");
    assert_eq!(amqp_error(&e).map(|(code, _)| code), Some(404));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_runs_verify_the_broker_with_the_given_ca() {
    let pki = pki::Pki::new("Warren test CA");
    let data = tempfile::tempdir().expect("tmp");
    let config = warren::Config {
        data_dir: data.path().to_path_buf(),
        ..warren::Config::default()
    };
    let broker = warren::BrokerHandle::start_with_tls(
        config,
        "127.0.0.1:0",
        "127.0.0.1:0",
        pki.settings(false, false),
    )
    .await
    .expect("broker starts");
    let port = broker.amqps_addr.expect("amqps").port();
    let run = |ca: std::path::PathBuf| {
        let url = format!(
            "amqps://guest:guest@localhost:{port}/%2f?cacertfile={}",
            ca.display()
        );
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_warren-perf"))
                .args(["throughput", "--uri", &url, "-C", "500", "--quiet"])
                .output()
                .expect("warren-perf runs")
        })
    };
    let out = run(pki.ca_pem.clone()).await.expect("join");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && report.contains("\"consumed\":500"),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stranger = pki::Pki::new("Another CA");
    let out = run(stranger.ca_pem.clone()).await.expect("join");
    assert!(
        !out.status.success(),
        "a server the CA did not sign is refused"
    );
    broker.shutdown().await.expect("stops");
}
