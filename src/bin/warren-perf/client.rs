//! A minimal AMQP 0-9-1 client on warren-protocol, just enough for load generation: handshake,
//! channels, declares, pipelined publishes and consuming. Speaks to any broker (Warren or
//! RabbitMQ), so both are measured with the same generator.

use anyhow::{anyhow, bail, Context, Result};
use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use warren_protocol::{
    basic, channel, confirm, connection, decode_frame, encode_method, exchange, queue, FieldTable,
    FieldValue, Frame, LongStr, Method, ShortStr,
};

/// Where to connect, parsed from `amqp://user:pass@host:port/vhost`, or `amqps://…` with
/// RabbitMQ's URI query for the CA that signs the server's certificate:
/// `amqps://guest:guest@localhost:5671/%2f?cacertfile=/path/ca.pem`.
#[derive(Clone, Debug)]
pub struct Url {
    pub addr: String,
    pub user: String,
    pub pass: String,
    pub vhost: String,
    /// For amqps: the PEM CA bundle that verifies the server (`cacertfile`).
    pub tls_ca: Option<String>,
    /// For amqps: the name the server's certificate must carry (the host).
    pub server_name: String,
}

impl Url {
    pub fn parse(url: &str) -> Result<Self> {
        let (tls, rest) = match (url.strip_prefix("amqp://"), url.strip_prefix("amqps://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => bail!("only amqp:// and amqps:// URLs are supported"),
        };
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (auth, rest) = rest.rsplit_once('@').unwrap_or(("guest:guest", rest));
        let (user, pass) = auth.split_once(':').unwrap_or((auth, ""));
        let (host, vhost) = rest.split_once('/').unwrap_or((rest, ""));
        let default_port = if tls { 5671 } else { 5672 };
        let addr = if host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:{default_port}")
        };
        let server_name = addr
            .rsplit_once(':')
            .map_or(addr.as_str(), |(h, _)| h)
            .to_owned();
        let vhost = match vhost {
            "" => "/".to_owned(),
            v => v.replace("%2f", "/").replace("%2F", "/"),
        };
        let tls_ca = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("cacertfile="))
            .map(str::to_owned);
        if tls && tls_ca.is_none() {
            bail!("amqps:// needs ?cacertfile=FILE (the CA that signed the broker's certificate)");
        }
        Ok(Url {
            addr,
            user: user.to_owned(),
            pass: pass.to_owned(),
            vhost,
            tls_ca: tls.then_some(tls_ca).flatten(),
            server_name,
        })
    }
}

type Reader = Box<dyn AsyncRead + Unpin + Send>;
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// The two halves of a TCP or TLS connection to the broker.
async fn transport(url: &Url) -> Result<(Reader, Writer)> {
    let stream = TcpStream::connect(&url.addr)
        .await
        .with_context(|| format!("connecting to {}", url.addr))?;
    stream.set_nodelay(true)?;
    let Some(ca) = &url.tls_ca else {
        let (r, w) = stream.into_split();
        return Ok((Box::new(r), Box::new(w)));
    };
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("reading {ca}"))?
    {
        roots.add(cert.with_context(|| format!("reading {ca}"))?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(url.server_name.clone())?;
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, stream)
        .await
        .with_context(|| format!("TLS handshake with {}", url.addr))?;
    let (r, w) = tokio::io::split(tls);
    Ok((Box::new(r), Box::new(w)))
}

/// Reads frames from one connection.
pub struct FrameIn {
    socket: Reader,
    buf: BytesMut,
}

impl FrameIn {
    pub async fn next(&mut self) -> Result<Frame> {
        loop {
            if let Some(frame) = decode_frame(&mut self.buf, 0)? {
                if frame == Frame::Heartbeat {
                    continue;
                }
                return Ok(frame);
            }
            if self.buf.capacity() - self.buf.len() < 16 * 1024 {
                self.buf.reserve(256 * 1024);
            }
            if self.socket.read_buf(&mut self.buf).await? == 0 {
                bail!("broker closed the connection");
            }
        }
    }

    /// The next method on `channel`, failing on a close.
    pub async fn expect(&mut self, channel: u16) -> Result<Method> {
        loop {
            match self.next().await? {
                Frame::Method {
                    method: Method::ConnectionClose(c),
                    ..
                } => bail!("connection closed: {}", c.reply_text),
                Frame::Method {
                    method: Method::ChannelClose(c),
                    ..
                } => bail!("channel closed: {}", c.reply_text),
                Frame::Method {
                    channel: ch,
                    method,
                } if ch == channel => return Ok(method),
                _ => {}
            }
        }
    }
}

/// Writes frames to one connection.
pub struct FrameOut {
    /// Flush after writing: TLS may hold the tail of a write back until then.
    pub socket: Writer,
    pub frame_max: u32,
}

impl FrameOut {
    pub async fn method(&mut self, channel: u16, method: impl Into<Method>) -> Result<()> {
        let mut out = BytesMut::new();
        encode_method(channel, &method.into(), &mut out);
        self.socket.write_all(&out).await?;
        self.socket.flush().await?;
        Ok(())
    }
}

/// Opens a connection (heartbeats off) and returns its two halves; gives up after 10 s (a
/// broker out of file descriptors may accept and never answer).
pub async fn connect(url: &Url) -> Result<(FrameIn, FrameOut)> {
    match tokio::time::timeout(std::time::Duration::from_secs(10), open(url)).await {
        Ok(result) => result,
        Err(_) => bail!("no handshake with {} within 10 s", url.addr),
    }
}

