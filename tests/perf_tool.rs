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

/// Runs `warren-perf soak` against a test broker whose memory watermark (8 MiB) a burst of
/// 64 KiB messages crosses; returns the exit status and the JSON lines.
async fn soak(extra: &[&str]) -> (std::process::ExitStatus, Vec<serde_json::Value>, String) {
    let broker = TestBroker::start_with(warren::Config {
        memory_high_watermark: 8 << 20,
        ..warren::Config::default()
    })
    .await;
    let url = broker.url();
    // The broker runs in this process: its RSS and CPU are this test's.
    let pid = std::process::id().to_string();
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_warren-perf"))
            .args(["soak", "--uri", &url, "--broker-pid", &pid])
            .args(["--duration", "8", "--report-interval", "2"])
            .args([
                "--burst-every",
                "4",
                "--burst-hold",
                "1",
                "--reconsume-every",
                "2",
            ])
            .args([
                "--rate",
                "100",
                "--churn-every-ms",
                "200",
                "--drain-timeout",
                "5",
            ])
            // RSS and latency of a test process on a shared machine over 8 s say nothing
            // about a trend: those thresholds are for the hour-long run.
            .args(["--max-rss-growth", "100", "--max-latency-growth", "1000"])
            .args(&extra)
            .output()
            .expect("warren-perf runs")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (out.status, lines, all)
}

// One test, the two runs in turn: the memory alarm counts the message bytes of every broker
// in the process, so two soaks side by side would trip each other's alarm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_passes_and_one_that_loses_messages_fails() {
    a_short_soak_passes_and_crosses_the_memory_alarm().await;
    a_soak_that_loses_messages_fails().await;
}

async fn a_short_soak_passes_and_crosses_the_memory_alarm() {
    let (status, lines, all) = soak(&[]).await;
    assert!(status.success(), "{all}");
    let (summary, reports) = lines.split_last().expect("a summary");
    assert!(reports.len() >= 3, "a line every 2 s: {all}");
    assert!(reports
        .iter()
        .all(|r| r["broker"]["rss_kib"].as_u64() > Some(0)));
    assert_eq!(summary["verdict"], "PASS", "{all}");
    for counter in [
        "published",
        "confirmed",
        "delivered",
        "churn_cycles",
        "reconsumes",
        "connections_opened",
        "alarm_crossings",
        "blocked_events",
        "unblocked_events",
    ] {
        assert!(summary[counter].as_u64() > Some(0), "{counter}: {all}");
    }
    assert_eq!(summary["lost"], 0, "{all}");
    assert_eq!(summary["unexplained_dups"], 0, "{all}");
    assert!(
        summary["confirmed"].as_u64() <= summary["delivered"].as_u64(),
        "{all}"
    );
    assert_eq!(
        summary["blocked_events"], summary["unblocked_events"],
        "{all}"
    );
}

async fn a_soak_that_loses_messages_fails() {
    // Consumers acknowledge every 50th delivery without recording it: lost to the checker.
    let (status, lines, all) = soak(&["--forget-every", "50"]).await;
    assert!(!status.success(), "{all}");
    let summary = lines.last().expect("a summary");
    assert_eq!(summary["verdict"], "FAIL", "{all}");
    assert!(summary["lost"].as_u64() > Some(0), "{all}");
    assert!(
        summary["reasons"][0]
            .as_str()
            .is_some_and(|r| r.ends_with("confirmed messages never delivered")),
        "{all}"
    );
}
