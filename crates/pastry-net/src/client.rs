//! A tiny blocking HTTP/1.1 client for the admin API: enough for `pastry lookup`, scripts
//! and tests (plain `http://host:port/path` URLs, one request per connection, bounded
//! responses). Not a general HTTP client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};

/// Largest response body read.
pub const MAX_RESPONSE: usize = 16 << 20;

/// An HTTP response: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

/// `GET url`.
///
/// # Errors
/// A bad URL, a connection or IO error, or a malformed or oversized response.
pub fn get(url: &str) -> anyhow::Result<Response> {
    request("GET", url, None)
}

/// `POST url` with a JSON body.
///
/// # Errors
/// As [`get`].
pub fn post_json(url: &str, json: &str) -> anyhow::Result<Response> {
    request("POST", url, Some(json))
}

fn json<T: serde::de::DeserializeOwned>(url: &str, r: Response) -> anyhow::Result<T> {
    if r.status != 200 {
        bail!("{url}: HTTP {}: {}", r.status, r.body.trim());
    }
    serde_json::from_str(&r.body).with_context(|| format!("{url}: unexpected answer {}", r.body))
}

/// `GET {base}/status`: node 0's status.
///
/// # Errors
/// As [`get`], or an answer that is not a status.
pub fn status(base: &str) -> anyhow::Result<crate::Status> {
    let url = format!("{}/status", base.trim_end_matches('/'));
    json(&url, get(&url)?)
}

/// `GET {base}/nodes`: the status of every node of the process.
///
/// # Errors
/// As [`get`], or an answer that is not a list of statuses.
pub fn nodes(base: &str) -> anyhow::Result<Vec<crate::Status>> {
    let url = format!("{}/nodes", base.trim_end_matches('/'));
    json(&url, get(&url)?)
}

/// `POST {base}/route` for `key` (traced): the root's report.
///
/// # Errors
/// As [`get`], or an HTTP error (e.g. 504 when the root did not report in time).
pub fn route(base: &str, key: pastry_core::NodeId) -> anyhow::Result<crate::RouteReport> {
    let url = format!("{}/route", base.trim_end_matches('/'));
    let body = serde_json::json!({ "key": key.to_string(), "trace": true }).to_string();
    json(&url, post_json(&url, &body)?)
}

fn split_url(url: &str) -> anyhow::Result<(&str, &str)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs are supported"))?;
    Ok(match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    })
}

fn request(method: &str, url: &str, body: Option<&str>) -> anyhow::Result<Response> {
    let raw = request_raw(
        method,
        url,
        "application/json",
        body.unwrap_or("").as_bytes(),
    )?;
    Ok(Response {
        status: raw.status,
        body: String::from_utf8_lossy(&raw.body).into_owned(),
    })
}

/// An HTTP response with a binary body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The body's bytes.
    pub body: Vec<u8>,
}

/// Any request with a binary body (empty for none).
///
/// # Errors
/// As [`get`].
pub fn request_raw(
    method: &str,
    url: &str,
    content_type: &str,
    body: &[u8],
) -> anyhow::Result<RawResponse> {
    let (host, path) = split_url(url)?;
    let addr = host
        .to_socket_addrs()
        .with_context(|| format!("{url}: bad host {host}"))?
        .next()
        .with_context(|| format!("{url}: {host} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("cannot connect to {host}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let sent = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body));
    let mut raw = Vec::new();
    let read = stream
        .take(MAX_RESPONSE as u64 + 64 * 1024)
        .read_to_end(&mut raw);
    // A server may answer (413, say) and close before reading the whole body: its answer
    // matters more than our write error.
    if raw.is_empty() {
        sent.with_context(|| format!("sending the request to {host}"))?;
        read.with_context(|| format!("reading the response from {host}"))?;
    }
    parse_response(&raw)
}

/// The error text of a JSON error answer (`{"error": "..."}`), else the body itself.
fn error_text(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| {
            String::from_utf8_lossy(body)
                .trim()
                .chars()
                .take(500)
                .collect()
        })
}

fn ok_json(url: &str, r: RawResponse) -> anyhow::Result<serde_json::Value> {
    if r.status != 200 {
        bail!("HTTP {}: {}", r.status, error_text(&r.body));
    }
    serde_json::from_slice(&r.body).with_context(|| {
        format!(
            "{url}: unexpected answer {}",
            String::from_utf8_lossy(&r.body)
        )
    })
}

/// `GET {base}/past/info`: the node's PAST limits (`max_object_bytes`, `replicas`).
///
/// # Errors
/// As [`get`], or an HTTP error.
pub fn past_info(base: &str) -> anyhow::Result<serde_json::Value> {
    let url = format!("{}/past/info", base.trim_end_matches('/'));
    ok_json(&url, request_raw("GET", &url, "application/json", b"")?)
}

