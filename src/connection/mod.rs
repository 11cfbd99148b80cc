//! One client connection: the protocol header, the handshake, then the steady state — frames
//! dispatched by channel, heartbeats both ways, and the close handshakes. The only place that
//! turns an `AmqpError` into channel.close or connection.close.

pub mod handshake;
pub mod reader;

use crate::broker::Broker;
use crate::channel::{Channel, ConnectionContext};
use crate::error::AmqpError;
use crate::limits;
use crate::outbound::Outbound;
use handshake::{send_close, HandshakeEnd, Negotiated};
use reader::{FrameReader, ReadError};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::field::Empty;
use tracing::{debug, error, info, info_span, warn, Instrument, Span};
use warren_protocol::{
    channel, connection, Frame, Method, ProtocolHeader, ReplyCode, ShortStr, FRAME_MIN_SIZE,
    PROTOCOL_HEADER,
};

/// How long to wait for connection.close-ok after sending connection.close.
const CLOSE_OK_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a connection ended: kept as data (the management API will list it), logged in words.
#[derive(Debug)]
pub enum CloseReason {
    /// The client sent connection.close.
    ClientClose,
    /// The socket closed or failed without a close handshake.
    PeerGone(std::io::Error),
    /// No frames for two heartbeat intervals (the interval, in seconds).
    HeartbeatTimeout(u16),
    /// Warren closed it with an error (sent as connection.close).
    Error(AmqpError),
}

impl CloseReason {
    /// The level of the "connection closed" line, as RabbitMQ logs these endings: a normal
    /// close is info, a vanished client a warning, missed heartbeats an error. A connection
    /// error was already logged as an error when Warren sent it, so its closing line is info.
    pub fn level(&self) -> tracing::Level {
        match self {
            CloseReason::ClientClose | CloseReason::Error(_) => tracing::Level::INFO,
            CloseReason::PeerGone(_) => tracing::Level::WARN,
            CloseReason::HeartbeatTimeout(_) => tracing::Level::ERROR,
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::ClientClose => f.write_str("client closed the connection"),
            CloseReason::PeerGone(e) => match e.kind() {
                std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe => {
                    f.write_str("client unexpectedly closed TCP connection")
                }
                _ => write!(f, "socket error: {e}"),
            },
            CloseReason::HeartbeatTimeout(s) => {
                write!(f, "missed heartbeats from client, timeout: {s}s")
            }
            CloseReason::Error(e) => {
                // Reply texts quote client-chosen names: escaped, so no one can forge log lines.
                write!(
                    f,
                    "connection error {}: {}",
                    e.code.code(),
                    crate::logging::log_safe(&e.reply_text())
                )
            }
        }
    }
}

/// What the transport proved about the peer before AMQP starts: nothing on the plaintext
/// listener; on the TLS one, whether a client certificate was verified and the user name it
/// stands for (`--ssl-cert-login-from`), which SASL EXTERNAL logs in as.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerCertificate {
    /// The client presented a certificate that chains to `--tls-ca`: EXTERNAL is offered.
    pub verified: bool,
    /// The user name taken from it; `None` when it has no usable name.
    pub identity: Option<String>,
}

/// Serves one accepted socket until it closes, inside a `connection` span (id and peer; user,
/// vhost and the client-provided name once the handshake tells them) so that every log line
/// says which connection it concerns.
///
/// These entry points are plain functions returning the one `async fn` below, not `async fn`s
/// awaiting it: each `async fn` level keeps its arguments in its state for the connection's
/// whole life (twice: as passed and as moved in), and every idle connection's task is that
/// large.
pub fn serve<S>(
    broker: Arc<Broker>,
    socket: S,
    peer: SocketAddr,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let local = SocketAddr::from(([0, 0, 0, 0], 0));
    serve_at(broker, socket, peer, local, shutdown)
}

/// [`serve`], knowing the local address too (the connection's name in the management API is
/// `"{peer} -> {local}"`, as RabbitMQ's).
pub fn serve_at<S>(
    broker: Arc<Broker>,
    socket: S,
    peer: SocketAddr,
    local: SocketAddr,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    serve_with_certificate(broker, socket, (peer, local), None, shutdown)
}

