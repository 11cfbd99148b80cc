//! The throughput / latency / fanout run: producers publish pipelined, pre-stamped messages,
//! consumers check and time every delivery, and a progress line is printed every second.

use crate::client::{self, FrameIn, Url};
use crate::stats::{self, Counters};
use anyhow::{bail, Context, Result};
use bytes::BytesMut;
use clap::Args;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use warren_protocol::{basic, encode_content, BasicProperties, Frame, Method};

#[derive(Args, Clone, Debug)]
pub struct Opts {
    /// Broker URL, e.g. amqp://guest:guest@127.0.0.1:5672/%2f (required: no default, so a
    /// run never measures whichever broker happens to hold port 5672).
    #[arg(long)]
    pub uri: String,
    /// Producer connections.
    #[arg(short = 'x', long, default_value_t = 1)]
    pub producers: usize,
    /// Consumer connections.
    #[arg(short = 'y', long, default_value_t = 1)]
    pub consumers: usize,
    /// Message body size in bytes (at least 16: the generator's stamp).
    #[arg(short = 's', long, default_value_t = 16)]
    pub size: usize,
    /// Seconds to publish for.
    #[arg(short = 'z', long, default_value_t = 10)]
    pub duration: u64,
    /// Stop after this many messages per producer instead.
    #[arg(short = 'C', long)]
    pub count: Option<u64>,
    /// Total publish rate in messages per second (latency runs); unlimited when absent. Each
    /// paced producer runs on a thread of its own and sends one message per write, evenly
    /// spaced (see pace.rs), not in timer-tick bursts.
    #[arg(long)]
    pub rate: Option<u64>,
    /// With --rate: spin (instead of sleeping) this many microseconds before each message is
    /// due, so that it leaves on time despite the kernel's wakeup latency.
    #[arg(long, default_value_t = 20)]
    pub spin_us: u64,
    /// Publisher confirms with this many unconfirmed messages in flight per producer.
    #[arg(short = 'c', long)]
    pub confirm: Option<u64>,
    /// Persistent messages (delivery mode 2) into durable queues.
    #[arg(long)]
    pub persistent: bool,
    /// Consumers acknowledge manually (otherwise no-ack).
    #[arg(long)]
    pub ack: bool,
    /// Prefetch count of manual-ack consumers.
    #[arg(short = 'q', long, default_value_t = 100)]
    pub prefetch: u16,
    /// Acknowledge every N deliveries with multiple=true.
    #[arg(long, default_value_t = 10)]
    pub multi_ack: u64,
    /// Queue name (with --queues N: prefix of perf-0 … perf-N-1).
    #[arg(short = 'u', long, default_value = "perf")]
    pub queue: String,
    /// Number of queues; with --exchange-type fanout every queue gets every message.
    #[arg(long, default_value_t = 1)]
    pub queues: usize,
    /// `direct` publishes to each queue by name through the default exchange; `fanout` binds
    /// every queue to one fanout exchange.
    #[arg(short = 't', long, default_value = "direct")]
    pub exchange_type: String,
    /// Pid of the broker, to report its CPU time and RSS.
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Print no progress lines.
    #[arg(long)]
    pub quiet: bool,
    /// Scrape the Prometheus endpoint at HOST:PORT (`/metrics`) every second during the run,
    /// to see what scraping costs the data path.
    #[arg(long)]
    pub scrape: Option<String>,
    /// Leave the run's queues (and what they hold) on the broker, to inspect them afterwards
    /// (`benches/paged_rss.sh` reads a deep queue's counters).
    #[arg(long)]
    pub keep_queues: bool,
}

impl Opts {
    fn queue_name(&self, i: usize) -> String {
        if self.queues == 1 {
            self.queue.clone()
        } else {
            format!("{}-{i}", self.queue)
        }
    }

    fn is_fanout(&self) -> bool {
        self.exchange_type == "fanout"
    }

    fn copies(&self) -> u8 {
        if self.is_fanout() {
            self.queues.min(255) as u8
        } else {
            1
        }
    }
}

