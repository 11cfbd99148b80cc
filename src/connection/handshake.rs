//! The connection handshake: protocol header, start/start-ok (SASL), tune/tune-ok, open/open-ok.
//! Separate from the steady state: the dispatcher never sees a half-open connection.

use super::reader::{FrameReader, ReadError};
use crate::broker::Broker;
use crate::error::AmqpError;
use crate::limits::{negotiate_channel_max, ConnectionSlot};
use crate::outbound::Outbound;
use crate::vhost::VHost;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::AsyncRead;
use tokio::time::Instant;
use warren_protocol::{
    connection, FieldTable, FieldValue, Frame, LongStr, Method, ShortStr, FRAME_MIN_SIZE,
};

/// What the handshake settled.
pub struct Negotiated {
    /// Authenticated user (name and tags at login).
    pub user: crate::auth::AuthUser,
    /// The vhost of connection.open.
    pub vhost: Arc<VHost>,
    /// Highest channel number.
    pub channel_max: u16,
    /// Largest frame.
    pub frame_max: u32,
    /// Heartbeat interval in seconds (0 = none).
    pub heartbeat: u16,
    /// Client capability consumer_cancel_notify.
    pub cancel_notify: bool,
    /// Client capability connection.blocked: it wants connection.blocked / unblocked.
    pub blocked_notify: bool,
    /// The SASL mechanism the client logged in with (`PLAIN`, `AMQPLAIN`, `EXTERNAL`).
    pub mechanism: String,
    /// Client properties, for logs.
    pub client_properties: FieldTable,
    /// This connection's place in the node's connection count.
    pub slot: ConnectionSlot,
    /// Its place among the connections by user and vhost.
    pub registered: crate::tracking::Registered,
}

/// How a handshake ended without a connection.
#[derive(Debug)]
pub enum HandshakeEnd {
    /// The socket failed or the peer left.
    Io(std::io::Error),
    /// An AMQP error was sent with connection.close.
    Refused(AmqpError),
    /// Authentication failed (and was reported if the client asked).
    AuthFailed(String),
    /// The peer did not finish within the handshake timeout (`Config::handshake_timeout`).
    Timeout,
}

impl From<std::io::Error> for HandshakeEnd {
    fn from(e: std::io::Error) -> Self {
        HandshakeEnd::Io(e)
    }
}

/// Who is knocking: what the connection knows before the handshake starts.
pub struct Arrival<'a> {
    /// The connection's id (its place in the connection tracking once open).
    pub id: u64,
    pub peer: SocketAddr,
    /// What TLS proved about the peer (a default one on plaintext).
    pub certificate: &'a super::PeerCertificate,
    /// Cancelled at broker shutdown; the tracking token is made its child.
    pub shutdown: &'a tokio_util::sync::CancellationToken,
}

/// Runs the handshake with a freshly accepted peer, which must finish it by `deadline`
/// (a slow or silent peer holds neither a task nor its small handshake buffer longer).
/// The protocol header was already accepted (see `connection::serve`).
pub async fn handshake<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    outbound: &Outbound,
    broker: &Broker,
    arrival: Arrival<'_>,
    deadline: Instant,
) -> Result<Negotiated, HandshakeEnd> {
    let handshake = run(reader, outbound, broker, arrival);
    match tokio::time::timeout_at(deadline, handshake).await {
        Ok(result) => result,
        Err(_) => Err(HandshakeEnd::Timeout),
    }
}

async fn run<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    outbound: &Outbound,
    broker: &Broker,
    arrival: Arrival<'_>,
) -> Result<Negotiated, HandshakeEnd> {
    let Arrival {
        id,
        peer,
        certificate,
        shutdown,
    } = arrival;
    outbound.send_method(0, &start_method(certificate.verified));
    let start_ok: connection::StartOk = expect(reader, outbound).await?;
    let failure_close = capability(&start_ok.client_properties, "authentication_failure_close");
    // EXTERNAL logs in as the certificate's name, and only where it was offered.
    let identity = certificate
        .verified
        .then_some(certificate.identity.as_deref())
        .flatten();
    let user =
        match broker
            .users
            .login(&start_ok.mechanism, &start_ok.response, peer.ip(), identity)
        {
            Ok(user) => user,
            Err(e) => {
                if failure_close {
                    let text = crate::auth::login_refused_text(&start_ok.mechanism);
                    send_close(outbound, &AmqpError::access_refused(text));
                }
                return Err(HandshakeEnd::AuthFailed(
                    e.log_text(&crate::logging::log_safe(&start_ok.mechanism)),
                ));
            }
        };
    // Later refusals (a missing vhost, a bad tune-ok) are logged with the user, as RabbitMQ does.
    tracing::Span::current().record("user", tracing::field::display(&user.name));
    let config = &broker.config;
    outbound.send_method(
        0,
        &connection::Tune {
            channel_max: config.channel_max,
            frame_max: config.frame_max,
            heartbeat: config.heartbeat,
        }
        .into(),
    );
    let tune_ok: connection::TuneOk = expect(reader, outbound).await?;
    let frame_max = negotiate_frame_max(tune_ok.frame_max, config.frame_max)
        .map_err(|e| refuse(outbound, e))?;
    let channel_max = negotiate_channel_max(tune_ok.channel_max, config.channel_max)
        .map_err(|e| refuse(outbound, e))?;
    reader.set_frame_max(frame_max);
    outbound.set_frame_max(frame_max);
    let open: connection::Open = expect(reader, outbound).await?;
    let vhost = broker.vhost(&open.virtual_host).ok_or_else(|| {
        refuse(
            outbound,
            AmqpError::not_allowed(format!("vhost {} not found", open.virtual_host)),
        )
    })?;
    // Access to the vhost (a permission entry there) comes before the node's connection count.
    let vhost_connections = broker.tracking.count_in_vhost(&open.virtual_host);
    let user_connections = broker.tracking.count_of_user(&user.name);
    broker
        .users
        .check_connection_open(
            &user.name,
            &open.virtual_host,
            vhost_connections,
            user_connections,
        )
        .map_err(|e| refuse(outbound, AmqpError::from(e).with_method(10, 40)))?;
    let slot = broker
        .connections
        .try_acquire(config.connection_max)
        .map_err(|e| refuse(outbound, e.with_method(10, 40)))?; // caused by connection.open
                                                                // Counted from here, before open-ok, so the next connection.open sees this one.
    let registered = broker
        .tracking
        .register(id, user.name.clone(), &open.virtual_host, shutdown);
    outbound.send_method(0, &connection::OpenOk::default().into());
    Ok(Negotiated {
        registered,
        user,
        vhost,
        channel_max,
        frame_max,
        heartbeat: tune_ok.heartbeat,
        cancel_notify: capability(&start_ok.client_properties, "consumer_cancel_notify"),
        blocked_notify: capability(&start_ok.client_properties, "connection.blocked"),
        mechanism: start_ok.mechanism.to_string(),
        client_properties: start_ok.client_properties,
        slot,
    })
}