/// [`serve_at`] for a connection whose transport is TLS: `certificate` says what the handshake
/// proved about the peer (`None` on plaintext). The connection counts as live (see
/// [`Broker::connection_started`]) from this call until the returned future ends or is dropped.
pub fn serve_with_certificate<S>(
    broker: Arc<Broker>,
    socket: S,
    (peer, local): (SocketAddr, SocketAddr),
    certificate: Option<PeerCertificate>,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let live = broker.connection_started();
    let id = broker.next_connection_id();
    let span = info_span!("connection", id, %peer, user = Empty, vhost = Empty, name = Empty);
    serve_in_span(
        id,
        live,
        broker,
        socket,
        (peer, local),
        certificate,
        shutdown,
    )
    .instrument(span)
}

async fn serve_in_span<S>(
    id: u64,
    _live: crate::broker::LiveConnection,
    broker: Arc<Broker>,
    socket: S,
    (peer, local): (SocketAddr, SocketAddr),
    certificate: Option<PeerCertificate>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read_half, mut write_half) = tokio::io::split(socket);
    let counters = Arc::new(crate::stats::ConnectionCounters::named(peer.to_string()));
    let mut reader = FrameReader::new(read_half);
    reader.count_into(counters.clone());
    let deadline = tokio::time::Instant::now() + broker.config.handshake_timeout;
    match tokio::time::timeout_at(deadline, reader.read_protocol_header()).await {
        Ok(Ok(ProtocolHeader::Amqp091)) => {}
        // A TLS client on the plaintext port: its ClientHello is not AMQP. It gets the AMQP
        // header, as any unknown protocol does (RabbitMQ too), and the operator a hint.
        Ok(Ok(ProtocolHeader::Unsupported(header))) if crate::tls::looks_like_tls(&header) => {
            warn!("TLS handshake received on the plaintext AMQP port; closing (TLS clients must use the --amqps-listen port)");
            let _ = write_half.write_all(&PROTOCOL_HEADER).await;
            let _ = write_half.shutdown().await;
            return;
        }
        Ok(Ok(ProtocolHeader::Unsupported(header))) => {
            debug!(
                ?header,
                "unsupported protocol header; answering with AMQP 0-9-1's"
            );
            let _ = write_half.write_all(&PROTOCOL_HEADER).await;
            let _ = write_half.shutdown().await;
            return;
        }
        // Port probes and TCP health checks: not worth a line at info.
        Ok(Err(e)) => return debug!(error = %e, "peer left before the protocol header"),
        Err(_) => return warn!("no protocol header before the handshake timeout"),
    }
    let outbound = Outbound::new(FRAME_MIN_SIZE, counters.clone());
    let writer = tokio::spawn(outbound.clone().run_writer(write_half));
    let negotiated = match handshake::handshake(
        &mut reader,
        &outbound,
        &broker,
        handshake::Arrival {
            id,
            peer,
            certificate: certificate.as_ref().unwrap_or(&PeerCertificate::default()),
            shutdown: &shutdown,
        },
        deadline,
    )
    .await
    {
        Ok(n) => n,
        Err(end) => {
            // A peer too slow for the handshake gets no more time to close politely.
            let eof_wait = match &end {
                HandshakeEnd::Timeout => Duration::ZERO,
                _ => CLOSE_OK_TIMEOUT,
            };
            // RabbitMQ logs refused logins and refused connections as errors.
            match end {
                HandshakeEnd::AuthFailed(why) => error!("authentication failed: {why}"),
                HandshakeEnd::Refused(e) => error!(
                    code = e.code.code(),
                    "connection refused during the handshake: {}",
                    crate::logging::log_safe(&e.reply_text())
                ),
                HandshakeEnd::Timeout => warn!("handshake timed out"),
                HandshakeEnd::Io(e) => debug!(error = %e, "peer left during the handshake"),
            }
            finish(&outbound, writer, reader, eof_wait).await;
            return;
        }
    };
    // A plain function: its locals take no room in this task's state for the connection's life.
    let (mut conn, closing) = Connection::open(
        id,
        &broker,
        negotiated,
        (outbound.clone(), reader, counters),
        (peer, local),
        certificate.is_some(),
        &shutdown,
    );
    let reason = conn.run(closing).await;
    broker.registry.unregister(conn.ctx.id);
    conn.release();
    match reason.level() {
        tracing::Level::INFO => info!(reason = %reason, "connection closed"),
        tracing::Level::WARN => warn!(reason = %reason, "connection closed"),
        _ => error!(reason = %reason, "connection closed"),
    }
    let eof_wait = if conn.peer_silent {
        Duration::ZERO
    } else {
        CLOSE_OK_TIMEOUT
    };
    finish(&outbound, writer, conn.reader, eof_wait).await;
}

