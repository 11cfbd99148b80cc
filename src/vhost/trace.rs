//! The firehose tracer (RabbitMQ's `rabbitmqctl trace_on`, `rabbit_trace.erl`): while tracing is
//! on in a vhost, every message a channel publishes is also published to the vhost's internal
//! topic exchange `amq.rabbitmq.trace` as `publish.<exchange>`, and every delivery (consume or
//! get) as `deliver.<queue>`, with RabbitMQ's headers.
//!
//! Off, it costs one relaxed atomic load per publish and per delivery. On, events go through an
//! unbounded channel to one task per vhost that publishes them: deliveries happen under a
//! queue's lock, where routing is not allowed (see the lock order in `vhost.rs`), and one task
//! keeps the trace in the order things happened (a message's publish before its delivery).

use super::VHost;
use crate::message::Message;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;
use warren_protocol::{BasicProperties, FieldTable, FieldValue, ShortStr};

/// The exchange every vhost has for the firehose.
pub const TRACE_EXCHANGE: &str = "amq.rabbitmq.trace";

/// Who did it: the channel a traced publish or delivery went through.
#[derive(Debug)]
pub struct TraceOrigin {
    /// RabbitMQ's connection name, `"{peer} -> {local}"`.
    pub connection: String,
    pub channel: u16,
    pub user: Arc<str>,
}

/// One traced event.
pub enum TraceEvent {
    Publish {
        message: Arc<Message>,
        /// The queues it was routed to.
        routed: Vec<ShortStr>,
        origin: Arc<TraceOrigin>,
    },
    Deliver {
        message: Arc<Message>,
        queue: ShortStr,
        redelivered: bool,
        origin: Arc<TraceOrigin>,
    },
}

impl VHost {
    /// Whether the tracer is on: the one check on the publish and delivery paths.
    #[inline]
    pub fn tracing(&self) -> bool {
        self.tracing.load(Ordering::Relaxed)
    }

    /// The switch itself, for channels to check without holding the vhost.
    pub fn tracing_switch(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.tracing.clone()
    }

    /// Starts or stops the tracer (`PUT /api/vhosts/{v}` with `tracing`, `warren ctl trace_on`).
    /// Starting needs a tokio runtime (the tracer task); without one it stays off.
    pub fn set_tracing(&self, on: bool) {
        let mut tracer = self.tracer.lock();
        if !on {
            self.tracing.store(false, Ordering::Relaxed);
            // The task publishes what is queued, then ends when the sender is gone.
            *tracer = None;
            return;
        }
        if tracer.is_none() {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                tracing::warn!(vhost = %self.name, "tracing not started: no runtime");
                return;
            };
            let (tx, rx) = mpsc::unbounded_channel();
            runtime.spawn(run_tracer(self.me.clone(), rx));
            *tracer = Some(tx);
        }
        self.tracing.store(true, Ordering::Relaxed);
        tracing::info!(vhost = %self.name, "tracing started");
    }

    /// Publishes, and while the tracer is on also traces the publish as coming from `origin`:
    /// the one way channels and the management API's publish go through the pipeline.
    pub(crate) fn publish_traced(
        &self,
        exchange: &Arc<crate::exchange::Exchange>,
        message: Arc<Message>,
        origin: &Arc<TraceOrigin>,
    ) -> super::publish::Published {
        if !self.tracing() {
            return self.publish(exchange, message);
        }
        self.publish_observed(
            exchange,
            message,
            |_| true,
            |message, queues| {
                self.trace(TraceEvent::Publish {
                    message: message.clone(),
                    routed: queues.iter().map(|q| q.name.clone()).collect(),
                    origin: origin.clone(),
                });
            },
        )
    }

    /// Hands an event to the tracer task (dropped if tracing stopped meanwhile).
    pub fn trace(&self, event: TraceEvent) {
        if let Some(tx) = self.tracer.lock().as_ref() {
            let _ = tx.send(event);
        }
    }
}

async fn run_tracer(
    vhost: std::sync::Weak<VHost>,
    mut events: mpsc::UnboundedReceiver<TraceEvent>,
) {
    while let Some(event) = events.recv().await {
        let Some(vhost) = vhost.upgrade() else {
            return;
        };
        let Ok(exchange) = vhost.exchange(TRACE_EXCHANGE) else {
            continue;
        };
        // RabbitMQ does not trace what was published to the trace exchange itself.
        let message = match &event {
            TraceEvent::Publish { message, .. } | TraceEvent::Deliver { message, .. } => message,
        };
        if message.exchange().as_str() == TRACE_EXCHANGE {
            continue;
        }
        let traced = trace_message(&vhost.name, &event);
        let _ = vhost.publish(&exchange, Arc::new(traced));
    }
}

