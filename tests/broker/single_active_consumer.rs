//! Single active consumer (`x-single-active-consumer`) and consumer priorities (`x-priority` on
//! basic.consume) through lapin. Checked with pika against RabbitMQ 3.10.8: only the first
//! consumer of a single-active-consumer queue receives, whatever the priorities, and
//! queue.declare-ok counts every consumer.

use crate::common::*;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicQosOptions};
use lapin::{Channel, Connection, Consumer};

const SAC: &[(&str, lapin::types::AMQPValue)] = &[];

fn sac_args() -> Vec<(&'static str, lapin::types::AMQPValue)> {
    vec![(
        "x-single-active-consumer",
        lapin::types::AMQPValue::Boolean(true),
    )]
}

/// A consumer on its own connection, with `prefetch` (0 = unlimited).
async fn consumer(
    broker: &TestBroker,
    queue: &str,
    tag: &str,
    prefetch: u16,
    args: &[(&str, lapin::types::AMQPValue)],
) -> (Connection, Channel, Consumer) {
    let (conn, ch) = broker.channel().await;
    if prefetch > 0 {
        ch.basic_qos(prefetch, BasicQosOptions::default())
            .await
            .expect("qos");
    }
    let c = consume_with(&ch, queue, tag, prefetch == 0, args)
        .await
        .expect("consume");
    (conn, ch, c)
}

#[tokio::test]
async fn only_the_first_consumer_receives() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "sac", &sac_args()).await;
    let (_a_conn, a_ch, mut a) = consumer(&broker, "sac", "a", 0, SAC).await;
    // A higher priority does not take over: RabbitMQ 3.10 keeps subscription order.
    let (_b_conn, b_ch, mut b) = consumer(&broker, "sac", "b", 0, &[("x-priority", int(10))]).await;
    let declared = declare_with(&ch, "sac", &sac_args())
        .await
        .expect("redeclare");
    assert_eq!(declared.consumer_count(), 2, "both consumers count");
    for body in ["1", "2", "3"] {
        publish(&ch, "sac", body).await;
    }
    for body in ["1", "2", "3"] {
        assert_eq!(text(&next(&mut a).await), body);
    }
    assert_no_delivery(&mut b, &b_ch, "sac").await;
    assert_no_delivery(&mut a, &a_ch, "sac").await;
    broker.finish().await;
}

#[tokio::test]
async fn when_the_active_consumer_cancels_the_next_one_takes_over() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "sac", &sac_args()).await;
    let (_a_conn, a_ch, mut a) = consumer(&broker, "sac", "a", 0, SAC).await;
    let (_b_conn, _b_ch, mut b) = consumer(&broker, "sac", "b", 0, SAC).await;
    publish(&ch, "sac", "to-a").await;
    assert_eq!(text(&next(&mut a).await), "to-a");
    a_ch.basic_cancel("a", BasicCancelOptions::default())
        .await
        .expect("cancel");
    publish(&ch, "sac", "to-b").await;
    assert_eq!(text(&next(&mut b).await), "to-b");
    broker.finish().await;
}

#[tokio::test]
async fn when_the_active_consumers_channel_closes_its_unacked_and_waiting_messages_go_to_the_next()
{
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "sac", &sac_args()).await;
    let (_a_conn, a_ch, mut a) = consumer(&broker, "sac", "a", 1, SAC).await;
    let (_b_conn, _b_ch, mut b) = consumer(&broker, "sac", "b", 10, SAC).await;
    publish(&ch, "sac", "m1").await;
    publish(&ch, "sac", "m2").await;
    assert_eq!(text(&next(&mut a).await), "m1");
    assert_eq!(
        ready_count(&ch, "sac").await,
        1,
        "m2 waits for a, b is not active"
    );
    a_ch.close(200, "bye").await.expect("close");
    let m1 = next(&mut b).await;
    assert_eq!(text(&m1), "m1");
    assert!(m1.redelivered);
    assert_eq!(text(&next(&mut b).await), "m2");
    m1.acker.ack(BasicAckOptions::default()).await.expect("ack");
    broker.finish().await;
}

