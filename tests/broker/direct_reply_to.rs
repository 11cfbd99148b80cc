//! Direct reply-to (`amq.rabbitmq.reply-to`) through lapin: a no-ack consumer of the
//! pseudo-queue, requests whose reply-to the broker rewrites to a per-channel name, replies
//! through the default exchange, the 406s around it, and the RabbitMQ tutorial's RPC pattern end
//! to end. Expectations were first run with pika against RabbitMQ 3.10.8; the one deliberate
//! difference (mandatory replies that were delivered are not returned) is in its test.

use crate::common::*;
use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
    ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, Consumer};

const REPLY_TO: &str = "amq.rabbitmq.reply-to";

async fn reply_consumer(ch: &Channel, tag: &str) -> lapin::Result<Consumer> {
    let options = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    ch.basic_consume(REPLY_TO, tag, options, FieldTable::default())
        .await
}

async fn passive_declare(ch: &Channel, name: &str) -> lapin::Result<lapin::Queue> {
    let options = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    ch.queue_declare(name, options, FieldTable::default()).await
}

/// Publishes a request to `queue` asking for a direct reply.
async fn request(ch: &Channel, queue: &str, body: &str, correlation_id: &str) {
    let properties = BasicProperties::default()
        .with_reply_to(REPLY_TO.into())
        .with_correlation_id(correlation_id.into());
    ch.basic_publish(
        "",
        queue,
        BasicPublishOptions::default(),
        body.as_bytes(),
        properties,
    )
    .await
    .expect("basic.publish");
}

