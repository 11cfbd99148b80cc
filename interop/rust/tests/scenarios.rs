//! Every interop scenario of both Rust client libraries, each as its own test, against an
//! in-process Warren on 127.0.0.1:0 (restartable on the same port and data dir) — or, when
//! `AMQP_URL` is set, against that broker (with `BROKER_RESTART` for the restart scenario), which
//! is how the same tests run against RabbitMQ.

use std::sync::Arc;
use tokio::sync::Mutex;
use warren::{BrokerHandle, Config};
use warren_interop::{run_scenario, Ctx, Outcome, Restart, Scenario};

/// The broker a test talks to; an in-process one stops when this is dropped.
struct Target {
    url: String,
    restart: Option<Restart>,
    _broker: Option<(Arc<Mutex<Option<BrokerHandle>>>, tempfile::TempDir)>,
}

impl Target {
    async fn start() -> Target {
        if let Ok(url) = std::env::var("AMQP_URL") {
            return Target {
                url,
                restart: external_restart(),
                _broker: None,
            };
        }
        let data = tempfile::tempdir().expect("temp dir");
        let config = Config {
            data_dir: data.path().to_path_buf(),
            ..Config::default()
        };
        let handle = BrokerHandle::start(config.clone(), "127.0.0.1:0")
            .await
            .expect("broker starts");
        let addr = handle.addr;
        let slot = Arc::new(Mutex::new(Some(handle)));
        let restart_slot = slot.clone();
        // Stops the broker (320 to every connection, journal flushed) and starts a new one on
        // the same port and data dir, as `interop/run.sh`'s BROKER_RESTART does with the binary.
        let restart: Restart = Arc::new(move || {
            let slot = restart_slot.clone();
            let config = config.clone();
            Box::pin(async move {
                let mut slot = slot.lock().await;
                if let Some(old) = slot.take() {
                    old.shutdown().await?;
                }
                *slot = Some(BrokerHandle::start(config, &addr.to_string()).await?);
                Ok(())
            })
        });
        Target {
            url: format!("amqp://guest:guest@{addr}/%2f"),
            restart: Some(restart),
            _broker: Some((slot, data)),
        }
    }
}

fn external_restart() -> Option<Restart> {
    let script = std::env::var("BROKER_RESTART")
        .ok()
        .filter(|s| !s.is_empty())?;
    Some(Arc::new(move || {
        let script = script.clone();
        Box::pin(async move {
            let status = tokio::process::Command::new(&script).status().await?;
            anyhow::ensure!(status.success(), "{script} exited with {status}");
            Ok(())
        })
    }))
}

async fn check(module: &'static str, scenarios: &[Scenario], name: &str) {
    let client = module.trim_end_matches("_scenarios");
    let scenario = scenarios
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no scenario {name}"));
    let target = Target::start().await;
    let in_process = std::env::var("AMQP_URL").is_err();
    let run_id = format!(
        "test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let ctx = Arc::new(Ctx::new(
        target.url.clone(),
        run_id,
        target.restart.clone(),
        client,
    ));
    match run_scenario(ctx, scenario).await {
        Outcome::Pass => {}
        // Only an external broker without BROKER_RESTART may skip; in-process Warren restarts.
        Outcome::Skip(why) if !in_process => eprintln!("skipped {client} {name}: {why}"),
        other => panic!("{client} {name}: {}", other.line(name)),
    }
}

macro_rules! scenario_tests {
    ($client:ident: $($name:ident),* $(,)?) => {
        mod $client {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::check(
                        stringify!($client),
                        warren_interop::$client::SCENARIOS,
                        stringify!($name),
                    )
                    .await;
                }
            )*
        }
    };
}

scenario_tests!(lapin_scenarios:
    hello_world, work_queues, publish_subscribe, routing, topics, rpc, rpc_direct_reply_to,
    confirms_single, confirms_batch, confirms_async, consumer_cancel_on_delete, mandatory_return,
    redeclare_406_channel_only, large_message, headers_roundtrip, restart_durable,
);

scenario_tests!(amqprs_scenarios:
    hello_world, work_queues, publish_subscribe, routing, topics, rpc, rpc_direct_reply_to,
    confirms_single, confirms_batch, confirms_async, consumer_cancel_on_delete, mandatory_return,
    redeclare_406_channel_only, large_message, headers_roundtrip, restart_durable,
);

/// Every scenario of each library has a test above.
#[test]
fn every_scenario_has_a_test() {
    let listed = [
        "hello_world",
        "work_queues",
        "publish_subscribe",
        "routing",
        "topics",
        "rpc",
        "rpc_direct_reply_to",
        "confirms_single",
        "confirms_batch",
        "confirms_async",
        "consumer_cancel_on_delete",
        "mandatory_return",
        "redeclare_406_channel_only",
        "large_message",
        "headers_roundtrip",
        "restart_durable",
    ];
    for scenarios in [
        warren_interop::lapin_scenarios::SCENARIOS,
        warren_interop::amqprs_scenarios::SCENARIOS,
    ] {
        let names: Vec<&str> = scenarios.iter().map(|s| s.name).collect();
        assert_eq!(names, listed);
    }
}
