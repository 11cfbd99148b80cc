//! queue.declare argument validation through lapin: every refused argument closes the channel
//! 406 with RabbitMQ's text, only new queues are validated (a redeclare is compared instead),
//! and `x-queue-type` accepts only `classic`. Every text below was captured with pika against
//! RabbitMQ 3.10.8, except the one for a durable quorum/stream queue, which RabbitMQ creates and
//! Warren refuses (it has classic queues only).

use crate::common::*;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};

fn invalid(arg: &str, reason: &str) -> (u16, String) {
    (
        406,
        format!("PRECONDITION_FAILED - invalid arg '{arg}' for queue 'q' in vhost '/': {reason}"),
    )
}

async fn declare_refused(broker: &TestBroker, args: &[(&str, AMQPValue)]) -> (u16, String) {
    let (_conn, ch) = broker.channel().await;
    refused(declare_with(&ch, "q", args).await)
}

/// A queue.declare's x-arguments.
type Arguments<'a> = Vec<(&'a str, AMQPValue)>;

#[tokio::test]
async fn invalid_arguments_of_a_new_queue_close_the_channel_406_in_rabbitmqs_words() {
    let broker = TestBroker::start().await;
    let cases: Vec<(Arguments, (u16, String))> =
        vec![
        (vec![("x-message-ttl", int(-1))], invalid("x-message-ttl", "{value_negative,-1}")),
        (
            vec![("x-message-ttl", s("10"))],
            invalid("x-message-ttl", "\"expected integer, got longstr\""),
        ),
        (
            vec![("x-message-ttl", AMQPValue::Boolean(true))],
            invalid("x-message-ttl", "\"expected integer, got bool\""),
        ),
        (
            vec![("x-message-ttl", long(315_360_000_001))],
            invalid("x-message-ttl", "{value_too_large,315360000001}"),
        ),
        (vec![("x-expires", int(0))], invalid("x-expires", "{value_zero,0}")),
        (vec![("x-expires", int(-5))], invalid("x-expires", "{value_negative,-5}")),
        (
            vec![("x-expires", s("1000"))],
            invalid("x-expires", "\"expected integer, got longstr\""),
        ),
        (
            vec![("x-dead-letter-exchange", int(5))],
            (
                406,
                "PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' \
                 in queue 'q' in vhost '/'"
                    .into(),
            ),
        ),
        (
            vec![("x-dead-letter-routing-key", s("k"))],
            invalid("x-dead-letter-routing-key", "routing_key_but_no_dlx_defined"),
        ),
        (
            vec![("x-dead-letter-exchange", s("")), ("x-dead-letter-routing-key", int(5))],
            invalid("x-dead-letter-routing-key", "{unacceptable_type,signedint}"),
        ),
        (vec![("x-max-length", int(-1))], invalid("x-max-length", "{value_negative,-1}")),
        (
            vec![("x-max-length", s("5"))],
            invalid("x-max-length", "\"expected integer, got longstr\""),
        ),
        (
            vec![("x-max-length-bytes", int(-1))],
            invalid("x-max-length-bytes", "{value_negative,-1}"),
        ),
        (vec![("x-overflow", s("bogus"))], invalid("x-overflow", "invalid_overflow")),
        (vec![("x-overflow", int(5))], invalid("x-overflow", "{unacceptable_type,signedint}")),
        (vec![("x-max-priority", int(256))], invalid("x-max-priority", "{max_value_exceeded,256}")),
        (vec![("x-max-priority", int(-1))], invalid("x-max-priority", "{value_negative,-1}")),
        (
            vec![("x-single-active-consumer", s("true"))],
            invalid("x-single-active-consumer", "{unacceptable_type,longstr}"),
        ),
        (
            vec![("x-single-active-consumer", int(1))],
            invalid("x-single-active-consumer", "{unacceptable_type,signedint}"),
        ),
        (
            vec![("x-queue-mode", s("bogus"))],
            invalid("x-queue-mode", "\"unsupported queue mode 'bogus'\""),
        ),
        (
            vec![("x-queue-type", s("bogus"))],
            invalid("x-queue-type", "\"unsupported queue type 'bogus'\""),
        ),
        (vec![("x-queue-type", int(5))], invalid("x-queue-type", "{unacceptable_type,signedint}")),
    ];
    for (args, expected) in cases {
        assert_eq!(declare_refused(&broker, &args).await, expected, "{args:?}");
    }
    let (conn, _ch) = broker.channel().await;
    assert!(
        !queue_exists(&conn, "q").await,
        "no refused declare created the queue"
    );
    broker.finish().await;
}

