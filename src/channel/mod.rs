//! One AMQP channel: turns each method into a vhost/queue call and each result into a reply.
//! The connection task owns the `Channel` and feeds it frames; replies go to the outbound buffer.
//! Never reads the socket, and never decides how an error is sent (connection/ does that).

mod consume;
mod consumer_timeout;
mod declare;
pub mod delivery;
mod publish;
mod reply_to;
mod stream;

use crate::auth::{AccessControl, AuthUser, ChannelAccess};
use crate::config::Config;
use crate::error::{AmqpError, AmqpResult};
use crate::ids::{ConnectionId, JournalSeq};
use crate::outbound::Outbound;
use crate::stats::{self, ChannelStats, ConnectionCounters};
use crate::vhost::VHost;
use bytes::Bytes;
use delivery::ChannelShared;
use publish::{Confirms, ContentInProgress, TxBuffer};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use warren_protocol::{channel, ContentHeader, Method, ShortStr};

/// What every channel of a connection shares.
pub struct ConnectionContext {
    /// Connection id, the owner of its exclusive queues.
    pub id: ConnectionId,
    /// The vhost opened by connection.open.
    pub vhost: Arc<VHost>,
    /// Outbound frames.
    pub outbound: Arc<Outbound>,
    /// The logged-in user, whose permissions each channel caches (see [`ChannelAccess`]).
    pub auth_user: AuthUser,
    /// The broker's access model, read on channel.open and on a permission-cache miss.
    pub access: AccessControl,
    /// Broker settings.
    pub config: Arc<Config>,
    /// The client asked for server-sent basic.cancel.
    pub cancel_notify: bool,
    /// This connection's counters, registered with its vhost (see [`VHost::register_connection`]).
    pub stats: Arc<ConnectionCounters>,
    /// The node's connections by user and vhost (the user's `max-channels` counts them).
    pub tracking: Arc<crate::tracking::Registry>,
    /// This connection in the tracking registry: its channel count.
    pub tracked: Arc<crate::tracking::Tracked>,
    /// RabbitMQ's name for it, `"{peer} -> {local}"` (in firehose traces).
    pub name: Arc<str>,
}

/// A channel's place in its connection's channel count, released when the channel is dropped.
struct CountedChannel(Arc<crate::tracking::Tracked>);

impl CountedChannel {
    fn new(tracked: &Arc<crate::tracking::Tracked>) -> Self {
        tracked.channel_opened();
        CountedChannel(tracked.clone())
    }
}

impl Drop for CountedChannel {
    fn drop(&mut self) {
        self.0.channel_closed();
    }
}

impl Drop for ConnectionContext {
    /// The connection and all of its channels are gone: its counts stay in the vhost's totals.
    fn drop(&mut self) {
        self.vhost.retire_connection(self.id);
    }
}

/// An open channel.
pub struct Channel {
    /// Channel number.
    pub id: u16,
    shared: Arc<ChannelShared>,
    ctx: Arc<ConnectionContext>,
    /// This channel's permission checks, cached for the channel's life (RabbitMQ's rule).
    access: ChannelAccess,
    content: Option<ContentInProgress>,
    confirms: Option<Confirms>,
    tx: Option<TxBuffer>,
    /// tx.commit-ok replies waiting for the journal to sync the persistent messages of their
    /// transaction (journal sequence numbers, in commit order).
    commits_waiting_for_disk: std::collections::VecDeque<JournalSeq>,
    /// The last queue declared on this channel: an empty queue name means this one (spec).
    last_queue: Option<ShortStr>,
    /// The exchange and routing key of the last publish, shared by the next messages that
    /// name the same pair (see `message/route_cache.rs`).
    last_route: crate::message::RouteCache,
    /// The queue behind this channel's direct reply-to consumer (see `reply_to.rs`).
    reply_queue: Option<Arc<crate::queue::Queue>>,
    /// Replies held until the metadata writer has committed the definition changes they
    /// promise: (sequence number to wait for, 0 for a reply only kept in order behind one).
    /// While one is held, every later reply of this channel waits behind it.
    replies_waiting_for_metadata: RefCell<VecDeque<(u64, Method)>>,
    /// Counted in the user's channels while the channel lives.
    _counted: CountedChannel,
    /// When unacknowledged deliveries time out (`consumer_timeout.rs`).
    ack_clock: consumer_timeout::AckClock,
    /// Publishes counted for their exchange's `publish_in`/`publish_out`, added at the end of
    /// each batch.
    publish_tally: crate::exchange::PublishTally,
}

