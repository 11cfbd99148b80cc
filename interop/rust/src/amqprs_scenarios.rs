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

/// Tutorial 1: "Hello World!" through the default exchange.
pub async fn hello_world(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let (ch, _events) = channel(&conn).await?;
    let queue = declare_named(&ch, &ctx.queue("hello")).await?;
    publish(&ch, "", &queue, b"Hello World!").await?;
    let (_, mut rx) = consume(&ch, &queue, true).await?;
    let (_, _, body) = next(&mut rx, "the message").await?;
    ensure_eq!(body, b"Hello World!".to_vec(), "body");
    conn.close().await.map_err(err("connection.close"))?;
    Ok(())
}

/// Tutorial 2: durable queue, persistent tasks, manual ack, prefetch 1: fair dispatch.
pub async fn work_queues(ctx: Arc<Ctx>) -> Result<()> {
    const TASKS: usize = 12;
    let queue = ctx.queue("task_queue");
    let (tx, mut done_rx) = unbounded_channel();
    let mut workers = Vec::new();
    for (worker, pause_ms) in [("slow", 400u64), ("fast", 5)] {
        let conn = connect(&ctx).await?;
        let (ch, _events) = channel(&conn).await?;
        declare(&ch, QueueDeclareArguments::durable_client_named(&queue)).await?;
        ch.basic_qos(BasicQosArguments::new(0, 1, false))
            .await
            .map_err(err("basic.qos"))?;
        let (_, mut rx) = consume(&ch, &queue, false).await?;
        let tx = tx.clone();
        workers.push(tokio::spawn(async move {
            let _keep = (conn, _events);
            while let Some(m) = rx.recv().await {
                let Some(tag) = m.deliver.map(|d| d.delivery_tag()) else {
                    break;
                };
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                let body = String::from_utf8_lossy(&m.content.unwrap_or_default()).into_owned();
                let _ = tx.send((worker, body));
                if ack(&ch, tag).await.is_err() {
                    break;
                }
            }
        }));
    }
    let conn = connect(&ctx).await?;
    let (ch, _events) = channel(&conn).await?;
    for i in 0..TASKS {
        let props = BasicProperties::default().with_persistence(true).finish();
        publish_with(&ch, "", &queue, format!("task {i}").as_bytes(), props).await?;
    }
    let mut done: HashMap<&str, Vec<String>> = HashMap::new();
    for _ in 0..TASKS {
        let (worker, body) = within("a worker to finish a task", done_rx.recv())
            .await?
            .ok_or_else(|| anyhow!("the workers stopped"))?;
        done.entry(worker).or_default().push(body);
    }
    for w in &workers {
        w.abort();
    }
    let slow = done.get("slow").map_or(0, Vec::len);
    let fast = done.get("fast").map_or(0, Vec::len);
    let mut all: Vec<String> = done.into_values().flatten().collect();
    all.sort_by_key(|s| s[5..].parse::<usize>().unwrap_or(usize::MAX));
    let expected: Vec<String> = (0..TASKS).map(|i| format!("task {i}")).collect();
    ensure_eq!(all, expected, "every task done exactly once");
    if slow > 2 || fast < TASKS - 2 {
        bail!("no fair dispatch with prefetch 1: slow worker did {slow} tasks, fast one {fast}");
    }
    conn.close().await.map_err(err("connection.close"))?;
    Ok(())
}