const FANOUT_EXCHANGE: &str = "perf.fanout";

pub async fn run(opts: Opts) -> Result<serde_json::Value> {
    if opts.size < stats::HEADER_LEN {
        bail!("--size must be at least {}", stats::HEADER_LEN);
    }
    let url = Url::parse(&opts.uri)?;
    setup_topology(&url, &opts).await?;
    let counters = Arc::new(Counters::new(opts.producers));
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = (
        stats::cpu_seconds(std::process::id()),
        opts.broker_pid.and_then(stats::cpu_seconds),
    );
    let switches_before = opts.broker_pid.and_then(stats::voluntary_context_switches);
    let mut consumers = Vec::new();
    for i in 0..opts.consumers {
        let queue = opts.queue_name(i % opts.queues);
        consumers.push(tokio::spawn(consumer(
            url.clone(),
            opts.clone(),
            queue,
            counters.clone(),
        )));
    }
    let started = Instant::now();
    let mut producers = Vec::new();
    for id in 0..opts.producers {
        let run = producer(
            id as u16,
            url.clone(),
            opts.clone(),
            counters.clone(),
            stop.clone(),
        );
        producers.push(if opts.rate.is_some() {
            spawn_on_own_thread(id, run)?
        } else {
            tokio::spawn(run)
        });
    }
    let progress = tokio::spawn(progress(counters.clone(), stop.clone(), opts.quiet));
    let scraper = opts
        .scrape
        .clone()
        .map(|addr| tokio::spawn(scrape_every_second(addr, stop.clone())));
    let deadline = started + Duration::from_secs(opts.duration);
    while !producers.iter().all(|p| p.is_finished()) {
        if opts.count.is_none() && Instant::now() >= deadline && !stop.load(Ordering::Relaxed) {
            stop.store(true, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.await?.context("producer")?;
    }
    // Measured after every producer's close-ok: the broker has taken every message by then,
    // not just the kernel's socket buffer.
    let publish_elapsed = started.elapsed().as_secs_f64();
    let expected = counters.published.load(Ordering::Relaxed) * u64::from(opts.copies());
    if opts.consumers > 0 {
        wait_for_drain(&counters, expected).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    for c in consumers {
        c.abort();
    }
    progress.abort();
    let scrapes = match scraper {
        Some(s) => Some(s.await?.context("scraping")?),
        None => None,
    };
    let cpu_after = (
        stats::cpu_seconds(std::process::id()),
        opts.broker_pid.and_then(stats::cpu_seconds),
    );
    let switches = switches_before
        .zip(opts.broker_pid.and_then(stats::voluntary_context_switches))
        .map(|(before, after)| after.saturating_sub(before));
    let mut report = report(
        &opts,
        &counters,
        expected,
        publish_elapsed,
        elapsed,
        cpu_before,
        cpu_after,
    );
    if let Some(scrapes) = scrapes {
        report["scrapes"] = scrapes;
    }
    // Issue 16's measure of cross-thread wakeups: how often the broker's threads went to sleep
    // per 1,000 deliveries.
    let consumed = counters.consumed.load(Ordering::Relaxed);
    report["broker_voluntary_switches"] = json!(switches);
    report["broker_switches_per_1k_deliveries"] = json!(switches
        .filter(|_| consumed > 0)
        .map(|s| (s as f64 * 1000.0 / consumed as f64 * 100.0).round() / 100.0));
    Ok(report)
}

/// Runs a paced producer on a thread of its own (with a single-threaded runtime): its pacer
/// blocks that thread between messages, which must not hold one of the shared workers.
fn spawn_on_own_thread(
    id: usize,
    run: impl std::future::Future<Output = Result<()>> + Send + 'static,
) -> Result<tokio::task::JoinHandle<Result<()>>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("producer-{id}"))
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("producer runtime")
                .and_then(|rt| rt.block_on(run));
            let _ = tx.send(result);
        })
        .context("producer thread")?;
    Ok(tokio::spawn(async move {
        rx.await.context("producer thread ended")?
    }))
}