/// `POST {base}/past/put[?k=K]` with `data`: the put's JSON answer (`key`, `size`,
/// `holders`).
///
/// # Errors
/// As [`get`], or an HTTP error with the node's message (413: too large, 507: no space,
/// 504: timeout, ...).
pub fn past_put(base: &str, data: &[u8], k: Option<usize>) -> anyhow::Result<serde_json::Value> {
    let mut url = format!("{}/past/put", base.trim_end_matches('/'));
    if let Some(k) = k {
        url.push_str(&format!("?k={k}"));
    }
    ok_json(
        &url,
        request_raw("POST", &url, "application/octet-stream", data)?,
    )
}

/// `GET {base}/past/get/KEY`: the object's bytes.
///
/// # Errors
/// As [`get`], or an HTTP error with the node's message (404: not found, ...).
pub fn past_get(base: &str, key: pastry_core::NodeId) -> anyhow::Result<Vec<u8>> {
    let url = format!("{}/past/get/{key}", base.trim_end_matches('/'));
    let r = request_raw("GET", &url, "application/json", b"")?;
    if r.status != 200 {
        bail!("HTTP {}: {}", r.status, error_text(&r.body));
    }
    Ok(r.body)
}

/// `GET {base}/past/replicas/KEY`: `{"key", "replicas": [{"id", "addr"}]}`.
///
/// # Errors
/// As [`past_get`].
pub fn past_replicas(base: &str, key: pastry_core::NodeId) -> anyhow::Result<serde_json::Value> {
    let url = format!("{}/past/replicas/{key}", base.trim_end_matches('/'));
    ok_json(&url, request_raw("GET", &url, "application/json", b"")?)
}

