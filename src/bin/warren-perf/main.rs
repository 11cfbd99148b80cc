//! `warren-perf`: a lean AMQP load generator for Warren or any other AMQP 0-9-1 broker.
//!
//! Built on warren-protocol directly (pipelined pre-stamped publishes, plain frame decoding of
//! deliveries) so that the generator is not the bottleneck; it reports its own CPU time beside
//! the broker's (`--broker-pid`) so a reader can tell who was saturated. Every run checks what
//! it measures: received = published, no duplicates, intact payloads.

mod client;
mod http;
mod pace;
mod scenarios;
mod soak;
mod stats;
mod stream;
mod throughput;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "AMQP 0-9-1 load generator (Warren, RabbitMQ, any broker)"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Producers and consumers as fast as they go (or at --rate): rates and latency.
    Throughput(throughput::Opts),
    /// Open N connections with a channel each: time taken and broker RSS.
    Connections(scenarios::ConnectionsOpts),
    /// Publish M messages with no consumer, then drain them: rates and RSS before/after.
    Backlog(scenarios::BacklogOpts),
    /// Declare/bind/delete queues and open/close connections in a loop: operations per second.
    Churn(scenarios::ChurnOpts),
    /// Declare N queues, then time scrapes of the Prometheus endpoint (per-object by default).
    Scrape(scenarios::ScrapeOpts),
    /// A stream queue: append M messages with confirms, replay them from `first`, broker RSS.
    Stream(stream::StreamOpts),
    /// An hour (--duration) of mixed load with a memory-alarm burst every few minutes: JSON
    /// lines, then a PASS/FAIL verdict (lost or duplicated messages, growing RSS or latency).
    Soak(soak::SoakOpts),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.mode {
        Mode::Throughput(o) => {
            let result = throughput::run(o.clone()).await;
            if o.keep_queues {
                // Left for the caller to inspect (and delete).
            } else if let Err(e) = throughput::delete_topology(&o).await {
                eprintln!("warren-perf: could not delete the run's queues: {e:#}");
            }
            result
        }
        Mode::Connections(o) => scenarios::connections(o).await,
        Mode::Backlog(o) => scenarios::backlog(o).await,
        Mode::Churn(o) => scenarios::churn(o).await,
        Mode::Scrape(o) => scenarios::scrape(o).await,
        Mode::Stream(o) => stream::run(o).await,
        Mode::Soak(o) => soak::run(o).await,
    };
    match result {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("warren-perf: {e:#}");
            std::process::exit(1);
        }
    }
}