#[tokio::test]
async fn valid_arguments_and_unknown_ones_are_accepted() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let accepted: Vec<Vec<(&str, AMQPValue)>> = vec![
        vec![("x-message-ttl", int(0))],
        vec![("x-message-ttl", long(315_360_000_000))],
        vec![("x-expires", int(1))],
        vec![("x-dead-letter-exchange", s(""))],
        vec![("x-dead-letter-exchange", s("not-declared-yet"))],
        vec![
            ("x-dead-letter-exchange", s("dlx")),
            ("x-dead-letter-routing-key", s("k")),
        ],
        vec![
            ("x-max-length", int(0)),
            ("x-max-length-bytes", long(1 << 40)),
        ],
        vec![("x-overflow", s("reject-publish-dlx"))],
        vec![("x-max-priority", AMQPValue::ShortShortUInt(255))],
        vec![("x-max-priority", int(0))],
        vec![("x-single-active-consumer", AMQPValue::Boolean(false))],
        vec![("x-queue-type", s("classic"))],
        vec![("x-queue-mode", s("lazy"))],
        vec![("x-something-else", int(1))],
    ];
    for (i, args) in accepted.iter().enumerate() {
        declare_with(&ch, &format!("ok-{i}"), args)
            .await
            .unwrap_or_else(|e| panic!("{args:?} refused: {e:?}"));
    }
    broker.finish().await;
}

#[tokio::test]
async fn stream_queues_are_durable_only_with_rabbitmqs_texts() {
    let broker = TestBroker::start().await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    // (Quorum queues exist now: their property checks are in tests/broker/quorum.rs.)
    for kind in ["stream"] {
        let (conn, ch) = broker.channel().await;
        let args = table(&[("x-queue-type", s(kind))]);
        // Streams exist now (tests/streams.rs): a durable one is declared.
        ch.queue_declare("ok", durable, args.clone())
            .await
            .expect("a durable stream is declared");
        // RabbitMQ's own checks come first, with its texts, in its order.
        for (options, property) in [
            (QueueDeclareOptions::default(), "non-durable"),
            (
                QueueDeclareOptions {
                    durable: true,
                    auto_delete: true,
                    ..Default::default()
                },
                "auto-delete",
            ),
            (
                QueueDeclareOptions {
                    durable: true,
                    exclusive: true,
                    ..Default::default()
                },
                "exclusive-owner",
            ),
        ] {
            let ch = conn.create_channel().await.expect("channel");
            assert_eq!(
                refused(ch.queue_declare("q", options, args.clone()).await),
                (
                    406,
                    format!(
                        "PRECONDITION_FAILED - invalid property '{property}' for queue 'q' in \
                         vhost '/'"
                    )
                ),
                "{kind} {options:?}"
            );
        }
        assert!(conn.status().connected(), "only the channel closes");
    }
    broker.finish().await;
}

#[tokio::test]
async fn a_redeclare_is_compared_not_validated() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    let inequivalent = |arg: &str, received: &str| {
        (
            406,
            format!(
                "PRECONDITION_FAILED - inequivalent arg '{arg}' for queue 'q' in vhost '/': \
                 received {received} but current is none"
            ),
        )
    };
    for (args, expected) in [
        (
            vec![("x-max-priority", int(256))],
            inequivalent("x-max-priority", "the value '256' of type 'signedint'"),
        ),
        (
            vec![("x-queue-type", s("quorum"))],
            inequivalent("x-queue-type", "the value 'quorum' of type 'longstr'"),
        ),
        (
            vec![("x-queue-type", s("bogus"))],
            inequivalent("x-queue-type", "the value 'bogus' of type 'longstr'"),
        ),
    ] {
        let ch = conn.create_channel().await.expect("channel");
        assert_eq!(
            refused(declare_with(&ch, "q", &args).await),
            expected,
            "{args:?}"
        );
    }
    let ch = conn.create_channel().await.expect("channel");
    declare_with(&ch, "q", &[("x-queue-type", s("classic"))])
        .await
        .expect("classic is what an untyped queue is");
    declare(&ch, "typed", &[("x-queue-type", s("classic"))]).await;
    ch.queue_declare(
        "typed",
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("and the other way round");
    broker.finish().await;
}
