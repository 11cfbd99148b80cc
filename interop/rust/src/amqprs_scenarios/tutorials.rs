//! The six RabbitMQ tutorials with amqprs: hello world, work queues, publish/subscribe, routing,
//! topics, RPC (callback queue and direct reply-to).

use super::*;

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
