//! The six RabbitMQ tutorials with lapin: hello world, work queues, publish/subscribe, routing,
//! topics, RPC (callback queue and direct reply-to).

use super::*;

/// Tutorial 1: "Hello World!" through the default exchange.
pub async fn hello_world(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let ch = channel(&conn).await?;
    let queue = declare(&ch, &ctx.queue("hello"), Default::default()).await?;
    publish(&ch, "", &queue, b"Hello World!").await?;
    let mut consumer = consume(&ch, &queue, true).await?;
    let d = next(&mut consumer, "the message").await?;
    ensure_eq!(d.data, b"Hello World!".to_vec(), "body");
    ensure_eq!(d.routing_key.as_str(), queue.as_str(), "routing key");
    conn.close(200, "bye").await?;
    Ok(())
}

/// Tutorial 2: a durable task queue, persistent tasks, manual acks and prefetch 1, so a slow
/// worker holds one task while a fast one takes the rest (fair dispatch).
pub async fn work_queues(ctx: Arc<Ctx>) -> Result<()> {
    const TASKS: usize = 12;
    let queue = ctx.queue("task_queue");
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut workers = Vec::new();
    for (worker, pause_ms) in [("slow", 400u64), ("fast", 5)] {
        let conn = connect(&ctx).await?;
        let ch = channel(&conn).await?;
        declare(&ch, &queue, durable).await?;
        ch.basic_qos(1, BasicQosOptions::default()).await?;
        let mut consumer = consume(&ch, &queue, false).await?;
        let tx = tx.clone();
        workers.push(tokio::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                let _ = tx.send((worker, d.data.clone()));
                if d.ack(BasicAckOptions::default()).await.is_err() {
                    break;
                }
            }
            drop(conn);
        }));
    }
    let conn = connect(&ctx).await?;
    let ch = channel(&conn).await?;
    declare(&ch, &queue, durable).await?;
    for i in 0..TASKS {
        let props = BasicProperties::default().with_delivery_mode(2);
        let body = format!("task {i}");
        ch.basic_publish("", &queue, Default::default(), body.as_bytes(), props)
            .await?;
    }
    let mut done: HashMap<&str, Vec<String>> = HashMap::new();
    for _ in 0..TASKS {
        let (worker, body) = within("a worker to finish a task", rx.recv())
            .await?
            .ok_or_else(|| anyhow!("the workers stopped"))?;
        done.entry(worker)
            .or_default()
            .push(String::from_utf8_lossy(&body).into_owned());
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
    conn.close(200, "bye").await?;
    Ok(())
}

/// Tutorial 3: a fanout exchange copies every message to each bound queue.
pub async fn publish_subscribe(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let ch = channel(&conn).await?;
    let logs = ctx.exchange("logs");
    ch.exchange_declare(&logs, ExchangeKind::Fanout, Default::default(), no_args())
        .await?;
    let mut consumers = Vec::new();
    for _ in 0..2 {
        let q = declare_exclusive(&ch).await?;
        ch.queue_bind(&q, &logs, "", Default::default(), no_args())
            .await?;
        consumers.push(consume(&ch, &q, true).await?);
    }
    let lines = ["info: one", "warning: two", "error: three"];
    for line in lines {
        publish(&ch, &logs, "ignored", line.as_bytes()).await?;
    }
    for consumer in &mut consumers {
        for line in lines {
            let d = next(consumer, "a log line").await?;
            ensure_eq!(String::from_utf8_lossy(&d.data), line, "log line");
        }
    }
    ch.exchange_delete(&logs, Default::default()).await?;
    conn.close(200, "bye").await?;
    Ok(())
}

/// Tutorial 4: a direct exchange routes by exact key; a queue may bind several keys.
pub async fn routing(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let ch = channel(&conn).await?;
    ch.confirm_select(Default::default()).await?;
    let direct = ctx.exchange("direct_logs");
    ch.exchange_declare(&direct, ExchangeKind::Direct, Default::default(), no_args())
        .await?;
    let errors = declare_exclusive(&ch).await?;
    let all = declare_exclusive(&ch).await?;
    ch.queue_bind(&errors, &direct, "error", Default::default(), no_args())
        .await?;
    for key in ["info", "warning", "error"] {
        ch.queue_bind(&all, &direct, key, Default::default(), no_args())
            .await?;
    }
    for key in ["error", "info", "warning", "debug"] {
        let body = format!("{key} message");
        publish_confirmed(&ch, &direct, key, body.as_bytes(), Default::default()).await?;
    }
    ensure_eq!(
        strings(drain(&ch, &errors).await?),
        vec!["error message"],
        "queue bound to 'error'"
    );
    ensure_eq!(
        strings(drain(&ch, &all).await?),
        vec!["error message", "info message", "warning message"],
        "queue bound to info, warning and error"
    );
    ch.exchange_delete(&direct, Default::default()).await?;
    conn.close(200, "bye").await?;
    Ok(())
}

/// The routing keys of tutorial 5, in publish order.
pub const TOPIC_KEYS: [&str; 10] = [
    "quick.orange.rabbit",
    "lazy.orange.elephant",
    "quick.orange.fox",
    "lazy.brown.fox",
    "lazy.pink.rabbit",
    "quick.brown.fox",
    "quick.orange.new.rabbit",
    "lazy.orange.new.rabbit",
    "orange",
    "lazy",
];

/// What reaches the queue bound with `*.orange.*`.
pub const TOPIC_Q1: [&str; 3] = [
    "quick.orange.rabbit",
    "lazy.orange.elephant",
    "quick.orange.fox",
];