/// Flushes what is queued, waits (at most `eof_wait`) for the peer to close its side, then
/// closes ours.
/// Closing first would make clients such as lapin report an aborted connection instead of the
/// close they were about to read, and unread input would reset the connection.
async fn finish<R, W>(
    outbound: &Outbound,
    writer: tokio::task::JoinHandle<std::io::Result<W>>,
    mut reader: FrameReader<R>,
    eof_wait: Duration,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    outbound.close();
    let Ok(Ok(Ok(mut socket))) = tokio::time::timeout(CLOSE_OK_TIMEOUT, writer).await else {
        return;
    };
    let _ = tokio::time::timeout(eof_wait, async { while reader.discard().await.is_ok() {} }).await;
    let _ = socket.shutdown().await;
}

enum Slot {
    Open(Box<Channel>),
    /// channel.close was sent; waiting for close-ok, dropping everything else.
    Closing,
}

/// Whether the read loop goes on.
enum Flow {
    Continue,
    Closed(CloseReason),
}

struct Connection<R> {
    ctx: Arc<ConnectionContext>,
    channels: HashMap<u16, Slot>,
    channel_max: u16,
    heartbeat: u16,
    reader: FrameReader<R>,
    last_input: Instant,
    /// The broker's memory alarm (see `alarm.rs`).
    memory_alarm: watch::Receiver<bool>,
    /// The broker's disk free alarm (see `alarm.rs`).
    disk_alarm: watch::Receiver<bool>,
    /// Whether this connection ever published: only publishers are blocked by the alarm.
    has_published: bool,
    /// The client asked for connection.blocked / unblocked.
    blocked_notify: bool,
    /// The peer did not answer our connection.close in time: `finish` does not wait for it
    /// again, so one silent client cannot hold a shutdown past its grace period.
    peer_silent: bool,
    /// Held while the connection lives: its place in the node's connection count.
    _slot: limits::ConnectionSlot,
    frame_max: u32,
    mechanism: String,
    /// Handed to the registry at registration.
    client_properties: warren_protocol::FieldTable,
    /// Its place in the management API's lists (set once the connection is registered).
    entry: Option<Arc<crate::registry::ConnectionEntry>>,
    /// Held while the connection lives: its place among connections by user and vhost.
    _registered: crate::tracking::Registered,
    /// A channel opened or began taking deliveries to acknowledge: the consumer timeout
    /// check's period is computed again.
    ack_period_changed: bool,
}

