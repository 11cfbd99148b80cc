//! The queue timer on tokio's paused clock: message TTL, per-message expiration and `x-expires`
//! checked to within tokio's timer tick (a deadline fires in the millisecond after it is due)
//! without sleeping. Time only moves when the test advances it, so
//! these cannot flake on a loaded machine, and a minute-long TTL costs nothing. (The lapin tests
//! in tests/broker/ttl.rs and queue_expiry.rs check the same rules end to end, with short TTLs.)
//! It lives in `vhost` because it declares and publishes through a vhost, which `queue` may not
//! import.

use crate::message::Message;
use crate::queue::{Queue, QueueOptions};
use crate::vhost::VHost;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use warren_protocol::{BasicProperties, FieldTable, FieldValue, ShortStr};

fn vhost_with_queue(
    name: &'static str,
    arguments: &[(&'static str, i64)],
) -> (Arc<VHost>, Arc<Queue>) {
    let vhost = VHost::new("/");
    let mut table = FieldTable::new();
    for (key, value) in arguments {
        table.insert((*key).into(), FieldValue::I64(*value));
    }
    let options = QueueOptions {
        durable: false,
        auto_delete: false,
        exclusive_owner: None,
        arguments: table,
    };
    let queue = vhost
        .declare_queue(name.into(), false, options)
        .expect("declared");
    (vhost, queue)
}

fn publish(
    vhost: &VHost,
    queue: &'static str,
    body: &'static str,
    expiration: Option<&'static str>,
) {
    let properties = BasicProperties {
        expiration: expiration.map(|e| e.into()),
        ..Default::default()
    };
    let message = Message::new(
        ShortStr::empty(),
        queue.into(),
        properties,
        Bytes::from_static(body.as_bytes()),
    );
    let default = vhost.exchange("").expect("default exchange");
    let published = vhost.publish(&default, Arc::new(message));
    assert!(published.unroutable.is_none() && !published.refused);
}

/// Lets the timer task run at the current (paused) instant.
async fn settle_timers() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

async fn advance(ms: u64) {
    tokio::time::advance(Duration::from_millis(ms)).await;
    settle_timers().await;
}

#[tokio::test(start_paused = true)]
async fn queue_ttl_expires_messages_exactly_when_due_without_any_access() {
    let (vhost, q) = vhost_with_queue("ttl", &[("x-message-ttl", 60_000)]);
    publish(&vhost, "ttl", "a", None);
    advance(10_000).await;
    publish(&vhost, "ttl", "b", None);
    advance(49_999).await;
    assert_eq!(q.message_count(), 2, "a is due at 60 000 ms, not before");
    advance(2).await;
    assert_eq!(q.message_count(), 1, "a expired by the timer alone");
    advance(9_998).await;
    assert_eq!(q.message_count(), 1);
    advance(2).await;
    assert_eq!(q.message_count(), 0, "b expired 60 s after its own publish");
}

#[tokio::test(start_paused = true)]
async fn the_smaller_of_queue_ttl_and_message_expiration_wins() {
    let (vhost, q) = vhost_with_queue("q", &[("x-message-ttl", 60_000)]);
    publish(&vhost, "q", "short", Some("5000"));
    advance(4_999).await;
    assert_eq!(q.message_count(), 1);
    advance(2).await;
    assert_eq!(q.message_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn only_the_head_expires_a_short_message_waits_behind_a_long_one() {
    let (vhost, q) = vhost_with_queue("q", &[]);
    publish(&vhost, "q", "long", Some("100000"));
    publish(&vhost, "q", "short", Some("50"));
    advance(60_000).await;
    assert_eq!(q.message_count(), 2, "the expired one is not at the head");
    let (head, _) = q.get(true).expect("the head");
    assert_eq!(&head.message.body[..], b"long");
    assert_eq!(
        q.message_count(),
        0,
        "fetching the head dropped what expired behind it"
    );
}

#[tokio::test(start_paused = true)]
async fn a_requeued_message_keeps_its_original_expiry() {
    let (vhost, q) = vhost_with_queue("q", &[("x-message-ttl", 30_000)]);
    publish(&vhost, "q", "m", None);
    let (taken, _) = q.get(false).expect("a message");
    advance(30_001).await;
    q.requeue([taken]);
    settle_timers().await;
    assert_eq!(q.message_count(), 0, "its TTL ran out while it was unacked");
}

#[tokio::test(start_paused = true)]
async fn an_unused_queue_is_deleted_after_its_expiry_and_a_get_renews_the_lease() {
    let (vhost, q) = vhost_with_queue("lease", &[("x-expires", 1_800_000)]);
    advance(1_000_000).await;
    assert!(q.get(true).is_none(), "a basic.get is a use");
    advance(1_799_999).await;
    assert!(
        vhost.queue("lease").is_ok(),
        "30 min after the get, not before"
    );
    advance(2).await;
    assert!(
        vhost.queue("lease").is_err(),
        "deleted when unused for 30 min"
    );
    assert!(q.is_deleted());
}

#[tokio::test(start_paused = true)]
async fn publishing_does_not_renew_the_lease() {
    let (vhost, _q) = vhost_with_queue("lease", &[("x-expires", 60_000)]);
    for _ in 0..5 {
        advance(10_000).await;
        publish(&vhost, "lease", "m", None);
    }
    advance(9_999).await;
    assert!(vhost.queue("lease").is_ok());
    advance(2).await;
    assert!(vhost.queue("lease").is_err(), "publishes are not uses");
}
