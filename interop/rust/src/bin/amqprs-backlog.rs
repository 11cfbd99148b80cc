//! Fills a transient queue with N small messages from amqprs with publisher confirms, one
//! message at a time (amqprs writes each frame as it is published: the broker sees small
//! reads, the case where body slices used to pin whole read buffers; issue 16), waits until
//! every message is confirmed and queued, then prints the broker's RSS if given its pid.
//!
//! `amqprs-backlog URL COUNT SIZE QUEUE [BROKER_PID]`; BENCHMARKS.md shows how it is run.

use amqprs::callbacks::{ChannelCallback, DefaultConnectionCallback};
use amqprs::channel::{
    BasicPublishArguments, Channel, ConfirmSelectArguments, QueueDeclareArguments,
    QueueDeleteArguments,
};
use amqprs::connection::Connection;
use amqprs::{Ack, BasicProperties, Cancel, CloseChannel, Nack, Return};
use anyhow::{anyhow, Context, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type AmqprsResult<T> = std::result::Result<T, amqprs::error::Error>;

/// Counts confirmed publishes (a multiple ack covers every tag up to its own).
struct Confirmed(Arc<AtomicU64>);

#[async_trait::async_trait]
impl ChannelCallback for Confirmed {
    async fn close(&mut self, _: &Channel, close: CloseChannel) -> AmqprsResult<()> {
        eprintln!("channel closed by the broker: {}", close.reply_text());
        Ok(())
    }
    async fn cancel(&mut self, _: &Channel, _: Cancel) -> AmqprsResult<()> {
        Ok(())
    }
    async fn flow(&mut self, _: &Channel, active: bool) -> AmqprsResult<bool> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        self.0.fetch_max(ack.delivery_tag(), Ordering::Relaxed);
    }
    async fn publish_nack(&mut self, _: &Channel, nack: Nack) {
        eprintln!("nacked: {}", nack.delivery_tag());
    }
    async fn publish_return(&mut self, _: &Channel, _: Return, _: BasicProperties, _: Vec<u8>) {}
}

fn rss_kib(pid: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, count, size, queue, rest @ ..] = args.as_slice() else {
        return Err(anyhow!(
            "usage: amqprs-backlog URL COUNT SIZE QUEUE [BROKER_PID]"
        ));
    };
    let count: u64 = count.parse().context("COUNT")?;
    let size: usize = size.parse().context("SIZE")?;
    let pid = rest.first();
    let idle = pid.and_then(|p| rss_kib(p));
    let conn = Connection::open(&warren_interop::amqprs_scenarios::open_args(url)?)
        .await
        .map_err(|e| anyhow!("connecting: {e}"))?;
    conn.register_callback(DefaultConnectionCallback)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let ch = conn.open_channel(None).await.map_err(|e| anyhow!("{e}"))?;
    let confirmed = Arc::new(AtomicU64::new(0));
    ch.register_callback(Confirmed(confirmed.clone()))
        .await
        .map_err(|e| anyhow!("{e}"))?;
    ch.confirm_select(ConfirmSelectArguments::default())
        .await
        .map_err(|e| anyhow!("{e}"))?;
    ch.queue_declare(QueueDeclareArguments::new(queue))
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let started = Instant::now();
    let body = vec![b'x'; size];
    for i in 0..count {
        let args = BasicPublishArguments::new("", queue);
        ch.basic_publish(BasicProperties::default(), body.clone(), args)
            .await
            .map_err(|e| anyhow!("publish {i}: {e}"))?;
        // A window of 1,000 unconfirmed publishes, as warren-perf's backlog uses.
        while i + 1 - confirmed.load(Ordering::Relaxed) > 1000 {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    while confirmed.load(Ordering::Relaxed) < count {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let full = pid.and_then(|p| rss_kib(p));
    let per_message = idle
        .zip(full)
        .map(|(i, f)| (f.saturating_sub(i) * 1024) as f64 / count as f64);
    let json = |v: Option<String>| v.unwrap_or_else(|| "null".into());
    println!(
        "{{\"client\":\"amqprs\",\"messages\":{count},\"size\":{size},\"publish_rate\":{:.0},\"broker_rss_kib_idle\":{},\"broker_rss_kib_full\":{},\"broker_rss_bytes_per_message\":{}}}",
        count as f64 / seconds,
        json(idle.map(|v| v.to_string())),
        json(full.map(|v| v.to_string())),
        json(per_message.map(|v| format!("{v:.0}"))),
    );
    ch.queue_delete(QueueDeleteArguments::new(queue))
        .await
        .map_err(|e| anyhow!("{e}"))?;
    conn.close().await.map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
