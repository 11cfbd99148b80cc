//! `warren-perf stream`: a stream queue (`x-queue-type: stream`) over AMQP 0-9-1 on any broker:
//! append M messages with publisher confirms (a window in flight), then replay them from
//! `first` with a per-consumer prefetch and multiple-acks, sampling the broker's RSS during the
//! replay. Checks what it measures: every publish confirmed, every message replayed intact and
//! in offset order.

use crate::client::{self, Url};
use crate::stats;
use anyhow::{bail, Result};
use bytes::BytesMut;
use clap::Args;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use warren_protocol::{
    basic, encode_content, queue, BasicProperties, FieldTable, FieldValue, Frame, Method,
};

#[derive(Args, Clone, Debug)]
pub struct StreamOpts {
    /// Broker URL (required, so a run never measures whichever broker holds port 5672).
    #[arg(long)]
    pub uri: String,
    /// Messages to append (0: only replay what the stream holds, --messages-in-stream of them).
    #[arg(short = 'm', long, default_value_t = 1_000_000)]
    pub messages: u64,
    /// Messages to replay when --messages is 0.
    #[arg(long, default_value_t = 0)]
    pub messages_in_stream: u64,
    /// Body size.
    #[arg(short = 's', long, default_value_t = 1024)]
    pub size: usize,
    /// Publishes awaiting their confirm at most.
    #[arg(long, default_value_t = 1000)]
    pub confirm_window: u64,
    /// The replaying consumer's prefetch (basic.qos global=false).
    #[arg(long, default_value_t = 1000)]
    pub prefetch: u16,
    /// Stream name.
    #[arg(short = 'u', long, default_value = "perf-stream")]
    pub queue: String,
    /// Leave the stream in place (to replay it again with --messages 0).
    #[arg(long)]
    pub keep: bool,
    /// Skip the replay.
    #[arg(long)]
    pub no_replay: bool,
    /// Pid of the broker, to report its CPU time and RSS.
    #[arg(long)]
    pub broker_pid: Option<u32>,
}

pub async fn run(opts: StreamOpts) -> Result<serde_json::Value> {
    let url = Url::parse(&opts.uri)?;
    let (mut input, mut output) = client::connect(&url).await?;
    let mut arguments = FieldTable::new();
    arguments.insert("x-queue-type".into(), FieldValue::LongStr("stream".into()));
    let declare = queue::Declare {
        queue: client::name(&opts.queue)?,
        durable: true,
        arguments,
        ..Default::default()
    };
    client::call(&mut input, &mut output, declare).await?;
    let mut report = json!({"mode": "stream", "messages": opts.messages, "size": opts.size});
    if opts.messages > 0 {
        let cpu = opts.broker_pid.and_then(stats::cpu_seconds);
        let seconds = append(&url, &opts).await?;
        report["append_seconds"] = json!((seconds * 1000.0).round() / 1000.0);
        report["append_rate"] = json!((opts.messages as f64 / seconds).round());
        report["append_broker_cpu_s"] = json!(opts
            .broker_pid
            .and_then(stats::cpu_seconds)
            .zip(cpu)
            .map(|(a, b)| ((a - b) * 100.0).round() / 100.0));
    }
    if !opts.no_replay {
        let expected = if opts.messages > 0 {
            opts.messages
        } else {
            opts.messages_in_stream
        };
        let (seconds, max_rss) = replay(&url, &opts, expected).await?;
        report["replayed"] = json!(expected);
        report["replay_seconds"] = json!((seconds * 1000.0).round() / 1000.0);
        report["replay_rate"] = json!((expected as f64 / seconds).round());
        report["replay_broker_rss_kib_max"] = json!(max_rss);
    }
    if !opts.keep {
        client::delete_queue(&mut input, &mut output, &opts.queue).await?;
    }
    Ok(report)
}

