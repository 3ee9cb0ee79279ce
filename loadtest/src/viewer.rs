//! One viewer's connection: dial, open the WebSocket, and join its room. What it
//! reads afterwards is accounted by [`crate::seen::Seen`].

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpSocket;

use danmaku_protocol::{
    Command, FrameType, InteractionId, JoinedReply, PollId, RoomId, ServerLine, Since,
};

use crate::tls::{Stream, TlsTarget, handshake_cause};
use crate::wsclient::{Client, Frame};

/// A viewer's WebSocket.
pub type Ws = Client;

/// How long connecting or joining may take before it counts as failed.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Dial {
    /// Full URL, with the token if any.
    pub url: String,
    /// The gateway's socket address.
    pub addr: SocketAddr,
    /// TLS, for a `wss://` URL.
    pub tls: Option<TlsTarget>,
    /// Local address to bind, to spread over source addresses.
    pub source: Option<IpAddr>,
    /// Seeds the connection's WebSocket key and masks.
    pub seed: u64,
    /// Open a plain tokio-tungstenite client instead of the load test's own.
    pub tungstenite: bool,
}

/// Opens the TCP connection, TLS for `wss://`, and the WebSocket.
///
/// # Errors
/// The failure's cause, as a short label.
pub async fn open(d: &Dial) -> Result<Ws, String> {
    let socket = if d.addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| io_cause("socket", &e))?;
    if let Some(src) = d.source {
        socket
            .bind(SocketAddr::new(src, 0))
            .map_err(|e| io_cause("bind", &e))?;
    }
    let stream = match tokio::time::timeout(STEP_TIMEOUT, socket.connect(d.addr)).await {
        Err(_) => return Err(connect_timeout(d.addr)),
        Ok(Err(e)) => return Err(connect_cause(&e, d.addr)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let stream = match &d.tls {
        None => Stream::Plain(stream),
        Some(tls) => tls
            .handshake(stream)
            .await
            .map_err(|e| handshake_cause(&e, d.addr))?,
    };
    let (host, path) = target(&d.url)?;
    if d.tungstenite {
        let open = Client::handshake_tungstenite(stream, &d.url);
        return match tokio::time::timeout(STEP_TIMEOUT, open).await {
            Err(_) => Err("handshake_timeout".into()),
            Ok(r) => r,
        };
    }
    match tokio::time::timeout(STEP_TIMEOUT, Client::handshake(stream, host, path, d.seed)).await {
        Err(_) => Err("handshake_timeout".into()),
        Ok(r) => r,
    }
}

/// A failed step's cause, as a short label (`bind_addrinuse`).
pub fn io_cause(step: &str, e: &std::io::Error) -> String {
    format!("{step}_{:?}", e.kind()).to_lowercase()
}

/// A failed TCP connect's cause, naming the address that refused it (or did not
/// answer): `connect_connectionrefused@127.0.0.1:8080`.
pub fn connect_cause(e: &std::io::Error, addr: SocketAddr) -> String {
    format!("{}@{addr}", io_cause("connect", e))
}

/// The cause of a TCP connect to `addr` that took longer than [`STEP_TIMEOUT`].
pub fn connect_timeout(addr: SocketAddr) -> String {
    format!("connect_timeout@{addr}")
}

/// The host and the path (with its query) of a `ws://` or `wss://` URL.
///
/// # Errors
/// `bad_url` for any other scheme.
pub fn target(url: &str) -> Result<(&str, &str), String> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
        .ok_or_else(|| "bad_url".to_string())?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    Ok((host, if path.is_empty() { "/" } else { path }))
}

/// The `joined` reply.
#[derive(Debug, Clone)]
pub struct Joined {
    /// Room epoch.
    pub epoch: String,
    /// Room seq at the join.
    pub seq: u64,
    /// Whether `since` was honoured.
    pub recovered: bool,
    /// The first open poll of the snapshot, with its option count.
    pub poll: Option<(PollId, u32)>,
    /// The room's games in the snapshot.
    pub games: Games,
    /// Lines that came after `joined` in its frame (replayed events).
    pub rest: Vec<Vec<u8>>,
}

/// The room's games a viewer takes part in, from its snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Games {
    /// The open quiz, with its option count.
    pub quiz: Option<(InteractionId, u32)>,
    /// The lottery not drawn yet.
    pub lottery: Option<InteractionId>,
    /// The coupon not closed.
    pub coupon: Option<InteractionId>,
}

