//! The scenarios beyond the tutorials with lapin: publisher confirms, consumer cancellation,
//! returns, a 406 that closes only its channel, large messages, headers, and a broker restart.

use super::*;

/// Publisher confirms, waiting for each one before the next publish.
pub async fn confirms_single(ctx: Arc<Ctx>) -> Result<()> {
    let (conn, ch, queue) = confirm_channel(&ctx, "confirms_single").await?;
    for i in 0..50u32 {
        publish_confirmed(&ch, "", &queue, &i.to_be_bytes(), Default::default()).await?;
    }
    ensure_eq!(
        message_count(&ch, &queue).await?,
        50,
        "messages in the queue"
    );
    conn.close(200, "bye").await?;
    Ok(())
}

/// Publisher confirms, waiting once per batch of 100.
pub async fn confirms_batch(ctx: Arc<Ctx>) -> Result<()> {
    let (conn, ch, queue) = confirm_channel(&ctx, "confirms_batch").await?;
    for batch in 0..5u32 {
        let mut confirms = Vec::new();
        for i in 0..100u32 {
            let body = (batch * 100 + i).to_be_bytes();
            confirms.push(
                ch.basic_publish("", &queue, Default::default(), &body, Default::default())
                    .await?,
            );
        }
        let returned = within("the batch's confirms", ch.wait_for_confirms()).await??;
        ensure_eq!(returned.len(), 0, "returned messages");
        for c in confirms {
            if !c.await?.is_ack() {
                bail!("a message of batch {batch} was nacked");
            }
        }
    }
    ensure_eq!(
        message_count(&ch, &queue).await?,
        500,
        "messages in the queue"
    );
    conn.close(200, "bye").await?;
    Ok(())
}

/// Publisher confirms handled asynchronously: a task collects confirms as they arrive while the
/// publisher goes on; every publish is acked once.
pub async fn confirms_async(ctx: Arc<Ctx>) -> Result<()> {
    const N: u32 = 2000;
    let (conn, ch, queue) = confirm_channel(&ctx, "confirms_async").await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let collector = tokio::spawn(async move {
        let mut acked = 0u32;
        while let Some(confirm) = rx.recv().await {
            let confirm: lapin::publisher_confirm::PublisherConfirm = confirm;
            match confirm.await {
                Ok(c) if c.is_ack() => acked += 1,
                other => return Err(anyhow!("a publish was not acked: {other:?}")),
            }
        }
        Ok(acked)
    });
    for i in 0..N {
        let c = ch
            .basic_publish(
                "",
                &queue,
                Default::default(),
                &i.to_be_bytes(),
                Default::default(),
            )
            .await?;
        tx.send(c)
            .map_err(|_| anyhow!("the confirm collector stopped"))?;
    }
    drop(tx);
    let acked = within("every confirm", collector).await???;
    ensure_eq!(acked, N, "acked publishes");
    ensure_eq!(
        message_count(&ch, &queue).await?,
        N,
        "messages in the queue"
    );
    conn.close(200, "bye").await?;
    Ok(())
}

/// Deleting a queue with a consumer sends basic.cancel (consumer_cancel_notify): lapin ends the
/// consumer's stream, and the channel stays open.
pub async fn consumer_cancel_on_delete(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let ch = channel(&conn).await?;
    let queue = declare(&ch, &ctx.queue("cancel_me"), Default::default()).await?;
    let mut consumer = consume(&ch, &queue, false).await?;
    let other = channel(&conn).await?;
    other.queue_delete(&queue, Default::default()).await?;
    match within("basic.cancel from the broker", consumer.next()).await? {
        None => {}
        Some(d) => bail!("expected the consumer to be cancelled, got {d:?}"),
    }
    if !ch.status().connected() {
        bail!("the consumer's channel closed after basic.cancel");
    }
    declare(&ch, &ctx.queue("after_cancel"), Default::default())
        .await
        .context("using the channel after the cancel")?;
    conn.close(200, "bye").await?;
    Ok(())
}