/// Tutorial 3: a fanout exchange copies every message to each bound queue.
pub async fn publish_subscribe(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let (ch, _events) = channel(&conn).await?;
    let logs = ctx.exchange("logs");
    declare_exchange(&ch, &logs, "fanout", false).await?;
    let mut consumers = Vec::new();
    for _ in 0..2 {
        let q = declare_exclusive(&ch).await?;
        bind(&ch, &q, &logs, "").await?;
        consumers.push(consume(&ch, &q, true).await?.1);
    }
    let lines = ["info: one", "warning: two", "error: three"];
    for line in lines {
        publish(&ch, &logs, "ignored", line.as_bytes()).await?;
    }
    for rx in &mut consumers {
        for line in lines {
            let (_, _, body) = next(rx, "a log line").await?;
            ensure_eq!(String::from_utf8_lossy(&body), line, "log line");
        }
    }
    ch.exchange_delete(ExchangeDeleteArguments::new(&logs))
        .await
        .map_err(err("exchange.delete"))?;
    conn.close().await.map_err(err("connection.close"))?;
    Ok(())
}

/// Publishes each key (body = key or "<key> message") with confirms and waits for them.
async fn publish_keys_confirmed(
    ch: &Channel,
    events: &mut UnboundedReceiver<Event>,
    confirms: &mut Confirms,
    exchange: &str,
    keys: &[&str],
    suffix: &str,
) -> Result<()> {
    for key in keys {
        publish(ch, exchange, key, format!("{key}{suffix}").as_bytes()).await?;
        confirms.published();
    }
    let returns = confirms.wait(events).await?;
    ensure_eq!(returns.len(), 0, "returned messages");
    Ok(())
}

/// Tutorial 4: a direct exchange routes by exact key; a queue may bind several keys.
pub async fn routing(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let (ch, mut events) = channel(&conn).await?;
    let mut confirms = Confirms::select(&ch).await?;
    let direct = ctx.exchange("direct_logs");
    declare_exchange(&ch, &direct, "direct", false).await?;
    let errors = declare_exclusive(&ch).await?;
    let all = declare_exclusive(&ch).await?;
    bind(&ch, &errors, &direct, "error").await?;
    for key in ["info", "warning", "error"] {
        bind(&ch, &all, &direct, key).await?;
    }
    let keys = ["error", "info", "warning", "debug"];
    publish_keys_confirmed(&ch, &mut events, &mut confirms, &direct, &keys, " message").await?;
    ensure_eq!(
        drain(&ch, &errors).await?,
        vec!["error message"],
        "queue bound to 'error'"
    );
    ensure_eq!(
        drain(&ch, &all).await?,
        vec!["error message", "info message", "warning message"],
        "queue bound to info, warning and error"
    );
    ch.exchange_delete(ExchangeDeleteArguments::new(&direct))
        .await
        .map_err(err("exchange.delete"))?;
    conn.close().await.map_err(err("connection.close"))?;
    Ok(())
}

/// Tutorial 5: a topic exchange with `*` and `#` patterns.
pub async fn topics(ctx: Arc<Ctx>) -> Result<()> {
    use crate::lapin_scenarios::{TOPIC_KEYS, TOPIC_Q1, TOPIC_Q2};
    let conn = connect(&ctx).await?;
    let (ch, mut events) = channel(&conn).await?;
    let mut confirms = Confirms::select(&ch).await?;
    let topic = ctx.exchange("topic_logs");
    declare_exchange(&ch, &topic, "topic", false).await?;
    let q1 = declare_exclusive(&ch).await?;
    let q2 = declare_exclusive(&ch).await?;
    bind(&ch, &q1, &topic, "*.orange.*").await?;
    for p in ["*.*.rabbit", "lazy.#"] {
        bind(&ch, &q2, &topic, p).await?;
    }
    publish_keys_confirmed(&ch, &mut events, &mut confirms, &topic, &TOPIC_KEYS, "").await?;
    ensure_eq!(drain(&ch, &q1).await?, TOPIC_Q1.to_vec(), "*.orange.*");
    ensure_eq!(
        drain(&ch, &q2).await?,
        TOPIC_Q2.to_vec(),
        "*.*.rabbit + lazy.#"
    );
    ch.exchange_delete(ExchangeDeleteArguments::new(&topic))
        .await
        .map_err(err("exchange.delete"))?;
    conn.close().await.map_err(err("connection.close"))?;
    Ok(())
}