impl<R: AsyncRead + Unpin> Connection<R> {
    /// The handshake is done: names the connection in its span, logs it and registers it in
    /// the management API's lists. Returns it with the token that closes it.
    fn open(
        id: u64,
        broker: &Broker,
        negotiated: Negotiated,
        (outbound, reader, counters): (
            Arc<Outbound>,
            FrameReader<R>,
            Arc<crate::stats::ConnectionCounters>,
        ),
        (peer, local): (SocketAddr, SocketAddr),
        ssl: bool,
        shutdown: &CancellationToken,
    ) -> (Self, CancellationToken) {
        let span = Span::current();
        span.record("vhost", tracing::field::display(&negotiated.vhost.name));
        if let Some(name) = negotiated
            .client_properties
            .get("connection_name")
            .and_then(|v| v.as_str())
        {
            span.record("name", tracing::field::debug(name)); // quoted and escaped: client-chosen
        }
        info!("connection opened");
        let name: Arc<str> = crate::registry::connection_name(peer, local).into();
        let mut conn = Connection::new(id, broker, negotiated, outbound, reader, counters, name);
        let details = crate::registry::ConnectionDetails {
            peer,
            local,
            user: conn.ctx.auth_user.name.to_string(),
            vhost: conn.ctx.vhost.name.clone(),
            client_properties: std::mem::take(&mut conn.client_properties),
            channel_max: conn.channel_max,
            frame_max: conn.frame_max,
            heartbeat: conn.heartbeat,
            auth_mechanism: conn.mechanism.clone(),
            ssl,
        };
        let entry =
            broker
                .registry
                .register(conn.ctx.id, details, conn.ctx.stats.clone(), shutdown);
        let closing = entry.closing().clone();
        conn.entry = Some(entry);
        (conn, closing)
    }

    fn new(
        id: u64,
        broker: &Broker,
        n: Negotiated,
        outbound: Arc<Outbound>,
        reader: FrameReader<R>,
        counters: Arc<crate::stats::ConnectionCounters>,
        name: Arc<str>,
    ) -> Self {
        let id = crate::ids::ConnectionId(id);
        let stats = n.vhost.register_connection(id, counters);
        let tracked = n.registered.tracked.clone();
        let ctx = Arc::new(ConnectionContext {
            tracking: broker.tracking.clone(),
            tracked,
            id,
            stats,
            vhost: n.vhost,
            outbound,
            auth_user: n.user,
            access: broker.users.clone(),
            config: broker.config.clone(),
            cancel_notify: n.cancel_notify,
            name,
        });
        Connection {
            ctx,
            channels: HashMap::new(),
            channel_max: n.channel_max,
            heartbeat: n.heartbeat,
            reader,
            last_input: Instant::now(),
            memory_alarm: broker.memory_alarm.subscribe(),
            disk_alarm: broker.disk_alarm.subscribe(),
            has_published: false,
            blocked_notify: n.blocked_notify,
            peer_silent: false,
            _slot: n.slot,
            frame_max: n.frame_max,
            mechanism: n.mechanism,
            client_properties: n.client_properties,
            entry: None,
            _registered: n.registered,
            ack_period_changed: false,
        }
    }