/// A topic name as one percent-encoded URL path segment.
pub fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET {base}/scribe/info`: the node's Scribe limits (`max_payload_bytes`).
///
/// # Errors
/// As [`get`], or an HTTP error.
pub fn scribe_info(base: &str) -> anyhow::Result<serde_json::Value> {
    let url = format!("{}/scribe/info", base.trim_end_matches('/'));
    ok_json(&url, request_raw("GET", &url, "application/json", b"")?)
}

/// `POST {base}/scribe/publish/TOPIC` with `data`: Scribe has taken the message.
///
/// # Errors
/// As [`get`], or an HTTP error with the node's message (413: too large, 503: busy, ...).
pub fn scribe_publish(
    base: &str,
    topic: &str,
    data: &[u8],
) -> anyhow::Result<crate::PublishResult> {
    let url = format!(
        "{}/scribe/publish/{}",
        base.trim_end_matches('/'),
        encode_segment(topic)
    );
    let v = ok_json(
        &url,
        request_raw("POST", &url, "application/octet-stream", data)?,
    )?;
    serde_json::from_value(v).with_context(|| format!("{url}: unexpected answer"))
}

/// `GET {base}/scribe/topics`: the topics the node keeps Scribe state for.
///
/// # Errors
/// As [`get`], or an HTTP error.
pub fn scribe_topics(base: &str) -> anyhow::Result<Vec<crate::TopicView>> {
    let url = format!("{}/scribe/topics", base.trim_end_matches('/'));
    let v = ok_json(&url, request_raw("GET", &url, "application/json", b"")?)?;
    serde_json::from_value(v).with_context(|| format!("{url}: unexpected answer"))
}

/// Longest subscription-stream line read (a 1 MiB payload in base64, and more).
pub const MAX_LINE: usize = 4 << 20;

/// A subscription stream without any line, even a keepalive, for this long is dead.
pub const STREAM_SILENCE: Duration = Duration::from_secs(30);

/// `GET {base}/scribe/subscribe/TOPIC`: subscribes the node to the topic and calls
/// `on_line` with each line of the stream as it arrives (`None` for a keepalive), until
/// `on_line` returns false; then closes the connection, which unsubscribes the node when
/// it was the topic's last stream there.
///
/// # Errors
/// As [`get`], an HTTP error with the node's message, a malformed line, a stream the node
/// ended (it stopped), or [`STREAM_SILENCE`] without even a keepalive.
pub fn subscribe(
    base: &str,
    topic: &str,
    mut on_line: impl FnMut(Option<crate::StreamLine>) -> bool,
) -> anyhow::Result<()> {
    let url = format!(
        "{}/scribe/subscribe/{}",
        base.trim_end_matches('/'),
        encode_segment(topic)
    );
    let (host, path) = split_url(&url)?;
    let addr = host
        .to_socket_addrs()
        .with_context(|| format!("{url}: bad host {host}"))?
        .next()
        .with_context(|| format!("{url}: {host} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("cannot connect to {host}"))?;
    stream.set_read_timeout(Some(STREAM_SILENCE))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(head.as_bytes())
        .with_context(|| format!("sending the request to {host}"))?;
    let mut reader = BufReader::new(stream);
    let mut status = 0u16;
    let (mut chunked, mut length) = (false, None);
    let mut first = true;
    loop {
        let mut line = String::new();
        let n = (&mut reader)
            .take(64 * 1024)
            .read_line(&mut line)
            .with_context(|| format!("reading the response from {host}"))?;
        if n == 0 {
            bail!("{host} closed the connection before answering");
        }
        let line = line.trim_end();
        if first {
            status = line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .context("malformed HTTP status line")?;
            first = false;
        } else if line.is_empty() {
            break;
        } else if let Some((k, v)) = line.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            } else if k == "content-length" {
                length = v.trim().parse::<u64>().ok();
            }
        }
    }
    let mut body: Box<dyn BufRead> = if chunked {
        Box::new(BufReader::new(Chunked {
            inner: reader,
            left: 0,
            done: false,
        }))
    } else {
        Box::new(reader.take(length.unwrap_or(MAX_RESPONSE as u64)))
    };
    if status != 200 {
        let mut text = Vec::new();
        let _ = body.take(64 * 1024).read_to_end(&mut text);
        bail!("HTTP {status}: {}", error_text(&text));
    }
    loop {
        let mut line = Vec::new();
        let n = (&mut body)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => anyhow::anyhow!(
                    "no data from {host} for {} s: the node or the network is down",
                    STREAM_SILENCE.as_secs()
                ),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
                    anyhow::anyhow!("{host} ended the subscription stream (the node stopped?)")
                }
                _ => anyhow::Error::new(e).context(format!("reading the stream from {host}")),
            })?;
        if n == 0 {
            bail!("{host} ended the subscription stream (the node stopped?)");
        }
        if line.last() != Some(&b'\n') {
            if line.len() >= MAX_LINE {
                bail!("a line of the stream is over {MAX_LINE} bytes");
            }
            bail!("{host} ended the subscription stream in the middle of a line");
        }
        let text = line.trim_ascii();
        let parsed = if text.is_empty() {
            None
        } else {
            Some(
                serde_json::from_slice::<crate::StreamLine>(text).with_context(|| {
                    format!(
                        "malformed stream line {}",
                        String::from_utf8_lossy(&text[..text.len().min(200)])
                    )
                })?,
            )
        };
        if !on_line(parsed) {
            return Ok(());
        }
    }
}

/// The body of a chunked HTTP/1.1 response, read as it arrives.
struct Chunked<R> {
    inner: R,
    /// Bytes left in the current chunk.
    left: usize,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::{Error, ErrorKind};
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            (&mut self.inner).take(1024).read_line(&mut line)?;
            if line.is_empty() {
                return Err(Error::new(ErrorKind::UnexpectedEof, "stream cut mid-chunk"));
            }
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| Error::new(ErrorKind::InvalidData, "malformed chunk size"))?;
            if size == 0 {
                self.done = true;
                return Ok(0);
            }
            self.left = size;
        }
        let want = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(Error::new(ErrorKind::UnexpectedEof, "stream cut mid-chunk"));
        }
        self.left -= n;
        if self.left == 0 {
            let mut crlf = [0u8; 2];
            self.inner.read_exact(&mut crlf)?;
        }
        Ok(n)
    }
}

fn parse_response(raw: &[u8]) -> anyhow::Result<RawResponse> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("malformed HTTP response (no end of headers)")?;
    let head = std::str::from_utf8(&raw[..end]).context("malformed HTTP headers")?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .context("malformed HTTP status line")?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let mut body = raw[end + 4..].to_vec();
    if chunked {
        body = dechunk(&body)?;
    }
    if body.len() > MAX_RESPONSE {
        bail!("response over {MAX_RESPONSE} bytes");
    }
    Ok(RawResponse { status, body })
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("malformed chunked body")?;
        let size_text = std::str::from_utf8(&data[..eol])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .context("malformed chunk size")?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 || out.len() + size > MAX_RESPONSE {
            bail!("malformed or oversized chunked body");
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses_and_rejects_garbage() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi").unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"hi"[..]));
        let r = parse_response(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, &r.body[..]), (404, &b"abcde"[..]));
        assert_eq!(error_text(br#"{"error":"no object"}"#), "no object");
        assert_eq!(error_text(b"plain"), "plain");
        assert!(parse_response(b"garbage").is_err());
        let mut body = String::new();
        Chunked {
            inner: &b"3\r\nab\n\r\n4;x=y\r\ncd\ne\r\n0\r\n\r\n"[..],
            left: 0,
            done: false,
        }
        .read_to_string(&mut body)
        .unwrap();
        assert_eq!(body, "ab\ncd\ne");
        assert_eq!(encode_segment("a b/ü~"), "a%20b%2F%C3%BC~");
        assert!(parse_response(b"HTTP/1.1 xx\r\n\r\n").is_err());
        assert!(split_url("https://x/").is_err());
        assert_eq!(split_url("http://h:1").unwrap(), ("h:1", "/"));
    }
}