/// GETs `/metrics` once a second until `stop`: how many scrapes, and the slowest, in ms.
async fn scrape_every_second(addr: String, stop: Arc<AtomicBool>) -> Result<serde_json::Value> {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut count = 0u64;
    let mut slowest: f64 = 0.0;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let (took, _) = crate::http::get(&addr, "/metrics").await?;
        count += 1;
        slowest = slowest.max(took.as_secs_f64() * 1000.0);
    }
    Ok(serde_json::json!({ "count": count, "slowest_ms": (slowest * 10.0).round() / 10.0 }))
}

/// Consumers may lag the producers: wait until every expected copy arrived, or until no new
/// delivery came for 5 s (the rest are reported as lost).
async fn wait_for_drain(counters: &Counters, expected: u64) {
    let mut last = counters.consumed.load(Ordering::Relaxed);
    let mut idle_since = Instant::now();
    while counters.consumed.load(Ordering::Relaxed) < expected
        && idle_since.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = counters.consumed.load(Ordering::Relaxed);
        if now != last {
            last = now;
            idle_since = Instant::now();
        }
    }
}

fn report(
    opts: &Opts,
    c: &Counters,
    expected: u64,
    publish_elapsed: f64,
    elapsed: f64,
    before: (Option<f64>, Option<f64>),
    after: (Option<f64>, Option<f64>),
) -> serde_json::Value {
    let published = c.published.load(Ordering::Relaxed);
    let consumed = c.consumed.load(Ordering::Relaxed);
    let total = c.total.lock();
    let diff =
        |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| ((b - a) * 100.0).round() / 100.0);
    let broker_cpu = diff(before.1, after.1);
    json!({
        "mode": if opts.rate.is_some() { "latency" } else { "throughput" },
        "producers": opts.producers,
        "consumers": opts.consumers,
        "size": opts.size,
        "queues": opts.queues,
        "exchange_type": opts.exchange_type,
        "confirm": opts.confirm,
        "persistent": opts.persistent,
        "ack": opts.ack,
        "prefetch": opts.prefetch,
        "rate": opts.rate,
        "published": published,
        "confirmed": c.confirmed.load(Ordering::Relaxed),
        "consumed": consumed,
        "publish_rate": (published as f64 / publish_elapsed).round(),
        "consume_rate": (consumed as f64 / elapsed).round(),
        "latency_us": {
            "p50": total.value_at_quantile(0.5),
            "p99": total.value_at_quantile(0.99),
            "p999": total.value_at_quantile(0.999),
            "max": total.max(),
        },
        "lost": if opts.consumers > 0 { expected.saturating_sub(consumed) } else { 0 },
        "duplicates": c.duplicates.load(Ordering::Relaxed),
        "corrupt": c.corrupt.load(Ordering::Relaxed),
        "generator_cpu_s": diff(before.0, after.0),
        "broker_cpu_s": broker_cpu,
        "deliveries_per_broker_cpu_s": broker_cpu.filter(|s| *s > 0.0).map(|s| (consumed as f64 / s).round()),
        "broker_rss_kib": opts.broker_pid.and_then(stats::rss_kib),
    })
}

async fn progress(c: Arc<Counters>, stop: Arc<AtomicBool>, quiet: bool) {
    let started = Instant::now();
    let (mut last_pub, mut last_cons) = (0, 0);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let (p, k) = (
            c.published.load(Ordering::Relaxed),
            c.consumed.load(Ordering::Relaxed),
        );
        let (p50, p99) = {
            let mut w = c.window.lock();
            let r = (w.value_at_quantile(0.5), w.value_at_quantile(0.99));
            w.reset();
            r
        };
        if !quiet {
            eprintln!(
                "time {:>4}s  published {:>9}/s  consumed {:>9}/s  latency p50 {:>7} us  p99 {:>7} us{}",
                started.elapsed().as_secs(),
                p - last_pub,
                k - last_cons,
                p50,
                p99,
                if stop.load(Ordering::Relaxed) { "  (draining)" } else { "" }
            );
        }
        (last_pub, last_cons) = (p, k);
    }
}

