//! How long declaring many durable queues takes (issue 10: 10,000 in under 5 s).
//!
//! `cargo run --example declare_durable -- [QUEUES] [CHANNELS]` (BENCHMARKS.md: debug) starts a broker
//! in-process on a fresh temporary data directory, then declares QUEUES (default 10,000)
//! durable queues from one lapin connection: first one after another on one channel, then
//! spread over CHANNELS (default 8) channels declaring in parallel, each on a fresh broker.
//! With `TRANSIENT=1` the queues are not durable (the floor: what the protocol alone costs).

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use std::time::{Duration, Instant};
use warren::config::Config;
use warren::server::BrokerHandle;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let queues: usize = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let channels: usize = args.next().map_or(Ok(8), |a| a.parse())?;
    let sequential = run(queues, 1).await?;
    println!(
        "sequential: {queues} durable queues in {:.2} s ({:.0}/s)",
        sequential.as_secs_f64(),
        queues as f64 / sequential.as_secs_f64()
    );
    let parallel = run(queues, channels).await?;
    println!(
        "{channels} channels in parallel: {queues} durable queues in {:.2} s ({:.0}/s)",
        parallel.as_secs_f64(),
        queues as f64 / parallel.as_secs_f64()
    );
    Ok(())
}

/// Declares `queues` durable queues over `channels` channels of one connection.
async fn run(queues: usize, channels: usize) -> anyhow::Result<Duration> {
    let data = tempfile::tempdir()?;
    let config = Config {
        data_dir: data.path().to_path_buf(),
        ..Config::default()
    };
    let broker = BrokerHandle::start(config, "127.0.0.1:0").await?;
    let properties = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    let conn = Connection::connect(&broker.url(), properties).await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..channels {
        let ch = conn.create_channel().await?;
        tasks.push(tokio::spawn(async move {
            let opts = QueueDeclareOptions {
                durable: std::env::var_os("TRANSIENT").is_none(),
                ..Default::default()
            };
            for i in (c..queues).step_by(channels) {
                ch.queue_declare(&format!("q.{i}"), opts, FieldTable::default())
                    .await?;
            }
            Ok::<_, lapin::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed();
    drop(conn);
    broker.shutdown().await?;
    Ok(elapsed)
}