/// A mandatory publish with no route comes back as basic.return 312 NO_ROUTE before its ack.
pub async fn mandatory_return(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let ch = channel(&conn).await?;
    ch.confirm_select(Default::default()).await?;
    let mandatory = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    let nowhere = ctx.queue("no_such_queue");
    for (exchange, key) in [("", nowhere.as_str()), ("amq.direct", nowhere.as_str())] {
        let props = BasicProperties::default().with_message_id("m-1".into());
        let confirm = ch
            .basic_publish(exchange, key, mandatory, b"undeliverable", props)
            .await?;
        let returned = match within("the confirm", confirm).await?? {
            Confirmation::Ack(Some(m)) => m,
            other => bail!("expected an ack with a returned message, got {other:?}"),
        };
        ensure_eq!(returned.reply_code, 312, "reply code");
        ensure_eq!(returned.reply_text.as_str(), "NO_ROUTE", "reply text");
        ensure_eq!(returned.delivery.exchange.as_str(), exchange, "exchange");
        ensure_eq!(returned.delivery.routing_key.as_str(), key, "routing key");
        ensure_eq!(returned.delivery.data, b"undeliverable".to_vec(), "body");
        ensure_eq!(
            returned
                .delivery
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.as_str()),
            Some("m-1"),
            "message_id"
        );
    }
    conn.close(200, "bye").await?;
    Ok(())
}

/// Redeclaring a queue with other properties closes only that channel with 406.
pub async fn redeclare_406_channel_only(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let ch1 = channel(&conn).await?;
    let queue = declare(&ch1, &ctx.queue("redeclare"), Default::default()).await?;
    let ch2 = channel(&conn).await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let err = match ch2.queue_declare(&queue, durable, no_args()).await {
        Ok(_) => bail!("redeclaring a transient queue as durable succeeded"),
        Err(e) => e,
    };
    match &err {
        lapin::Error::ProtocolError(e) => {
            ensure_eq!(e.get_id(), 406, "reply code");
            let text = e.get_message().to_string();
            if !text.starts_with("PRECONDITION_FAILED - inequivalent arg 'durable'") {
                bail!("reply text {text:?}");
            }
        }
        other => bail!("expected a 406 channel close, got {other}"),
    }
    if ch2.status().connected() {
        bail!("the channel that failed is still open");
    }
    if !conn.status().connected() {
        bail!("the connection closed");
    }
    publish(&ch1, "", &queue, b"still here").await?;
    let got = within("basic.get on the other channel", async {
        loop {
            if let Some(m) = ch1
                .basic_get(&queue, BasicGetOptions { no_ack: true })
                .await?
            {
                return Ok::<_, lapin::Error>(m.delivery.data);
            }
        }
    })
    .await??;
    ensure_eq!(got, b"still here".to_vec(), "body on the surviving channel");
    let ch3 = channel(&conn).await?;
    declare(&ch3, &queue, Default::default())
        .await
        .context("a new channel on the same connection")?;
    conn.close(200, "bye").await?;
    Ok(())
}

/// Bodies of several MiB (many body frames), and at the frame boundary, arrive intact.
pub async fn large_message(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let ch = channel(&conn).await?;
    ch.confirm_select(Default::default()).await?;
    let queue = declare(&ch, &ctx.queue("large"), Default::default()).await?;
    for (i, size) in crate::LARGE_SIZES.into_iter().enumerate() {
        publish_confirmed(&ch, "", &queue, &pattern(size, i as u8), Default::default()).await?;
    }
    let mut consumer = consume(&ch, &queue, false).await?;
    for (i, size) in crate::LARGE_SIZES.into_iter().enumerate() {
        let d = next(&mut consumer, "a large message").await?;
        ensure_eq!(d.data.len(), size, "body length");
        if d.data != pattern(size, i as u8) {
            bail!("the body of {size} bytes came back different");
        }
        d.ack(Default::default()).await?;
    }
    conn.close(200, "bye").await?;
    Ok(())
}