impl Channel {
    /// Opens channel `id` (channel.open was received); refused when the user may open no more.
    pub fn open(id: u16, ctx: Arc<ConnectionContext>) -> AmqpResult<Self> {
        let user_channels = ctx.tracking.channels_of_user(&ctx.auth_user.name);
        let access =
            ctx.access
                .open_channel(&ctx.auth_user, &ctx.vhost.name, None, user_channels)?;
        let counted = CountedChannel::new(&ctx.tracked);
        let shared = ChannelShared::new(
            id,
            ctx.outbound.clone(),
            ctx.cancel_notify,
            ctx.stats.clone(),
            delivery::ChannelTrace {
                vhost: Arc::downgrade(&ctx.vhost),
                on: ctx.vhost.tracing_switch(),
                origin: Arc::new(crate::vhost::TraceOrigin {
                    connection: ctx.name.to_string(),
                    channel: id,
                    user: ctx.auth_user.name.clone(),
                }),
            },
        );
        stats::bump(&ctx.stats.channels);
        stats::bump(&ctx.vhost.churn.channels_opened);
        let probe: Arc<dyn stats::ChannelProbe> = shared.clone();
        ctx.stats.add_channel(Arc::downgrade(&probe));
        let mut ack_clock = consumer_timeout::AckClock::default();
        if let Some(timeout) = ctx.config.consumer_timeout {
            ack_clock.note_timeout(timeout.as_millis() as u64);
        }
        Ok(Channel {
            ack_clock,
            id,
            shared,
            ctx,
            access,
            content: None,
            confirms: None,
            tx: None,
            commits_waiting_for_disk: Default::default(),
            last_queue: None,
            last_route: Default::default(),
            reply_queue: None,
            replies_waiting_for_metadata: RefCell::default(),
            _counted: counted,
            publish_tally: Default::default(),
        })
    }

    /// What the management API reads of this channel (registered in `src/registry.rs`).
    pub fn probe(&self) -> Arc<dyn crate::registry::ChannelProbe> {
        self.shared.clone()
    }

    /// This channel's counters and gauges now.
    // Read by the management API and Prometheus (issues 13 and 14); nothing calls it yet.
    #[allow(dead_code)]
    pub fn stats(&self) -> ChannelStats {
        self.shared.stats()
    }

    fn reply(&self, method: impl Into<Method>) {
        let method = method.into();
        let mut held = self.replies_waiting_for_metadata.borrow_mut();
        if held.is_empty() {
            self.ctx.outbound.send_method(self.id, &method);
        } else {
            held.push_back((0, method));
        }
    }

    /// Sends the -ok of a declare, delete, bind or unbind once the definitions it changed (or
    /// any change still in flight, possibly another channel's declare of the same name) are
    /// committed to disk, so a client never hears of a durable thing a crash could lose.
    fn reply_once_durable(&self, method: impl Into<Method>) {
        match self.ctx.vhost.store().and_then(|s| s.metadata_pending()) {
            Some(seq) => self
                .replies_waiting_for_metadata
                .borrow_mut()
                .push_back((seq, method.into())),
            None => self.reply(method),
        }
    }

    /// Sends the held replies whose definitions are committed, in order.
    fn release_durable_replies(&self) {
        let mut held = self.replies_waiting_for_metadata.borrow_mut();
        if held.is_empty() {
            return;
        }
        let Some(store) = self.ctx.vhost.store() else {
            return;
        };
        let committed = *store.metadata_committed_ref().borrow();
        while let Some((_, method)) = held.pop_front_if(|(seq, _)| *seq <= committed) {
            self.ctx.outbound.send_method(self.id, &method);
        }
    }

