//! Access control through lapin and raw frames: a restricted user created through the broker's
//! API, a table of (operation × missing permission) → RabbitMQ's reply, 403 before 404, topic
//! permissions on publish and bind, the user-id property, refused logins (403) and refused
//! vhosts (530). Texts as RabbitMQ's (`rabbit_access_control`, `rabbit_reader`).

use crate::common::*;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeBindOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, ExchangeUnbindOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use warren_protocol::{FieldTable as RawTable, FieldValue, Method, ReplyCode, ShortStr};

const ALL: &str = ".*";
const USER: &str = "u";
const PASSWORD: &str = "pw";

/// A broker with `guest`'s objects (queue `q`, direct exchanges `x`, `x2`, `dlx`, `ae`, topic
/// exchange `t`) and a user `u` without tags or permissions yet.
async fn broker_with_restricted_user() -> TestBroker {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    for (name, kind) in [
        ("x", ExchangeKind::Direct),
        ("x2", ExchangeKind::Direct),
        ("dlx", ExchangeKind::Direct),
        ("ae", ExchangeKind::Direct),
        ("t", ExchangeKind::Topic),
    ] {
        ch.exchange_declare(
            name,
            kind,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("exchange.declare");
    }
    conn.close(200, "set up").await.expect("close");
    broker
        .handle
        .users()
        .add_user(USER, PASSWORD, Vec::new())
        .expect("add_user");
    broker
}

fn set_permissions(broker: &TestBroker, configure: &str, write: &str, read: &str) {
    broker
        .handle
        .users()
        .set_permissions(USER, "/", configure, write, read)
        .expect("set_permissions");
}

fn user_url(broker: &TestBroker, user: &str, password: &str) -> String {
    format!("amqp://{user}:{password}@{}/%2f", broker.addr())
}

async fn connect_as_user(broker: &TestBroker) -> Connection {
    connect_url(&user_url(broker, USER, PASSWORD))
        .await
        .expect("the restricted user connects")
}

/// Publishes one message in confirm mode: the confirm, or the close the publish caused.
async fn try_publish(
    ch: &Channel,
    exchange: &str,
    key: &str,
    properties: BasicProperties,
) -> Result<(), (u16, String)> {
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    let close = |e: lapin::Error| amqp_error(&e).unwrap_or_else(|| panic!("not a close: {e:?}"));
    let confirm = ch
        .basic_publish(
            exchange,
            key,
            BasicPublishOptions::default(),
            b"x",
            properties,
        )
        .await
        .map_err(close)?;
    let confirmation = within("the publish confirm", confirm)
        .await
        .map_err(close)?;
    assert!(confirmation.is_ack(), "{confirmation:?}");
    Ok(())
}

/// One operation a client can be refused.
#[derive(Clone, Copy, Debug)]
enum Op {
    DeclareQueue(&'static str),
    DeclareServerNamedQueue,
    DeclareQueuePassive(&'static str),
    /// Declares `qd` with `x-dead-letter-exchange: dlx`.
    DeclareQueueWithDlx,
    DeclareExchange(&'static str),
    DeclareExchangePassive(&'static str),
    /// Declares `xa` with `alternate-exchange: ae`.
    DeclareExchangeWithAe,
    DeleteExchange(&'static str),
    DeleteQueue(&'static str),
    /// `q` to `x`.
    BindQueue,
    UnbindQueue,
    /// `x2` (destination) from `x` (source).
    BindExchange,
    UnbindExchange,
    Publish(&'static str),
    Consume(&'static str),
    Get(&'static str),
    Purge(&'static str),
}

async fn run(ch: &Channel, op: Op) -> Result<(), (u16, String)> {
    let no_args = FieldTable::default;
    let result: lapin::Result<()> = match op {
        Op::DeclareQueue(q) => ch
            .queue_declare(q, QueueDeclareOptions::default(), no_args())
            .await
            .map(drop),
        Op::DeclareServerNamedQueue => ch
            .queue_declare(
                "",
                QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                no_args(),
            )
            .await
            .map(drop),
        Op::DeclareQueuePassive(q) => ch
            .queue_declare(
                q,
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                no_args(),
            )
            .await
            .map(drop),
        Op::DeclareQueueWithDlx => ch
            .queue_declare(
                "qd",
                QueueDeclareOptions::default(),
                table(&[("x-dead-letter-exchange", s("dlx"))]),
            )
            .await
            .map(drop),
        Op::DeclareExchange(x) => {
            ch.exchange_declare(
                x,
                ExchangeKind::Direct,
                ExchangeDeclareOptions::default(),
                no_args(),
            )
            .await
        }
        Op::DeclareExchangePassive(x) => {
            ch.exchange_declare(
                x,
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                no_args(),
            )
            .await
        }
        Op::DeclareExchangeWithAe => {
            ch.exchange_declare(
                "xa",
                ExchangeKind::Direct,
                ExchangeDeclareOptions::default(),
                table(&[("alternate-exchange", s("ae"))]),
            )
            .await
        }
        Op::DeleteExchange(x) => {
            ch.exchange_delete(x, ExchangeDeleteOptions::default())
                .await
        }
        Op::DeleteQueue(q) => ch
            .queue_delete(q, QueueDeleteOptions::default())
            .await
            .map(drop),
        Op::BindQueue => {
            ch.queue_bind("q", "x", "k", QueueBindOptions::default(), no_args())
                .await
        }
        Op::UnbindQueue => ch.queue_unbind("q", "x", "k", no_args()).await,
        Op::BindExchange => {
            ch.exchange_bind("x2", "x", "k", ExchangeBindOptions::default(), no_args())
                .await
        }
        Op::UnbindExchange => {
            ch.exchange_unbind("x2", "x", "k", ExchangeUnbindOptions::default(), no_args())
                .await
        }
        Op::Publish(x) => return try_publish(ch, x, "k", BasicProperties::default()).await,
        Op::Consume(q) => ch
            .basic_consume(q, "", BasicConsumeOptions::default(), no_args())
            .await
            .map(drop),
        Op::Get(q) => ch.basic_get(q, BasicGetOptions::default()).await.map(drop),
        Op::Purge(q) => ch
            .queue_purge(q, QueuePurgeOptions::default())
            .await
            .map(drop),
    };
    result.map_err(|e| amqp_error(&e).unwrap_or_else(|| panic!("{op:?}: not a close: {e:?}")))
}

fn refused_text(kind: &str, name: &str) -> String {
    format!("ACCESS_REFUSED - access to {kind} '{name}' in vhost '/' refused for user '{USER}'")
}

#[tokio::test]
async fn each_operation_without_its_permission_is_refused_403_in_rabbitmqs_words() {
    let broker = broker_with_restricted_user().await;
    set_permissions(&broker, ALL, ALL, ALL);
    let conn = connect_as_user(&broker).await;
    // (operation, configure, write, read) → what is refused. Missing objects are refused as
    // well: the permission check comes before the existence check (403 beats 404).
    let table: &[(Op, [&str; 3], &str, &str)] = &[
        (Op::DeclareQueue("q"), ["", ALL, ALL], "queue", "q"),
        (Op::DeclareQueue("q"), ["^other", ALL, ALL], "queue", "q"),
        (Op::DeclareQueuePassive("q"), ["", "", ""], "queue", "q"),
        (
            Op::DeclareQueuePassive("none"),
            ["", "", ""],
            "queue",
            "none",
        ),
        (Op::DeclareQueueWithDlx, [ALL, "", ALL], "exchange", "dlx"),
        (Op::DeclareQueueWithDlx, [ALL, ALL, ""], "queue", "qd"),
        (Op::DeclareExchange("x"), ["", ALL, ALL], "exchange", "x"),
        (
            Op::DeclareExchangePassive("x"),
            ["", "", ""],
            "exchange",
            "x",
        ),
        (
            Op::DeclareExchangePassive("none"),
            ["", "", ""],
            "exchange",
            "none",
        ),
        (Op::DeclareExchangeWithAe, [ALL, "", ALL], "exchange", "ae"),
        (Op::DeleteExchange("x"), ["", ALL, ALL], "exchange", "x"),
        (
            Op::DeleteExchange("none"),
            ["", ALL, ALL],
            "exchange",
            "none",
        ),
        (Op::DeleteQueue("q"), ["", ALL, ALL], "queue", "q"),
        (Op::DeleteQueue("none"), ["", ALL, ALL], "queue", "none"),
        (Op::BindQueue, [ALL, "", ALL], "queue", "q"),
        (Op::BindQueue, [ALL, ALL, ""], "exchange", "x"),
        (Op::UnbindQueue, [ALL, "", ALL], "queue", "q"),
        (Op::UnbindQueue, [ALL, ALL, ""], "exchange", "x"),
        (Op::BindExchange, [ALL, "", ALL], "exchange", "x2"),
        (Op::BindExchange, [ALL, ALL, ""], "exchange", "x"),
        (Op::UnbindExchange, [ALL, "", ALL], "exchange", "x2"),
        (Op::UnbindExchange, [ALL, ALL, ""], "exchange", "x"),
        (Op::Publish("x"), [ALL, "", ALL], "exchange", "x"),
        (Op::Publish(""), [ALL, "", ALL], "exchange", "amq.default"),
        (Op::Publish("none"), [ALL, "", ALL], "exchange", "none"),
        (Op::Consume("q"), [ALL, ALL, ""], "queue", "q"),
        (Op::Consume("none"), [ALL, ALL, ""], "queue", "none"),
        (Op::Get("q"), [ALL, ALL, ""], "queue", "q"),
        (Op::Get("none"), [ALL, ALL, ""], "queue", "none"),
        (Op::Purge("q"), [ALL, ALL, ""], "queue", "q"),
        (Op::Purge("none"), [ALL, ALL, ""], "queue", "none"),
    ];
    for &(op, [configure, write, read], kind, name) in table {
        // Changed permissions apply to new channels at once.
        set_permissions(&broker, configure, write, read);
        let ch = conn.create_channel().await.expect("channel.open");
        assert_eq!(
            run(&ch, op).await,
            Err((403, refused_text(kind, name))),
            "{op:?} with configure={configure:?} write={write:?} read={read:?}"
        );
    }
    // The same operations with every permission pass the checks: they succeed, and the ones on
    // missing objects get past the 403 (to their 404, or an idempotent delete). Deletes go
    // last so that the other operations still find `q` and `x`.
    set_permissions(&broker, ALL, ALL, ALL);
    let is_delete = |op: &Op| matches!(op, Op::DeleteExchange(_) | Op::DeleteQueue(_));
    let others = table.iter().filter(|c| !is_delete(&c.0));
    let deletes = table.iter().filter(|c| is_delete(&c.0));
    for &(op, _, _, name) in others.chain(deletes) {
        let ch = conn.create_channel().await.expect("channel.open");
        let result = run(&ch, op).await;
        if name == "none" {
            assert_ne!(result.map_err(|(code, _)| code), Err(403), "{op:?}");
        } else {
            assert_eq!(result, Ok(()), "{op:?}");
        }
    }
    // Left open: the broker's shutdown closes it (320) and audits what it held.
    drop(conn);
    broker.finish().await;
}

#[tokio::test]
async fn server_named_queues_are_checked_under_their_amq_gen_name() {
    let broker = broker_with_restricted_user().await;
    set_permissions(&broker, "^mine", ALL, ALL);
    let conn = connect_as_user(&broker).await;
    let ch = conn.create_channel().await.expect("channel.open");
    let (code, text) = run(&ch, Op::DeclareServerNamedQueue)
        .await
        .expect_err("a server-named queue needs configure on amq.gen-…");
    assert_eq!(code, 403);
    let prefix = "ACCESS_REFUSED - access to queue 'amq.gen-";
    assert!(text.starts_with(prefix), "{text}");
    assert!(
        text.ends_with("' in vhost '/' refused for user 'u'"),
        "{text}"
    );
    set_permissions(&broker, "^amq\\.gen-", ALL, ALL);
    let ch = conn.create_channel().await.expect("channel.open");
    assert_eq!(run(&ch, Op::DeclareServerNamedQueue).await, Ok(()));
    conn.close(200, "done").await.expect("close");
    broker.finish().await;
}

#[tokio::test]
async fn patterns_match_anywhere_in_the_name_and_grant_what_they_match() {
    let broker = broker_with_restricted_user().await;
    // Unanchored, as RabbitMQ: `app` allows `my-app-q`.
    set_permissions(&broker, "app", "app", "app");
    let conn = connect_as_user(&broker).await;
    let ch = conn.create_channel().await.expect("channel.open");
    assert_eq!(run(&ch, Op::DeclareQueue("my-app-q")).await, Ok(()));
    assert_eq!(run(&ch, Op::DeclareExchange("app-x")).await, Ok(()));
    ch.queue_bind(
        "my-app-q",
        "app-x",
        "k",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("queue.bind");
    assert_eq!(
        try_publish(&ch, "app-x", "k", BasicProperties::default()).await,
        Ok(())
    );
    let got = ch
        .basic_get("my-app-q", BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get");
    assert!(got.is_some(), "the published message was routed");
    assert_eq!(
        run(&ch, Op::DeclareQueue("other")).await,
        Err((403, refused_text("queue", "other")))
    );
    conn.close(200, "done").await.expect("close");
    broker.finish().await;
}

#[tokio::test]
async fn an_open_channel_keeps_what_it_already_passed_and_new_channels_see_revocations() {
    let broker = broker_with_restricted_user().await;
    // A restricted pattern: the channel remembers each name it passed. (A `.*` grant is not
    // cached per name, so such a channel sees a revocation at once: stricter than RabbitMQ.)
    set_permissions(&broker, ALL, "^x", ALL);
    let conn = connect_as_user(&broker).await;
    let old = conn.create_channel().await.expect("channel.open");
    assert_eq!(
        try_publish(&old, "x", "k", BasicProperties::default()).await,
        Ok(())
    );
    set_permissions(&broker, ALL, "", ALL);
    // RabbitMQ's per-channel cache: the channel already published to `x`.
    assert_eq!(
        try_publish(&old, "x", "k", BasicProperties::default()).await,
        Ok(())
    );
    // But a name it has not used yet is checked against the new permissions.
    assert_eq!(
        try_publish(&old, "x2", "k", BasicProperties::default()).await,
        Err((403, refused_text("exchange", "x2")))
    );
    let new = conn.create_channel().await.expect("channel.open");
    assert_eq!(
        try_publish(&new, "x", "k", BasicProperties::default()).await,
        Err((403, refused_text("exchange", "x")))
    );
    conn.close(200, "done").await.expect("close");
    broker.finish().await;
}

fn topic_refused_text(key: &str) -> String {
    format!(
        "ACCESS_REFUSED - access to topic '{key}' in exchange exchange 't' in vhost '/' refused for user '{USER}'"
    )
}

#[tokio::test]
async fn topic_permissions_check_the_routing_key_on_publish_and_the_binding_key_on_bind() {
    let broker = broker_with_restricted_user().await;
    set_permissions(&broker, ALL, ALL, ALL);
    broker
        .handle
        .users()
        .set_topic_permissions(USER, "/", "t", "^allowed\\.", "^bound\\.{username}$")
        .expect("set_topic_permissions");
    let conn = connect_as_user(&broker).await;

    let ch = conn.create_channel().await.expect("channel.open");
    assert_eq!(
        try_publish(&ch, "t", "allowed.1", BasicProperties::default()).await,
        Ok(())
    );
    assert_eq!(
        try_publish(&ch, "t", "denied.1", BasicProperties::default()).await,
        Err((403, topic_refused_text("denied.1")))
    );

    // `{username}` is expanded: `bound.u` is allowed, `bound.v` is not.
    let ch = conn.create_channel().await.expect("channel.open");
    ch.queue_bind(
        "q",
        "t",
        "bound.u",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("queue.bind with an allowed binding key");
    let refused_bind = ch
        .queue_bind(
            "q",
            "t",
            "bound.v",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert_eq!(refused(refused_bind), (403, topic_refused_text("bound.v")));

    // Exchange-to-exchange bindings check the source's topic permission too.
    let ch = conn.create_channel().await.expect("channel.open");
    let refused_e2e = ch
        .exchange_bind(
            "x2",
            "t",
            "other",
            ExchangeBindOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert_eq!(refused(refused_e2e), (403, topic_refused_text("other")));

    // Topic permissions apply only to topic exchanges, and an exchange without an entry
    // allows every key.
    let ch = conn.create_channel().await.expect("channel.open");
    assert_eq!(
        try_publish(&ch, "x", "denied.1", BasicProperties::default()).await,
        Ok(())
    );
    assert_eq!(
        try_publish(&ch, "amq.topic", "denied.1", BasicProperties::default()).await,
        Ok(())
    );
    conn.close(200, "done").await.expect("close");
    broker.finish().await;
}

#[tokio::test]
async fn the_user_id_property_must_be_the_users_own_name_unless_it_is_an_impersonator() {
    let broker = broker_with_restricted_user().await;
    set_permissions(&broker, ALL, ALL, ALL);
    let conn = connect_as_user(&broker).await;
    let as_user = |name: &str| BasicProperties::default().with_user_id(name.into());
    let ch = conn.create_channel().await.expect("channel.open");
    assert_eq!(try_publish(&ch, "x", "k", as_user(USER)).await, Ok(()));
    assert_eq!(
        try_publish(&ch, "x", "k", as_user("someone")).await,
        Err((
            406,
            "PRECONDITION_FAILED - user_id property set to 'someone' but authenticated user was 'u'"
                .to_owned()
        ))
    );
    conn.close(200, "done").await.expect("close");

    broker
        .handle
        .users()
        .set_tags(USER, vec!["impersonator".to_owned()])
        .expect("set_tags");
    let conn = connect_as_user(&broker).await;
    let ch = conn.create_channel().await.expect("channel.open");
    assert_eq!(try_publish(&ch, "x", "k", as_user("someone")).await, Ok(()));
    conn.close(200, "done").await.expect("close");
    broker.finish().await;
}

const LOGIN_REFUSED: &str = "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.";

#[tokio::test]
async fn a_wrong_password_or_an_unknown_user_is_refused_403_in_rabbitmqs_words() {
    let broker = broker_with_restricted_user().await;
    set_permissions(&broker, ALL, ALL, ALL);
    for (user, password) in [(USER, "wrong"), ("nobody", PASSWORD)] {
        let mut raw = broker.raw().await;
        raw.send_bytes(b"AMQP\x00\x00\x09\x01").await;
        let (_, start) = raw.expect_method().await;
        assert!(matches!(start, Method::ConnectionStart(_)));
        let caps: RawTable = [(
            ShortStr::from("authentication_failure_close"),
            FieldValue::Bool(true),
        )]
        .into_iter()
        .collect();
        raw.send_method(0, start_ok_with_caps(user, password, caps))
            .await;
        let text = raw.expect_connection_close(ReplyCode::AccessRefused).await;
        assert_eq!(text, LOGIN_REFUSED, "{user}");
    }
    // The right password logs in.
    let conn = connect_as_user(&broker).await;
    conn.close(200, "done").await.expect("close");
    broker.finish().await;
}

#[tokio::test]
async fn a_user_without_permissions_on_the_vhost_is_refused_530() {
    let broker = broker_with_restricted_user().await;
    let refused = connect_url(&user_url(&broker, USER, PASSWORD))
        .await
        .expect_err("no permission entry on /");
    assert_eq!(
        amqp_error(&refused),
        Some((
            530,
            "NOT_ALLOWED - access to vhost '/' refused for user 'u'".to_owned()
        ))
    );
    // An entry with empty patterns is enough to open the vhost (RabbitMQ's rule).
    set_permissions(&broker, "", "", "");
    let conn = connect_as_user(&broker).await;
    conn.close(200, "done").await.expect("close");
    broker.finish().await;
}
