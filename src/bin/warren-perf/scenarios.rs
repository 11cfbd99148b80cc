//! The non-throughput scenarios: many connections, a deep backlog, and topology churn.

use crate::client::{self, Url};
use crate::stats;
use crate::throughput;
use anyhow::{bail, Result};
use clap::Args;
use serde_json::json;
use std::time::{Duration, Instant};
use warren_protocol::{basic, queue, Frame, Method};

#[derive(Args, Clone, Debug)]
pub struct ConnectionsOpts {
    /// Broker URL, e.g. amqp://guest:guest@127.0.0.1:5672/%2f (required: no default, so a
    /// run never measures whichever broker happens to hold port 5672).
    #[arg(long)]
    pub uri: String,
    /// Connections to open (each with one channel).
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub count: usize,
    /// Pid of the broker, to report its RSS.
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Handshakes in flight at once (1 = one after the other, as before).
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
}

pub async fn connections(opts: ConnectionsOpts) -> Result<serde_json::Value> {
    let url = Url::parse(&opts.uri)?;
    let rss_before = opts.broker_pid.and_then(stats::rss_kib);
    let started = Instant::now();
    let mut open = Vec::with_capacity(opts.count);
    let parallel = opts.parallel.max(1);
    let mut in_flight = tokio::task::JoinSet::new();
    for i in 0..opts.count {
        if in_flight.len() >= parallel {
            if let Some(done) = in_flight.join_next().await {
                open.push(done??);
            }
        }
        let url = url.clone();
        in_flight.spawn(async move { client::connect(&url).await });
        if (i + 1) % 1000 == 0 {
            eprintln!("opening connection {}", i + 1);
        }
    }
    while let Some(done) = in_flight.join_next().await {
        open.push(done??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = opts.broker_pid.and_then(stats::rss_kib);
    drop(open);
    Ok(json!({
        "mode": "connections",
        "connections": opts.count,
        "parallel": parallel,
        "seconds": (elapsed * 1000.0).round() / 1000.0,
        "connections_per_s": (opts.count as f64 / elapsed).round(),
        "broker_rss_kib_before": rss_before,
        "broker_rss_kib_after": rss_after,
        "broker_rss_kib_per_connection": rss_before.zip(rss_after).map(|(b, a)| (a.saturating_sub(b)) as f64 / opts.count as f64),
    }))
}

#[derive(Args, Clone, Debug)]
pub struct BacklogOpts {
    /// Broker URL, e.g. amqp://guest:guest@127.0.0.1:5672/%2f (required: no default, so a
    /// run never measures whichever broker happens to hold port 5672).
    #[arg(long)]
    pub uri: String,
    /// Messages to publish before anyone consumes.
    #[arg(short = 'm', long, default_value_t = 1_000_000)]
    pub messages: u64,
    /// Body size.
    #[arg(short = 's', long, default_value_t = 16)]
    pub size: usize,
    /// Persistent messages in a durable queue.
    #[arg(long)]
    pub persistent: bool,
    /// Queue name.
    #[arg(short = 'u', long, default_value = "perf-backlog")]
    pub queue: String,
    /// Pid of the broker, to report its CPU time and RSS.
    #[arg(long)]
    pub broker_pid: Option<u32>,
}

pub async fn backlog(opts: BacklogOpts) -> Result<serde_json::Value> {
    let rss_idle = opts.broker_pid.and_then(stats::rss_kib);
    let publish = throughput::Opts {
        uri: opts.uri.clone(),
        producers: 1,
        consumers: 0,
        size: opts.size,
        duration: 3600,
        count: Some(opts.messages),
        rate: None,
        spin_us: 0,
        confirm: Some(1000),
        persistent: opts.persistent,
        ack: false,
        prefetch: 100,
        multi_ack: 10,
        queue: opts.queue.clone(),
        queues: 1,
        exchange_type: "direct".into(),
        broker_pid: opts.broker_pid,
        quiet: false,
        scrape: None,
        keep_queues: false,
    };
    let published = throughput::run(publish.clone()).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_full = opts.broker_pid.and_then(stats::rss_kib);
    let (drained, drain_seconds) = drain(
        &Url::parse(&opts.uri)?,
        &opts.queue,
        opts.messages,
        opts.size,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = opts.broker_pid.and_then(stats::rss_kib);
    // The drained (possibly durable) queue is not left behind.
    throughput::delete_topology(&publish).await?;
    let per_message = rss_idle
        .zip(rss_full)
        .map(|(i, f)| (f.saturating_sub(i) * 1024) as f64 / opts.messages as f64);
    Ok(json!({
        "mode": "backlog",
        "messages": opts.messages,
        "size": opts.size,
        "persistent": opts.persistent,
        "publish_rate": published["publish_rate"],
        "drained": drained,
        "drain_rate": (drained as f64 / drain_seconds).round(),
        "broker_rss_kib_idle": rss_idle,
        "broker_rss_kib_full": rss_full,
        "broker_rss_kib_drained": rss_after,
        "broker_rss_bytes_per_message": per_message.map(f64::round),
    }))
}

/// Consumes `expected` messages with no-ack; returns how many arrived and the seconds taken.
async fn drain(url: &Url, queue: &str, expected: u64, size: usize) -> Result<(u64, f64)> {
    let (mut input, mut output) = client::connect(url).await?;
    client::consume(&mut input, &mut output, queue, true).await?;
    let started = Instant::now();
    let mut got = 0u64;
    let mut corrupt = 0u64;
    while got < expected {
        let frame = match tokio::time::timeout(Duration::from_secs(10), input.next()).await {
            Ok(frame) => frame?,
            Err(_) => break,
        };
        match frame {
            Frame::Body { payload, .. } => {
                got += 1;
                if payload.len() == size && stats::check_body(&payload, size).is_none() {
                    corrupt += 1;
                }
                if got.is_multiple_of(200_000) {
                    eprintln!("drained {got} messages");
                }
            }
            Frame::Method {
                method: Method::ChannelClose(c),
                ..
            } => bail!("channel closed: {}", c.reply_text),
            _ => {}
        }
    }
    if corrupt > 0 {
        bail!("{corrupt} corrupt messages while draining");
    }
    let seconds = started.elapsed().as_secs_f64();
    output
        .method(
            1,
            basic::Cancel {
                consumer_tag: Default::default(),
                no_wait: true,
            },
        )
        .await
        .ok();
    Ok((got, seconds))
}

#[derive(Args, Clone, Debug)]
pub struct ChurnOpts {
    /// Broker URL, e.g. amqp://guest:guest@127.0.0.1:5672/%2f (required: no default, so a
    /// run never measures whichever broker happens to hold port 5672).
    #[arg(long)]
    pub uri: String,
    /// Seconds for each part (queues, then connections).
    #[arg(short = 'z', long, default_value_t = 5)]
    pub duration: u64,
}

pub async fn churn(opts: ChurnOpts) -> Result<serde_json::Value> {
    let url = Url::parse(&opts.uri)?;
    let (mut input, mut output) = client::connect(&url).await?;
    let started = Instant::now();
    let mut cycles = 0u64;
    while started.elapsed() < Duration::from_secs(opts.duration) {
        let name = format!("churn-{cycles}");
        client::declare_queue(&mut input, &mut output, &name, false).await?;
        client::bind(&mut input, &mut output, &name, "amq.direct", &name).await?;
        let unbind = queue::Unbind {
            queue: client::name(&name)?,
            exchange: "amq.direct".into(),
            routing_key: client::name(&name)?,
            ..Default::default()
        };
        client::call(&mut input, &mut output, unbind).await?;
        client::delete_queue(&mut input, &mut output, &name).await?;
        cycles += 1;
    }
    let queue_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut connections = 0u64;
    while started.elapsed() < Duration::from_secs(opts.duration) {
        let (_i, mut o) = client::connect(&url).await?;
        o.method(
            0,
            warren_protocol::connection::Close {
                reply_code: 200,
                ..Default::default()
            },
        )
        .await?;
        connections += 1;
    }
    let connection_seconds = started.elapsed().as_secs_f64();
    Ok(json!({
        "mode": "churn",
        "queue_cycles_per_s": (cycles as f64 / queue_seconds).round(),
        "queue_ops_per_s": (4.0 * cycles as f64 / queue_seconds).round(),
        "connections_per_s": (connections as f64 / connection_seconds).round(),
    }))
}

#[derive(Args, Clone)]
pub struct ScrapeOpts {
    /// Broker URL, e.g. amqp://guest:guest@127.0.0.1:5672/%2f.
    #[arg(long)]
    pub uri: String,
    /// The Prometheus listener, HOST:PORT.
    #[arg(long)]
    pub metrics: String,
    /// Path to scrape.
    #[arg(long, default_value = "/metrics/per-object")]
    pub path: String,
    /// Queues to declare first (`scrape-0` …).
    #[arg(short = 'n', long, default_value_t = 10_000)]
    pub queues: usize,
    /// Scrapes to time.
    #[arg(long, default_value_t = 5)]
    pub times: usize,
}

pub async fn scrape(opts: ScrapeOpts) -> Result<serde_json::Value> {
    if opts.times == 0 {
        bail!("--times must be at least 1");
    }
    let url = Url::parse(&opts.uri)?;
    let (mut input, mut output) = client::connect(&url).await?;
    let started = Instant::now();
    for i in 0..opts.queues {
        client::declare_queue(&mut input, &mut output, &format!("scrape-{i}"), false).await?;
    }
    let declare_seconds = started.elapsed().as_secs_f64();
    let mut times = Vec::new();
    let mut bytes = 0;
    let mut samples = 0;
    for _ in 0..opts.times {
        let (took, body) = crate::http::get(&opts.metrics, &opts.path).await?;
        times.push(took.as_secs_f64() * 1000.0);
        bytes = body.len();
        samples = body.lines().filter(|l| !l.starts_with('#')).count();
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(json!({
        "mode": "scrape",
        "queues": opts.queues,
        "declare_seconds": (declare_seconds * 100.0).round() / 100.0,
        "path": opts.path,
        "scrape_ms": times.iter().map(|t| (t * 10.0).round() / 10.0).collect::<Vec<_>>(),
        "scrape_ms_median": (sorted[sorted.len() / 2] * 10.0).round() / 10.0,
        "body_bytes": bytes,
        "samples": samples,
    }))
}