/// Tutorial 6's server: answers fib(n) to reply_to with the correlation_id, then acks; reports
/// the reply_to it saw.
async fn rpc_server(
    ctx: &Ctx,
    queue: &str,
) -> Result<(tokio::task::JoinHandle<()>, UnboundedReceiver<String>)> {
    let conn = connect(ctx).await?;
    let (ch, events) = channel(&conn).await?;
    declare_named(&ch, queue).await?;
    ch.basic_qos(BasicQosArguments::new(0, 1, false))
        .await
        .map_err(err("basic.qos"))?;
    let (_, mut requests) = consume(&ch, queue, false).await?;
    let (seen_tx, seen_rx) = unbounded_channel();
    let task = tokio::spawn(async move {
        let _keep = (conn, events);
        while let Some(m) = requests.recv().await {
            let Some(tag) = m.deliver.map(|d| d.delivery_tag()) else {
                break;
            };
            let props = m.basic_properties.unwrap_or_default();
            let n: u64 = String::from_utf8_lossy(&m.content.unwrap_or_default())
                .parse()
                .unwrap_or(0);
            let reply_to = props.reply_to().cloned().unwrap_or_default();
            let _ = seen_tx.send(reply_to.clone());
            let mut reply = BasicProperties::default();
            if let Some(id) = props.correlation_id() {
                reply.with_correlation_id(id);
            }
            let answer = fib(n).to_string();
            if publish_with(&ch, "", &reply_to, answer.as_bytes(), reply.finish())
                .await
                .is_err()
                || ack(&ch, tag).await.is_err()
            {
                break;
            }
        }
    });
    Ok((task, seen_rx))
}

async fn rpc_calls(
    ch: &Channel,
    queue: &str,
    reply_to: &str,
    replies: &mut UnboundedReceiver<ConsumerMessage>,
) -> Result<()> {
    let mut pending = HashMap::new();
    for n in 0..10u64 {
        let id = format!("{n}-{}", std::process::id());
        let props = BasicProperties::default()
            .with_reply_to(reply_to)
            .with_correlation_id(&id)
            .finish();
        publish_with(ch, "", queue, n.to_string().as_bytes(), props).await?;
        pending.insert(id, fib(n));
    }
    while !pending.is_empty() {
        let (_, props, body) = next(replies, "an RPC reply").await?;
        let id = props
            .correlation_id()
            .cloned()
            .ok_or_else(|| anyhow!("a reply without correlation_id"))?;
        let expected = pending
            .remove(&id)
            .ok_or_else(|| anyhow!("a reply with unknown correlation_id {id:?}"))?;
        ensure_eq!(
            String::from_utf8_lossy(&body),
            expected.to_string(),
            "fib answer"
        );
    }
    Ok(())
}

/// Tutorial 6: RPC with an exclusive callback queue and correlation ids.
pub async fn rpc(ctx: Arc<Ctx>) -> Result<()> {
    let queue = ctx.queue("rpc_queue");
    let (server, _) = rpc_server(&ctx, &queue).await?;
    let conn = connect(&ctx).await?;
    let (ch, _events) = channel(&conn).await?;
    let callback = declare_exclusive(&ch).await?;
    let (_, mut replies) = consume(&ch, &callback, true).await?;
    let result = rpc_calls(&ch, &queue, &callback, &mut replies).await;
    server.abort();
    result
}

