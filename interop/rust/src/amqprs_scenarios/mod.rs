//! The interop scenarios written with `amqprs` (2.1), a callback-based Rust AMQP client with its
//! own codec (no code shared with lapin's amq-protocol).

use crate::{ensure_eq, fib, pattern, retry_connect, scenarios, within, Ctx, Scenario, Skip};
use amqprs::callbacks::{ChannelCallback, ConnectionCallback};
use amqprs::channel::{
    BasicAckArguments, BasicConsumeArguments, BasicGetArguments, BasicPublishArguments,
    BasicQosArguments, Channel, ConfirmSelectArguments, ConsumerMessage, ExchangeDeclareArguments,
    ExchangeDeleteArguments, QueueBindArguments, QueueDeclareArguments, QueueDeleteArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{
    Ack, BasicProperties, ByteArray, Cancel, Close, CloseChannel, DecimalValue, FieldArray,
    FieldTable, FieldValue, LongStr, Nack, Return, ShortStr,
};
use anyhow::{anyhow, bail, Context as _, Result};
use async_trait::async_trait;

type AmqprsResult<T> = std::result::Result<T, amqprs::error::Error>;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

mod features;
mod tutorials;

pub use features::*;
pub use tutorials::*;

/// Every amqprs scenario, in the order of `interop/README.md`.
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

/// What the broker told a channel outside of replies, as amqprs reports it through callbacks.
#[derive(Debug)]
pub enum Event {
    Close(u16, String),
    Cancel(String),
    Ack(u64, bool),
    Nack(u64, bool),
    Return {
        code: u16,
        text: String,
        exchange: String,
        routing_key: String,
        body: Vec<u8>,
        message_id: Option<String>,
    },
}

struct Events(UnboundedSender<Event>);

#[async_trait]
impl ChannelCallback for Events {
    async fn close(&mut self, _: &Channel, close: CloseChannel) -> AmqprsResult<()> {
        let _ = self
            .0
            .send(Event::Close(close.reply_code(), close.reply_text().clone()));
        Ok(())
    }
    async fn cancel(&mut self, _: &Channel, cancel: Cancel) -> AmqprsResult<()> {
        let _ = self.0.send(Event::Cancel(cancel.consumer_tag().clone()));
        Ok(())
    }
    async fn flow(&mut self, _: &Channel, active: bool) -> AmqprsResult<bool> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        let _ = self.0.send(Event::Ack(ack.delivery_tag(), ack.mutiple()));
    }
    async fn publish_nack(&mut self, _: &Channel, nack: Nack) {
        let _ = self
            .0
            .send(Event::Nack(nack.delivery_tag(), nack.multiple()));
    }
    async fn publish_return(
        &mut self,
        _: &Channel,
        ret: Return,
        props: BasicProperties,
        body: Vec<u8>,
    ) {
        let _ = self.0.send(Event::Return {
            code: ret.reply_code(),
            text: ret.reply_text().clone(),
            exchange: ret.exchange().clone(),
            routing_key: ret.routing_key().clone(),
            body,
            message_id: props.message_id().cloned(),
        });
    }
}

struct ConnectionEvents;

#[async_trait]
impl ConnectionCallback for ConnectionEvents {
    async fn close(&mut self, _: &Connection, _: Close) -> AmqprsResult<()> {
        Ok(())
    }
    async fn blocked(&mut self, _: &Connection, _: String) {}
    async fn unblocked(&mut self, _: &Connection) {}
    async fn secret_updated(&mut self, _: &Connection) {}
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `amqp://user:pass@host:port/vhost` to amqprs's arguments (its own URI parser does not
/// percent-decode the vhost, so `%2f` would not mean `/`).
pub fn open_args(url: &str) -> Result<OpenConnectionArguments> {
    let rest = url
        .strip_prefix("amqp://")
        .ok_or_else(|| anyhow!("only amqp:// URLs are supported: {url}"))?;
    let (authority, vhost) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = authority
        .rsplit_once('@')
        .unwrap_or(("guest:guest", authority));
    let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().context("port")?),
        None => (hostport, 5672),
    };
    let vhost = match vhost.split('?').next().unwrap_or("") {
        "" => "/".to_string(),
        v => percent_decode(v),
    };
    Ok(
        OpenConnectionArguments::new(host, port, &percent_decode(user), &percent_decode(pass))
            .virtual_host(&vhost)
            .connection_name("warren-interop amqprs")
            .finish(),
    )
}

async fn connect_url(url: &str) -> Result<Connection> {
    let conn = Connection::open(&open_args(url)?)
        .await
        .map_err(|e| anyhow!("connecting: {e}"))?;
    conn.register_callback(ConnectionEvents)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    Ok(conn)
}

async fn connect(ctx: &Ctx) -> Result<Connection> {
    within("connection.open-ok", connect_url(&ctx.url)).await?
}

/// A channel whose callbacks report to the returned receiver.
async fn channel(conn: &Connection) -> Result<(Channel, UnboundedReceiver<Event>)> {
    let ch = conn
        .open_channel(None)
        .await
        .map_err(|e| anyhow!("opening a channel: {e}"))?;
    let (tx, rx) = unbounded_channel();
    ch.register_callback(Events(tx))
        .await
        .map_err(|e| anyhow!("{e}"))?;
    Ok((ch, rx))
}

