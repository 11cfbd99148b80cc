//! The counters of `src/stats.rs` as a real client sees them: lapin publishes, gets, consumes,
//! acks and requeues against a broker served in-process, then the snapshots of the queue, the
//! connection, the vhost and the broker are checked. (A test module of the crate, not a test
//! binary: it reads the broker's internals, which the public API does not expose.)

use crate::broker::Broker;
use crate::config::Config;
use crate::stats::MessageStats;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(5);

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A broker serving 127.0.0.1:0 on this runtime; returns it and the URL to reach it.
async fn serve(data: &std::path::Path, stop: CancellationToken) -> (Arc<Broker>, String) {
    let config = Config {
        data_dir: data.to_path_buf(),
        ..Config::default()
    };
    let broker = Broker::open(config).expect("broker opens");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let url = format!(
        "amqp://guest:guest@{}/%2f",
        listener.local_addr().expect("addr")
    );
    let serving = broker.clone();
    tokio::spawn(async move {
        while let Ok((socket, peer)) = listener.accept().await {
            let token = stop.child_token();
            tokio::spawn(crate::connection::serve(
                serving.clone(),
                socket,
                peer,
                token,
            ));
        }
    });
    (broker, url)
}

async fn publish(ch: &lapin::Channel, routing_key: &str, mandatory: bool) {
    let options = BasicPublishOptions {
        mandatory,
        ..Default::default()
    };
    let confirm = ch
        .basic_publish("", routing_key, options, b"m", BasicProperties::default())
        .await
        .expect("publish");
    within("a confirm", confirm).await.expect("confirmed");
}

#[tokio::test]
async fn counters_follow_publishes_deliveries_and_acks() {
    let data = tempfile::tempdir().expect("temp dir");
    let stop = CancellationToken::new();
    let (broker, url) = serve(data.path(), stop.clone()).await;
    let properties = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    let conn = within("connect", Connection::connect(&url, properties))
        .await
        .expect("connects");
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare("q", QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("declare");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    for _ in 0..3 {
        publish(&ch, "q", false).await;
    }
    publish(&ch, "nowhere", true).await;
    publish(&ch, "nowhere", false).await;

    let got = ch
        .basic_get("q", BasicGetOptions { no_ack: false })
        .await
        .expect("get")
        .expect("a message");
    got.ack(BasicAckOptions::default()).await.expect("ack");
    let _ = ch
        .basic_get("q", BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("a message");
    let mut consumer = ch
        .basic_consume(
            "q",
            "c",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let first = within("a delivery", consumer.next())
        .await
        .expect("delivery")
        .expect("ok");
    first
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
        .expect("nack");
    let again = within("a redelivery", consumer.next())
        .await
        .expect("delivery")
        .expect("ok");
    assert!(again.redelivered);
    again.ack(BasicAckOptions::default()).await.expect("ack");
    assert!(ch
        .basic_get("q", BasicGetOptions { no_ack: false })
        .await
        .expect("get")
        .is_none());

    let expected = MessageStats {
        published: 5,
        published_confirm: 5,
        confirmed: 5,
        routed: 3,
        unroutable_returned: 1,
        unroutable_dropped: 1,
        delivered_consume_manual_ack: 2,
        delivered_get_manual_ack: 1,
        delivered_get_auto_ack: 1,
        get_empty: 1,
        acked: 2,
        redelivered: 1,
        ..MessageStats::default()
    };
    let vhost = broker.vhost("/").expect("vhost /");
    let connections = vhost.connections_stats();
    assert_eq!(connections.len(), 1, "{connections:?}");
    assert_eq!(connections[0].1.messages, expected);
    assert_eq!(connections[0].1.channels, 1);

    let queue = vhost.queue("q").expect("queue q").stats();
    assert_eq!(
        queue.messages,
        MessageStats {
            published: 3,
            delivered_consume_manual_ack: 2,
            delivered_get_manual_ack: 1,
            delivered_get_auto_ack: 1,
            get_empty: 1,
            acked: 2,
            redelivered: 1,
            ..MessageStats::default()
        }
    );
    assert_eq!(
        (
            queue.messages_ready,
            queue.messages_unacked,
            queue.consumers
        ),
        (0, 0, 1)
    );
    assert_eq!(queue.messages.delivered(), 4);

    let totals = broker.stats();
    assert_eq!(totals.messages, expected);
    assert_eq!((totals.connections, totals.channels), (1, 1));
    assert_eq!((totals.queues, totals.consumers), (1, 1));

    // A closed connection's counts stay in the totals.
    conn.close(200, "bye").await.expect("close");
    within("the connection to retire", async {
        while !vhost.connections_stats().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let after = broker.stats();
    assert_eq!(after.messages, expected);
    assert_eq!((after.connections, after.channels), (0, 0));
    stop.cancel();
    // Stopped before `data` goes: the accept task holds the broker past the end of the test,
    // and its store must not write into a deleted directory.
    broker.close();
}

#[tokio::test]
async fn an_unacked_delivery_is_a_gauge_until_acked() {
    let data = tempfile::tempdir().expect("temp dir");
    let stop = CancellationToken::new();
    let (broker, url) = serve(data.path(), stop.clone()).await;
    let properties = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    let conn = within("connect", Connection::connect(&url, properties))
        .await
        .expect("connects");
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare("g", QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("declare");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    publish(&ch, "g", false).await;
    publish(&ch, "g", false).await;
    let got = ch
        .basic_get("g", BasicGetOptions { no_ack: false })
        .await
        .expect("get")
        .expect("a message");
    let q = broker.vhost("/").expect("vhost").queue("g").expect("queue");
    let s = q.stats();
    assert_eq!((s.messages_ready, s.messages_unacked), (1, 1));
    assert_eq!(s.message_bytes_ready, 1);
    got.ack(BasicAckOptions::default()).await.expect("ack");
    // The ack is asynchronous: a round trip on the same channel orders it before the check.
    let _ = ch
        .basic_get("g", BasicGetOptions { no_ack: true })
        .await
        .expect("get");
    let s = q.stats();
    assert_eq!((s.messages_ready, s.messages_unacked), (0, 0));
    assert_eq!(s.messages.acked, 1);
    conn.close(200, "bye").await.expect("close");
    stop.cancel();
    // Stopped before `data` goes: the accept task holds the broker past the end of the test,
    // and its store must not write into a deleted directory.
    broker.close();
}
