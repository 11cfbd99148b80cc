//! A second client library: pika (Python) runs a scenario against an in-process broker, proving
//! the handshake, the capabilities table, confirms, consume/ack and a channel-scoped 404.
//! `.ci/run` installs pika from tests/python/requirements.txt.


use crate::common::TestBroker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pika_scenario_passes() {
    let broker = TestBroker::start().await;
    let port = broker.addr().port().to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/pika_scenario.py");
    let output = tokio::process::Command::new("python3")
        .args([script, &port])
        .output()
        .await
        .expect("python3 runs (install pika with: pip install -r tests/python/requirements.txt)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pika scenario failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("PIKA OK"), "{stdout}");
}