/// The next request in `queue` (basic.get is ordered after the requester's publish only on
/// the same channel, so poll).
async fn get_request(ch: &Channel, queue: &str) -> Delivery {
    within("a request", async {
        loop {
            let options = BasicGetOptions { no_ack: true };
            if let Some(m) = ch.basic_get(queue, options).await.expect("basic.get") {
                return m.delivery;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
}

fn reply_to_of(d: &Delivery) -> String {
    d.properties
        .reply_to()
        .as_ref()
        .expect("a reply-to")
        .to_string()
}

/// Publishes `body` to the reply name through `exchange` (on a confirm channel); returns
/// whether the mandatory message came back.
async fn reply(
    ch: &Channel,
    exchange: &str,
    reply_to: &str,
    body: &str,
    correlation_id: &str,
) -> bool {
    let properties = BasicProperties::default().with_correlation_id(correlation_id.into());
    let confirm = ch
        .basic_publish(
            exchange,
            reply_to,
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body.as_bytes(),
            properties,
        )
        .await
        .expect("basic.publish");
    match within("the confirm", confirm).await.expect("confirm") {
        Confirmation::Ack(returned) => returned.is_some(),
        other => panic!("expected an ack, got {other:?}"),
    }
}

/// A requester (consuming replies on `client`) and a server channel with queue `requests`.
struct Rpc {
    _client_conn: Connection,
    client: Channel,
    replies: Consumer,
    _server_conn: Connection,
    server: Channel,
}

impl Rpc {
    async fn start(broker: &TestBroker) -> Self {
        let (client_conn, client) = broker.channel().await;
        let replies = reply_consumer(&client, "replies")
            .await
            .expect("reply consumer");
        let server_conn = broker.connect().await;
        let server = confirm_channel_on(&server_conn).await;
        declare(&server, "requests", &[]).await;
        Rpc {
            _client_conn: client_conn,
            client,
            replies,
            _server_conn: server_conn,
            server,
        }
    }

    /// Sends one request and returns the reply-to name the server saw.
    async fn reply_name(&self) -> String {
        request(&self.client, "requests", "ping", "c").await;
        reply_to_of(&get_request(&self.server, "requests").await)
    }
}

#[tokio::test]
async fn reply_published_to_the_rewritten_reply_to_reaches_the_reply_consumer() {
    let broker = TestBroker::start().await;
    let mut rpc = Rpc::start(&broker).await;
    request(&rpc.client, "requests", "ping", "c-1").await;
    let req = get_request(&rpc.server, "requests").await;
    let name = reply_to_of(&req);
    assert!(
        name.starts_with("amq.rabbitmq.reply-to.") && name.len() > REPLY_TO.len() + 8,
        "{name}"
    );
    assert_eq!(req.data, b"ping");
    assert_eq!(
        req.properties.correlation_id().as_ref().map(|c| c.as_str()),
        Some("c-1")
    );
    // Passive declare of the name succeeds while the consumer lives (0 messages, 1 consumer).
    let q = passive_declare(&rpc.server, &name)
        .await
        .expect("passive declare");
    assert_eq!((q.message_count(), q.consumer_count()), (0, 1));
    assert!(!reply(&rpc.server, "", &name, "pong", "c-1").await);
    let d = next(&mut rpc.replies).await;
    assert_eq!(d.data, b"pong");
    assert_eq!(d.exchange.as_str(), "");
    assert_eq!(d.routing_key.as_str(), name);
    assert!(!d.redelivered);
    assert_eq!(
        d.properties.correlation_id().as_ref().map(|c| c.as_str()),
        Some("c-1")
    );
    broker.finish().await;
}

#[tokio::test]
async fn each_channel_has_its_own_reply_name_for_all_its_requests() {
    let broker = TestBroker::start().await;
    let rpc = Rpc::start(&broker).await;
    let first = rpc.reply_name().await;
    assert_eq!(rpc.reply_name().await, first);
    let other = rpc._client_conn.create_channel().await.expect("channel");
    let _consumer = reply_consumer(&other, "").await.expect("reply consumer");
    request(&other, "requests", "ping", "c").await;
    let second = reply_to_of(&get_request(&rpc.server, "requests").await);
    assert!(second.starts_with("amq.rabbitmq.reply-to."), "{second}");
    assert_ne!(second, first);
    broker.finish().await;
}

#[tokio::test]
async fn reply_consumer_must_be_no_ack_406() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let result = ch
        .basic_consume(
            REPLY_TO,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert_eq!(
        refused(result),
        (
            406,
            "PRECONDITION_FAILED - reply consumer cannot acknowledge".into()
        )
    );
    broker.finish().await;
}

#[tokio::test]
async fn second_reply_consumer_on_a_channel_is_406_but_after_cancel_one_may_consume_again() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    reply_consumer(&ch, "first").await.expect("first");
    assert_eq!(
        refused(reply_consumer(&ch, "second").await),
        (
            406,
            "PRECONDITION_FAILED - reply consumer already set".into()
        )
    );
    let ch = conn.create_channel().await.expect("channel");
    reply_consumer(&ch, "first").await.expect("first");
    ch.basic_cancel("first", BasicCancelOptions::default())
        .await
        .expect("basic.cancel");
    reply_consumer(&ch, "again").await.expect("consume again");
    // A reply consumer's tag is taken like any other.
    assert_eq!(
        refused(reply_consumer(&ch, "again").await).0,
        530,
        "tag reuse is a connection error"
    );
    broker.finish().await;
}

#[tokio::test]
async fn request_without_a_reply_consumer_on_its_channel_is_406() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    declare(&conn.create_channel().await.unwrap(), "requests", &[]).await;
    // No consumer at all; a consumer on another channel does not count; nor a cancelled one.
    let elsewhere = conn.create_channel().await.expect("channel");
    reply_consumer(&elsewhere, "c").await.expect("consumer");
    let cancelled = conn.create_channel().await.expect("channel");
    reply_consumer(&cancelled, "c").await.expect("consumer");
    cancelled
        .basic_cancel("c", BasicCancelOptions::default())
        .await
        .expect("cancel");
    for ch in [conn.create_channel().await.expect("channel"), cancelled] {
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm.select");
        let properties = BasicProperties::default().with_reply_to(REPLY_TO.into());
        let confirm = ch
            .basic_publish(
                "",
                "requests",
                BasicPublishOptions::default(),
                b"x",
                properties,
            )
            .await
            .expect("publish is sent");
        assert_eq!(
            refused(within("the close", confirm).await),
            (
                406,
                "PRECONDITION_FAILED - fast reply consumer does not exist".into()
            )
        );
    }
    let ch = conn.create_channel().await.expect("connection lives on");
    let q = passive_declare(&ch, "requests").await.expect("declare");
    assert_eq!(q.message_count(), 0, "the refused requests were not routed");
    broker.finish().await;
}

#[tokio::test]
async fn reply_to_a_cancelled_consumer_is_dropped_or_returned_if_mandatory() {
    let broker = TestBroker::start().await;
    let rpc = Rpc::start(&broker).await;
    let name = rpc.reply_name().await;
    rpc.client
        .basic_cancel("replies", BasicCancelOptions::default())
        .await
        .expect("cancel");
    assert!(reply(&rpc.server, "", &name, "late", "c").await, "returned");
    assert_eq!(
        refused(passive_declare(&rpc.server, &name).await),
        (404, format!("NOT_FOUND - no queue '{name}' in vhost '/'"))
    );
    broker.finish().await;
}

#[tokio::test]
async fn reply_to_a_closed_channel_or_connection_is_returned_if_mandatory() {
    let broker = TestBroker::start().await;
    let rpc = Rpc::start(&broker).await;
    let name = rpc.reply_name().await;
    rpc.client.close(200, "bye").await.expect("channel.close");
    assert!(reply(&rpc.server, "", &name, "late", "c").await);

    let rpc = Rpc::start(&broker).await;
    let name = rpc.reply_name().await;
    rpc._client_conn.close(200, "bye").await.expect("close");
    assert!(reply(&rpc.server, "", &name, "late", "c").await);
    broker.finish().await;
}

#[tokio::test]
async fn mandatory_reply_that_was_delivered_is_not_returned() {
    // Deliberate difference: RabbitMQ 3.10 delivers such a reply and returns it as NO_ROUTE as
    // well (the reply name is not a queue to its mandatory check). Warren only returns what it
    // did not deliver.
    let broker = TestBroker::start().await;
    let mut rpc = Rpc::start(&broker).await;
    let name = rpc.reply_name().await;
    assert!(!reply(&rpc.server, "", &name, "pong", "c").await);
    assert_eq!(next(&mut rpc.replies).await.data, b"pong");
    broker.finish().await;
}

#[tokio::test]
async fn only_the_default_exchange_routes_to_a_reply_name_cc_included() {
    let broker = TestBroker::start().await;
    let mut rpc = Rpc::start(&broker).await;
    let name = rpc.reply_name().await;
    // A binding to the name is impossible, so amq.direct routes nowhere.
    assert!(reply(&rpc.server, "amq.direct", &name, "direct", "c").await);
    // The default exchange honours CC keys, reply names among them.
    let mut headers = FieldTable::default();
    let cc = vec![AMQPValue::LongString(LongString::from(name.as_str()))];
    headers.insert("CC".into(), AMQPValue::FieldArray(FieldArray::from(cc)));
    rpc.server
        .basic_publish(
            "",
            "requests",
            BasicPublishOptions::default(),
            b"via cc",
            BasicProperties::default().with_headers(headers),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    let d = next(&mut rpc.replies).await;
    assert_eq!(d.data, b"via cc");
    assert_eq!(d.routing_key.as_str(), "requests");
    broker.finish().await;
}

#[tokio::test]
async fn queue_declare_of_the_pseudo_queue_succeeds_and_other_names_under_it_are_404() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    // RabbitMQ answers any declare of the pseudo-queue, passive or not, with 0 and 1.
    let q = passive_declare(&ch, REPLY_TO).await.expect("passive");
    assert_eq!(
        (q.name().as_str(), q.message_count(), q.consumer_count()),
        (REPLY_TO, 0, 1)
    );
    let q = ch
        .queue_declare(
            REPLY_TO,
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare");
    assert_eq!(q.name().as_str(), REPLY_TO);
    for name in ["amq.rabbitmq.reply-to.nosuch", "amq.rabbitmq.reply-tox"] {
        let ch = conn.create_channel().await.expect("channel");
        assert_eq!(
            refused(passive_declare(&ch, name).await),
            (404, format!("NOT_FOUND - no queue '{name}' in vhost '/'"))
        );
    }
    broker.finish().await;
}

#[tokio::test]
async fn the_pseudo_queue_and_reply_names_are_not_queues_otherwise() {
    let broker = TestBroker::start().await;
    let rpc = Rpc::start(&broker).await;
    let name = rpc.reply_name().await;
    let conn = broker.connect().await;
    for queue in [REPLY_TO, name.as_str()] {
        let ch = conn.create_channel().await.expect("channel");
        let get = ch.basic_get(queue, BasicGetOptions { no_ack: true }).await;
        let missing = (404, format!("NOT_FOUND - no queue '{queue}' in vhost '/'"));
        assert_eq!(refused(get), missing);
        let ch = conn.create_channel().await.expect("channel");
        let bind = ch
            .queue_bind(
                queue,
                "amq.direct",
                "k",
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await;
        assert_eq!(refused(bind), missing);
    }
    let ch = conn.create_channel().await.expect("channel");
    let consume = ch
        .basic_consume(
            &name,
            "",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    assert_eq!(
        refused(consume),
        (404, format!("NOT_FOUND - no queue '{name}' in vhost '/'"))
    );
    broker.finish().await;
}

// ---------------------------------------------------------------------------------------------
// The RabbitMQ tutorial's "RPC with direct reply-to", end to end.

fn fib(n: u64) -> u64 {
    (0..n).fold((0, 1), |(a, b), _| (b, a + b)).0
}

/// The tutorial's server: consumes `rpc_queue` with manual acks and prefetch 1, replies to each
/// request's reply-to with the request's correlation id, then acks.
async fn rpc_server(conn: Connection) {
    let ch = conn.create_channel().await.expect("channel");
    declare(&ch, "rpc_queue", &[]).await;
    ch.basic_qos(1, Default::default()).await.expect("qos");
    let mut requests = ch
        .basic_consume(
            "rpc_queue",
            "server",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    while let Some(Ok(d)) = requests.next().await {
        let n: u64 = std::str::from_utf8(&d.data)
            .expect("utf-8")
            .parse()
            .expect("a number");
        let reply_to = reply_to_of(&d);
        let mut properties = BasicProperties::default();
        if let Some(id) = d.properties.correlation_id() {
            properties = properties.with_correlation_id(id.clone());
        }
        ch.basic_publish(
            "",
            &reply_to,
            BasicPublishOptions::default(),
            fib(n).to_string().as_bytes(),
            properties,
        )
        .await
        .expect("reply");
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
}

#[tokio::test]
async fn rpc_tutorial_with_direct_reply_to_matches_replies_by_correlation_id() {
    let broker = TestBroker::start().await;
    let server_conn = broker.connect().await;
    // Declared before the server task starts, so no request can find the queue missing.
    declare(
        &server_conn.create_channel().await.unwrap(),
        "rpc_queue",
        &[],
    )
    .await;
    let server = tokio::spawn(rpc_server(server_conn));

    let (_conn, client) = broker.channel().await;
    let mut replies = reply_consumer(&client, "").await.expect("reply consumer");
    // Several calls in flight at once; replies are told apart by correlation id.
    let calls: Vec<(String, u64)> = (0..12).map(|n| (format!("call-{n}"), n)).collect();
    for (id, n) in &calls {
        let properties = BasicProperties::default()
            .with_reply_to(ShortString::from(REPLY_TO))
            .with_correlation_id(ShortString::from(id.as_str()));
        client
            .basic_publish(
                "",
                "rpc_queue",
                BasicPublishOptions::default(),
                n.to_string().as_bytes(),
                properties,
            )
            .await
            .expect("request");
    }
    let mut answers = std::collections::HashMap::new();
    while answers.len() < calls.len() {
        let d = next(&mut replies).await;
        let id = d
            .properties
            .correlation_id()
            .as_ref()
            .expect("correlation id")
            .to_string();
        let value: u64 = std::str::from_utf8(&d.data).unwrap().parse().unwrap();
        assert!(answers.insert(id, value).is_none(), "one reply per call");
    }
    for (id, n) in &calls {
        assert_eq!(answers[id], fib(*n), "{id}");
    }
    assert_eq!(answers["call-10"], 55);
    server.abort();
    broker.finish().await;
}
