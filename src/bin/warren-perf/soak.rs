//! `warren-perf soak`: an hour (or `--duration`) of mixed load, checked message by message.
//!
//! At once: publishers with confirms (persistent and transient, 16 B – 64 KiB) at a modest total
//! rate; consumers with manual acks (prefetch 1 and 100, some cancelling and re-consuming or
//! closing their channel with messages unacknowledged); a churn task declaring, binding,
//! publishing to, emptying and deleting short-lived classic and quorum queues on a fresh
//! connection each time; and every `--burst-every` seconds a burst that builds a backlog past the
//! broker's memory alarm, then drains it. Every `--report-interval` one JSON line; at the end a
//! summary with a PASS/FAIL verdict (lost or unexplained duplicate messages, RSS or latency
//! growing from the second quarter of the run to the last).

mod ledger;

use crate::client::{self, FrameIn, FrameOut, Url};
use crate::stats;
use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use clap::Args;
use hdrhistogram::Histogram;
use ledger::{Delivery, Ledger};
use parking_lot::Mutex;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use warren_protocol::{
    basic, channel, connection, encode_content, queue, BasicProperties, FieldTable, FieldValue,
    Frame, Method, ShortStr,
};

#[derive(Args, Clone, Debug)]
pub struct SoakOpts {
    /// Broker URL, e.g. amqp://guest:guest@127.0.0.1:5672/%2f.
    #[arg(long)]
    pub uri: String,
    /// Seconds of load (the final drain comes after).
    #[arg(long, default_value_t = 3600)]
    pub duration: u64,
    /// Seconds between report lines.
    #[arg(long, default_value_t = 60)]
    pub report_interval: u64,
    /// Publisher connections (confirms on).
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    /// Consumer connections (manual acks): even ones read the transient queue, odd ones the
    /// durable one; prefetch 1 and 100 alternate in pairs; the second half re-consume.
    #[arg(long, default_value_t = 4)]
    pub consumers: usize,
    /// Total steady publish rate, messages per second.
    #[arg(long, default_value_t = 300)]
    pub rate: u64,
    /// Smallest body (at least 16: the stamp).
    #[arg(long, default_value_t = 16)]
    pub min_size: usize,
    /// Largest body; sizes are log-uniform between the two.
    #[arg(long, default_value_t = 65536)]
    pub max_size: usize,
    /// Seconds between memory-alarm bursts (the first comes at half this).
    #[arg(long, default_value_t = 300)]
    pub burst_every: u64,
    /// Seconds a burst holds its backlog once blocked before draining it (every publisher
    /// stays blocked meanwhile).
    #[arg(long, default_value_t = 5)]
    pub burst_hold: u64,
    /// Most a burst publishes (MiB) if no connection.blocked comes first.
    #[arg(long, default_value_t = 512)]
    pub burst_max_mib: u64,
    /// Milliseconds between churn cycles (declare, bind, publish, get, delete, on a new
    /// connection).
    #[arg(long, default_value_t = 500)]
    pub churn_every_ms: u64,
    /// Seconds re-consuming consumers keep a consumer before cancelling or closing it.
    #[arg(long, default_value_t = 30)]
    pub reconsume_every: u64,
    /// Seconds a confirmed message may go undelivered before it counts as lost so far.
    #[arg(long, default_value_t = 120)]
    pub grace: u64,
    /// At the end, how long to wait for the last deliveries with no progress.
    #[arg(long, default_value_t = 60)]
    pub drain_timeout: u64,
    /// The broker's pid: RSS, CPU, threads and open files in each line.
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// The broker's data directory: its size in each line.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Fault injection for the tool's own test: consumers forget (acknowledge without
    /// recording) every Nth delivery, which the verdict must report as lost.
    #[arg(long, hide = true)]
    pub forget_every: Option<u64>,
    /// FAIL when the last quarter's median RSS exceeds the second quarter's by this factor.
    #[arg(long, default_value_t = 1.25)]
    pub max_rss_growth: f64,
    /// FAIL when the last quarter's median p99 latency exceeds the second quarter's by this.
    #[arg(long, default_value_t = 2.0)]
    pub max_latency_growth: f64,
}

const TRANSIENT_QUEUE: &str = "soak-transient";
const DURABLE_QUEUE: &str = "soak-durable";
const BURST_QUEUE: &str = "soak-burst";
const BURST_BODY: usize = 64 * 1024;
/// Unconfirmed messages a steady publisher allows itself.
const STEADY_WINDOW: usize = 1000;
/// Unconfirmed messages of a burst.
const BURST_WINDOW: usize = 100;
/// Messages each churn cycle publishes to its short-lived queue.
const CHURN_MESSAGES: u64 = 5;
/// Task errors kept for the summary.
const ERRORS_KEPT: usize = 20;

/// Time with at least one publisher blocked by the broker (connection.blocked).
#[derive(Default)]
struct AlarmClock {
    blocked_connections: usize,
    since: Option<Instant>,
    total: Duration,
    crossings: u64,
}

impl AlarmClock {
    fn block(&mut self) {
        self.blocked_connections += 1;
        if self.blocked_connections == 1 {
            self.since = Some(Instant::now());
            self.crossings += 1;
        }
    }

    fn unblock(&mut self) {
        self.blocked_connections = self.blocked_connections.saturating_sub(1);
        if self.blocked_connections == 0 {
            if let Some(since) = self.since.take() {
                self.total += since.elapsed();
            }
        }
    }

    fn blocked_seconds(&self) -> f64 {
        (self.total + self.since.map_or(Duration::ZERO, |s| s.elapsed())).as_secs_f64()
    }
}

/// What every task shares.
struct Shared {
    opts: SoakOpts,
    url: Url,
    ledger: Ledger,
    published: AtomicU64,
    confirmed: AtomicU64,
    nacked: AtomicU64,
    delivered: AtomicU64,
    redelivered_duplicates: AtomicU64,
    unexplained_duplicates: AtomicU64,
    corrupt: AtomicU64,
    connections_opened: AtomicU64,
    /// connection.blocked / unblocked seen, all connections together.
    blocked_events: AtomicU64,
    unblocked_events: AtomicU64,
    reconsumes: AtomicU64,
    churn_cycles: AtomicU64,
    churn_errors: AtomicU64,
    /// Steady messages' publish→deliver latency (µs) since the last report line.
    window: Mutex<Histogram<u64>>,
    alarm: Mutex<AlarmClock>,
    bursts: Mutex<Vec<Value>>,
    errors: Mutex<Vec<String>>,
    /// Publishers, churn and bursts stop.
    stop_load: AtomicBool,
    /// Consumers stop (after the final drain).
    stop_consumers: AtomicBool,
}