/// Tutorial 6 with direct reply-to (`amq.rabbitmq.reply-to`, consumed no-ack).
pub async fn rpc_direct_reply_to(ctx: Arc<Ctx>) -> Result<()> {
    const REPLY_TO: &str = "amq.rabbitmq.reply-to";
    let queue = ctx.queue("rpc_queue_drt");
    let (server, mut seen) = rpc_server(&ctx, &queue).await?;
    let conn = connect(&ctx).await?;
    let (ch, _events) = channel(&conn).await?;
    let (_, mut replies) = consume(&ch, REPLY_TO, true).await?;
    let result = rpc_calls(&ch, &queue, REPLY_TO, &mut replies).await;
    server.abort();
    result?;
    let reply_to = seen.recv().await.unwrap_or_default();
    if !reply_to.starts_with("amq.rabbitmq.reply-to.") {
        bail!("the server saw reply_to {reply_to:?}, not a rewritten amq.rabbitmq.reply-to.*");
    }
    Ok(())
}

async fn message_count(ch: &Channel, queue: &str) -> Result<u32> {
    let args = QueueDeclareArguments::new(queue).passive(true).finish();
    Ok(declare(ch, args).await?.1)
}

/// Publisher confirms, waiting for each one.
pub async fn confirms_single(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let (ch, mut events) = channel(&conn).await?;
    let mut confirms = Confirms::select(&ch).await?;
    let queue = declare_named(&ch, &ctx.queue("confirms_single")).await?;
    for i in 0..50u32 {
        publish(&ch, "", &queue, &i.to_be_bytes()).await?;
        confirms.published();
        confirms.wait(&mut events).await?;
    }
    ensure_eq!(
        message_count(&ch, &queue).await?,
        50,
        "messages in the queue"
    );
    conn.close().await.map_err(err("connection.close"))?;
    Ok(())
}

/// Publisher confirms, waiting once per batch of 100.
pub async fn confirms_batch(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let (ch, mut events) = channel(&conn).await?;
    let mut confirms = Confirms::select(&ch).await?;
    let queue = declare_named(&ch, &ctx.queue("confirms_batch")).await?;
    for batch in 0..5u32 {
        for i in 0..100u32 {
            publish(&ch, "", &queue, &(batch * 100 + i).to_be_bytes()).await?;
            confirms.published();
        }
        confirms.wait(&mut events).await?;
    }
    ensure_eq!(
        message_count(&ch, &queue).await?,
        500,
        "messages in the queue"
    );
    conn.close().await.map_err(err("connection.close"))?;
    Ok(())
}

/// Publisher confirms handled asynchronously: acks are applied as they arrive, interleaved with
/// publishing, and every publish is acked exactly once.
pub async fn confirms_async(ctx: Arc<Ctx>) -> Result<()> {
    const N: u32 = 2000;
    let conn = connect(&ctx).await?;
    let (ch, mut events) = channel(&conn).await?;
    let mut confirms = Confirms::select(&ch).await?;
    let queue = declare_named(&ch, &ctx.queue("confirms_async")).await?;
    let mut returns = Vec::new();
    let mut acks_while_publishing = 0;
    for i in 0..N {
        publish(&ch, "", &queue, &i.to_be_bytes()).await?;
        confirms.published();
        while let Ok(event) = events.try_recv() {
            confirms.apply(event, &mut returns)?;
            acks_while_publishing += 1;
        }
    }
    returns.extend(confirms.wait(&mut events).await?);
    ensure_eq!(returns.len(), 0, "returned messages");
    ensure_eq!(
        message_count(&ch, &queue).await?,
        N,
        "messages in the queue"
    );
    if acks_while_publishing == 0 {
        eprintln!("amqprs confirms_async: no ack arrived before the last publish");
    }
    conn.close().await.map_err(err("connection.close"))?;
    Ok(())
}