/// Sends `join` (id 1) and reads until `joined`.
///
/// # Errors
/// The failure's cause, as a short label.
pub async fn join(
    ws: &mut Ws,
    room: &RoomId,
    since: Option<(&str, u64)>,
    adaptive: Option<u32>,
) -> Result<Joined, String> {
    ws.send_text(join_command(room, since, adaptive).as_bytes())
        .await
        .map_err(|_| "send_error".to_string())?;
    let wait = async {
        loop {
            let text = match ws.next_frame().await {
                Ok(Frame::Text(t)) => t,
                Ok(Frame::Close(_)) => return Err("closed_before_joined".to_string()),
                Err(_) => return Err("ws_error".to_string()),
            };
            if let Some(reply) = scan_joined(text) {
                return reply;
            }
        }
    };
    tokio::time::timeout(STEP_TIMEOUT, wait)
        .await
        .map_err(|_| "join_timeout".to_string())?
}

/// The `join` command (id 1) for `room`, resuming after `since` when given, adaptive
/// with `max_rate` when given.
pub fn join_command(room: &RoomId, since: Option<(&str, u64)>, adaptive: Option<u32>) -> String {
    Command::Join {
        id: 1,
        room: room.clone(),
        since: since.map(|(epoch, seq)| Since {
            epoch: epoch.to_owned(),
            seq,
        }),
        mode: adaptive.map_or(danmaku_protocol::Mode::All, |max_rate| {
            danmaku_protocol::Mode::Adaptive { max_rate }
        }),
    }
    .encode()
}

/// The answer to `join` in one server frame, if it has one: `joined` (with the lines
/// after it), or the error's cause.
pub fn scan_joined(text: &[u8]) -> Option<Result<Joined, String>> {
    let mut lines = text.split(|&b| b == b'\n');
    for line in lines.by_ref() {
        let Ok(l) = ServerLine::decode(line) else {
            continue;
        };
        match l.ty {
            FrameType::Joined => {
                return Some(parse_joined(line).map(|mut j| {
                    j.rest = lines.map(<[u8]>::to_vec).collect();
                    j
                }));
            }
            FrameType::Error => {
                let code = l.code.as_deref().unwrap_or("error");
                return Some(Err(format!("join_{code}")));
            }
            _ => {}
        }
    }
    None
}

fn parse_joined(line: &[u8]) -> Result<Joined, String> {
    let j: JoinedReply = serde_json::from_slice(line).map_err(|_| "bad_joined".to_string())?;
    let poll = j.snapshot.polls.into_iter().next().and_then(|p| {
        let n = u32::try_from(p.options.len()).ok()?;
        Some((PollId::new(&p.poll).ok()?, n))
    });
    let id = |raw: &serde_json::value::RawValue, field: &str| {
        let v: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
        InteractionId::new(v.get(field)?.as_str()?).ok()
    };
    let games = Games {
        quiz: j.snapshot.quizzes.first().and_then(|q| {
            let v: serde_json::Value = serde_json::from_str(q.get()).ok()?;
            let n = u32::try_from(v.get("options")?.as_array()?.len()).ok()?;
            Some((id(q, "id")?, n))
        }),
        lottery: j.snapshot.lotteries.first().and_then(|l| id(l, "id")),
        coupon: j.snapshot.coupons.first().and_then(|c| id(c, "coupon")),
    };
    Ok(Joined {
        epoch: j.epoch,
        seq: j.seq,
        recovered: j.recovered,
        poll,
        games,
        rest: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connect_names_the_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let dial = Dial {
            url: format!("ws://{addr}/ws"),
            addr,
            tls: None,
            source: None,
            seed: 1,
            tungstenite: false,
        };
        let cause = open(&dial).await.err().expect("nothing listens there");
        assert_eq!(cause, format!("connect_connectionrefused@{addr}"));
    }

    #[test]
    fn joined_is_found_among_the_lines_of_a_frame() {
        let frame = br#"{"type":"hello","conn":"c","gateway":"g","heartbeat_ms":1,"server_time":2}
{"seq":5,"epoch":"e","id":1,"type":"joined","room":"r","recovered":false,"snapshot":{"recent":[],"likes":0,"online":0,"polls":[]}}
{"type":"event","seq":6,"kind":"lt","data":{"t":1}}"#;
        let j = scan_joined(frame).expect("a reply").expect("joined");
        assert_eq!((j.epoch.as_str(), j.seq, j.poll), ("e", 5, None));
        assert_eq!(j.rest.len(), 1, "the event after it is kept");
        let refused = br#"{"type":"error","id":1,"code":"forbidden","message":"no"}"#;
        assert_eq!(
            scan_joined(refused).map(|r| r.map(|j| j.seq)),
            Some(Err("join_forbidden".into()))
        );
        assert!(scan_joined(br#"{"type":"presence","room":"r","online":3}"#).is_none());
    }
}
