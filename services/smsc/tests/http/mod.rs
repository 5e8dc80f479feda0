//! An HTTP/1.1 client for the tests of the HTTP API (one request per connection, the
//! answer read to its end), and a webhook receiver on loopback.
// Each test binary uses part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// One answered request.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: String,
    pub(crate) body: Value,
}

/// Header `name` of an HTTP head.
pub(crate) fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// A problem+json refusal of `status` naming `smpp` (when given).
    pub(crate) fn refused(&self, status: u16, smpp: Option<&str>) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{self:?}");
        assert_eq!(self.body["status"], json!(status), "{self:?}");
        if let Some(smpp) = smpp {
            assert_eq!(self.body["smpp_status"], json!(smpp), "{self:?}");
        }
    }
}

/// HTTP Basic credentials.
pub(crate) fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// `method path` with `body` (of `content_type`) and `authorization`.
pub(crate) async fn request(
    at: SocketAddr,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    content_type: &str,
    body: &str,
) -> Answer {
    let mut s = TcpStream::connect(at).await.expect("connect to the HTTP API");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {at}\r\nConnection: close\r\n");
    if let Some(auth) = authorization {
        head += &format!("Authorization: {auth}\r\n");
    }
    if !body.is_empty() {
        head += &format!("Content-Type: {content_type}\r\nContent-Length: {}\r\n", body.len());
    }
    s.write_all(format!("{head}\r\n{body}").as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read the answer");
    let text = String::from_utf8(raw).expect("UTF-8 answer");
    let (headers, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = headers.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status");
    let body =
        if body.is_empty() { Value::Null } else { serde_json::from_str(body).expect("JSON") };
    Answer { status, headers: headers.to_owned(), body }
}

/// One request a webhook receiver got, and the status it answered.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub(crate) headers: String,
    pub(crate) body: String,
    pub(crate) answered: u16,
}

impl Hit {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub(crate) fn event(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON event")
    }
}

/// A webhook receiver on loopback: answers the first `failures` requests 503, the rest
/// 200, and keeps every request.
pub(crate) async fn receiver(failures: usize) -> (SocketAddr, Arc<Mutex<Vec<Hit>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let at = listener.local_addr().expect("addr");
    let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
    let kept = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let hits = kept.clone();
            tokio::spawn(async move {
                let mut raw = Vec::new();
                let mut buf = [0u8; 4096];
                let (head, len) = loop {
                    let Ok(n) = s.read(&mut buf).await else { return };
                    if n == 0 {
                        return;
                    }
                    raw.extend_from_slice(&buf[..n]);
                    if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
                        let len = header(&head, "content-length")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0usize);
                        raw.drain(..end + 4);
                        break (head, len);
                    }
                };
                while raw.len() < len {
                    let Ok(n) = s.read(&mut buf).await else { return };
                    if n == 0 {
                        return;
                    }
                    raw.extend_from_slice(&buf[..n]);
                }
                let answered = {
                    let mut hits = hits.lock().expect("hits");
                    let answered = if hits.len() < failures { 503 } else { 200 };
                    let body = String::from_utf8_lossy(&raw[..len]).into_owned();
                    hits.push(Hit { headers: head, body, answered });
                    answered
                };
                let reply = format!(
                    "HTTP/1.1 {answered} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    (at, hits)
}

/// The events a receiver took (answered 200) of `kind`.
pub(crate) fn taken(hits: &Mutex<Vec<Hit>>, kind: &str) -> Vec<Hit> {
    let hits = hits.lock().expect("hits");
    hits.iter().filter(|h| h.answered == 200 && h.event()["type"] == json!(kind)).cloned().collect()
}
