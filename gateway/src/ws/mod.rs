//! The WebSocket side: the upgrade (auth, limits, the handshake) and the connection task.
//!
//! The handshake is done here rather than by axum's `WebSocketUpgrade` so the
//! connection keeps its `TcpStream`: the room hub writes quiet rooms' events to it
//! directly (see [`io`]), while tungstenite reads client frames and writes replies.

mod adaptive;
mod backlog;
mod commands;
mod conn;
mod echo;
mod io;
mod outbound;
mod skips;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use danmaku_protocol::{CloseCode, ErrorCode, SUBPROTOCOL};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::task::task_tracker::TaskTrackerToken;

pub use backlog::Backlogs;

use crate::auth::Identity;
use crate::http::error::ApiError;
use crate::limits::{ConnPermit, LimitError};
use crate::state::AppState;

/// Bytes tungstenite reads from the socket at a time, and keeps allocated per
/// connection for as long as it lives. Its default (128 KiB) would dominate a viewer's
/// memory; client commands are a few hundred bytes at most (a 200-character comment is
/// at most 800 bytes: four reads), and rare, so every idle viewer holds 256 bytes here.
const READ_BUFFER: usize = 256;

#[derive(Deserialize)]
pub(crate) struct WsQuery {
    token: Option<String>,
    /// `close`: a refused token is told after the upgrade, with close code 4501 and the
    /// reason, rather than by a 401 a browser's WebSocket cannot read.
    refusal: Option<String>,
}

/// What an upgrade is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    /// `/ws`: a viewer.
    Viewer,
    /// `/diagnostic/echo` (with `--diagnostic-echo`): the echo of [`echo`].
    Echo,
}

/// The path of the diagnostic echo.
pub(crate) const ECHO_PATH: &str = "/diagnostic/echo";

impl Endpoint {
    /// The endpoint served at `path`, if any (the echo only when `echo` is on).
    fn at(path: &str, echo: bool) -> Option<Self> {
        match path {
            "/ws" => Some(Self::Viewer),
            ECHO_PATH if echo => Some(Self::Echo),
            _ => None,
        }
    }
}

/// `GET /ws`: checks the handshake, then hands the socket to a connection task.
pub(crate) async fn upgrade(
    State(app): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    query: Result<Query<WsQuery>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Response {
    upgrade_to(Endpoint::Viewer, &app, addr, query, request)
}

/// `GET /diagnostic/echo` (only routed with `--diagnostic-echo`).
pub(crate) async fn echo_upgrade(
    State(app): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    query: Result<Query<WsQuery>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Response {
    upgrade_to(Endpoint::Echo, &app, addr, query, request)
}

fn upgrade_to(
    endpoint: Endpoint,
    app: &Arc<AppState>,
    addr: SocketAddr,
    query: Result<Query<WsQuery>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Response {
    match accept(endpoint, app, addr, query, request) {
        Ok(response) => response,
        Err(e) => {
            app.metrics.handshake_refused(e.code());
            e.into_response()
        }
    }
}

fn accept(
    endpoint: Endpoint,
    app: &Arc<AppState>,
    addr: SocketAddr,
    query: Result<Query<WsQuery>, axum::extract::rejection::QueryRejection>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let admitted = admit(
        endpoint,
        app,
        addr,
        request.method(),
        request.headers(),
        query,
    )?;
    let on_upgrade = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| ApiError::new(ErrorCode::BadRequest, "connection is not upgradable"))?;
    let response = admitted.handshake.response();
    let app = app.clone();
    // The tracker token keeps shutdown waiting until this connection has drained.
    let tracked = app.tracker.token();
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        // Our own server hands hyper a `TokioIo<TcpStream>`; anything else is a bug.
        let Ok(parts) = upgraded.downcast::<TokioIo<TcpStream>>() else {
            tracing::error!("upgraded connection is not a TCP stream");
            return;
        };
        // Bytes the client sent right behind its handshake. Copied out: `read_buf`
        // is a view into hyper's 8 KiB connection buffer, which must not live on.
        let read_ahead = parts.read_buf.to_vec();
        drop(parts.read_buf);
        // A task of its own: this one holds hyper's upgrade state.
        admitted.start(&app, tracked, parts.io.into_inner(), read_ahead, None);
    });
    Ok(response)
}