impl Shared {
    fn error(&self, what: &str, e: &anyhow::Error) {
        let line = format!("{what}: {e:#}");
        eprintln!("warren-perf soak: {line}");
        let mut errors = self.errors.lock();
        if errors.len() < ERRORS_KEPT {
            errors.push(line);
        }
    }

    fn burst_producer(&self) -> u16 {
        self.opts.publishers as u16
    }

    /// Checks and records one delivered body.
    fn on_delivery(&self, body: &[u8], redelivered: bool, latencies: &mut Vec<u64>) {
        let n = self.delivered.fetch_add(1, Ordering::Relaxed) + 1;
        if self
            .opts
            .forget_every
            .is_some_and(|k| n.is_multiple_of(k.max(1)))
        {
            return;
        }
        let Some(stamp) = stats::check_body(body, body.len()) else {
            self.corrupt.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match self.ledger.deliver(stamp.producer, stamp.seq, redelivered) {
            None => {
                self.corrupt.fetch_add(1, Ordering::Relaxed);
            }
            Some(Delivery::First) => {
                // Bursts wait in a backlog by design: only steady traffic measures latency.
                if !redelivered && stamp.producer < self.burst_producer() {
                    latencies.push(stats::now_nanos().saturating_sub(stamp.sent_nanos) / 1000);
                }
            }
            Some(Delivery::Redelivered) => {
                self.redelivered_duplicates.fetch_add(1, Ordering::Relaxed);
            }
            Some(Delivery::UnexplainedDuplicate) => {
                let n = self.unexplained_duplicates.fetch_add(1, Ordering::Relaxed);
                if n < 10 {
                    eprintln!(
                        "warren-perf soak: duplicate without redelivered: producer {} seq {}",
                        stamp.producer, stamp.seq
                    );
                }
            }
        }
    }

    fn flush_latencies(&self, latencies: &mut Vec<u64>) {
        if latencies.is_empty() {
            return;
        }
        let mut w = self.window.lock();
        for l in latencies.drain(..) {
            let _ = w.record(l.max(1));
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

pub async fn run(opts: SoakOpts) -> Result<Value> {
    if opts.min_size < stats::HEADER_LEN || opts.max_size < opts.min_size {
        bail!(
            "--min-size must be at least {} and --max-size at least --min-size",
            stats::HEADER_LEN
        );
    }
    if opts.publishers == 0 || opts.consumers < 2 || opts.rate == 0 {
        bail!("a soak needs at least 1 publisher, 2 consumers (one per queue) and a rate");
    }
    let url = Url::parse(&opts.uri)?;
    setup_topology(&url).await?;
    let shared = Arc::new(Shared {
        ledger: Ledger::new(opts.publishers + 1),
        opts: opts.clone(),
        url,
        published: AtomicU64::new(0),
        confirmed: AtomicU64::new(0),
        nacked: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        redelivered_duplicates: AtomicU64::new(0),
        unexplained_duplicates: AtomicU64::new(0),
        corrupt: AtomicU64::new(0),
        connections_opened: AtomicU64::new(0),
        blocked_events: AtomicU64::new(0),
        unblocked_events: AtomicU64::new(0),
        reconsumes: AtomicU64::new(0),
        churn_cycles: AtomicU64::new(0),
        churn_errors: AtomicU64::new(0),
        window: Mutex::new(histogram()),
        alarm: Mutex::new(AlarmClock::default()),
        bursts: Mutex::new(Vec::new()),
        errors: Mutex::new(Vec::new()),
        stop_load: AtomicBool::new(false),
        stop_consumers: AtomicBool::new(false),
    });
    let started = Instant::now();
    let mut consumers = Vec::new();
    for i in 0..opts.consumers {
        let plan = ConsumerPlan {
            id: i,
            queue: if i % 2 == 0 {
                TRANSIENT_QUEUE
            } else {
                DURABLE_QUEUE
            },
            prefetch: if (i / 2) % 2 == 0 { 1 } else { 100 },
            reconsume: i >= opts.consumers / 2,
        };
        let s = shared.clone();
        consumers.push(tokio::spawn(async move {
            let stop = |s: &Shared| s.stop_consumers.load(Ordering::Relaxed);
            if let Err(e) = consumer(&s, plan, stop).await {
                s.error(&format!("consumer {i}"), &e);
            }
        }));
    }
    let mut load = Vec::new();
    for id in 0..opts.publishers {
        let s = shared.clone();
        load.push(tokio::spawn(async move {
            if let Err(e) = publisher(&s, id as u16).await {
                s.error(&format!("publisher {id}"), &e);
            }
        }));
    }
    let s = shared.clone();
    load.push(tokio::spawn(async move { churn(&s).await }));
    let s = shared.clone();
    load.push(tokio::spawn(async move {
        if let Err(e) = bursts(&s, started).await {
            s.error("burst", &e);
        }
    }));
    let mut reporter = Reporter::new(&shared, started);
    let deadline = started + Duration::from_secs(opts.duration);
    let interval = Duration::from_secs(opts.report_interval.max(1));
    let mut next_line = started + interval;
    while Instant::now() < deadline {
        let wake = next_line.min(deadline);
        tokio::time::sleep_until(wake.into()).await;
        if Instant::now() >= next_line {
            reporter.line(&shared);
            next_line += interval;
        }
    }
    shared.stop_load.store(true, Ordering::Relaxed);
    // A burst may still be draining, a publisher waiting for its last confirms.
    for task in load {
        if tokio::time::timeout(Duration::from_secs(300), task)
            .await
            .is_err()
        {
            shared.error(
                "stopping",
                &anyhow!("a load task did not stop within 300 s"),
            );
        }
    }
    let drain_seconds = final_drain(&shared).await;
    shared.stop_consumers.store(true, Ordering::Relaxed);
    for task in consumers {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    if let Err(e) = delete_topology(&shared.url).await {
        shared.error("deleting the soak's queues", &e);
    }
    let summary = reporter.summary(&shared, drain_seconds);
    if summary["verdict"] == "PASS" {
        Ok(summary)
    } else {
        println!("{summary}");
        bail!("soak verdict FAIL: {}", summary["reasons"])
    }
}

/// Waits until every confirmed message was delivered, or `--drain-timeout` passes with no
/// delivery; returns the seconds it took.
async fn final_drain(shared: &Shared) -> f64 {
    let started = Instant::now();
    let mut last = shared.delivered.load(Ordering::Relaxed);
    let mut progress_at = Instant::now();
    loop {
        if shared
            .ledger
            .tally(Instant::now(), Duration::ZERO)
            .undelivered
            == 0
        {
            break;
        }
        if progress_at.elapsed() > Duration::from_secs(shared.opts.drain_timeout) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = shared.delivered.load(Ordering::Relaxed);
        if now != last {
            last = now;
            progress_at = Instant::now();
        }
    }
    started.elapsed().as_secs_f64()
}

async fn setup_topology(url: &Url) -> Result<()> {
    let (mut input, mut output) = client::connect(url).await?;
    for (queue, durable) in [
        (TRANSIENT_QUEUE, false),
        (DURABLE_QUEUE, true),
        (BURST_QUEUE, false),
    ] {
        client::delete_queue(&mut input, &mut output, queue).await?;
        client::declare_queue(&mut input, &mut output, queue, durable).await?;
    }
    close(&mut input, &mut output).await
}

async fn delete_topology(url: &Url) -> Result<()> {
    let (mut input, mut output) = client::connect(url).await?;
    for queue in [TRANSIENT_QUEUE, DURABLE_QUEUE, BURST_QUEUE] {
        client::delete_queue(&mut input, &mut output, queue).await?;
    }
    close(&mut input, &mut output).await
}

/// connection.close and its close-ok.
async fn close(input: &mut FrameIn, output: &mut FrameOut) -> Result<()> {
    output
        .method(
            0,
            connection::Close {
                reply_code: 200,
                ..Default::default()
            },
        )
        .await?;
    loop {
        if let Frame::Method {
            method: Method::ConnectionCloseOk(_),
            ..
        } = input.next().await?
        {
            return Ok(());
        }
    }
}

/// One publishing connection's unconfirmed messages and blocked state (kept by its reader).
#[derive(Default)]
struct Confirms {
    /// Delivery tag → sequence number.
    outstanding: Mutex<BTreeMap<u64, u64>>,
    freed: Notify,
    blocked: AtomicBool,
    /// connection.blocked seen on this connection.
    blocked_events: AtomicU64,
    unblocked_events: AtomicU64,
}

impl Confirms {
    fn in_flight(&self) -> usize {
        self.outstanding.lock().len()
    }

    /// Waits (at most `limit`) until nothing is unconfirmed.
    async fn settle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.in_flight() > 0 && Instant::now() < deadline {
            let _ = tokio::time::timeout(Duration::from_millis(100), self.freed.notified()).await;
        }
        self.in_flight() == 0
    }
}

/// Reads a publisher connection: confirms into the ledger, connection.blocked / unblocked into
/// the alarm clock; ends at close-ok.
async fn read_publisher(
    mut input: FrameIn,
    producer: u16,
    confirms: Arc<Confirms>,
    shared: Arc<Shared>,
) -> Result<()> {
    let result = async {
        loop {
            let (tag, multiple, ack) = match input.next().await? {
                Frame::Method { method, .. } => match method {
                    Method::BasicAck(a) => (a.delivery_tag, a.multiple, true),
                    Method::BasicNack(n) => (n.delivery_tag, n.multiple, false),
                    Method::ConnectionBlocked(_) => {
                        if !confirms.blocked.swap(true, Ordering::Relaxed) {
                            confirms.blocked_events.fetch_add(1, Ordering::Relaxed);
                            shared.blocked_events.fetch_add(1, Ordering::Relaxed);
                            shared.alarm.lock().block();
                        }
                        continue;
                    }
                    Method::ConnectionUnblocked(_) => {
                        if confirms.blocked.swap(false, Ordering::Relaxed) {
                            confirms.unblocked_events.fetch_add(1, Ordering::Relaxed);
                            shared.unblocked_events.fetch_add(1, Ordering::Relaxed);
                            shared.alarm.lock().unblock();
                        }
                        continue;
                    }
                    Method::ConnectionClose(c) => bail!("connection closed: {}", c.reply_text),
                    Method::ChannelClose(c) => bail!("channel closed: {}", c.reply_text),
                    Method::ConnectionCloseOk(_) => return Ok(()),
                    _ => continue,
                },
                _ => continue,
            };
            let settled: Vec<u64> = {
                let mut out = confirms.outstanding.lock();
                if multiple {
                    let rest = out.split_off(&(tag + 1));
                    std::mem::replace(&mut *out, rest).into_values().collect()
                } else {
                    out.remove(&tag).into_iter().collect()
                }
            };
            let now = Instant::now();
            if ack {
                for seq in &settled {
                    shared.ledger.confirm(producer, *seq, now);
                }
                shared
                    .confirmed
                    .fetch_add(settled.len() as u64, Ordering::Relaxed);
            } else {
                shared
                    .nacked
                    .fetch_add(settled.len() as u64, Ordering::Relaxed);
            }
            confirms.freed.notify_waiters();
        }
    }
    .await;
    if confirms.blocked.swap(false, Ordering::Relaxed) {
        shared.alarm.lock().unblock();
    }
    confirms.freed.notify_waiters();
    result
}

/// A connection in confirm mode that publishes stamped messages of one producer.
struct Publisher {
    output: FrameOut,
    confirms: Arc<Confirms>,
    reader: tokio::task::JoinHandle<Result<()>>,
    producer: u16,
    next_tag: u64,
    frame: BytesMut,
    body: Vec<u8>,
}

impl Publisher {
    async fn open(shared: &Arc<Shared>, producer: u16) -> Result<Self> {
        let (mut input, mut output) = client::connect(&shared.url).await?;
        shared.connections_opened.fetch_add(1, Ordering::Relaxed);
        client::confirm_select(&mut input, &mut output).await?;
        let confirms = Arc::new(Confirms::default());
        let reader = tokio::spawn(read_publisher(
            input,
            producer,
            confirms.clone(),
            shared.clone(),
        ));
        Ok(Publisher {
            output,
            confirms,
            reader,
            producer,
            next_tag: 1,
            frame: BytesMut::with_capacity(128 * 1024),
            body: vec![0; BURST_BODY.max(shared.opts.max_size)],
        })
    }

    /// Publishes message `seq` of `size` bytes to `queue` through the default exchange.
    async fn publish(
        &mut self,
        shared: &Shared,
        queue: &str,
        persistent: bool,
        seq: u64,
        size: usize,
    ) -> Result<()> {
        let body = &mut self.body[..size];
        stats::fill_body(body, self.producer, seq);
        let publish = Method::BasicPublish(basic::Publish {
            routing_key: client::name(queue)?,
            ..Default::default()
        });
        let properties = BasicProperties {
            delivery_mode: Some(if persistent { 2 } else { 1 }),
            ..Default::default()
        };
        self.frame.clear();
        encode_content(
            1,
            &publish,
            &properties,
            body,
            self.output.frame_max,
            &mut self.frame,
        );
        self.confirms.outstanding.lock().insert(self.next_tag, seq);
        self.next_tag += 1;
        self.output.socket.write_all(&self.frame).await?;
        self.output.socket.flush().await?;
        shared.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Waits for the last confirms, closes the connection and waits for its reader.
    async fn finish(mut self) -> Result<()> {
        if !self.confirms.settle(Duration::from_secs(120)).await {
            bail!(
                "{} messages unconfirmed 120 s after the last publish",
                self.confirms.in_flight()
            );
        }
        self.output
            .method(
                0,
                connection::Close {
                    reply_code: 200,
                    ..Default::default()
                },
            )
            .await?;
        match tokio::time::timeout(Duration::from_secs(60), &mut self.reader).await {
            Ok(joined) => joined?,
            Err(_) => bail!("no connection.close-ok within 60 s"),
        }
    }
}

/// A body size, log-uniform between the bounds: as many tiny as large messages.
fn body_size(rng: &mut StdRng, min: usize, max: usize) -> usize {
    if min >= max {
        return min;
    }
    let ln = rng.gen_range((min as f64).ln()..=(max as f64).ln());
    (ln.exp() as usize).clamp(min, max)
}

/// A steady publisher: `--rate / --publishers` messages a second, half persistent into the
/// durable queue, half transient into the other; pauses while blocked.
async fn publisher(shared: &Arc<Shared>, id: u16) -> Result<()> {
    let opts = &shared.opts;
    let mut publisher = Publisher::open(shared, id).await?;
    let per_second = (opts.rate as f64 / opts.publishers as f64).max(0.1);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rng = StdRng::seed_from_u64(u64::from(id) + 1);
    let mut seq = 0u64;
    while !shared.stop_load.load(Ordering::Relaxed) {
        tick.tick().await;
        if publisher.confirms.blocked.load(Ordering::Relaxed)
            || publisher.confirms.in_flight() >= STEADY_WINDOW
        {
            continue;
        }
        let size = body_size(&mut rng, opts.min_size, opts.max_size);
        let persistent = rng.gen_bool(0.5);
        let queue = if persistent {
            DURABLE_QUEUE
        } else {
            TRANSIENT_QUEUE
        };
        publisher
            .publish(shared, queue, persistent, seq, size)
            .await?;
        seq += 1;
    }
    publisher.finish().await
}

/// Runs a burst at half `--burst-every`, then every `--burst-every`, until the load stops.
async fn bursts(shared: &Arc<Shared>, started: Instant) -> Result<()> {
    let every = Duration::from_secs_f64(shared.opts.burst_every.max(1) as f64);
    let mut next = started + every / 2;
    let mut seq = 0u64;
    loop {
        while Instant::now() < next {
            if shared.stop_load.load(Ordering::Relaxed) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let report = burst(shared, started, &mut seq).await?;
        shared.bursts.lock().push(report);
        next += every;
    }
}

/// Publishes 64 KiB transient messages into the burst queue until the broker blocks the
/// connection (or `--burst-max-mib`), then drains the queue with a consumer; waits for
/// connection.unblocked and every confirm.
async fn burst(shared: &Arc<Shared>, started: Instant, seq: &mut u64) -> Result<Value> {
    let at = started.elapsed().as_secs_f64();
    let producer = shared.burst_producer();
    let mut publisher = Publisher::open(shared, producer).await?;
    let first_seq = *seq;
    let cap = shared.opts.burst_max_mib * 1024 * 1024;
    let begun = Instant::now();
    let publishing_done = Arc::new(AtomicBool::new(false));
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let drained = Arc::new(AtomicU64::new(0));
    // The drain starts as soon as the broker blocks us: our next write may wait for the broker
    // to read again, which needs the backlog drained first.
    let drain = {
        let (s, confirms, done, target, drained) = (
            shared.clone(),
            publisher.confirms.clone(),
            publishing_done.clone(),
            target.clone(),
            drained.clone(),
        );
        tokio::spawn(async move {
            while confirms.blocked_events.load(Ordering::Relaxed) == 0
                && !done.load(Ordering::Relaxed)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let rss_blocked = broker_sample(s.opts.broker_pid).rss_kib;
            if confirms.blocked_events.load(Ordering::Relaxed) > 0 {
                tokio::time::sleep(Duration::from_secs(s.opts.burst_hold)).await;
            }
            let drain_begun = Instant::now();
            let stop = |_: &Shared| {
                drained.load(Ordering::Relaxed) >= target.load(Ordering::Relaxed)
                    || drain_begun.elapsed() > Duration::from_secs(600)
            };
            let plan = ConsumerPlan {
                id: usize::MAX,
                queue: BURST_QUEUE,
                prefetch: 100,
                reconsume: false,
            };
            let result = burst_consumer(&s, plan, stop, &drained).await;
            (result, drain_begun, rss_blocked)
        })
    };
    let mut published_bytes = 0u64;
    while publisher.confirms.blocked_events.load(Ordering::Relaxed) == 0 && published_bytes < cap {
        if publisher.confirms.in_flight() >= BURST_WINDOW {
            let _ = tokio::time::timeout(
                Duration::from_millis(50),
                publisher.confirms.freed.notified(),
            )
            .await;
            continue;
        }
        publisher
            .publish(shared, BURST_QUEUE, false, *seq, BURST_BODY)
            .await?;
        *seq += 1;
        published_bytes += BURST_BODY as u64;
    }
    let to_block = begun.elapsed().as_secs_f64();
    let messages = *seq - first_seq;
    target.store(messages, Ordering::Relaxed);
    publishing_done.store(true, Ordering::Relaxed);
    let (drain_result, drain_begun, rss_blocked) = drain.await?;
    drain_result.context("draining the burst")?;
    let drain_seconds = drain_begun.elapsed().as_secs_f64();
    let blocked = publisher.confirms.blocked_events.load(Ordering::Relaxed);
    // The alarm clears once the backlog is gone; the unblock may lag the last delivery.
    let unblock_wait = Instant::now();
    while publisher.confirms.blocked.load(Ordering::Relaxed)
        && unblock_wait.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let unblocked = publisher.confirms.unblocked_events.load(Ordering::Relaxed);
    publisher.finish().await?;
    let rss_after = broker_sample(shared.opts.broker_pid).rss_kib;
    Ok(json!({
        "rss_kib_blocked": rss_blocked,
        "rss_kib_after": rss_after,
        "t_s": round1(at),
        "messages": messages,
        "mib": messages * BURST_BODY as u64 / (1024 * 1024),
        "blocked": blocked,
        "unblocked": unblocked,
        "seconds_to_block": round2(to_block),
        "drain_s": round2(drain_seconds),
        "drained": drained.load(Ordering::Relaxed),
    }))
}

/// Where a consumer reads and how.
#[derive(Clone, Copy)]
struct ConsumerPlan {
    id: usize,
    queue: &'static str,
    prefetch: u16,
    /// Every `--reconsume-every` seconds: cancel and consume again (odd cycles) or close the
    /// channel with deliveries unacknowledged and reopen it (even cycles: they come back
    /// flagged redelivered).
    reconsume: bool,
}

async fn burst_consumer(
    shared: &Shared,
    plan: ConsumerPlan,
    stop: impl Fn(&Shared) -> bool,
    drained: &AtomicU64,
) -> Result<()> {
    run_consumer(shared, plan, stop, Some(drained)).await
}

async fn consumer(
    shared: &Shared,
    plan: ConsumerPlan,
    stop: impl Fn(&Shared) -> bool,
) -> Result<()> {
    run_consumer(shared, plan, stop, None).await
}

/// One consumer connection, until `stop`.
async fn run_consumer(
    shared: &Shared,
    plan: ConsumerPlan,
    stop: impl Fn(&Shared) -> bool,
    count: Option<&AtomicU64>,
) -> Result<()> {
    let (mut input, mut output) = client::connect(&shared.url).await?;
    shared.connections_opened.fetch_add(1, Ordering::Relaxed);
    client::qos(&mut input, &mut output, plan.prefetch).await?;
    let ack_every = if plan.prefetch <= 1 { 1 } else { 10 };
    let mut session = Session {
        unacked: 0,
        last_tag: 0,
        ack_every,
        latencies: Vec::with_capacity(1024),
        count,
    };
    let mut cycle = 0u64;
    let every = Duration::from_secs(shared.opts.reconsume_every.max(1));
    loop {
        let tag = format!("soak-{}-{cycle}", plan.id);
        let consume = basic::Consume {
            queue: client::name(plan.queue)?,
            consumer_tag: client::name(&tag)?,
            ..Default::default()
        };
        output.method(1, consume).await?;
        let until = plan.reconsume.then(|| Instant::now() + every);
        // Deliveries may come before consume-ok is read: the loop takes both.
        loop {
            if stop(shared) || until.is_some_and(|u| Instant::now() >= u) {
                break;
            }
            match tokio::time::timeout(Duration::from_millis(50), input.next()).await {
                Err(_) => session.flush(shared, &mut output).await?,
                Ok(frame) => {
                    session
                        .frame(shared, frame?, &mut input, &mut output, true)
                        .await?;
                }
            }
        }
        if stop(shared) {
            session.flush(shared, &mut output).await?;
            shared.flush_latencies(&mut session.latencies);
            return close(&mut input, &mut output).await;
        }
        shared.reconsumes.fetch_add(1, Ordering::Relaxed);
        if cycle.is_multiple_of(2) {
            // Close the channel with what it holds unacknowledged: redelivered elsewhere.
            session.unacked = 0;
            output
                .method(
                    1,
                    channel::Close {
                        reply_code: 200,
                        ..Default::default()
                    },
                )
                .await?;
            loop {
                match input.next().await? {
                    Frame::Method {
                        method: Method::ChannelCloseOk(_),
                        ..
                    } => break,
                    frame => {
                        session
                            .frame(shared, frame, &mut input, &mut output, false)
                            .await?
                    }
                }
            }
            output.method(1, channel::Open::default()).await?;
            input.expect(1).await?;
            client::qos(&mut input, &mut output, plan.prefetch).await?;
        } else {
            // Cancel, take and acknowledge what was already sent, consume again.
            output
                .method(
                    1,
                    basic::Cancel {
                        consumer_tag: client::name(&tag)?,
                        no_wait: false,
                    },
                )
                .await?;
            loop {
                match input.next().await? {
                    Frame::Method {
                        method: Method::BasicCancelOk(_),
                        ..
                    } => break,
                    frame => {
                        session
                            .frame(shared, frame, &mut input, &mut output, true)
                            .await?
                    }
                }
            }
            session.flush(shared, &mut output).await?;
        }
        cycle += 1;
    }
}

/// A consumer's acknowledgement state.
struct Session<'a> {
    unacked: u64,
    last_tag: u64,
    ack_every: u64,
    latencies: Vec<u64>,
    /// Deliveries counted for a burst's drain.
    count: Option<&'a AtomicU64>,
}

impl Session<'_> {
    /// Handles one frame: a delivery (read whole, checked, acknowledged per the policy when
    /// `ack`) or anything else (ignored, but a close is an error).
    async fn frame(
        &mut self,
        shared: &Shared,
        frame: Frame,
        input: &mut FrameIn,
        output: &mut FrameOut,
        ack: bool,
    ) -> Result<()> {
        let deliver = match frame {
            Frame::Method {
                method: Method::BasicDeliver(d),
                ..
            } => d,
            Frame::Method {
                method: Method::ConnectionClose(c),
                ..
            } => bail!("connection closed: {}", c.reply_text),
            Frame::Method {
                method: Method::ChannelClose(c),
                ..
            } => bail!("channel closed: {}", c.reply_text),
            _ => return Ok(()),
        };
        let body = read_content(input).await?;
        shared.on_delivery(&body, deliver.redelivered, &mut self.latencies);
        if let Some(count) = self.count {
            count.fetch_add(1, Ordering::Relaxed);
        }
        self.last_tag = deliver.delivery_tag;
        if ack {
            self.unacked += 1;
            if self.unacked >= self.ack_every {
                self.flush(shared, output).await?;
            }
        }
        if self.latencies.len() >= 256 {
            shared.flush_latencies(&mut self.latencies);
        }
        Ok(())
    }

    /// Acknowledges everything delivered so far (multiple).
    async fn flush(&mut self, shared: &Shared, output: &mut FrameOut) -> Result<()> {
        shared.flush_latencies(&mut self.latencies);
        if self.unacked == 0 {
            return Ok(());
        }
        output
            .method(
                1,
                basic::Ack {
                    delivery_tag: self.last_tag,
                    multiple: true,
                },
            )
            .await?;
        self.unacked = 0;
        Ok(())
    }
}

/// The header and body frames after a deliver or get-ok.
async fn read_content(input: &mut FrameIn) -> Result<Bytes> {
    let Frame::Header { header, .. } = input.next().await? else {
        bail!("expected a content header")
    };
    let mut body = BytesMut::with_capacity(header.body_size as usize);
    while (body.len() as u64) < header.body_size {
        let Frame::Body { payload, .. } = input.next().await? else {
            bail!("expected a content body")
        };
        body.extend_from_slice(&payload);
    }
    Ok(body.freeze())
}

/// Churn cycles until the load stops; a failed cycle is counted (and fails the verdict).
async fn churn(shared: &Arc<Shared>) {
    let mut n = 0u64;
    while !shared.stop_load.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_secs(300), churn_cycle(shared, n)).await {
            Ok(Ok(())) => {
                shared.churn_cycles.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                shared.churn_errors.fetch_add(1, Ordering::Relaxed);
                shared.error(&format!("churn cycle {n}"), &e);
            }
            Err(_) => {
                shared.churn_errors.fetch_add(1, Ordering::Relaxed);
                shared.error(&format!("churn cycle {n}"), &anyhow!("hung for 300 s"));
            }
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(shared.opts.churn_every_ms)).await;
    }
}

/// On a new connection: declare a classic (even `n`) or quorum (odd) queue, bind it to
/// amq.direct, publish a few confirmed messages through the binding, get them back one by one,
/// check the queue is then empty, delete it, close.
async fn churn_cycle(shared: &Shared, n: u64) -> Result<()> {
    let (mut input, mut output) = client::connect(&shared.url).await?;
    shared.connections_opened.fetch_add(1, Ordering::Relaxed);
    let name = format!("soak-churn-{n}");
    let quorum = n % 2 == 1;
    let mut arguments = FieldTable::new();
    if quorum {
        arguments.insert(
            ShortStr::from("x-queue-type"),
            FieldValue::LongStr(Bytes::from_static(b"quorum")),
        );
    }
    let declare = queue::Declare {
        queue: client::name(&name)?,
        durable: quorum,
        arguments,
        ..Default::default()
    };
    client::call(&mut input, &mut output, declare).await?;
    client::bind(&mut input, &mut output, &name, "amq.direct", &name).await?;
    client::confirm_select(&mut input, &mut output).await?;
    let mut frames = BytesMut::new();
    for i in 0..CHURN_MESSAGES {
        let publish = Method::BasicPublish(basic::Publish {
            exchange: "amq.direct".into(),
            routing_key: client::name(&name)?,
            ..Default::default()
        });
        let body = format!("{name}/{i}");
        encode_content(
            1,
            &publish,
            &BasicProperties::default(),
            body.as_bytes(),
            output.frame_max,
            &mut frames,
        );
    }
    output.socket.write_all(&frames).await?;
    output.socket.flush().await?;
    let mut confirmed = 0u64;
    while confirmed < CHURN_MESSAGES {
        match input.expect(1).await? {
            Method::BasicAck(a) => {
                confirmed = if a.multiple {
                    a.delivery_tag
                } else {
                    confirmed + 1
                }
            }
            Method::BasicNack(_) => bail!("{name}: a publish was nacked"),
            _ => {}
        }
    }
    for i in 0..=CHURN_MESSAGES {
        let get = basic::Get {
            queue: client::name(&name)?,
            no_ack: true,
            ..Default::default()
        };
        match client::call(&mut input, &mut output, get).await? {
            Method::BasicGetOk(_) if i < CHURN_MESSAGES => {
                let body = read_content(&mut input).await?;
                let want = format!("{name}/{i}");
                if body != want.as_bytes() {
                    bail!("{name}: got {body:?}, expected {want}");
                }
            }
            Method::BasicGetEmpty(_) if i == CHURN_MESSAGES => {}
            other => bail!("{name}: get {i} answered {other:?}"),
        }
    }
    client::delete_queue(&mut input, &mut output, &name).await?;
    close(&mut input, &mut output).await
}

/// The broker's process as /proc shows it.
struct BrokerSample {
    rss_kib: Option<u64>,
    cpu_s: Option<f64>,
    threads: Option<u64>,
    fds: Option<u64>,
}

fn broker_sample(pid: Option<u32>) -> BrokerSample {
    let status = pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok());
    let field = |name: &str| {
        status.as_deref().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
    };
    BrokerSample {
        rss_kib: field("VmRSS:"),
        cpu_s: pid.and_then(stats::cpu_seconds),
        threads: field("Threads:"),
        fds: pid
            .and_then(|p| std::fs::read_dir(format!("/proc/{p}/fd")).ok())
            .map(|d| d.count() as u64),
    }
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The 1-minute load average.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// What one report line measured, kept for the trends.
struct Sample {
    rss_kib: Option<u64>,
    p99_us: Option<u64>,
}

/// Prints the report lines and the summary.
struct Reporter {
    started: Instant,
    last_at: Instant,
    last_published: u64,
    last_delivered: u64,
    last_cpu: Option<f64>,
    generator_cpu_before: Option<f64>,
    samples: Vec<Sample>,
    peak_rss_kib: u64,
    peak_fds: u64,
    peak_threads: u64,
    peak_data_mib: f64,
}

impl Reporter {
    fn new(shared: &Shared, started: Instant) -> Self {
        Reporter {
            started,
            last_at: started,
            last_published: 0,
            last_delivered: 0,
            last_cpu: broker_sample(shared.opts.broker_pid).cpu_s,
            generator_cpu_before: stats::cpu_seconds(std::process::id()),
            samples: Vec::new(),
            peak_rss_kib: 0,
            peak_fds: 0,
            peak_threads: 0,
            peak_data_mib: 0.0,
        }
    }

    fn line(&mut self, shared: &Shared) {
        let now = Instant::now();
        let seconds = now.duration_since(self.last_at).as_secs_f64().max(1e-3);
        let published = shared.published.load(Ordering::Relaxed);
        let delivered = shared.delivered.load(Ordering::Relaxed);
        let (n, p50, p99, p999, max) = {
            let mut w = shared.window.lock();
            let r = (
                w.len(),
                w.value_at_quantile(0.5),
                w.value_at_quantile(0.99),
                w.value_at_quantile(0.999),
                w.max(),
            );
            w.reset();
            r
        };
        let broker = broker_sample(shared.opts.broker_pid);
        let cpu_pct = broker
            .cpu_s
            .zip(self.last_cpu)
            .map(|(now, before)| round1((now - before) / seconds * 100.0));
        let data_mib = shared
            .opts
            .data_dir
            .as_deref()
            .map(|d| round1(dir_bytes(d) as f64 / (1024.0 * 1024.0)));
        let tally = shared
            .ledger
            .tally(now, Duration::from_secs(shared.opts.grace));
        let alarm = shared.alarm.lock();
        let line = json!({
            "t_s": self.started.elapsed().as_secs(),
            "published": published,
            "confirmed": shared.confirmed.load(Ordering::Relaxed),
            "nacked": shared.nacked.load(Ordering::Relaxed),
            "delivered": delivered,
            "publish_rate": (((published - self.last_published) as f64) / seconds).round(),
            "deliver_rate": (((delivered - self.last_delivered) as f64) / seconds).round(),
            "undelivered": tally.undelivered,
            "lost_so_far": tally.overdue,
            "redelivered_dups": shared.redelivered_duplicates.load(Ordering::Relaxed),
            "unexplained_dups": shared.unexplained_duplicates.load(Ordering::Relaxed),
            "corrupt": shared.corrupt.load(Ordering::Relaxed),
            "latency_us": { "n": n, "p50": p50, "p99": p99, "p999": p999, "max": max },
            "broker": {
                "rss_kib": broker.rss_kib,
                "cpu_s": broker.cpu_s.map(round2),
                "cpu_pct": cpu_pct,
                "threads": broker.threads,
                "fds": broker.fds,
                "data_mib": data_mib,
            },
            "alarm": {
                "blocked_now": alarm.blocked_connections > 0,
                "crossings": alarm.crossings,
                "blocked_s": round1(alarm.blocked_seconds()),
                "blocked_events": shared.blocked_events.load(Ordering::Relaxed),
            },
            "bursts": shared.bursts.lock().len(),
            "churn_cycles": shared.churn_cycles.load(Ordering::Relaxed),
            "churn_errors": shared.churn_errors.load(Ordering::Relaxed),
            "connections_opened": shared.connections_opened.load(Ordering::Relaxed),
            "reconsumes": shared.reconsumes.load(Ordering::Relaxed),
            "errors": shared.errors.lock().len(),
            "loadavg": load_average(),
        });
        drop(alarm);
        println!("{line}");
        let _ = std::io::stdout().flush();
        self.samples.push(Sample {
            rss_kib: broker.rss_kib,
            p99_us: (n > 0).then_some(p99),
        });
        self.peak_rss_kib = self.peak_rss_kib.max(broker.rss_kib.unwrap_or(0));
        self.peak_fds = self.peak_fds.max(broker.fds.unwrap_or(0));
        self.peak_threads = self.peak_threads.max(broker.threads.unwrap_or(0));
        self.peak_data_mib = self.peak_data_mib.max(data_mib.unwrap_or(0.0));
        self.last_at = now;
        self.last_published = published;
        self.last_delivered = delivered;
        self.last_cpu = broker.cpu_s;
    }

    fn summary(&self, shared: &Shared, drain_seconds: f64) -> Value {
        let tally = shared.ledger.tally(Instant::now(), Duration::ZERO);
        let rss: Vec<f64> = self
            .samples
            .iter()
            .filter_map(|s| s.rss_kib.map(|r| r as f64))
            .collect();
        let p99: Vec<f64> = self
            .samples
            .iter()
            .filter_map(|s| s.p99_us.map(|p| p as f64))
            .collect();
        let alarm = shared.alarm.lock();
        let findings = Findings {
            lost: tally.undelivered,
            unexplained_duplicates: shared.unexplained_duplicates.load(Ordering::Relaxed),
            corrupt: shared.corrupt.load(Ordering::Relaxed),
            nacked: shared.nacked.load(Ordering::Relaxed),
            churn_errors: shared.churn_errors.load(Ordering::Relaxed),
            errors: shared.errors.lock().len() as u64,
            never_unblocked: shared
                .blocked_events
                .load(Ordering::Relaxed)
                .saturating_sub(shared.unblocked_events.load(Ordering::Relaxed)),
            rss_growth: quarter_growth(&rss),
            latency_growth: quarter_growth(&p99),
        };
        let reasons = findings.reasons(&shared.opts);
        let broker = broker_sample(shared.opts.broker_pid);
        json!({
            "mode": "soak",
            "verdict": if reasons.is_empty() { "PASS" } else { "FAIL" },
            "reasons": reasons,
            "duration_s": shared.opts.duration,
            "rate": shared.opts.rate,
            "publishers": shared.opts.publishers,
            "consumers": shared.opts.consumers,
            "published": shared.published.load(Ordering::Relaxed),
            "confirmed": shared.confirmed.load(Ordering::Relaxed),
            "nacked": findings.nacked,
            "delivered": shared.delivered.load(Ordering::Relaxed),
            "lost": findings.lost,
            "lost_examples": shared.ledger.some_undelivered(10),
            "redelivered_dups": shared.redelivered_duplicates.load(Ordering::Relaxed),
            "unexplained_dups": findings.unexplained_duplicates,
            "corrupt": findings.corrupt,
            "final_drain_s": round2(drain_seconds),
            "alarm_crossings": alarm.crossings,
            "blocked_events": shared.blocked_events.load(Ordering::Relaxed),
            "unblocked_events": shared.unblocked_events.load(Ordering::Relaxed),
            "blocked_s": round1(alarm.blocked_seconds()),
            "bursts": *shared.bursts.lock(),
            "churn_cycles": shared.churn_cycles.load(Ordering::Relaxed),
            "churn_errors": findings.churn_errors,
            "connections_opened": shared.connections_opened.load(Ordering::Relaxed),
            "reconsumes": shared.reconsumes.load(Ordering::Relaxed),
            "rss_growth": findings.rss_growth.map(round2),
            "p99_growth": findings.latency_growth.map(round2),
            "peak_rss_kib": self.peak_rss_kib,
            "peak_fds": self.peak_fds,
            "peak_threads": self.peak_threads,
            "peak_data_mib": self.peak_data_mib,
            "broker_rss_kib_end": broker.rss_kib,
            "broker_cpu_s_end": broker.cpu_s.map(round2),
            "generator_cpu_s": stats::cpu_seconds(std::process::id())
                .zip(self.generator_cpu_before)
                .map(|(a, b)| round2(a - b)),
            "errors": *shared.errors.lock(),
        })
    }
}

/// The median of the last quarter of `values` over the median of the second quarter (the
/// first quarter is warm-up); `None` with fewer than 4 values.
fn quarter_growth(values: &[f64]) -> Option<f64> {
    let q = values.len() / 4;
    if q == 0 {
        return None;
    }
    let second = median(&values[q..2 * q])?;
    let last = median(&values[values.len() - q..])?;
    (second > 0.0).then(|| last / second)
}

fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// What decides the verdict.
struct Findings {
    lost: u64,
    unexplained_duplicates: u64,
    corrupt: u64,
    nacked: u64,
    churn_errors: u64,
    errors: u64,
    /// Connections told connection.blocked and never unblocked.
    never_unblocked: u64,
    rss_growth: Option<f64>,
    latency_growth: Option<f64>,
}

impl Findings {
    /// Why the soak failed; empty for a pass.
    fn reasons(&self, opts: &SoakOpts) -> Vec<String> {
        let mut reasons = Vec::new();
        let counts = [
            (self.lost, "confirmed messages never delivered"),
            (
                self.unexplained_duplicates,
                "duplicates without the redelivered flag",
            ),
            (self.corrupt, "corrupt deliveries"),
            (self.nacked, "publishes nacked"),
            (self.churn_errors, "churn cycles failed"),
            (self.errors, "task errors"),
            (
                self.never_unblocked,
                "connections blocked and never unblocked",
            ),
        ];
        for (n, what) in counts {
            if n > 0 {
                reasons.push(format!("{n} {what}"));
            }
        }
        if let Some(g) = self.rss_growth.filter(|g| *g > opts.max_rss_growth) {
            reasons.push(format!(
                "RSS grew {g:.2}x from the second quarter to the last"
            ));
        }
        if let Some(g) = self.latency_growth.filter(|g| *g > opts.max_latency_growth) {
            reasons.push(format!(
                "p99 latency grew {g:.2}x from the second quarter to the last"
            ));
        }
        reasons
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        opts: SoakOpts,
    }

    fn opts() -> SoakOpts {
        Cli::parse_from(["soak", "--uri", "amqp://127.0.0.1:1"]).opts
    }

    fn clean() -> Findings {
        Findings {
            lost: 0,
            unexplained_duplicates: 0,
            corrupt: 0,
            nacked: 0,
            churn_errors: 0,
            errors: 0,
            never_unblocked: 0,
            rss_growth: Some(1.0),
            latency_growth: Some(1.1),
        }
    }

    #[test]
    fn a_clean_run_passes_and_each_finding_fails_it() {
        assert!(clean().reasons(&opts()).is_empty());
        let lost = Findings { lost: 1, ..clean() };
        assert_eq!(
            lost.reasons(&opts()),
            ["1 confirmed messages never delivered"]
        );
        let dup = Findings {
            unexplained_duplicates: 2,
            ..clean()
        };
        assert_eq!(dup.reasons(&opts()).len(), 1);
        let leak = Findings {
            rss_growth: Some(1.5),
            ..clean()
        };
        assert!(leak.reasons(&opts())[0].starts_with("RSS grew 1.50x"));
        let slow = Findings {
            latency_growth: Some(3.0),
            ..clean()
        };
        assert!(slow.reasons(&opts())[0].starts_with("p99 latency grew"));
    }

    #[test]
    fn growth_compares_the_last_quarter_with_the_second() {
        // Warm-up (first quarter) is ignored; flat afterwards.
        assert_eq!(
            quarter_growth(&[1.0, 1.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0]),
            Some(1.0)
        );
        // A leak: doubles from the second quarter to the last.
        assert_eq!(
            quarter_growth(&[5.0, 5.0, 10.0, 10.0, 15.0, 15.0, 20.0, 20.0]),
            Some(2.0)
        );
        assert_eq!(quarter_growth(&[1.0, 2.0, 3.0]), None);
    }

    #[test]
    fn body_sizes_stay_within_bounds_and_span_them() {
        let mut rng = StdRng::seed_from_u64(1);
        let sizes: Vec<usize> = (0..10_000)
            .map(|_| body_size(&mut rng, 16, 65536))
            .collect();
        assert!(sizes.iter().all(|s| (16..=65536).contains(s)));
        assert!(sizes.iter().any(|s| *s < 64));
        assert!(sizes.iter().any(|s| *s > 32768));
        assert_eq!(body_size(&mut rng, 100, 100), 100);
    }

    #[test]
    fn the_alarm_clock_counts_crossings_not_connections() {
        let mut clock = AlarmClock::default();
        clock.block();
        clock.block();
        clock.unblock();
        assert!(clock.since.is_some(), "one connection is still blocked");
        clock.unblock();
        clock.block();
        clock.unblock();
        assert_eq!(clock.crossings, 2);
        assert!(clock.since.is_none());
    }
}