/// Deleting a consumed queue sends basic.cancel: amqprs's cancel callback sees it, the consumer
/// ends, and the channel stays usable.
pub async fn consumer_cancel_on_delete(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let (ch, mut events) = channel(&conn).await?;
    let queue = declare_named(&ch, &ctx.queue("cancel_me")).await?;
    let (tag, mut rx) = consume(&ch, &queue, false).await?;
    let (other, _other_events) = channel(&conn).await?;
    other
        .queue_delete(QueueDeleteArguments::new(&queue))
        .await
        .map_err(err("queue.delete"))?;
    match within("basic.cancel from the broker", events.recv()).await? {
        Some(Event::Cancel(t)) => ensure_eq!(t, tag, "cancelled consumer tag"),
        other => bail!("expected basic.cancel, got {other:?}"),
    }
    if let Some(m) = within("the consumer to end", rx.recv()).await? {
        bail!("a delivery after the cancel: {:?}", m.deliver);
    }
    if !ch.is_open() {
        bail!("the channel closed after basic.cancel");
    }
    declare_named(&ch, &ctx.queue("after_cancel"))
        .await
        .context("using the channel after the cancel")?;
    conn.close().await.map_err(err("connection.close"))?;
    Ok(())
}

/// A mandatory publish with no route comes back as basic.return 312 NO_ROUTE, then is acked.
pub async fn mandatory_return(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let (ch, mut events) = channel(&conn).await?;
    let mut confirms = Confirms::select(&ch).await?;
    let nowhere = ctx.queue("no_such_queue");
    for exchange in ["", "amq.direct"] {
        let props = BasicProperties::default().with_message_id("m-1").finish();
        let args = BasicPublishArguments::new(exchange, &nowhere)
            .mandatory(true)
            .finish();
        ch.basic_publish(props, b"undeliverable".to_vec(), args)
            .await
            .map_err(err("basic.publish"))?;
        confirms.published();
        let returns = confirms.wait(&mut events).await?;
        match returns.as_slice() {
            [Event::Return {
                code,
                text,
                exchange: x,
                routing_key,
                body,
                message_id,
            }] => {
                ensure_eq!(*code, 312, "reply code");
                ensure_eq!(text.as_str(), "NO_ROUTE", "reply text");
                ensure_eq!(x.as_str(), exchange, "exchange");
                ensure_eq!(routing_key.as_str(), nowhere.as_str(), "routing key");
                ensure_eq!(body.as_slice(), b"undeliverable", "body");
                ensure_eq!(message_id.as_deref(), Some("m-1"), "message_id");
            }
            other => bail!("expected one basic.return before the ack, got {other:?}"),
        }
    }
    conn.close().await.map_err(err("connection.close"))?;
    Ok(())
}

/// Redeclaring a queue with other properties closes only that channel with 406.
pub async fn redeclare_406_channel_only(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let (ch1, _events1) = channel(&conn).await?;
    let queue = declare_named(&ch1, &ctx.queue("redeclare")).await?;
    let (ch2, mut events2) = channel(&conn).await?;
    let durable = QueueDeclareArguments::durable_client_named(&queue);
    if ch2.queue_declare(durable).await.is_ok() {
        bail!("redeclaring a transient queue as durable succeeded");
    }
    match within("channel.close", events2.recv()).await? {
        Some(Event::Close(code, text)) => {
            ensure_eq!(code, 406, "reply code");
            if !text.starts_with("PRECONDITION_FAILED - inequivalent arg 'durable'") {
                bail!("reply text {text:?}");
            }
        }
        other => bail!("expected channel.close, got {other:?}"),
    }
    if ch2.is_open() {
        bail!("the channel that failed is still open");
    }
    if !conn.is_open() {
        bail!("the connection closed");
    }
    publish(&ch1, "", &queue, b"still here").await?;
    let got = within("the message on the other channel", async {
        loop {
            let found = drain(&ch1, &queue).await?;
            if !found.is_empty() {
                return Ok::<_, anyhow::Error>(found);
            }
        }
    })
    .await??;
    ensure_eq!(got, vec!["still here"], "messages on the surviving channel");
    let (ch3, _events3) = channel(&conn).await?;
    declare_named(&ch3, &queue)
        .await
        .context("a new channel on the same connection")?;
    conn.close().await.map_err(err("connection.close"))?;
    Ok(())
}