    /// Whether a reply waits for the metadata writer (the connection then wakes up when it
    /// commits).
    pub fn is_waiting_for_metadata(&self) -> bool {
        !self.replies_waiting_for_metadata.borrow().is_empty()
    }

    /// Handles one method frame.
    pub fn handle_method(&mut self, method: Method) -> AmqpResult<()> {
        if self.content.is_some() {
            return Err(AmqpError::unexpected_frame(format!(
                "expected content header for class 60, got non content header frame instead ({})",
                method.name()
            )));
        }
        let (class_id, method_id) = (method.class_id(), method.method_id());
        self.dispatch(method).map_err(|mut e| {
            if e.class_id == 0 {
                e.class_id = class_id;
                e.method_id = method_id;
            }
            e
        })
    }

    fn dispatch(&mut self, method: Method) -> AmqpResult<()> {
        match method {
            Method::ChannelFlow(m) => self.channel_flow(m),
            Method::ExchangeDeclare(m) => self.exchange_declare(m),
            Method::ExchangeDelete(m) => self.exchange_delete(m),
            Method::ExchangeBind(m) => self.exchange_bind(m),
            Method::ExchangeUnbind(m) => self.exchange_unbind(m),
            Method::QueueDeclare(m) => self.queue_declare(m),
            Method::QueueBind(m) => self.queue_bind(m),
            Method::QueueUnbind(m) => self.queue_unbind(m),
            Method::QueuePurge(m) => self.queue_purge(m),
            Method::QueueDelete(m) => self.queue_delete(m),
            Method::BasicQos(m) => self.basic_qos(m),
            Method::BasicConsume(m) => self.basic_consume(m),
            Method::BasicCancel(m) => self.basic_cancel(m),
            Method::BasicPublish(m) => self.basic_publish(m),
            Method::BasicGet(m) => self.basic_get(m),
            Method::BasicAck(m) => self.basic_ack(m.delivery_tag, m.multiple),
            Method::BasicReject(m) => self.basic_nack(m.delivery_tag, false, m.requeue),
            Method::BasicNack(m) => self.basic_nack(m.delivery_tag, m.multiple, m.requeue),
            Method::BasicRecover(m) => self.basic_recover(m.requeue, true),
            Method::BasicRecoverAsync(m) => self.basic_recover(m.requeue, false),
            Method::ConfirmSelect(m) => self.confirm_select(m),
            Method::TxSelect(_) => self.tx_select(),
            Method::TxCommit(_) => self.tx_commit(),
            Method::TxRollback(_) => self.tx_rollback(),
            Method::ChannelFlowOk(_) => Ok(()), // the broker never sends channel.flow
            other => Err(AmqpError::command_invalid(format!(
                "method {} is not valid on channel {}",
                other.name(),
                self.id
            ))),
        }
    }

    /// Handles a content header frame.
    pub fn handle_header(&mut self, header: ContentHeader) -> AmqpResult<()> {
        self.content_header(header)
    }

    /// Handles a content body frame.
    pub fn handle_body(&mut self, payload: Bytes) -> AmqpResult<()> {
        self.content_body(payload)
    }

    fn channel_flow(&mut self, m: channel::Flow) -> AmqpResult<()> {
        if !m.active && !self.ctx.config.honour_channel_flow {
            // RabbitMQ 3.x: connection.close 540 (clients' own test suites expect it).
            return Err(AmqpError::not_implemented("active=false"));
        }
        self.shared.set_flow(m.active);
        self.reply(channel::FlowOk { active: m.active });
        if m.active {
            self.kick_consumed_queues();
        }
        Ok(())
    }

    /// Delivers again from the queues this channel consumes (credit was freed).
    fn kick_consumed_queues(&self) {
        for q in self.shared.consumed_queues() {
            q.dispatch();
        }
    }