fn err(what: &str) -> impl FnOnce(amqprs::error::Error) -> anyhow::Error + '_ {
    move |e| anyhow!("{what}: {e}")
}

async fn declare(ch: &Channel, args: QueueDeclareArguments) -> Result<(String, u32)> {
    let (name, messages, _) = ch
        .queue_declare(args)
        .await
        .map_err(err("queue.declare"))?
        .ok_or_else(|| anyhow!("queue.declare without declare-ok"))?;
    Ok((name, messages))
}

async fn declare_named(ch: &Channel, name: &str) -> Result<String> {
    Ok(declare(ch, QueueDeclareArguments::new(name)).await?.0)
}

async fn declare_exclusive(ch: &Channel) -> Result<String> {
    Ok(declare(ch, QueueDeclareArguments::exclusive_server_named())
        .await?
        .0)
}

async fn declare_exchange(ch: &Channel, name: &str, kind: &str, durable: bool) -> Result<()> {
    let args = ExchangeDeclareArguments::new(name, kind)
        .durable(durable)
        .finish();
    ch.exchange_declare(args)
        .await
        .map_err(err("exchange.declare"))
}

async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str) -> Result<()> {
    ch.queue_bind(QueueBindArguments::new(queue, exchange, key))
        .await
        .map_err(err("queue.bind"))
}

async fn publish_with(
    ch: &Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    props: BasicProperties,
) -> Result<()> {
    ch.basic_publish(
        props,
        body.to_vec(),
        BasicPublishArguments::new(exchange, key),
    )
    .await
    .map_err(err("basic.publish"))
}

async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8]) -> Result<()> {
    publish_with(ch, exchange, key, body, BasicProperties::default()).await
}

async fn consume(
    ch: &Channel,
    queue: &str,
    no_ack: bool,
) -> Result<(String, UnboundedReceiver<ConsumerMessage>)> {
    let args = BasicConsumeArguments::new(queue, "")
        .manual_ack(!no_ack)
        .finish();
    ch.basic_consume_rx(args)
        .await
        .map_err(err("basic.consume"))
}

/// A delivery: (delivery tag, properties, body).
async fn next(
    rx: &mut UnboundedReceiver<ConsumerMessage>,
    what: &str,
) -> Result<(u64, BasicProperties, Vec<u8>)> {
    let m = within(what, rx.recv())
        .await?
        .ok_or_else(|| anyhow!("the consumer ended while waiting for {what}"))?;
    let tag = m
        .deliver
        .map(|d| d.delivery_tag())
        .ok_or_else(|| anyhow!("a delivery without basic.deliver"))?;
    Ok((
        tag,
        m.basic_properties.unwrap_or_default(),
        m.content.unwrap_or_default(),
    ))
}

async fn ack(ch: &Channel, tag: u64) -> Result<()> {
    ch.basic_ack(BasicAckArguments::new(tag, false))
        .await
        .map_err(err("basic.ack"))
}

async fn drain(ch: &Channel, queue: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let args = BasicGetArguments::new(queue).no_ack(true).finish();
    while let Some((_, _, body)) = ch.basic_get(args.clone()).await.map_err(err("basic.get"))? {
        out.push(String::from_utf8_lossy(&body).into_owned());
    }
    Ok(out)
}

/// Tracks publisher confirms reported through [`Event`]s: which sequence numbers are still
/// outstanding, each acked exactly once.
struct Confirms {
    outstanding: BTreeSet<u64>,
    next_seq: u64,
}

impl Confirms {
    async fn select(ch: &Channel) -> Result<Self> {
        ch.confirm_select(ConfirmSelectArguments::default())
            .await
            .map_err(err("confirm.select"))?;
        Ok(Confirms {
            outstanding: BTreeSet::new(),
            next_seq: 1,
        })
    }

    fn published(&mut self) {
        self.outstanding.insert(self.next_seq);
        self.next_seq += 1;
    }

    /// Applies one event; returned messages go to `returns`.
    fn apply(&mut self, event: Event, returns: &mut Vec<Event>) -> Result<()> {
        match event {
            Event::Ack(tag, multiple) => {
                let acked: Vec<u64> = if multiple {
                    self.outstanding.range(..=tag).copied().collect()
                } else {
                    vec![tag]
                };
                if acked.is_empty() || !acked.iter().all(|t| self.outstanding.remove(t)) {
                    bail!("basic.ack {tag} (multiple={multiple}) for nothing outstanding");
                }
                Ok(())
            }
            Event::Nack(tag, _) => bail!("publish {tag} was nacked"),
            r @ Event::Return { .. } => {
                returns.push(r);
                Ok(())
            }
            other => bail!("unexpected {other:?}"),
        }
    }

    /// Waits until every publish so far is acked; returns the basic.returns seen meanwhile.
    async fn wait(&mut self, events: &mut UnboundedReceiver<Event>) -> Result<Vec<Event>> {
        let mut returns = Vec::new();
        while !self.outstanding.is_empty() {
            let event = within("publisher confirms", events.recv())
                .await?
                .ok_or_else(|| anyhow!("the channel closed"))?;
            self.apply(event, &mut returns)?;
        }
        Ok(returns)
    }
}

async fn message_count(ch: &Channel, queue: &str) -> Result<u32> {
    let args = QueueDeclareArguments::new(queue).passive(true).finish();
    Ok(declare(ch, args).await?.1)
}