/// Multi-MiB bodies (many body frames) and bodies at the frame boundary arrive intact.
pub async fn large_message(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let (ch, mut events) = channel(&conn).await?;
    let mut confirms = Confirms::select(&ch).await?;
    let queue = declare_named(&ch, &ctx.queue("large")).await?;
    for (i, size) in crate::LARGE_SIZES.into_iter().enumerate() {
        publish(&ch, "", &queue, &pattern(size, i as u8)).await?;
        confirms.published();
    }
    confirms.wait(&mut events).await?;
    let (_, mut rx) = consume(&ch, &queue, false).await?;
    for (i, size) in crate::LARGE_SIZES.into_iter().enumerate() {
        let (tag, _, body) = next(&mut rx, "a large message").await?;
        ensure_eq!(body.len(), size, "body length");
        if body != pattern(size, i as u8) {
            bail!("the body of {size} bytes came back different");
        }
        ack(&ch, tag).await?;
    }
    conn.close().await.map_err(err("connection.close"))?;
    Ok(())
}

fn short(s: &str) -> ShortStr {
    s.try_into().expect("short string")
}

/// A header table with every field type amqprs writes (its FieldValue has exactly RabbitMQ's
/// type letters), nested in a table and an array too.
pub fn all_field_types() -> FieldTable {
    let long = |s: &str| -> LongStr { s.try_into().expect("long string") };
    let scalars: Vec<(&str, FieldValue)> = vec![
        ("bool", FieldValue::t(true)),
        ("i8", FieldValue::b(-8)),
        ("u8", FieldValue::B(200)),
        ("i16", FieldValue::s(-1600)),
        ("u16", FieldValue::u(65_000)),
        ("i32", FieldValue::I(-320_000)),
        ("u32", FieldValue::i(4_000_000_000)),
        ("i64", FieldValue::l(-6_400_000_000_000)),
        ("f32", FieldValue::f(1.5)),
        ("f64", FieldValue::d(-2.25e100)),
        ("decimal", FieldValue::D(DecimalValue::new(2, 12345))),
        ("string", FieldValue::S(long("héllo wörld"))),
        ("empty", FieldValue::S(long(""))),
        ("timestamp", FieldValue::T(1_700_000_000)),
        (
            "bytes",
            FieldValue::x(ByteArray::try_from(vec![0u8, 1, 254, 255]).expect("bytes")),
        ),
        ("void", FieldValue::V),
    ];
    let mut table = FieldTable::new();
    let mut nested = FieldTable::new();
    let mut array = Vec::new();
    for (k, v) in scalars {
        table.insert(short(k), v.clone());
        nested.insert(short(k), v.clone());
        array.push(v);
    }
    table.insert(short("table"), FieldValue::F(nested));
    table.insert(
        short("array"),
        FieldValue::A(FieldArray::try_from(array).expect("array")),
    );
    table.insert(short("empty_array"), FieldValue::A(FieldArray::new()));
    table.insert(short("empty_table"), FieldValue::F(FieldTable::new()));
    table
}