/// Appends `opts.messages` with confirms; returns the seconds until the last confirm.
async fn append(url: &Url, opts: &StreamOpts) -> Result<f64> {
    let (mut input, mut output) = client::connect(url).await?;
    client::confirm_select(&mut input, &mut output).await?;
    let confirmed = Arc::new(AtomicU64::new(0));
    let freed = Arc::new(tokio::sync::Notify::new());
    let total = opts.messages;
    let reader = {
        let (confirmed, freed) = (confirmed.clone(), freed.clone());
        tokio::spawn(async move {
            while confirmed.load(Ordering::Relaxed) < total {
                match input.next().await? {
                    Frame::Method {
                        method: Method::BasicAck(a),
                        ..
                    } => {
                        // Confirms come in order here (one channel): a tag confirms up to it.
                        confirmed.fetch_max(a.delivery_tag, Ordering::Relaxed);
                        freed.notify_one();
                    }
                    Frame::Method {
                        method: Method::BasicNack(_),
                        ..
                    } => bail!("a publish was nacked"),
                    Frame::Method {
                        method: Method::ConnectionClose(c),
                        ..
                    } => bail!("connection closed: {}", c.reply_text),
                    _ => {}
                }
            }
            anyhow::Ok(())
        })
    };
    let started = Instant::now();
    let publish = Method::BasicPublish(basic::Publish {
        routing_key: client::name(&opts.queue)?,
        ..Default::default()
    });
    let properties = BasicProperties::default();
    let mut body = vec![0u8; opts.size];
    let mut batch = BytesMut::with_capacity(256 * 1024);
    let mut seq = 0u64;
    while seq < total {
        let in_flight = seq - confirmed.load(Ordering::Relaxed);
        if in_flight >= opts.confirm_window {
            let _ = tokio::time::timeout(Duration::from_millis(100), freed.notified()).await;
            continue;
        }
        let room = (opts.confirm_window - in_flight).min(total - seq).min(256);
        batch.clear();
        for _ in 0..room {
            stats::fill_body(&mut body, 0, seq);
            encode_content(
                1,
                &publish,
                &properties,
                &body,
                output.frame_max,
                &mut batch,
            );
            seq += 1;
        }
        output.socket.write_all(&batch).await?;
        output.socket.flush().await?;
    }
    match tokio::time::timeout(Duration::from_secs(120), reader).await {
        Ok(joined) => joined??,
        Err(_) => bail!("not every publish was confirmed within 120 s"),
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Replays `expected` messages from `first`; returns the seconds taken and the broker's
/// highest RSS (KiB) sampled every 100 ms meanwhile.
async fn replay(url: &Url, opts: &StreamOpts, expected: u64) -> Result<(f64, Option<u64>)> {
    let (mut input, mut output) = client::connect(url).await?;
    client::qos(&mut input, &mut output, opts.prefetch).await?;
    let mut arguments = FieldTable::new();
    arguments.insert(
        "x-stream-offset".into(),
        FieldValue::LongStr("first".into()),
    );
    let consume = basic::Consume {
        queue: client::name(&opts.queue)?,
        arguments,
        ..Default::default()
    };
    client::call(&mut input, &mut output, consume).await?;
    let max_rss = Arc::new(AtomicU64::new(0));
    let sampler = opts.broker_pid.map(|pid| {
        let max_rss = max_rss.clone();
        tokio::spawn(async move {
            loop {
                if let Some(kib) = stats::rss_kib(pid) {
                    max_rss.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });
    let started = Instant::now();
    let (mut got, mut corrupt, mut unacked) = (0u64, 0u64, 0u64);
    let ack_every = u64::from(opts.prefetch / 4).max(1);
    while got < expected {
        let frame = match tokio::time::timeout(Duration::from_secs(10), input.next()).await {
            Ok(frame) => frame?,
            Err(_) => bail!("replay stalled after {got} of {expected} messages"),
        };
        match frame {
            Frame::Method {
                method: Method::BasicDeliver(d),
                ..
            } => {
                unacked += 1;
                if unacked >= ack_every {
                    let ack = basic::Ack {
                        delivery_tag: d.delivery_tag,
                        multiple: true,
                    };
                    output.method(1, ack).await?;
                    unacked = 0;
                }
            }
            Frame::Body { payload, .. } => {
                got += 1;
                if stats::check_body(&payload, opts.size).is_none() {
                    corrupt += 1;
                }
            }
            Frame::Method {
                method: Method::ChannelClose(c),
                ..
            } => bail!("channel closed: {}", c.reply_text),
            _ => {}
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(s) = sampler {
        s.abort();
    }
    if corrupt > 0 {
        bail!("{corrupt} corrupt messages in the replay");
    }
    Ok((
        seconds,
        opts.broker_pid.map(|_| max_rss.load(Ordering::Relaxed)),
    ))
}