async fn open(url: &Url) -> Result<(FrameIn, FrameOut)> {
    let (r, w) = transport(url).await?;
    let mut input = FrameIn {
        socket: r,
        buf: BytesMut::with_capacity(256 * 1024),
    };
    let mut output = FrameOut {
        socket: w,
        frame_max: 131_072,
    };
    output.socket.write_all(b"AMQP\x00\x00\x09\x01").await?;
    output.socket.flush().await?;
    let Method::ConnectionStart(_) = input.expect(0).await? else {
        bail!("expected connection.start")
    };
    let mut response = BytesMut::new();
    response.put_u8(0);
    response.put_slice(url.user.as_bytes());
    response.put_u8(0);
    response.put_slice(url.pass.as_bytes());
    // connection.blocked: the broker says when its memory or disk alarm stops reading us.
    let mut capabilities = FieldTable::new();
    capabilities.insert("connection.blocked".into(), FieldValue::Bool(true));
    let mut client_properties = FieldTable::new();
    client_properties.insert("capabilities".into(), FieldValue::Table(capabilities));
    let start_ok = connection::StartOk {
        client_properties,
        mechanism: "PLAIN".into(),
        response: LongStr::from(response.freeze()),
        locale: "en_US".into(),
    };
    output.method(0, start_ok).await?;
    let Method::ConnectionTune(tune) = input.expect(0).await? else {
        bail!("expected connection.tune")
    };
    output.frame_max = if tune.frame_max == 0 {
        131_072
    } else {
        tune.frame_max
    };
    output
        .method(
            0,
            connection::TuneOk {
                channel_max: tune.channel_max,
                frame_max: output.frame_max,
                heartbeat: 0,
            },
        )
        .await?;
    let vhost =
        ShortStr::try_new(url.vhost.clone()).ok_or_else(|| anyhow!("vhost name too long"))?;
    output
        .method(
            0,
            connection::Open {
                virtual_host: vhost,
                ..Default::default()
            },
        )
        .await?;
    let Method::ConnectionOpenOk(_) = input.expect(0).await? else {
        bail!("expected connection.open-ok")
    };
    output.method(1, channel::Open::default()).await?;
    input.expect(1).await?;
    Ok((input, output))
}

/// Sends a synchronous method on channel 1 and waits for its reply.
pub async fn call(
    input: &mut FrameIn,
    output: &mut FrameOut,
    method: impl Into<Method>,
) -> Result<Method> {
    output.method(1, method).await?;
    input.expect(1).await
}

pub fn name(s: &str) -> Result<ShortStr> {
    ShortStr::try_new(s.to_owned()).ok_or_else(|| anyhow!("name longer than 255 bytes: {s}"))
}

pub async fn declare_queue(
    input: &mut FrameIn,
    output: &mut FrameOut,
    queue: &str,
    durable: bool,
) -> Result<()> {
    let declare = queue::Declare {
        queue: name(queue)?,
        durable,
        ..Default::default()
    };
    call(input, output, declare).await.map(|_| ())
}

pub async fn declare_exchange(
    input: &mut FrameIn,
    output: &mut FrameOut,
    exchange: &str,
    kind: &str,
    durable: bool,
) -> Result<()> {
    let declare = exchange::Declare {
        exchange: name(exchange)?,
        kind: name(kind)?,
        durable,
        ..Default::default()
    };
    call(input, output, declare).await.map(|_| ())
}

pub async fn bind(
    input: &mut FrameIn,
    output: &mut FrameOut,
    queue: &str,
    exchange: &str,
    key: &str,
) -> Result<()> {
    let bind = queue::Bind {
        queue: name(queue)?,
        exchange: name(exchange)?,
        routing_key: name(key)?,
        ..Default::default()
    };
    call(input, output, bind).await.map(|_| ())
}

pub async fn delete_queue(input: &mut FrameIn, output: &mut FrameOut, queue: &str) -> Result<()> {
    call(
        input,
        output,
        queue::Delete {
            queue: name(queue)?,
            ..Default::default()
        },
    )
    .await
    .map(|_| ())
}

pub async fn delete_exchange(
    input: &mut FrameIn,
    output: &mut FrameOut,
    exchange: &str,
) -> Result<()> {
    let delete = exchange::Delete {
        exchange: name(exchange)?,
        ..Default::default()
    };
    call(input, output, delete).await.map(|_| ())
}

pub async fn confirm_select(input: &mut FrameIn, output: &mut FrameOut) -> Result<()> {
    call(input, output, confirm::Select { nowait: false })
        .await
        .map(|_| ())
}

pub async fn qos(input: &mut FrameIn, output: &mut FrameOut, prefetch: u16) -> Result<()> {
    call(
        input,
        output,
        basic::Qos {
            prefetch_count: prefetch,
            ..Default::default()
        },
    )
    .await
    .map(|_| ())
}

pub async fn consume(
    input: &mut FrameIn,
    output: &mut FrameOut,
    queue: &str,
    no_ack: bool,
) -> Result<()> {
    call(
        input,
        output,
        basic::Consume {
            queue: name(queue)?,
            no_ack,
            ..Default::default()
        },
    )
    .await
    .map(|_| ())
}
