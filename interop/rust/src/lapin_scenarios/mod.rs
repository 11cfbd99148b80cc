//! The interop scenarios written with `lapin` (2.5), the most used Rust AMQP client.

use crate::{ensure_eq, fib, pattern, retry_connect, scenarios, within, Ctx, Scenario, Skip};
use anyhow::{anyhow, bail, Context as _, Result};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

mod features;
mod tutorials;

pub use features::*;
pub use tutorials::*;

/// Every lapin scenario, in the order of `interop/README.md`.
pub const SCENARIOS: &[Scenario] = scenarios![
    hello_world,
    work_queues,
    publish_subscribe,
    routing,
    topics,
    rpc,
    rpc_direct_reply_to,
    confirms_single,
    confirms_batch,
    confirms_async,
    consumer_cancel_on_delete,
    mandatory_return,
    redeclare_406_channel_only,
    large_message,
    headers_roundtrip,
    restart_durable,
];

/// A lapin connection driven by the current tokio runtime.
pub async fn connect_url(url: &str) -> lapin::Result<Connection> {
    let props = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio)
        .with_connection_name("warren-interop lapin".into());
    Connection::connect(url, props).await
}

async fn connect(ctx: &Ctx) -> Result<Connection> {
    within("connection.open-ok", connect_url(&ctx.url))
        .await?
        .context("connecting")
}

async fn channel(conn: &Connection) -> Result<Channel> {
    conn.create_channel().await.context("opening a channel")
}

fn no_args() -> FieldTable {
    FieldTable::default()
}

async fn declare(ch: &Channel, name: &str, opts: QueueDeclareOptions) -> Result<String> {
    let q = ch
        .queue_declare(name, opts, no_args())
        .await
        .with_context(|| format!("declaring queue {name:?}"))?;
    Ok(q.name().to_string())
}

/// A server-named exclusive queue (tutorials 3-6).
async fn declare_exclusive(ch: &Channel) -> Result<String> {
    let opts = QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    declare(ch, "", opts).await
}

async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8]) -> Result<()> {
    ch.basic_publish(
        exchange,
        key,
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .with_context(|| format!("publishing to {exchange:?}/{key:?}"))?;
    Ok(())
}

/// Publishes and waits for the broker's ack (the channel must be in confirm mode).
async fn publish_confirmed(
    ch: &Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    props: BasicProperties,
) -> Result<()> {
    let confirm = ch
        .basic_publish(exchange, key, BasicPublishOptions::default(), body, props)
        .await
        .context("publishing")?;
    match within("a publisher confirm", confirm).await?? {
        Confirmation::Ack(None) => Ok(()),
        other => bail!("expected a plain ack, got {other:?}"),
    }
}

async fn consume(ch: &Channel, queue: &str, no_ack: bool) -> Result<Consumer> {
    let opts = BasicConsumeOptions {
        no_ack,
        ..Default::default()
    };
    ch.basic_consume(queue, "", opts, no_args())
        .await
        .with_context(|| format!("consuming from {queue:?}"))
}

async fn next(consumer: &mut Consumer, what: &str) -> Result<lapin::message::Delivery> {
    match within(what, consumer.next()).await? {
        Some(d) => d.with_context(|| format!("receiving {what}")),
        None => bail!("the consumer was cancelled while waiting for {what}"),
    }
}

/// Every message ready in `queue`, by basic.get with auto-ack.
async fn drain(ch: &Channel, queue: &str) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(queue, BasicGetOptions { no_ack: true })
        .await
        .context("basic.get")?
    {
        out.push(m.delivery.data);
    }
    Ok(out)
}

fn strings(bodies: Vec<Vec<u8>>) -> Vec<String> {
    bodies
        .into_iter()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

async fn confirm_channel(ctx: &Ctx, what: &str) -> Result<(Connection, Channel, String)> {
    let conn = connect(ctx).await?;
    let ch = channel(&conn).await?;
    ch.confirm_select(Default::default()).await?;
    let queue = declare(&ch, &ctx.queue(what), Default::default()).await?;
    Ok((conn, ch, queue))
}

async fn message_count(ch: &Channel, queue: &str) -> Result<u32> {
    let opts = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    Ok(ch
        .queue_declare(queue, opts, no_args())
        .await?
        .message_count())
}