    /// Which resource alarms are on, in RabbitMQ's connection.blocked words; None when none is.
    fn alarm_reason(&self) -> Option<&'static str> {
        match (*self.memory_alarm.borrow(), *self.disk_alarm.borrow()) {
            (false, false) => None,
            (true, false) => Some("low on memory"),
            (false, true) => Some("low on disk"),
            (true, true) => Some("low on memory & disk"),
        }
    }

    async fn run(&mut self, shutdown: CancellationToken) -> CloseReason {
        let period = Duration::from_secs(u64::from(self.heartbeat.max(1))) / 2;
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut synced = self.ctx.vhost.store().map(|s| s.synced());
        let mut definitions_committed = self.ctx.vhost.store().map(|s| s.metadata_committed());
        // The consumer timeout check (channel/consumer_timeout.rs): one timer per connection.
        let mut ack_period: Option<Duration> = None;
        let ack_check = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(ack_check);
        loop {
            match self.handle_buffered() {
                Ok(Flow::Continue) => {}
                Ok(Flow::Closed(reason)) => return reason,
                Err(e) => return self.close_with(e).await,
            }
            if std::mem::take(&mut self.ack_period_changed) {
                let period = self.consumer_timeout_period();
                if let Some(p) = period.filter(|p| ack_period.is_none_or(|old| *p < old)) {
                    ack_check.as_mut().reset(tokio::time::Instant::now() + p);
                }
                ack_period = period;
            }
            if self.ctx.outbound.is_congested() {
                // The client is not reading what we send: stop reading what it sends.
                tokio::select! {
                    _ = self.ctx.outbound.wait_drained() => {}
                    _ = shutdown.cancelled() => return self.close_with(self.forced_error()).await,
                }
            }
            if self.has_published && self.alarm_reason().is_some() {
                if let Some(reason) = self.wait_while_blocked(&shutdown, &mut ticker).await {
                    return reason;
                }
            }
            tokio::select! {
                read = self.reader.fill() => {
                    if let Err(e) = read {
                        return CloseReason::PeerGone(e);
                    }
                    self.last_input = Instant::now();
                }
                _ = ticker.tick(), if self.heartbeat > 0 => {
                    if self.last_input.elapsed() > Duration::from_secs(u64::from(self.heartbeat) * 2) {
                        return CloseReason::HeartbeatTimeout(self.heartbeat);
                    }
                    self.ctx.outbound.send_heartbeat();
                }
                // A publisher hears of an alarm as it rises, not only at its next read.
                Ok(()) = self.memory_alarm.changed(), if self.has_published => {}
                Ok(()) = self.disk_alarm.changed(), if self.has_published => {}
                // Confirms of persistent messages go out once the journal has synced them.
                Some(()) = journal_synced(&mut synced), if self.is_waiting_for_disk() => {}
                // Declare-oks go out once the metadata writer has committed their definitions.
                Some(()) = journal_synced(&mut definitions_committed), if self.is_waiting_for_metadata() => {}
                () = &mut ack_check, if ack_period.is_some() => {
                    if let Err(e) = self.check_consumer_timeouts() {
                        return self.close_with(e).await;
                    }
                    ack_period = self.consumer_timeout_period();
                    if let Some(p) = ack_period {
                        ack_check.as_mut().reset(tokio::time::Instant::now() + p);
                    }
                }
                // The broker's shutdown, or a close asked for through the management API.
                _ = shutdown.cancelled() => return self.close_with(self.forced_error()).await,
                // This connection's vhost or user was deleted (RabbitMQ's connection tracking
                // closes it); its token is a child of the shutdown token.
                _ = self.ctx.tracked.forced() => {
                    let e = match self.ctx.tracked.forced_reason() {
                        Some(text) => AmqpError::new(ReplyCode::ConnectionForced, text),
                        None => shutdown_error(),
                    };
                    return self.close_with(e).await;
                }
            }
        }
    }

    /// The shortest consumer timeout check period among the open channels.
    fn consumer_timeout_period(&self) -> Option<Duration> {
        self.channels
            .values()
            .filter_map(|slot| match slot {
                Slot::Open(ch) => ch.consumer_timeout_period(),
                Slot::Closing => None,
            })
            .min()
    }

    /// Closes (406) each channel holding a delivery past its consumer timeout.
    fn check_consumer_timeouts(&mut self) -> Result<(), AmqpError> {
        let now = Instant::now();
        let open: Vec<u16> = self
            .channels
            .iter()
            .filter(|(_, slot)| matches!(slot, Slot::Open(_)))
            .map(|(id, _)| *id)
            .collect();
        for id in open {
            self.with_channel(id, |ch| ch.check_consumer_timeout(now))?;
        }
        Ok(())
    }

    /// A resource alarm (memory or disk) is on and this connection publishes: stop reading from
    /// it (TCP back-pressure reaches the publisher) and tell it with connection.blocked, as
    /// RabbitMQ does, until every alarm clears. Heartbeats keep going out; missing ones from the peer are
    /// not held against it meanwhile, since nothing is read.
    async fn wait_while_blocked(
        &mut self,
        shutdown: &CancellationToken,
        ticker: &mut tokio::time::Interval,
    ) -> Option<CloseReason> {
        if let (true, Some(reason)) = (self.blocked_notify, self.alarm_reason()) {
            let blocked = connection::Blocked {
                reason: ShortStr::from(reason),
            };
            self.ctx.outbound.send_method(0, &blocked.into());
        }
        while self.alarm_reason().is_some() {
            tokio::select! {
                changed = self.memory_alarm.changed() => if changed.is_err() { break },
                changed = self.disk_alarm.changed() => if changed.is_err() { break },
                _ = ticker.tick(), if self.heartbeat > 0 => self.ctx.outbound.send_heartbeat(),
                _ = shutdown.cancelled() => return Some(self.close_with(self.forced_error()).await),
            }
        }
        if self.blocked_notify {
            self.ctx
                .outbound
                .send_method(0, &connection::Unblocked {}.into());
        }
        self.last_input = Instant::now();
        None
    }

    /// Why the close token fired: the management API's reason, else the broker's shutdown.
    fn forced_error(&self) -> AmqpError {
        match self.entry.as_ref().and_then(|e| e.close_reason()) {
            Some(reason) => AmqpError::new(ReplyCode::ConnectionForced, reason),
            None => shutdown_error(),
        }
    }

    fn is_waiting_for_metadata(&self) -> bool {
        self.channels
            .values()
            .any(|slot| matches!(slot, Slot::Open(ch) if ch.is_waiting_for_metadata()))
    }

    fn is_waiting_for_disk(&self) -> bool {
        self.channels
            .values()
            .any(|slot| matches!(slot, Slot::Open(ch) if ch.is_waiting_for_disk()))
    }

    /// Handles every whole frame in the read buffer, then flushes coalesced confirms. The
    /// writers of the connections this reaches (deliveries, replies) are woken once at the end
    /// (`WakeBatch`), not per frame.
    fn handle_buffered(&mut self) -> Result<Flow, AmqpError> {
        let _wakes = crate::outbound::WakeBatch::begin();
        loop {
            let frame = match self.reader.try_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(ReadError::Decode(e)) => {
                    return Err(AmqpError::new(e.reply_code(), e.to_string()))
                }
                Err(ReadError::Io(e)) => return Ok(Flow::Closed(CloseReason::PeerGone(e))),
            };
            if let Flow::Closed(reason) = self.handle_frame(frame)? {
                return Ok(Flow::Closed(reason));
            }
        }
        for slot in self.channels.values_mut() {
            if let Slot::Open(ch) = slot {
                ch.end_of_batch();
            }
        }
        Ok(Flow::Continue)
    }

    fn handle_frame(&mut self, frame: Frame) -> Result<Flow, AmqpError> {
        if let Frame::Method {
            method: Method::BasicPublish(_),
            ..
        } = &frame
        {
            self.has_published = true;
        } else if let Frame::Method {
            method: Method::BasicConsume(_) | Method::BasicGet(_) | Method::ChannelOpen(_),
            ..
        } = &frame
        {
            self.ack_period_changed = true;
        }
        match frame {
            Frame::Heartbeat => Ok(Flow::Continue),
            Frame::Method { channel: 0, method } => self.connection_method(method),
            Frame::Method { channel, method } => self
                .channel_method(channel, method)
                .map(|()| Flow::Continue),
            Frame::Header { channel: 0, .. } | Frame::Body { channel: 0, .. } => Err(
                AmqpError::unexpected_frame("content frames are not allowed on channel 0"),
            ),
            Frame::Header { channel, header } => self
                .with_channel(channel, |ch| ch.handle_header(header))
                .map(|()| Flow::Continue),
            Frame::Body { channel, payload } => self
                .with_channel(channel, |ch| ch.handle_body(payload))
                .map(|()| Flow::Continue),
        }
    }

    fn connection_method(&mut self, method: Method) -> Result<Flow, AmqpError> {
        match method {
            Method::ConnectionClose(m) => {
                debug!(reply_code = m.reply_code, reply_text = %m.reply_text, "client closed the connection");
                self.ctx
                    .outbound
                    .send_method(0, &connection::CloseOk {}.into());
                Ok(Flow::Closed(CloseReason::ClientClose))
            }
            Method::ConnectionUpdateSecret(_) => {
                // Warren's credentials do not expire, so a new secret changes nothing.
                self.ctx
                    .outbound
                    .send_method(0, &connection::UpdateSecretOk {}.into());
                Ok(Flow::Continue)
            }
            other => Err(AmqpError::command_invalid(format!(
                "{} is not valid on channel 0 after the handshake",
                other.name()
            ))
            .caused_by(&other)),
        }
    }

    fn channel_method(&mut self, id: u16, method: Method) -> Result<(), AmqpError> {
        match (self.channels.get_mut(&id), method) {
            (None, Method::ChannelOpen(_)) => {
                // Channels still closing count too, as in RabbitMQ, until their close-ok.
                limits::check_channel_count(self.channels.len(), self.channel_max)?;
                let channel = Channel::open(id, self.ctx.clone())?;
                if let Some(entry) = &self.entry {
                    entry.add_channel(id, channel.probe());
                }
                self.channels.insert(id, Slot::Open(Box::new(channel)));
                self.ctx
                    .outbound
                    .send_method(id, &channel::OpenOk::default().into());
                Ok(())
            }
            // A crossing close can also reach us in the other order: the client answered our
            // channel.close (close-ok, which freed the channel) before its own channel.close
            // went out. Answer that late close instead of failing the whole connection; a stray
            // close-ok needs no answer.
            (None, Method::ChannelClose(_)) => {
                self.ctx
                    .outbound
                    .send_method(id, &channel::CloseOk {}.into());
                Ok(())
            }
            (None, Method::ChannelCloseOk(_)) => Ok(()),
            (None, other) => {
                Err(AmqpError::channel_error("expected 'channel.open'").caused_by(&other))
            }
            (Some(Slot::Closing), Method::ChannelCloseOk(_)) => {
                self.channels.remove(&id);
                Ok(())
            }
            (Some(Slot::Closing), Method::ChannelClose(_)) => {
                // Both sides closed at once: answer, and keep waiting for the close-ok of our
                // own close (amqp091-go sends it next), as RabbitMQ does: removing the channel
                // now would make that close-ok a frame on a closed channel (504, whole
                // connection).
                self.ctx
                    .outbound
                    .send_method(id, &channel::CloseOk {}.into());
                Ok(())
            }
            (Some(Slot::Closing), _) => Ok(()), // dropped until close-ok (spec: channel.close)
            (Some(Slot::Open(_)), m @ Method::ChannelOpen(_)) => {
                Err(AmqpError::channel_error("second 'channel.open' seen").caused_by(&m))
            }
            (Some(Slot::Open(ch)), Method::ChannelClose(_)) => {
                ch.close();
                self.channels.remove(&id);
                self.forget_channel(id);
                self.ctx
                    .outbound
                    .send_method(id, &channel::CloseOk {}.into());
                Ok(())
            }
            (Some(Slot::Open(_)), Method::ChannelCloseOk(_)) => Ok(()),
            (Some(Slot::Open(_)), method) => self.with_channel(id, |ch| ch.handle_method(method)),
        }
    }

    /// The span of channel `id`'s log lines, inside the connection's. Made when a channel-level
    /// line is logged, not kept and entered per frame: that would cost every publish a span
    /// enter and exit for lines that are rare.
    fn channel_span(id: u16) -> Span {
        info_span!("channel", channel = id)
    }

    /// Runs `f` on an open channel; a soft error closes just that channel.
    fn with_channel(
        &mut self,
        id: u16,
        f: impl FnOnce(&mut Channel) -> Result<(), AmqpError>,
    ) -> Result<(), AmqpError> {
        let ch = match self.channels.get_mut(&id) {
            Some(Slot::Open(ch)) => ch,
            Some(Slot::Closing) => return Ok(()),
            None => return Err(AmqpError::channel_error("expected 'channel.open'")),
        };
        match f(ch) {
            Ok(()) => Ok(()),
            Err(e) if e.is_soft() => {
                // One line per channel error, at RabbitMQ's level, inside the channel's span.
                Self::channel_span(id).in_scope(|| {
                    error!(
                        code = e.code.code(),
                        "channel error: {}",
                        crate::logging::log_safe(&e.reply_text())
                    )
                });
                ch.close();
                self.forget_channel(id);
                let close = channel::Close {
                    reply_code: e.code.code(),
                    reply_text: ShortStr::truncated(&e.reply_text()),
                    class_id: e.class_id,
                    method_id: e.method_id,
                };
                self.ctx.outbound.send_method(id, &close.into());
                self.channels.insert(id, Slot::Closing);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The channel left the management API's lists.
    fn forget_channel(&self, id: u16) {
        if let Some(entry) = &self.entry {
            entry.remove_channel(id);
        }
    }

    /// Sends connection.close and waits (bounded) for close-ok, dropping everything else.
    async fn close_with(&mut self, e: AmqpError) -> CloseReason {
        if e.code != ReplyCode::ConnectionForced {
            error!(
                code = e.code.code(),
                "connection error: {}",
                crate::logging::log_safe(&e.reply_text())
            );
        }
        send_close(&self.ctx.outbound, &e);
        let wait_close_ok = async {
            loop {
                match self.reader.next_frame().await {
                    Ok(Frame::Method {
                        channel: 0,
                        method: Method::ConnectionCloseOk(_),
                    }) => return,
                    Ok(Frame::Method {
                        channel: 0,
                        method: Method::ConnectionClose(_),
                    }) => {
                        self.ctx
                            .outbound
                            .send_method(0, &connection::CloseOk {}.into());
                        return;
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        };
        self.peer_silent = tokio::time::timeout(CLOSE_OK_TIMEOUT, wait_close_ok)
            .await
            .is_err();
        CloseReason::Error(e)
    }

    /// Frees what the connection held: channels (requeueing their unacked deliveries) and
    /// exclusive queues.
    fn release(&mut self) {
        for (_, slot) in self.channels.drain() {
            if let Slot::Open(mut ch) = slot {
                ch.close();
            }
        }
        let vhost = &self.ctx.vhost;
        for q in vhost.exclusive_queues_of(self.ctx.id) {
            vhost.remove_queue(&q);
        }
    }
}

/// Completes when the journal synced more records; never when there is no journal.
async fn journal_synced(synced: &mut Option<tokio::sync::watch::Receiver<u64>>) -> Option<()> {
    match synced {
        Some(rx) => rx.changed().await.ok(),
        None => std::future::pending().await,
    }
}

fn shutdown_error() -> AmqpError {
    AmqpError::new(
        ReplyCode::ConnectionForced,
        "broker forced connection closure with reason 'shutdown'",
    )
}

#[cfg(test)]
mod tests {
    use super::journal_synced;
    use std::time::Duration;
    use tokio::sync::watch;

    /// The connection's wait for the journal cannot miss a sync: a channel reads "synced up to"
    /// (`end_of_batch`, through another receiver), the journal syncs, and only then does the
    /// connection go back to wait. The wait must end at once: the sync is remembered (a watch
    /// version), not a notification that only reaches waiters already registered.
    #[tokio::test]
    async fn a_sync_after_the_confirms_were_computed_but_before_the_wait_still_wakes_it() {
        let (journal, store_view) = watch::channel(0u64);
        let mut connection = Some(store_view.clone());
        journal.send_replace(1);
        // The previous wake-up: the connection saw sync 1.
        let woke = tokio::time::timeout(Duration::from_secs(1), journal_synced(&mut connection));
        assert_eq!(woke.await, Ok(Some(())));
        // end_of_batch computes confirms from what is synced now (1); record 2 is not yet.
        assert_eq!(*store_view.borrow(), 1);
        // The journal syncs record 2 before the connection is back in its select.
        journal.send_replace(2);
        let woke = tokio::time::timeout(Duration::from_secs(1), journal_synced(&mut connection));
        assert_eq!(woke.await, Ok(Some(())), "the sync of record 2 was lost");
        // And with nothing new synced, the wait does not end by itself.
        let idle = tokio::time::timeout(Duration::from_millis(50), journal_synced(&mut connection));
        assert!(idle.await.is_err(), "woke without a sync");
    }
}
