//! A small blocking HTTP/1.1 client for the management API: one request per connection
//! (`Connection: close`), Basic authentication, JSON in and out. Enough for a CLI that makes a
//! handful of requests; no TLS (the API is reached over loopback or a tunnel).

use base64::Engine;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Where the API is and who asks.
pub struct Client {
    host: String,
    port: u16,
    /// A path prefix (`http://host:15672/prefix`), without the trailing slash.
    prefix: String,
    authorization: String,
    timeout: Duration,
}

/// An answer: status and body (JSON when the body parses as such).
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why no answer came back.
#[derive(Debug)]
pub struct Unreachable(pub String);

impl Client {
    /// `url` is `http://host[:port][/prefix]`.
    pub fn new(url: &str, user: &str, password: &str) -> Result<Client, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("--url must start with http:// (got '{url}')"))?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                let port = p
                    .parse()
                    .map_err(|_| format!("bad port '{p}' in --url '{url}'"))?;
                (h.trim_start_matches('[').trim_end_matches(']'), port)
            }
            _ => (authority.trim_start_matches('[').trim_end_matches(']'), 80),
        };
        if host.is_empty() {
            return Err(format!("no host in --url '{url}'"));
        }
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Ok(Client {
            host: host.to_string(),
            port,
            prefix: prefix.to_string(),
            authorization: format!("Basic {credentials}"),
            timeout: Duration::from_secs(60),
        })
    }

    /// Sends `method path` (path starts with `/api/`) with an optional JSON body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        extra_headers: &[(&str, &str)],
    ) -> Result<Answer, Unreachable> {
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| Unreachable(format!("cannot resolve {}: {e}", self.host)))?
            .next()
            .ok_or_else(|| Unreachable(format!("no address for {}", self.host)))?;
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| Unreachable(format!("cannot connect to {addr}: {e}")))?;
        let _ = stream.set_read_timeout(Some(self.timeout));
        let _ = stream.set_write_timeout(Some(self.timeout));
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let host_header = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let mut head = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {host_header}\r\nAuthorization: {}\r\n\
             Accept: */*\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.prefix,
            self.authorization,
            payload.len()
        );
        if body.is_some() {
            head.push_str("Content-Type: application/json\r\n");
        }
        for (name, value) in extra_headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let io = |e: std::io::Error| Unreachable(format!("talking to {addr}: {e}"));
        stream.write_all(head.as_bytes()).map_err(io)?;
        stream.write_all(payload.as_bytes()).map_err(io)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).map_err(io)?;
        parse_response(&raw).map_err(|e| Unreachable(format!("bad answer from {addr}: {e}")))
    }
}

/// Status line, headers (only the framing ones matter here) and body, de-chunked.
fn parse_response(raw: &[u8]) -> Result<Answer, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty answer")?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line '{status_line}'"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            }
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else {
        match length {
            Some(n) => rest
                .get(..n)
                .ok_or("body shorter than its length")?
                .to_vec(),
            None => rest.to_vec(),
        }
    };
    Ok(Answer { status, body })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(rest.get(..size).ok_or("truncated chunk")?);
        rest = rest.get(size + 2..).ok_or("truncated chunk")?;
    }
}

/// A path segment, percent-encoded as the API expects (`/` → `%2F`).
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_chunked_answer() {
        let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n";
        let a = parse_response(raw).expect("parses");
        assert_eq!(a.status, 200);
        assert_eq!(a.body, b"[1,2]");
    }

    #[test]
    fn parses_a_sized_answer_and_the_url() {
        let raw = b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}";
        let a = parse_response(raw).expect("parses");
        assert_eq!((a.status, a.body.as_slice()), (404, &b"{}"[..]));
        let c = Client::new("http://[::1]:15673/x/", "u", "p").expect("url");
        assert_eq!(
            (c.host.as_str(), c.port, c.prefix.as_str()),
            ("::1", 15673, "/x")
        );
        assert!(Client::new("https://h", "u", "p").is_err());
        assert_eq!(seg("/"), "%2F");
    }
}
