//! Test harness: a real gateway process on an ephemeral port, real WebSocket viewers
//! (tokio-tungstenite) and a minimal HTTP client, all over loopback.
#![allow(dead_code, clippy::unwrap_used)]

pub mod store;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use danmaku_gateway::auth::{Claims, sign_hs256};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "test-secret-0123456789abcdef";
pub const API_KEY: &str = "test-api-key";
/// How long any single expected event may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// A gateway process, killed on drop.
pub struct Gateway {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Gateway {
    /// Starts `danmaku-gateway` with test credentials and `extra` flags.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_env(extra, &[])
    }

    /// Starts `danmaku-gateway` with test credentials, `extra` flags and `env`.
    pub fn start_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_danmaku-gateway"))
            .envs(env.iter().copied())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--jwt-secret",
                SECRET,
                "--api-keys",
                API_KEY,
                "--log",
                "warn",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn gateway");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("banner");
        let addr = line
            .split_whitespace()
            .last()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in banner: {line:?}"));
        Self { child, addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Resident memory of the gateway process, in bytes.
    pub fn rss(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS");
        kb * 1024
    }

    /// `POST /v1/rooms/{room}/events` with a comment-like payload; returns the seq.
    pub async fn publish(&self, room: &str, data: Value) -> u64 {
        let body = self
            .publish_event(room, &json!({"kind": "comment", "data": data}))
            .await;
        body["seq"].as_u64().expect("seq")
    }

    /// Publishes the request `body` into `room` through the HTTP API; returns the 200
    /// answer.
    pub async fn publish_event(&self, room: &str, body: &Value) -> Value {
        let path = format!("/v1/rooms/{room}/events");
        let (status, answer) = self.http("POST", &path, Some(API_KEY), Some(body)).await;
        assert_eq!(status, 200, "publish failed: {answer}");
        answer
    }

    /// The seqs of `room`'s history after `since` (`limit` at most), as a backend reads them.
    pub async fn history_seqs(&self, room: &str, since: u64, limit: usize) -> Vec<u64> {
        let path = format!("/v1/rooms/{room}/history?since={since}&limit={limit}");
        let (status, h) = self.http("GET", &path, Some(API_KEY), None).await;
        assert_eq!(status, 200, "{h}");
        h["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["seq"].as_u64().expect("seq"))
            .collect()
    }

    /// One HTTP/1.1 request; returns status and JSON body (`Value::Null` when not JSON).
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let (status, text) = self
            .http_raw(method, path, key, body.map(|b| b.to_string()).as_deref())
            .await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn http_raw(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String) {
        let mut s = TcpStream::connect(self.addr).await.expect("connect");
        let body = body.unwrap_or("");
        let auth = key
            .map(|k| format!("Authorization: Bearer {k}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.expect("write");
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await.expect("read");
        let text = String::from_utf8_lossy(&resp).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status");
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, dechunk(&body))
    }

    /// Sends SIGTERM (to this child, by its pid).
    pub fn sigterm(&self) {
        self.signal("-TERM");
    }

    /// Sends SIGKILL (to this child, by its pid): the process ends at once, its sockets
    /// closed by the kernel, nothing said to its clients.
    pub fn sigkill(&self) {
        self.signal("-KILL");
    }

    /// Sends the signal `which` (`-STOP`, `-CONT`, …) to the gateway process.
    pub fn signal(&self, which: &str) {
        let ok = Command::new("kill")
            .args([which, &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    /// Waits (off the runtime's threads) until the process has exited.
    pub async fn exited(mut self) -> ExitStatus {
        tokio::task::spawn_blocking(move || self.child.wait().expect("wait"))
            .await
            .expect("wait task")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dechunk(body: &str) -> String {
    // Responses without Content-Length come chunked: "<hex>\r\n<data>\r\n...0\r\n\r\n".
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_owned();
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_owned();
        };
        if n == 0 {
            return out;
        }
        if after.len() < n {
            return body.to_owned();
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
}

/// A viewer token for `sub`, valid for an hour.
pub fn token(sub: &str) -> String {
    token_with(sub, Claims::default())
}

/// A viewer token for `sub`, valid for an hour, with the other `claims` given.
pub fn token_with(sub: &str, claims: Claims) -> String {
    let exp = danmaku_fanout::now_ms() / 1000 + 3600;
    sign_hs256(
        SECRET.as_bytes(),
        &Claims {
            sub: sub.into(),
            exp,
            name: Some(format!("name-{sub}")),
            ..claims
        },
    )
    .expect("sign")
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How a viewer's connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// A close frame with this code (1005 when it carried none).
    Close(u16),
    /// The socket ended or was reset without a close frame (its gateway was killed, say).
    Lost,
}

/// A WebSocket viewer that reads messages one JSON object at a time.
pub struct Viewer {
    pub ws: Ws,
    buffered: VecDeque<Value>,
    next_id: u64,
    /// Messages per received frame, for batching checks.
    pub frames: u64,
}

impl Viewer {
    /// Connects with a token for `sub` and reads `hello`.
    pub async fn connect(gw: &Gateway, sub: &str) -> Self {
        Self::connect_url(&format!("{}?token={}", gw.ws_url(), token(sub))).await
    }

    /// Connects with a token for `sub` carrying the `tags` claim.
    pub async fn connect_tagged(gw: &Gateway, sub: &str, tags: &[&str]) -> Self {
        let claims = Claims {
            tags: Some(tags.iter().map(|t| (*t).to_owned()).collect()),
            ..Claims::default()
        };
        Self::connect_claims(gw, sub, claims).await
    }

    /// Connects with a token for `sub` carrying the other `claims` given.
    pub async fn connect_claims(gw: &Gateway, sub: &str, claims: Claims) -> Self {
        let url = format!("{}?token={}", gw.ws_url(), token_with(sub, claims));
        Self::connect_url(&url).await
    }

    pub async fn connect_url(url: &str) -> Self {
        Self::connect_with(url, &[]).await
    }

    /// Connects as `sub` over a socket whose receive buffer is `rcvbuf` bytes: a viewer
    /// that stops reading then backs up into the gateway at once, not after megabytes
    /// of kernel buffers.
    pub async fn connect_small_window(gw: &Gateway, sub: &str, rcvbuf: u32) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(rcvbuf).expect("SO_RCVBUF");
        let tcp = socket.connect(gw.addr).await.expect("connect");
        let url = format!("{}?token={}", gw.ws_url(), token(sub));
        Self::open(&url, &[], Some(tcp)).await
    }

    /// Connects to `url` over `tcp`, a connection already open (that may have sent
    /// something first: a PROXY header).
    pub async fn connect_over(url: &str, tcp: TcpStream) -> Self {
        Self::open(url, &[], Some(tcp)).await
    }

    /// Connects to `url` sending `headers` too (an `Origin`, say).
    pub async fn connect_with(url: &str, headers: &[(&'static str, &str)]) -> Self {
        Self::open(url, headers, None).await
    }

    async fn open(url: &str, headers: &[(&'static str, &str)], tcp: Option<TcpStream>) -> Self {
        let mut req = url.into_client_request().expect("request");
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "danmaku.v1".parse().expect("header"),
        );
        for (name, value) in headers {
            req.headers_mut()
                .insert(*name, value.parse().expect("header value"));
        }
        let (ws, resp) = match tcp {
            Some(tcp) => tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp)).await,
            None => tokio_tungstenite::connect_async(req).await,
        }
        .expect("connect");
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap()),
            Some("danmaku.v1")
        );
        let mut v = Self {
            ws,
            buffered: VecDeque::new(),
            next_id: 1,
            frames: 0,
        };
        let hello = v.next().await;
        assert_eq!(hello["type"], "hello", "{hello}");
        v
    }

    /// Sends one command, filling in a fresh `id`; returns the id.
    pub async fn send(&mut self, mut cmd: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        cmd["id"] = json!(id);
        self.ws
            .send(Message::text(cmd.to_string()))
            .await
            .expect("send");
        id
    }

    /// The next message, within [`WAIT`].
    pub async fn next(&mut self) -> Value {
        tokio::time::timeout(WAIT, self.next_inner())
            .await
            .expect("timed out waiting for a message")
    }

    async fn next_inner(&mut self) -> Value {
        match self.read().await {
            Ok(v) => v,
            Err(End::Close(code)) => panic!("closed: {code}"),
            Err(End::Lost) => panic!("connection ended"),
        }
    }

    /// The next message, or how the connection ended, within [`WAIT`].
    pub async fn next_or_end(&mut self) -> Result<Value, End> {
        tokio::time::timeout(WAIT, self.read())
            .await
            .expect("timed out waiting for a message or the end")
    }

    async fn read(&mut self) -> Result<Value, End> {
        loop {
            if let Some(v) = self.buffered.pop_front() {
                return Ok(v);
            }
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    self.frames += 1;
                    for line in t.as_str().split('\n') {
                        self.buffered.push_back(
                            serde_json::from_str(line).expect("server sent invalid JSON"),
                        );
                    }
                }
                Some(Ok(Message::Close(c))) => {
                    return Err(End::Close(c.map_or(1005, |c| u16::from(c.code))));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Err(End::Lost),
            }
        }
    }

    /// The next message of type `ty`, skipping presence and others.
    pub async fn next_of(&mut self, ty: &str) -> Value {
        loop {
            let v = self.next().await;
            if v["type"] == ty {
                return v;
            }
        }
    }

    /// The reply to command `id` (skipping events and presence).
    pub async fn reply(&mut self, id: u64) -> Value {
        loop {
            let v = self.next().await;
            if v["id"] == json!(id) {
                return v;
            }
        }
    }

    /// Joins `room`; returns the `joined` reply.
    pub async fn join(&mut self, room: &str) -> Value {
        let r = self.join_reply(room, None).await;
        assert_eq!(r["type"], "joined", "{r}");
        r
    }

    /// Sends a `join` of `room`, resuming after `since` = (epoch, seq) when given;
    /// returns the reply as it came: `joined` (whose `recovered` says whether the
    /// events after `seq` follow), or an `error`.
    pub async fn join_reply(&mut self, room: &str, since: Option<(&str, u64)>) -> Value {
        let mut join = json!({"type": "join", "room": room});
        if let Some((epoch, seq)) = since {
            join["since"] = json!({"epoch": epoch, "seq": seq});
        }
        let id = self.send(join).await;
        self.reply(id).await
    }

    /// The next sequenced event of `room`.
    pub async fn next_event(&mut self) -> Value {
        self.next_of("event").await
    }

    /// Waits for the close frame; returns its code.
    pub async fn closed(&mut self) -> u16 {
        let wait = async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Close(Some(c)))) => return u16::from(c.code),
                    Some(Ok(Message::Close(None))) => return 1005,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => panic!("error before close: {e}"),
                    None => panic!("ended without a close frame"),
                }
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .expect("timed out waiting for close")
    }
}

/// An HTTP answer read off a raw socket: status, headers (names lower-cased) and the
/// body, parsed as JSON when it is JSON.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Asserts the answer is a page asset embedded in the binary (the demo room's, the
    /// dashboard's): 200 with its content type, the pages' CSP (this gateway only, no
    /// inline script or style, no framing), no sniffing, no Referer, no stale cache.
    pub fn assert_embedded(&self, path: &str, content_type: &str) {
        assert_eq!(self.status, 200, "{path}");
        assert_eq!(self.header("content-type"), Some(content_type), "{path}");
        let csp = self.header("content-security-policy").unwrap_or_default();
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-"), "{path}: {csp}");
        assert_eq!(self.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(self.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(self.header("cache-control"), Some("no-cache"), "{path}");
    }

    /// Asserts that the answer grants no CORS access (no `Access-Control-*` header).
    pub fn assert_no_cors_grant(&self) {
        assert!(
            self.headers
                .iter()
                .all(|(n, _)| !n.starts_with("access-control-")),
            "no CORS grant: {:?}",
            self.headers
        );
    }

    /// The `(code, message)` of an API error body; panics on any other body.
    pub fn error(&self) -> (&str, &str) {
        let e = &self.body["error"];
        match (e["code"].as_str(), e["message"].as_str()) {
            (Some(code), Some(message)) => (code, message),
            _ => panic!("not an error body ({}): {}", self.status, self.body),
        }
    }
}

/// Sends `method path` with `headers` (each `Name: value`) and no body; reads the answer.
pub async fn request(gw: &Gateway, method: &str, path: &str, headers: &[&str]) -> Answer {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    exchange(gw.addr, &[req.as_bytes()]).await
}

/// Writes `pieces` to a new connection to `addr` (each in its own write, 50 ms
/// apart, so a request can arrive split), then reads one answer: its head and a body
/// of its `Content-Length` (or up to the end of the connection), within [`WAIT`].
pub async fn exchange(addr: SocketAddr, pieces: &[&[u8]]) -> Answer {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s.write_all(piece).await.expect("write");
    }
    tokio::time::timeout(WAIT, read_answer(&mut s))
        .await
        .expect("an answer in time")
}

async fn read_answer(s: &mut TcpStream) -> Answer {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = s.read(&mut chunk).await.expect("read");
        assert!(
            n > 0,
            "closed before an answer: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    match length {
        Some(len) => {
            while body.len() < len {
                let n = s.read(&mut chunk).await.expect("read body");
                assert!(n > 0, "closed mid-body");
                body.extend_from_slice(&chunk[..n]);
            }
        }
        None if status != 101 => {
            let _ = s.read_to_end(&mut body).await;
        }
        None => {}
    }
    let text = String::from_utf8_lossy(&body);
    Answer {
        status,
        headers,
        body: serde_json::from_str(&dechunk(&text)).unwrap_or(Value::Null),
    }
}

/// A viewer of its own room that watches for harm while a test does something bad
/// next to it: each [`Witness::check`] publishes one event and asserts that the very
/// next thing it sees is exactly that event, the next seq (no reset, no reconnect, no
/// gap, no close).
pub struct Witness {
    viewer: Viewer,
    room: String,
    seq: u64,
}

impl Witness {
    pub async fn join(gw: &Gateway, room: &str) -> Self {
        Self::join_from(gw, room, None).await
    }

    /// As [`Witness::join`], from a page of `origin`.
    pub async fn join_from(gw: &Gateway, room: &str, origin: Option<&str>) -> Self {
        let url = format!("{}?token={}", gw.ws_url(), token("witness"));
        let headers: Vec<(&'static str, &str)> =
            origin.map(|o| ("Origin", o)).into_iter().collect();
        let mut viewer = Viewer::connect_with(&url, &headers).await;
        let joined = viewer.join(room).await;
        let seq = joined["seq"].as_u64().expect("seq");
        Self {
            viewer,
            room: room.to_owned(),
            seq,
        }
    }

    /// Publishes into the witness's room and checks it got that event next.
    pub async fn check(&mut self, gw: &Gateway, after: &str) {
        let seq = gw.publish(&self.room, json!({"text": after})).await;
        assert_eq!(
            seq,
            self.seq + 1,
            "after {after}: the room's seq moved by itself"
        );
        let next = loop {
            let v = self.viewer.next().await;
            if v["type"] != "presence" {
                break v;
            }
        };
        assert_eq!(next["type"], "event", "after {after}: {next}");
        assert_eq!(next["seq"], json!(seq), "after {after}: {next}");
        self.seq = seq;
    }
}

/// Splits the complete unmasked server frames at the start of `buf`: each frame's
/// first byte (FIN and opcode) and payload; returns them and the bytes they took.
pub fn server_frames(buf: &[u8]) -> (Vec<(u8, &[u8])>, usize) {
    let mut frames = Vec::new();
    let mut at = 0;
    while buf.len() >= at + 2 {
        let (start, len) = match buf[at + 1] & 0x7f {
            126 if buf.len() >= at + 4 => (
                at + 4,
                usize::from(u16::from_be_bytes([buf[at + 2], buf[at + 3]])),
            ),
            127 if buf.len() >= at + 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&buf[at + 2..at + 10]);
                (
                    at + 10,
                    usize::try_from(u64::from_be_bytes(n)).unwrap_or(usize::MAX),
                )
            }
            126 | 127 => break,
            n => (at + 2, usize::from(n)),
        };
        if buf.len() - start < len {
            break;
        }
        frames.push((buf[at], &buf[start..start + len]));
        at = start + len;
    }
    (frames, at)
}