/// A viewer let in: its handshake, who it is (or why its token was refused, to be
/// told with a close code), and its place under the connection caps.
struct Admitted {
    /// When the upgrade request was taken in.
    requested: std::time::Instant,
    endpoint: Endpoint,
    handshake: Handshake,
    identity: Result<Identity, String>,
    permit: ConnPermit,
}

/// What a connection holds until it ends: its place under the connection caps, and
/// the token that keeps shutdown waiting for it.
pub(super) struct Held {
    _tracked: TaskTrackerToken,
    _permit: ConnPermit,
}

impl Admitted {
    /// Spawns the connection's task; `preface` (the 101 response, when hyper did not
    /// send it) goes out in one write with `hello`.
    fn start(
        self,
        app: &Arc<AppState>,
        tracked: TaskTrackerToken,
        stream: TcpStream,
        read_ahead: Vec<u8>,
        preface: Option<Bytes>,
    ) {
        let held = Held {
            _tracked: tracked,
            _permit: self.permit,
        };
        let identity = match self.identity {
            Ok(identity) => identity,
            Err(why) => {
                app.metrics.closed(CloseCode::Unauthorized);
                tokio::spawn(async move {
                    let _held = held;
                    refuse(stream, read_ahead, preface, &why).await;
                });
                return;
            }
        };
        let frame_limit = app.config.limits.max_frame_bytes;
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0)
            .max_write_buffer_size(io::MAX_PENDING)
            .max_message_size(Some(frame_limit))
            .max_frame_size(Some(frame_limit));
        if self.endpoint == Endpoint::Echo {
            let timeout = app.config.ws.write_timeout;
            tokio::spawn(async move {
                let _held = held;
                echo::run(stream, read_ahead, preface, config, timeout).await;
            });
            return;
        }
        // The only argument of the viewer's task is this box: see `Opening`.
        tokio::spawn(conn::run(Box::new(conn::Opening {
            ctx: app.conn.clone(),
            stream,
            read_ahead,
            preface,
            config,
            identity,
            held,
            requested: self.requested,
        })));
    }
}

/// Closes an upgraded connection with 4501 and `why` as the reason (cut to the 123
/// bytes a close frame allows), waiting up to a second for the client's close.
async fn refuse(stream: TcpStream, read_ahead: Vec<u8>, preface: Option<Bytes>, why: &str) {
    use tokio::io::AsyncWriteExt;
    let mut stream = stream;
    if let Some(head) = preface
        && stream.write_all(&head).await.is_err()
    {
        return;
    }
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let mut ws = tokio_tungstenite::WebSocketStream::from_partially_read(
        stream,
        read_ahead,
        tokio_tungstenite::tungstenite::protocol::Role::Server,
        Some(config),
    )
    .await;
    let mut end = why.len().min(123);
    while !why.is_char_boundary(end) {
        end -= 1;
    }
    conn::close_with(
        &mut ws,
        CloseCode::Unauthorized.code(),
        why[..end].to_owned().into(),
    )
    .await;
}