async fn setup_topology(url: &Url, opts: &Opts) -> Result<()> {
    let (mut input, mut output) = client::connect(url).await?;
    if opts.is_fanout() {
        client::declare_exchange(
            &mut input,
            &mut output,
            FANOUT_EXCHANGE,
            "fanout",
            opts.persistent,
        )
        .await?;
    }
    for i in 0..opts.queues {
        let queue = opts.queue_name(i);
        client::delete_queue(&mut input, &mut output, &queue).await?;
        client::declare_queue(&mut input, &mut output, &queue, opts.persistent).await?;
        if opts.is_fanout() {
            client::bind(&mut input, &mut output, &queue, FANOUT_EXCHANGE, "").await?;
        }
    }
    Ok(())
}

/// Deletes what [`setup_topology`] declared, so that a run (a `--persistent` one above all)
/// leaves no durable queue or exchange behind on the broker.
pub async fn delete_topology(opts: &Opts) -> Result<()> {
    let (mut input, mut output) = client::connect(&Url::parse(&opts.uri)?).await?;
    for i in 0..opts.queues {
        client::delete_queue(&mut input, &mut output, &opts.queue_name(i)).await?;
    }
    if opts.is_fanout() {
        client::delete_exchange(&mut input, &mut output, FANOUT_EXCHANGE).await?;
    }
    Ok(())
}

/// Unconfirmed publishes of one producer, and a wake-up for when some are confirmed.
#[derive(Default)]
struct Window {
    outstanding: parking_lot::Mutex<BTreeSet<u64>>,
    freed: Notify,
}

async fn producer(
    id: u16,
    url: Url,
    opts: Opts,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let (mut input, mut output) = client::connect(&url).await?;
    let window = Arc::new(Window::default());
    if opts.confirm.is_some() {
        client::confirm_select(&mut input, &mut output).await?;
    }
    let confirms = tokio::spawn(read_confirms(input, window.clone(), counters.clone()));
    let properties = BasicProperties {
        delivery_mode: opts.persistent.then_some(2),
        ..Default::default()
    };
    let pacer = opts.rate.map(|r| {
        crate::pace::Pacer::new(
            (r as f64 / opts.producers as f64).max(1.0),
            Duration::from_micros(opts.spin_us),
        )
    });
    let mut body = vec![0u8; opts.size];
    let mut batch = BytesMut::with_capacity(256 * 1024);
    let mut seq: u64 = 0;
    let limit = opts.count.unwrap_or(u64::MAX);
    while seq < limit && !stop.load(Ordering::Relaxed) {
        let mut room = 256u64.min(limit - seq);
        if let Some(max) = opts.confirm {
            let in_flight = window.outstanding.lock().len() as u64;
            if in_flight >= max {
                let _ =
                    tokio::time::timeout(Duration::from_millis(100), window.freed.notified()).await;
                continue;
            }
            room = room.min(max - in_flight);
        }
        if let Some(pacer) = &pacer {
            // Blocks this producer's own thread until message `seq` is due; a late producer
            // catches up with what is due by now.
            pacer.wait_for(seq);
            room = room.min(pacer.due_count().saturating_sub(seq).max(1));
        }
        batch.clear();
        for _ in 0..room {
            let (exchange, routing_key) = route_for(&opts, seq);
            let publish = Method::BasicPublish(basic::Publish {
                exchange,
                routing_key,
                ..Default::default()
            });
            stats::fill_body(&mut body, id, seq);
            encode_content(
                1,
                &publish,
                &properties,
                &body,
                output.frame_max,
                &mut batch,
            );
            seq += 1;
            if opts.confirm.is_some() {
                window.outstanding.lock().insert(seq);
            }
        }
        output.socket.write_all(&batch).await?;
        output.socket.flush().await?;
        counters.published.fetch_add(room, Ordering::Relaxed);
    }
    if opts.confirm.is_some() {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !window.outstanding.lock().is_empty() && Instant::now() < deadline {
            let _ = tokio::time::timeout(Duration::from_millis(100), window.freed.notified()).await;
        }
    }
    // A clean close: the broker handles every frame before close-ok, so nothing sent is lost.
    output
        .method(
            0,
            warren_protocol::connection::Close {
                reply_code: 200,
                ..Default::default()
            },
        )
        .await?;
    match tokio::time::timeout(Duration::from_secs(300), confirms).await {
        Ok(joined) => joined?.context("reading confirms")?,
        Err(_) => bail!("no connection.close-ok within 300 s"),
    }
    Ok(())
}