/// A header table with every field type lapin writes faithfully (not `LongLongUInt`, written as
/// `l` and read back signed, nor the short string, which has no type letter in RabbitMQ's
/// reading), nested in a table and an array too.
pub fn all_field_types() -> FieldTable {
    let scalars: Vec<(&str, AMQPValue)> = vec![
        ("bool", AMQPValue::Boolean(true)),
        ("i8", AMQPValue::ShortShortInt(-8)),
        ("u8", AMQPValue::ShortShortUInt(200)),
        ("i16", AMQPValue::ShortInt(-1600)),
        ("u16", AMQPValue::ShortUInt(65_000)),
        ("i32", AMQPValue::LongInt(-320_000)),
        ("u32", AMQPValue::LongUInt(4_000_000_000)),
        ("i64", AMQPValue::LongLongInt(-6_400_000_000_000)),
        ("f32", AMQPValue::Float(1.5)),
        ("f64", AMQPValue::Double(-2.25e100)),
        (
            "decimal",
            AMQPValue::DecimalValue(DecimalValue {
                scale: 2,
                value: 12345,
            }),
        ),
        (
            "string",
            AMQPValue::LongString(LongString::from("héllo wörld")),
        ),
        ("empty", AMQPValue::LongString(LongString::from(""))),
        ("timestamp", AMQPValue::Timestamp(1_700_000_000)),
        (
            "bytes",
            AMQPValue::ByteArray(ByteArray::from(vec![0u8, 1, 254, 255])),
        ),
        ("void", AMQPValue::Void),
    ];
    let mut table = FieldTable::default();
    let mut nested = FieldTable::default();
    let mut array = FieldArray::default();
    for (k, v) in scalars {
        table.insert(k.into(), v.clone());
        nested.insert(k.into(), v.clone());
        array.push(v);
    }
    table.insert("table".into(), AMQPValue::FieldTable(nested));
    table.insert("array".into(), AMQPValue::FieldArray(array));
    table.insert(
        "empty_array".into(),
        AMQPValue::FieldArray(FieldArray::default()),
    );
    table.insert(
        "empty_table".into(),
        AMQPValue::FieldTable(FieldTable::default()),
    );
    table
}

/// Every basic property and every header field type reads back intact.
pub async fn headers_roundtrip(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let ch = channel(&conn).await?;
    ch.confirm_select(Default::default()).await?;
    let queue = declare(&ch, &ctx.queue("headers"), Default::default()).await?;
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("gzip".into())
        .with_headers(all_field_types())
        .with_delivery_mode(2)
        .with_priority(7)
        .with_correlation_id("corr-1".into())
        .with_reply_to("reply.queue".into())
        .with_expiration("600000".into())
        .with_message_id("msg-1".into())
        .with_timestamp(1_700_000_123)
        .with_type("order.created".into())
        .with_user_id("guest".into())
        .with_app_id("warren-interop".into())
        .with_cluster_id("cluster-a".into());
    publish_confirmed(&ch, "", &queue, b"{}", props.clone()).await?;
    let m = ch
        .basic_get(&queue, BasicGetOptions { no_ack: true })
        .await?
        .ok_or_else(|| anyhow!("the message is not in the queue"))?;
    if m.delivery.properties != props {
        let sent = format!("{props:?}");
        let got = format!("{:?}", m.delivery.properties);
        bail!("properties differ:\n sent {sent}\n got  {got}");
    }
    conn.close(200, "bye").await?;
    Ok(())
}

/// A durable exchange, queue and binding and persistent messages survive a broker restart; the
/// client reconnects and finds them (the transient message is gone).
pub async fn restart_durable(ctx: Arc<Ctx>) -> Result<()> {
    let Some(restart) = ctx.restart.clone() else {
        return Err(Skip("BROKER_RESTART is not set".into()).into());
    };
    let exchange = ctx.exchange("durable");
    let queue = ctx.queue("durable");
    let durable_q = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let durable_x = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let conn = connect(&ctx).await?;
    let ch = channel(&conn).await?;
    ch.confirm_select(Default::default()).await?;
    ch.exchange_declare(&exchange, ExchangeKind::Direct, durable_x, no_args())
        .await?;
    declare(&ch, &queue, durable_q).await?;
    ch.queue_bind(&queue, &exchange, "k", Default::default(), no_args())
        .await?;
    let persistent = BasicProperties::default().with_delivery_mode(2);
    for i in 0..20 {
        let body = format!("persistent {i}");
        publish_confirmed(&ch, &exchange, "k", body.as_bytes(), persistent.clone()).await?;
    }
    publish_confirmed(&ch, &exchange, "k", b"transient", Default::default()).await?;
    restart().await.context("restarting the broker")?;
    // The old connection is gone: the broker closed it (320) or the socket dropped.
    if within("the old connection to notice", async {
        while conn.status().connected() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .is_err()
    {
        bail!("the connection opened before the restart still looks open");
    }
    let conn = retry_connect(|| async { Ok(connect_url(&ctx.url).await?) }).await?;
    let ch = channel(&conn).await?;
    ch.exchange_declare(
        &exchange,
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            passive: true,
            ..durable_x
        },
        no_args(),
    )
    .await
    .context("the durable exchange after the restart")?;
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
            got.extend(strings(drain(&ch, &queue).await?));
        }
        Ok::<_, anyhow::Error>(got)
    })
    .await??;
    ensure_eq!(
        got,
        expected,
        "messages after the restart (the binding survived too)"
    );
    conn.close(200, "bye").await?;
    Ok(())
}