/// The checks every upgrade passes, in order: not draining, a valid handshake, a
/// well-formed query, an allowed origin, a valid token (or anonymous viewers allowed),
/// and room under the connection caps.
fn admit(
    endpoint: Endpoint,
    app: &Arc<AppState>,
    addr: SocketAddr,
    method: &Method,
    headers: &HeaderMap,
    query: Result<Query<WsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Admitted, ApiError> {
    if app.shutdown.is_cancelled() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "draining; connect to another gateway",
        ));
    }
    let handshake = Handshake::check(method, headers)?;
    let Query(query) = query.map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !app.auth.origin_ok(origin) {
        return Err(ApiError::new(ErrorCode::Forbidden, "origin not allowed"));
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer_token);
    let token = query.token.as_deref().or(bearer);
    let close_refusal = match query.refusal.as_deref() {
        None => false,
        Some("close") => true,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "`refusal` may only be `close`",
            ));
        }
    };
    let identity = match app.auth.viewer(token) {
        Ok(identity) => Ok(identity),
        Err(e) if close_refusal => Err(e.to_string()),
        Err(e) => return Err(ApiError::new(ErrorCode::Unauthorized, e.to_string())),
    };
    let client = app
        .config
        .ws
        .trusted_proxies
        .client(addr.ip(), headers.get_all("x-forwarded-for").iter());
    let permit = app.limiter.acquire(client).map_err(|e| match e {
        LimitError::PerIp => {
            tracing::debug!(%client, "upgrade refused: too many connections from this address");
            ApiError::new(
                ErrorCode::RateLimited,
                "too many connections from this address",
            )
        }
        LimitError::Total => ApiError::new(
            ErrorCode::Unavailable,
            "gateway is full; connect to another gateway",
        ),
    })?;
    Ok(Admitted {
        requested: std::time::Instant::now(),
        endpoint,
        handshake,
        identity,
        permit,
    })
}

/// Most bytes of a handshake request answered without hyper.
const FAST_HEAD: usize = 4096;
/// Most header lines in such a request.
const FAST_HEADERS: usize = 32;

