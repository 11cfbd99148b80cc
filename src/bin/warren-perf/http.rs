//! A minimal HTTP/1.1 GET (one request per connection) for timing scrapes of the Prometheus
//! endpoint; no client library, so that what is timed is the broker's answer.

use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// GETs `path` from `addr` (`HOST:PORT`); returns how long until the whole answer was read,
/// and the body.
pub async fn get(addr: &str, path: &str) -> Result<(Duration, String)> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("GET {path}: no HTTP answer");
    };
    if !head.starts_with("HTTP/1.1 200") {
        bail!("GET {path}: {}", head.lines().next().unwrap_or(""));
    }
    Ok((elapsed, body.to_owned()))
}