/// `warren@<hostname>`, as the management API names this node.
fn node_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        format!("warren@{host}")
    })
}

/// The copy published to the trace exchange: the body, and headers as `rabbit_trace:trace/5`
/// builds them (the message's exchange, routing keys, properties and node, then the event's).
fn trace_message(vhost: &str, event: &TraceEvent) -> Message {
    let (message, key, origin) = match event {
        TraceEvent::Publish {
            message, origin, ..
        } => (message, format!("publish.{}", message.exchange()), origin),
        TraceEvent::Deliver {
            message,
            queue,
            origin,
            ..
        } => (message, format!("deliver.{queue}"), origin),
    };
    let long = |s: &str| FieldValue::LongStr(bytes::Bytes::copy_from_slice(s.as_bytes()));
    let mut headers = FieldTable::new();
    headers.insert(ShortStr::from("exchange_name"), long(message.exchange()));
    headers.insert(
        ShortStr::from("routing_keys"),
        FieldValue::Array(vec![long(message.routing_key())]),
    );
    headers.insert(
        ShortStr::from("properties"),
        FieldValue::Table(properties_table(&message.properties)),
    );
    headers.insert(ShortStr::from("node"), long(node_name()));
    if let TraceEvent::Deliver { redelivered, .. } = event {
        headers.insert(
            ShortStr::from("redelivered"),
            FieldValue::I32(i32::from(*redelivered)),
        );
    }
    headers.insert(ShortStr::from("vhost"), long(vhost));
    headers.insert(ShortStr::from("connection"), long(&origin.connection));
    headers.insert(
        ShortStr::from("channel"),
        FieldValue::I32(i32::from(origin.channel)),
    );
    headers.insert(ShortStr::from("user"), long(&origin.user));
    if let TraceEvent::Publish { routed, .. } = event {
        headers.insert(
            ShortStr::from("routed_queues"),
            FieldValue::Array(routed.iter().map(|q| long(q)).collect()),
        );
    }
    let properties = BasicProperties {
        headers: Some(headers),
        ..Default::default()
    };
    Message::new(
        ShortStr::from(TRACE_EXCHANGE),
        ShortStr::truncated(&key),
        properties,
        message.body.clone(),
    )
}

/// The message's properties as a table, the fields that are set, with RabbitMQ's types
/// (integers `signedint`, strings `longstr`, headers a table) and its order (the reverse of the
/// `P_basic` record's, as `rabbit_trace:msg_to_table` folds them).
fn properties_table(p: &BasicProperties) -> FieldTable {
    let long = |s: &ShortStr| FieldValue::LongStr(bytes::Bytes::copy_from_slice(s.as_bytes()));
    let int = |n: u8| FieldValue::I32(i32::from(n));
    let fields: [(&str, Option<FieldValue>); 14] = [
        ("cluster_id", p.cluster_id.as_ref().map(long)),
        ("app_id", p.app_id.as_ref().map(long)),
        ("user_id", p.user_id.as_ref().map(long)),
        ("type", p.kind.as_ref().map(long)),
        (
            "timestamp",
            p.timestamp
                .map(|ts| i32::try_from(ts).map_or(FieldValue::I64(ts as i64), FieldValue::I32)),
        ),
        ("message_id", p.message_id.as_ref().map(long)),
        ("expiration", p.expiration.as_ref().map(long)),
        ("reply_to", p.reply_to.as_ref().map(long)),
        ("correlation_id", p.correlation_id.as_ref().map(long)),
        ("priority", p.priority.map(int)),
        ("delivery_mode", p.delivery_mode.map(int)),
        ("headers", p.headers.clone().map(FieldValue::Table)),
        ("content_encoding", p.content_encoding.as_ref().map(long)),
        ("content_type", p.content_type.as_ref().map(long)),
    ];
    let mut t = FieldTable::new();
    for (name, value) in fields {
        if let Some(v) = value {
            t.insert(ShortStr::from(name), v);
        }
    }
    t
}