/// Answers a WebSocket upgrade that arrived whole, without hyper: the request is read
/// in place, the 101 goes out in one write with `hello`, and whatever the client sent
/// behind its request stays in the socket for the connection. A viewer's open then
/// costs one write and one parse less.
///
/// Returns the stream untouched, for hyper to serve, when it is anything else: another
/// route, a request not complete in the socket yet, or one a check refuses (hyper's
/// `/ws` route then answers with the usual JSON error). `None`: served, or closed
/// (nothing arrived within the handshake timeout).
pub(crate) async fn fast_upgrade(
    app: &Arc<AppState>,
    stream: TcpStream,
    addr: SocketAddr,
) -> Option<TcpStream> {
    let mut head = vec![0u8; FAST_HEAD];
    let peeked = tokio::select! {
        peeked = tokio::time::timeout(app.config.ws.handshake_timeout, stream.peek(&mut head)) => peeked,
        () = app.shutdown.cancelled() => return Some(stream),
    };
    let n = match peeked {
        Ok(Ok(n)) if n > 0 => n,
        _ => return None,
    };
    let Some(request) = FastRequest::parse(&head[..n], app.config.diagnostic_echo) else {
        return Some(stream);
    };
    let Ok(admitted) = admit(
        request.endpoint,
        app,
        addr,
        &Method::GET,
        &request.headers,
        request.query,
    ) else {
        return Some(stream);
    };
    // Take the request off the socket; what follows it is the connection's.
    let mut taken = 0;
    while taken < request.len {
        match stream.try_read(&mut head[taken..request.len]) {
            Ok(0) => return None,
            Ok(k) => taken += k,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if stream.readable().await.is_err() {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
    drop(head);
    let preface = admitted.handshake.response_head();
    // A task of its own (as after hyper's upgrade): the HTTP task ends here, and the
    // connection's state is not carried inside every HTTP connection's future.
    admitted.start(app, app.tracker.token(), stream, Vec::new(), Some(preface));
    None
}

/// A `GET /ws` (or echo) request head parsed in place.
pub(crate) struct FastRequest {
    /// Bytes of the head, blank line included.
    pub(crate) len: usize,
    endpoint: Endpoint,
    headers: HeaderMap,
    query: Result<Query<WsQuery>, axum::extract::rejection::QueryRejection>,
}

impl FastRequest {
    /// The request, if `bytes` start with a complete HTTP/1.1 `GET` head of an upgrade
    /// endpoint.
    pub(crate) fn parse(bytes: &[u8], echo: bool) -> Option<Self> {
        let mut lines = [httparse::EMPTY_HEADER; FAST_HEADERS];
        let mut req = httparse::Request::new(&mut lines);
        let httparse::Status::Complete(len) = req.parse(bytes).ok()? else {
            return None;
        };
        if req.method != Some("GET") || req.version != Some(1) {
            return None;
        }
        let target = req.path?;
        let endpoint = Endpoint::at(
            target.split_once('?').map_or(target, |(path, _)| path),
            echo,
        )?;
        let uri: Uri = target.parse().ok()?;
        let mut headers = HeaderMap::with_capacity(req.headers.len());
        for h in req.headers.iter() {
            headers.append(
                HeaderName::from_bytes(h.name.as_bytes()).ok()?,
                HeaderValue::from_bytes(h.value).ok()?,
            );
        }
        Some(Self {
            len,
            endpoint,
            headers,
            query: Query::try_from_uri(&uri),
        })
    }
}

/// Whether a `Sec-WebSocket-Key` is, as RFC 6455 §4.1 requires, 16 bytes in base64
/// (unused low bits of the last character are tolerated: some clients set them).
fn valid_key(key: &[u8]) -> bool {
    use base64::Engine as _;
    use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let mut out = [0u8; 18];
    key.len() == 24 && LENIENT.decode_slice(key, &mut out).is_ok_and(|n| n == 16)
}

/// A valid WebSocket handshake request (RFC 6455 §4.2.1).
struct Handshake {
    accept: String,
    subprotocol: bool,
}

impl Handshake {
    fn check(method: &Method, headers: &HeaderMap) -> Result<Self, ApiError> {
        let bad = |m: &str| ApiError::new(ErrorCode::BadRequest, m);
        if method != Method::GET {
            return Err(bad("a WebSocket upgrade must be a GET"));
        }
        let has_token = |name: header::HeaderName, token: &str| {
            headers.get_all(name).iter().any(|v| {
                v.to_str()
                    .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            })
        };
        if !has_token(header::CONNECTION, "upgrade") {
            return Err(bad("`Connection` header must contain `upgrade`"));
        }
        if !has_token(header::UPGRADE, "websocket") {
            return Err(bad("`Upgrade` header must be `websocket`"));
        }
        let mut versions = headers.get_all(header::SEC_WEBSOCKET_VERSION).iter();
        match (versions.next(), versions.next()) {
            (Some(v), None) if v.as_bytes() == b"13" => {}
            (None, _) => return Err(bad("`Sec-WebSocket-Version` header is missing")),
            _ => return Err(ApiError::upgrade_required()),
        }
        let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
        let key = match (keys.next(), keys.next()) {
            (Some(key), None) => key,
            (None, _) => return Err(bad("`Sec-WebSocket-Key` header is missing")),
            (Some(_), Some(_)) => return Err(bad("more than one `Sec-WebSocket-Key` header")),
        };
        if !valid_key(key.as_bytes()) {
            return Err(bad(
                "`Sec-WebSocket-Key` must be 16 random bytes in base64 (24 characters)",
            ));
        }
        Ok(Self {
            accept: derive_accept_key(key.as_bytes()),
            subprotocol: has_token(header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL),
        })
    }

    /// The 101 response's headers, for both ways of sending it.
    fn headers(&self) -> impl Iterator<Item = (header::HeaderName, &str)> {
        [
            (header::CONNECTION, "upgrade"),
            (header::UPGRADE, "websocket"),
            (header::SEC_WEBSOCKET_ACCEPT, self.accept.as_str()),
        ]
        .into_iter()
        .chain(
            self.subprotocol
                .then_some((header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL)),
        )
    }

    /// The 101 response's head, as bytes to write (the fast path).
    fn response_head(&self) -> Bytes {
        let mut head = String::from("HTTP/1.1 101 Switching Protocols\r\n");
        for (name, value) in self.headers() {
            head.push_str(name.as_str());
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        Bytes::from(head)
    }

    /// The 101 response, for hyper to send.
    fn response(&self) -> Response {
        self.headers()
            .fold(
                Response::builder().status(StatusCode::SWITCHING_PROTOCOLS),
                |builder, (name, value)| builder.header(name, value),
            )
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().expect("header value"));
        }
        h
    }

    const GOOD: &[(&str, &str)] = &[
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-protocol", "chat, danmaku.v1"),
    ];

    #[test]
    fn accepts_a_valid_handshake() {
        let h = Handshake::check(&Method::GET, &headers(GOOD)).expect("valid");
        // The example of RFC 6455 §1.3.
        assert_eq!(h.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert!(h.subprotocol);
        let without: Vec<_> = GOOD[..4].to_vec();
        assert!(
            !Handshake::check(&Method::GET, &headers(&without))
                .expect("valid")
                .subprotocol
        );
    }

    proptest::proptest! {
        // The mirror of a fuzz target: whatever a client sends first, the fast path
        // reads it or leaves it to hyper, and never panics.
        #[test]
        fn any_bytes_are_parsed_or_left_to_hyper(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = FastRequest::parse(&bytes, true);
        }

        #[test]
        fn a_request_is_found_whatever_its_headers(
            extra in proptest::collection::vec(("[A-Za-z-]{1,16}", "[ -~]{0,40}"), 0..8),
            echo in proptest::bool::ANY,
        ) {
            let mut head = String::from("GET /ws?token=t HTTP/1.1\r\nHost: gw\r\n");
            for (name, value) in &extra {
                head.push_str(&format!("X-{name}: {value}\r\n"));
            }
            head.push_str("Upgrade: websocket\r\n\r\nafter");
            let r = FastRequest::parse(head.as_bytes(), echo);
            let r = r.expect("a whole GET /ws head");
            proptest::prop_assert_eq!(r.len, head.len() - "after".len());
            proptest::prop_assert_eq!(r.endpoint, Endpoint::Viewer);
            let cut = FastRequest::parse(&head.as_bytes()[..head.len() - 8], echo);
            proptest::prop_assert!(cut.is_none(), "an incomplete head is hyper's");
        }
    }

    #[test]
    fn a_key_is_16_bytes_in_base64() {
        assert!(valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(valid_key(b"dGhlIHNhbXBsZSBub25jZZ=="), "unused bits set");
        for bad in [
            &b""[..],
            b"abc",
            b"dGhlIHNhbXBsZSBub25jZQ",
            b"dGhlIHNhbXBsZSBub25jZQ==x",
            b"dGhlIHNhbXBsZSBub25jZ!==",
            b"dGhlIHNhbXBsZSBub25jZQ=\n",
            b"dGhlIHNhbXBsZSBub25jZXg=",
            b"AAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(!valid_key(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn another_version_is_told_to_use_13() {
        for version in ["8", "14", "13, 8", ""] {
            let mut pairs: Vec<_> = GOOD.to_vec();
            pairs[2] = ("sec-websocket-version", version);
            let e = match Handshake::check(&Method::GET, &headers(&pairs)) {
                Ok(_) => panic!("version {version:?} accepted"),
                Err(e) => e.into_response(),
            };
            assert_eq!(e.status(), StatusCode::UPGRADE_REQUIRED, "{version:?}");
            assert_eq!(
                e.headers()
                    .get(header::SEC_WEBSOCKET_VERSION)
                    .map(|v| v.as_bytes()),
                Some(&b"13"[..])
            );
        }
    }

    #[test]
    fn refuses_each_missing_part() {
        assert!(Handshake::check(&Method::POST, &headers(GOOD)).is_err());
        for (skip, (name, _)) in GOOD.iter().enumerate().take(4) {
            let partial: Vec<_> = GOOD
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, p)| *p)
                .collect();
            assert!(
                Handshake::check(&Method::GET, &headers(&partial)).is_err(),
                "without {name}"
            );
        }
    }
}