/// The client's frame_max must be 0 (no limit: ours applies), or between 4096 and ours.
fn negotiate_frame_max(client: u32, server: u32) -> Result<u32, AmqpError> {
    match client {
        0 => Ok(server),
        n if n < FRAME_MIN_SIZE => Err(AmqpError::not_allowed(format!(
            "frame_max={n} < {FRAME_MIN_SIZE} min size"
        ))),
        n if n > server => Err(AmqpError::not_allowed(format!(
            "frame_max={n} > {server} max size"
        ))),
        n => Ok(n),
    }
}

fn refuse(outbound: &Outbound, e: AmqpError) -> HandshakeEnd {
    send_close(outbound, &e);
    HandshakeEnd::Refused(e)
}

/// Sends connection.close for `e`.
pub fn send_close(outbound: &Outbound, e: &AmqpError) {
    let close = connection::Close {
        reply_code: e.code.code(),
        reply_text: ShortStr::truncated(&e.reply_text()),
        class_id: e.class_id,
        method_id: e.method_id,
    };
    outbound.send_method(0, &close.into());
}

/// Reads the next frame, which must be method `T` on channel 0.
async fn expect<R, T>(reader: &mut FrameReader<R>, outbound: &Outbound) -> Result<T, HandshakeEnd>
where
    R: AsyncRead + Unpin,
    T: TryFrom<Method, Error = Method>,
{
    let frame = match reader.next_frame().await {
        Ok(frame) => frame,
        Err(ReadError::Io(e)) => return Err(HandshakeEnd::Io(e)),
        Err(ReadError::Decode(e)) => {
            return Err(refuse(
                outbound,
                AmqpError::new(e.reply_code(), e.to_string()),
            ))
        }
    };
    match frame {
        Frame::Method { channel: 0, method } => match T::try_from(method) {
            Ok(m) => Ok(m),
            Err(other) => Err(refuse(
                outbound,
                AmqpError::command_invalid(format!(
                    "unexpected {} during the connection handshake",
                    other.name()
                ))
                .caused_by(&other),
            )),
        },
        Frame::Heartbeat => Box::pin(expect(reader, outbound)).await,
        _ => Err(refuse(
            outbound,
            AmqpError::unexpected_frame("only method frames on channel 0 during the handshake"),
        )),
    }
}

fn capability(client_properties: &FieldTable, name: &str) -> bool {
    match client_properties.get("capabilities") {
        Some(FieldValue::Table(caps)) => caps
            .get(name)
            .and_then(FieldValue::as_bool)
            .unwrap_or(false),
        _ => false,
    }
}

/// connection.start; EXTERNAL is among the mechanisms only when `external` (a verified client
/// certificate, as RabbitMQ's `rabbit_auth_mechanism_ssl:should_offer/1`).
fn start_method(external: bool) -> Method {
    let longstr = |s: &str| FieldValue::LongStr(LongStr::copy_from_slice(s.as_bytes()));
    // Advertise only what Warren honours.
    let capabilities: FieldTable = [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "consumer_priorities",
        "authentication_failure_close",
        "per_consumer_qos",
        "connection.blocked",
        "direct_reply_to",
    ]
    .into_iter()
    .map(|c| (ShortStr::from(c), FieldValue::Bool(true)))
    .collect();
    let server_properties: FieldTable = [
        ("product", longstr("Warren")),
        ("version", longstr(env!("CARGO_PKG_VERSION"))),
        ("platform", longstr("Rust")),
        ("copyright", longstr("The Warren authors")),
        (
            "information",
            longstr("An AMQP 0-9-1 broker for RabbitMQ clients"),
        ),
        ("cluster_name", longstr("warren")),
        ("capabilities", FieldValue::Table(capabilities)),
    ]
    .into_iter()
    .map(|(k, v)| (ShortStr::from(k), v))
    .collect();
    connection::Start {
        version_major: 0,
        version_minor: 9,
        server_properties,
        mechanisms: LongStr::from_static(crate::auth::offered_mechanisms(external).as_bytes()),
        locales: LongStr::from_static(b"en_US"),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_max_negotiation() {
        assert_eq!(negotiate_frame_max(0, 131_072), Ok(131_072));
        assert_eq!(negotiate_frame_max(8192, 131_072), Ok(8192));
        assert!(negotiate_frame_max(100, 131_072).is_err());
        assert!(negotiate_frame_max(1 << 20, 131_072).is_err());
    }
}