/// What reaches the queue bound with `*.*.rabbit` and `lazy.#` (each message once).
pub const TOPIC_Q2: [&str; 6] = [
    "quick.orange.rabbit",
    "lazy.orange.elephant",
    "lazy.brown.fox",
    "lazy.pink.rabbit",
    "lazy.orange.new.rabbit",
    "lazy",
];

/// Tutorial 5: a topic exchange with `*` and `#` patterns.
pub async fn topics(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let ch = channel(&conn).await?;
    ch.confirm_select(Default::default()).await?;
    let topic = ctx.exchange("topic_logs");
    ch.exchange_declare(&topic, ExchangeKind::Topic, Default::default(), no_args())
        .await?;
    let q1 = declare_exclusive(&ch).await?;
    let q2 = declare_exclusive(&ch).await?;
    ch.queue_bind(&q1, &topic, "*.orange.*", Default::default(), no_args())
        .await?;
    for pattern in ["*.*.rabbit", "lazy.#"] {
        ch.queue_bind(&q2, &topic, pattern, Default::default(), no_args())
            .await?;
    }
    for key in TOPIC_KEYS {
        publish_confirmed(&ch, &topic, key, key.as_bytes(), Default::default()).await?;
    }
    ensure_eq!(
        strings(drain(&ch, &q1).await?),
        TOPIC_Q1.to_vec(),
        "*.orange.*"
    );
    ensure_eq!(
        strings(drain(&ch, &q2).await?),
        TOPIC_Q2.to_vec(),
        "*.*.rabbit + lazy.#"
    );
    ch.exchange_delete(&topic, Default::default()).await?;
    conn.close(200, "bye").await?;
    Ok(())
}

/// The RPC server of tutorial 6: answers fib(n) to each request's reply_to with its
/// correlation_id, acking after replying; reports each request's reply_to.
async fn rpc_server(
    ctx: &Ctx,
    queue: &str,
) -> Result<(
    tokio::task::JoinHandle<()>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
)> {
    let conn = connect(ctx).await?;
    let ch = channel(&conn).await?;
    declare(&ch, queue, Default::default()).await?;
    ch.basic_qos(1, Default::default()).await?;
    let mut requests = consume(&ch, queue, false).await?;
    let (seen_tx, seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Some(Ok(d)) = requests.next().await {
            let n: u64 = String::from_utf8_lossy(&d.data).parse().unwrap_or(0);
            let reply_to = d
                .properties
                .reply_to()
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default();
            let _ = seen_tx.send(reply_to.clone());
            let mut props = BasicProperties::default();
            if let Some(id) = d.properties.correlation_id() {
                props = props.with_correlation_id(id.clone());
            }
            let answer = fib(n).to_string();
            let sent = ch
                .basic_publish("", &reply_to, Default::default(), answer.as_bytes(), props)
                .await;
            if sent.is_err() || d.ack(Default::default()).await.is_err() {
                break;
            }
        }
        drop(conn);
    });
    Ok((task, seen_rx))
}

/// Sends fib requests 0..10 with `reply_to`, reads the answers from `replies`.
async fn rpc_calls(
    ch: &Channel,
    queue: &str,
    reply_to: &str,
    replies: &mut Consumer,
) -> Result<()> {
    let mut pending = HashMap::new();
    for n in 0..10u64 {
        let id = format!("{n}-{}", std::process::id());
        let props = BasicProperties::default()
            .with_reply_to(reply_to.into())
            .with_correlation_id(id.as_str().into());
        ch.basic_publish(
            "",
            queue,
            Default::default(),
            n.to_string().as_bytes(),
            props,
        )
        .await?;
        pending.insert(id, fib(n));
    }
    while !pending.is_empty() {
        let d = next(replies, "an RPC reply").await?;
        let id = d
            .properties
            .correlation_id()
            .as_ref()
            .map(|s| s.to_string())
            .ok_or_else(|| anyhow!("a reply without correlation_id"))?;
        let expected = pending
            .remove(&id)
            .ok_or_else(|| anyhow!("a reply with unknown correlation_id {id:?}"))?;
        ensure_eq!(
            String::from_utf8_lossy(&d.data),
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
    let ch = channel(&conn).await?;
    let callback = declare_exclusive(&ch).await?;
    let mut replies = consume(&ch, &callback, true).await?;
    let result = rpc_calls(&ch, &queue, &callback, &mut replies).await;
    server.abort();
    result
}

/// Tutorial 6 with direct reply-to: the client consumes `amq.rabbitmq.reply-to` (no-ack) and
/// the server sees a rewritten `amq.rabbitmq.reply-to.…` address it can publish to.
pub async fn rpc_direct_reply_to(ctx: Arc<Ctx>) -> Result<()> {
    const REPLY_TO: &str = "amq.rabbitmq.reply-to";
    let queue = ctx.queue("rpc_queue_drt");
    let (server, mut seen) = rpc_server(&ctx, &queue).await?;
    let conn = connect(&ctx).await?;
    let ch = channel(&conn).await?;
    let mut replies = consume(&ch, REPLY_TO, true).await?;
    let result = rpc_calls(&ch, &queue, REPLY_TO, &mut replies).await;
    server.abort();
    result?;
    let reply_to = seen.recv().await.unwrap_or_default();
    if !reply_to.starts_with("amq.rabbitmq.reply-to.") {
        bail!("the server saw reply_to {reply_to:?}, not a rewritten amq.rabbitmq.reply-to.*");
    }
    Ok(())
}