/// Every basic property and every header field type reads back intact.
pub async fn headers_roundtrip(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let (ch, mut events) = channel(&conn).await?;
    let mut confirms = Confirms::select(&ch).await?;
    let queue = declare_named(&ch, &ctx.queue("headers")).await?;
    let headers = all_field_types();
    let props = BasicProperties::default()
        .with_content_type("application/json")
        .with_content_encoding("gzip")
        .with_headers(headers.clone())
        .with_delivery_mode(2)
        .with_priority(7)
        .with_correlation_id("corr-1")
        .with_reply_to("reply.queue")
        .with_expiration("600000")
        .with_message_id("msg-1")
        .with_timestamp(1_700_000_123)
        .with_message_type("order.created")
        .with_user_id("guest")
        .with_app_id("warren-interop")
        .with_cluster_id("cluster-a")
        .finish();
    publish_with(&ch, "", &queue, b"{}", props.clone()).await?;
    confirms.published();
    confirms.wait(&mut events).await?;
    let (_, got, _) = ch
        .basic_get(BasicGetArguments::new(&queue).no_ack(true).finish())
        .await
        .map_err(err("basic.get"))?
        .ok_or_else(|| anyhow!("the message is not in the queue"))?;
    let view = |p: &BasicProperties| {
        format!(
            "{:?} {:?}",
            (
                p.content_type(),
                p.content_encoding(),
                p.delivery_mode(),
                p.priority(),
                p.correlation_id(),
                p.reply_to(),
                p.expiration(),
            ),
            (
                p.message_id(),
                p.timestamp(),
                p.message_type(),
                p.user_id(),
                p.app_id(),
                p.cluster_id(),
            )
        )
    };
    ensure_eq!(view(&got), view(&props), "basic properties");
    let got_headers = got
        .headers()
        .ok_or_else(|| anyhow!("the headers are missing"))?;
    for (k, v) in headers.as_ref() {
        match got_headers.get(k) {
            Some(g) if g == v => {}
            other => bail!("header {k}: got {other:?}, expected {v:?}"),
        }
    }
    ensure_eq!(
        got_headers.as_ref().len(),
        headers.as_ref().len(),
        "header count"
    );
    conn.close().await.map_err(err("connection.close"))?;
    Ok(())
}

/// Durable exchange, queue, binding and persistent messages survive a broker restart; the
/// client reconnects and finds them (the transient message is gone).
pub async fn restart_durable(ctx: Arc<Ctx>) -> Result<()> {
    let Some(restart) = ctx.restart.clone() else {
        return Err(Skip("BROKER_RESTART is not set".into()).into());
    };
    let exchange = ctx.exchange("durable");
    let queue = ctx.queue("durable");
    let conn = connect(&ctx).await?;
    let (ch, mut events) = channel(&conn).await?;
    let mut confirms = Confirms::select(&ch).await?;
    declare_exchange(&ch, &exchange, "direct", true).await?;
    declare(&ch, QueueDeclareArguments::durable_client_named(&queue)).await?;
    bind(&ch, &queue, &exchange, "k").await?;
    let persistent = BasicProperties::default().with_persistence(true).finish();
    for i in 0..20 {
        let body = format!("persistent {i}");
        publish_with(&ch, &exchange, "k", body.as_bytes(), persistent.clone()).await?;
        confirms.published();
    }
    publish(&ch, &exchange, "k", b"transient").await?;
    confirms.published();
    confirms.wait(&mut events).await?;
    restart().await.context("restarting the broker")?;
    if within("the old connection to notice", async {
        while conn.is_open() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .is_err()
    {
        bail!("the connection opened before the restart still looks open");
    }
    let conn = retry_connect(|| connect_url(&ctx.url)).await?;
    let (ch, _events) = channel(&conn).await?;
    let passive = ExchangeDeclareArguments::new(&exchange, "direct")
        .durable(true)
        .passive(true)
        .finish();
    ch.exchange_declare(passive)
        .await
        .map_err(err("the durable exchange after the restart"))?;
    ensure_eq!(
        message_count(&ch, &queue).await?,
        20,
        "messages in the durable queue after the restart"
    );
    publish(&ch, &exchange, "k", b"after restart").await?;
    let mut expected: Vec<String> = (0..20).map(|i| format!("persistent {i}")).collect();
    expected.push("after restart".into());
    let got = within("the messages", async {
        let mut got = Vec::new();
        while got.len() < expected.len() {
            got.extend(drain(&ch, &queue).await?);
        }
        Ok::<_, anyhow::Error>(got)
    })
    .await??;
    ensure_eq!(
        got,
        expected,
        "messages after the restart (the binding survived too)"
    );
    conn.close().await.map_err(err("connection.close"))?;
    Ok(())
}