#[tokio::test]
async fn the_next_active_consumer_is_the_next_in_subscription_order() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "sac", &sac_args()).await;
    let (a_conn, _a_ch, _a) = consumer(&broker, "sac", "a", 0, SAC).await;
    let (_b_conn, _b_ch, mut b) = consumer(&broker, "sac", "b", 0, SAC).await;
    let (_c_conn, c_ch, mut c) = consumer(&broker, "sac", "c", 0, SAC).await;
    a_conn.close(200, "bye").await.expect("close");
    eventually("a's consumer to be gone", || async {
        let q = declare_with(&ch, "sac", &sac_args())
            .await
            .expect("declare");
        (q.consumer_count() == 2).then_some(())
    })
    .await;
    publish(&ch, "sac", "m").await;
    assert_eq!(text(&next(&mut b).await), "m");
    assert_no_delivery(&mut c, &c_ch, "sac").await;
    broker.finish().await;
}

#[tokio::test]
async fn higher_priority_consumers_get_everything_while_they_have_credit() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "cp", &[]).await;
    let (_l_conn, l_ch, mut low) = consumer(&broker, "cp", "low", 0, SAC).await;
    let (_h_conn, _h_ch, mut high) =
        consumer(&broker, "cp", "high", 2, &[("x-priority", int(10))]).await;
    for body in ["1", "2", "3", "4"] {
        publish(&ch, "cp", body).await;
    }
    let h1 = next(&mut high).await;
    let h2 = next(&mut high).await;
    assert_eq!((text(&h1), text(&h2)), ("1", "2"));
    // high is out of credit: the lower priority gets the rest.
    assert_eq!(text(&next(&mut low).await), "3");
    assert_eq!(text(&next(&mut low).await), "4");
    publish(&ch, "cp", "5").await;
    assert_eq!(text(&next(&mut low).await), "5");
    h1.acker.ack(BasicAckOptions::default()).await.expect("ack");
    publish(&ch, "cp", "6").await;
    assert_eq!(
        text(&next(&mut high).await),
        "6",
        "credit again: high first"
    );
    assert_no_delivery(&mut low, &l_ch, "cp").await;
    broker.finish().await;
}

#[tokio::test]
async fn consumers_of_equal_priority_share_round_robin_and_lower_ones_wait() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "cp", &[]).await;
    let (_l_conn, l_ch, mut low) = consumer(&broker, "cp", "low", 0, SAC).await;
    let (_a_conn, _a_ch, mut a) = consumer(&broker, "cp", "a", 0, &[("x-priority", int(5))]).await;
    let (_b_conn, _b_ch, mut b) = consumer(&broker, "cp", "b", 0, &[("x-priority", long(5))]).await;
    for body in ["1", "2", "3", "4"] {
        publish(&ch, "cp", body).await;
    }
    assert_eq!(text(&next(&mut a).await), "1");
    assert_eq!(text(&next(&mut b).await), "2");
    assert_eq!(text(&next(&mut a).await), "3");
    assert_eq!(text(&next(&mut b).await), "4");
    assert_no_delivery(&mut low, &l_ch, "cp").await;
    broker.finish().await;
}

#[tokio::test]
async fn a_negative_consumer_priority_ranks_below_the_default() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "cp", &[]).await;
    let (_n_conn, n_ch, mut negative) =
        consumer(&broker, "cp", "neg", 0, &[("x-priority", int(-5))]).await;
    let (_d_conn, _d_ch, mut default) = consumer(&broker, "cp", "default", 0, SAC).await;
    publish(&ch, "cp", "m").await;
    assert_eq!(text(&next(&mut default).await), "m");
    assert_no_delivery(&mut negative, &n_ch, "cp").await;
    broker.finish().await;
}

#[tokio::test]
async fn a_non_integer_x_priority_closes_the_channel_406() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "cp", &[]).await;
    for (value, type_name) in [
        (s("5"), "longstr"),
        (lapin::types::AMQPValue::Boolean(true), "bool"),
    ] {
        let ch = broker.channel().await.1;
        assert_eq!(
            refused(consume_with(&ch, "cp", "c", false, &[("x-priority", value)]).await),
            (
                406,
                format!(
                    "PRECONDITION_FAILED - invalid arg 'x-priority' for queue 'cp' in vhost '/': \
                     \"expected integer, got {type_name}\""
                )
            )
        );
    }
    let q = declare_with(&ch, "cp", &[]).await.expect("declare");
    assert_eq!(
        q.consumer_count(),
        0,
        "the refused consumers were not added"
    );
    broker.finish().await;
}