    /// This channel takes deliveries to acknowledge from `queue`: its timeout counts.
    fn note_consumer_timeout(&mut self, queue: &crate::queue::Queue) {
        if let Some(ms) = queue.args().consumer_timeout {
            self.ack_clock.note_timeout(ms);
        }
    }

    /// How often the connection calls [`Channel::check_consumer_timeout`]; `None`: never.
    pub fn consumer_timeout_period(&self) -> Option<std::time::Duration> {
        self.ack_clock.period()
    }

    /// The consumer timeout check: a 406 (the channel then closes and requeues) when an
    /// unacknowledged delivery is older than its timeout.
    pub fn check_consumer_timeout(&mut self, now: std::time::Instant) -> AmqpResult<()> {
        let default_ms = self
            .ctx
            .config
            .consumer_timeout
            .map(|t| t.as_millis() as u64);
        let (id, clock) = (self.id, &mut self.ack_clock);
        self.shared
            .with_outstanding(default_ms, |next_tag, outstanding| {
                clock.check(id, now, next_tag, outstanding)
            })
    }

    /// Called once all frames of one socket read were handled: sends coalesced confirms.
    pub fn end_of_batch(&mut self) {
        self.publish_tally.flush();
        self.release_durable_replies();
        if self.confirms.is_none() && self.commits_waiting_for_disk.is_empty() {
            return;
        }
        let synced = JournalSeq(self.ctx.vhost.store().map_or(0, |s| *s.synced().borrow()));
        if let Some(confirms) = &mut self.confirms {
            let confirmed = confirms.flush(self.id, &self.ctx.outbound, synced);
            self.shared.count(confirmed, |c| &c.confirmed);
        }
        while self
            .commits_waiting_for_disk
            .front()
            .is_some_and(|seq| *seq <= synced)
        {
            self.commits_waiting_for_disk.pop_front();
            self.reply(warren_protocol::tx::CommitOk {});
        }
    }

    /// Whether a publisher confirm waits for the journal (the connection then wakes up when
    /// the journal syncs).
    pub fn is_waiting_for_disk(&self) -> bool {
        self.confirms
            .as_ref()
            .is_some_and(|c| c.is_waiting_for_disk())
            || !self.commits_waiting_for_disk.is_empty()
    }

    /// Releases everything the channel holds: consumers leave their queues (auto-delete ones may
    /// go), unacked deliveries are requeued with redelivered=true.
    pub fn close(&mut self) {
        // Deliveries stop first (`shared.close`), then unacked messages go back before the
        // consumers leave: a single-active-consumer queue hands over to the next consumer with
        // the requeued messages at the head, as RabbitMQ does when a channel goes down.
        let consumers = self.shared.close();
        self.requeue_unacked();
        if let Some(tx) = &mut self.tx {
            requeue_grouped(tx.take_settled());
        }
        for (tag, queue) in consumers {
            let sink: Arc<dyn crate::queue::ConsumerSink> = self.shared.clone();
            if queue.remove_consumer(&sink, &tag) {
                self.ctx.vhost.remove_queue(&queue);
            }
        }
    }

    fn requeue_unacked(&self) {
        let unacked = self.shared.take_all_unacked();
        requeue_grouped(unacked);
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        stats::bump(&self.ctx.vhost.churn.channels_closed);
        let _ = self.ctx.stats.channels.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |n| Some(n.saturating_sub(1)),
        );
    }
}

/// Requeues deliveries queue by queue, in one call each so every queue dispatches once.
fn requeue_grouped(unacked: Vec<delivery::Unacked>) {
    let mut groups: Vec<(Arc<crate::queue::Queue>, Vec<crate::queue::QueuedMessage>)> = Vec::new();
    for u in unacked {
        match groups.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &u.queue)) {
            Some((_, msgs)) => msgs.push(u.msg),
            None => groups.push((u.queue, vec![u.msg])),
        }
    }
    for (queue, msgs) in groups {
        queue.requeue(msgs);
    }
}
