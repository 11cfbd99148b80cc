//! The scenarios beyond the tutorials with amqprs: publisher confirms, consumer cancellation,
//! returns, a 406 that closes only its channel, large messages, headers, and a broker restart.

use super::*;

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