fn route_for(opts: &Opts, seq: u64) -> (warren_protocol::ShortStr, warren_protocol::ShortStr) {
    if opts.is_fanout() {
        (FANOUT_EXCHANGE.into(), warren_protocol::ShortStr::empty())
    } else {
        let queue = opts.queue_name(seq as usize % opts.queues);
        (
            warren_protocol::ShortStr::empty(),
            warren_protocol::ShortStr::truncated(&queue),
        )
    }
}

async fn read_confirms(
    mut input: FrameIn,
    window: Arc<Window>,
    counters: Arc<Counters>,
) -> Result<()> {
    loop {
        let frame = input.next().await?;
        let (tag, multiple) = match frame {
            Frame::Method {
                method: Method::BasicAck(a),
                ..
            } => (a.delivery_tag, a.multiple),
            Frame::Method {
                method: Method::BasicNack(n),
                ..
            } => (n.delivery_tag, n.multiple),
            Frame::Method {
                method: Method::ConnectionClose(c),
                ..
            } => bail!("producer connection closed: {}", c.reply_text),
            Frame::Method {
                method: Method::ConnectionCloseOk(_),
                ..
            } => return Ok(()),
            _ => continue,
        };
        let removed = {
            let mut out = window.outstanding.lock();
            if multiple {
                let rest = out.split_off(&(tag + 1));
                let n = out.len();
                *out = rest;
                n
            } else {
                usize::from(out.remove(&tag))
            }
        };
        counters
            .confirmed
            .fetch_add(removed as u64, Ordering::Relaxed);
        window.freed.notify_one();
    }
}

async fn consumer(url: Url, opts: Opts, queue: String, counters: Arc<Counters>) -> Result<()> {
    let (mut input, mut output) = client::connect(&url).await?;
    if opts.ack {
        client::qos(&mut input, &mut output, opts.prefetch).await?;
    }
    client::consume(&mut input, &mut output, &queue, !opts.ack).await?;
    let mut latencies = Vec::with_capacity(1024);
    let mut unacked = 0u64;
    let mut last_flush = Instant::now();
    let mut body = BytesMut::new();
    loop {
        let Frame::Method {
            method: Method::BasicDeliver(deliver),
            ..
        } = input.next().await?
        else {
            continue;
        };
        let Frame::Header { header, .. } = input.next().await? else {
            bail!("expected a content header")
        };
        body.clear();
        while (body.len() as u64) < header.body_size {
            let Frame::Body { payload, .. } = input.next().await? else {
                bail!("expected a content body")
            };
            body.extend_from_slice(&payload);
        }
        counters.record(&body, opts.size, opts.copies(), &mut latencies);
        if opts.ack {
            unacked += 1;
            // Never wait for more deliveries than the prefetch window lets through.
            if unacked >= opts.multi_ack.clamp(1, u64::from(opts.prefetch.max(1))) {
                output
                    .method(
                        1,
                        basic::Ack {
                            delivery_tag: deliver.delivery_tag,
                            multiple: true,
                        },
                    )
                    .await?;
                unacked = 0;
            }
        }
        if latencies.len() >= 1000 || last_flush.elapsed() > Duration::from_millis(50) {
            counters.flush_latencies(&mut latencies);
            last_flush = Instant::now();
        }
    }
}
