//! One viewer: dial, join, read events, and account for every seq.
//!
//! The read path is built to cost little per event: lines are recognised by prefix
//! and the few numbers needed (seq, publish time) are read in place, without parsing
//! the whole JSON object.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpSocket;

use crate::stats::Track;
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
    /// Local address to bind, to spread over source addresses.
    pub source: Option<IpAddr>,
    /// Seeds the connection's WebSocket key and masks.
    pub seed: u64,
}

/// Opens the TCP connection and the WebSocket.
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
        Err(_) => return Err("connect_timeout".into()),
        Ok(Err(e)) => return Err(io_cause("connect", &e)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let (host, path) = target(&d.url)?;
    match tokio::time::timeout(STEP_TIMEOUT, Client::handshake(stream, host, path, d.seed)).await {
        Err(_) => Err("handshake_timeout".into()),
        Ok(r) => r,
    }
}

/// A failed step's cause, as a short label (`connect_connectionrefused`).
pub fn io_cause(step: &str, e: &std::io::Error) -> String {
    format!("{step}_{:?}", e.kind()).to_lowercase()
}

/// The host and the path (with its query) of a `ws://` URL.
///
/// # Errors
/// `bad_url` for any other scheme.
pub fn target(url: &str) -> Result<(&str, &str), String> {
    let rest = url
        .strip_prefix("ws://")
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
    pub poll: Option<(String, u32)>,
    /// Lines that came after `joined` in its frame (replayed events).
    pub rest: Vec<Vec<u8>>,
}

/// Sends `join` (id 1) and reads until `joined`.
///
/// # Errors
/// The failure's cause, as a short label.
pub async fn join(ws: &mut Ws, room: &str, since: Option<(&str, u64)>) -> Result<Joined, String> {
    ws.send_text(join_command(room, since).as_bytes())
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

/// The `join` command (id 1) for `room`, resuming after `since` when given.
pub fn join_command(room: &str, since: Option<(&str, u64)>) -> String {
    match since {
        Some((epoch, seq)) => {
            serde_json::json!({"type":"join","id":1,"room":room,"since":{"epoch":epoch,"seq":seq}})
        }
        None => serde_json::json!({"type":"join","id":1,"room":room}),
    }
    .to_string()
}

/// The answer to `join` in one server frame, if it has one: `joined` (with the lines
/// after it), or the error's cause.
pub fn scan_joined(text: &[u8]) -> Option<Result<Joined, String>> {
    let mut lines = text.split(|&b| b == b'\n');
    for line in lines.by_ref() {
        if line.starts_with(b"{\"type\":\"joined\"") {
            return Some(parse_joined(line).map(|mut j| {
                j.rest = lines.map(<[u8]>::to_vec).collect();
                j
            }));
        }
        if line.starts_with(b"{\"type\":\"error\"") {
            return Some(Err(format!(
                "join_{}",
                str_after(line, b"\"code\":\"").unwrap_or("error")
            )));
        }
    }
    None
}

fn parse_joined(line: &[u8]) -> Result<Joined, String> {
    let v: serde_json::Value =
        serde_json::from_slice(line).map_err(|_| "bad_joined".to_string())?;
    let poll = v["snapshot"]["polls"].get(0).and_then(|p| {
        let id = p["poll"].as_str()?.to_owned();
        let n = p["options"].as_array()?.len();
        Some((id, u32::try_from(n).ok()?))
    });
    Ok(Joined {
        epoch: v["epoch"].as_str().unwrap_or_default().to_owned(),
        seq: v["seq"].as_u64().unwrap_or(0),
        recovered: v["recovered"].as_bool().unwrap_or(false),
        poll,
        rest: Vec::new(),
    })
}

/// A command waiting for its reply.
#[derive(Debug, Clone, Copy)]
pub enum Pending {
    /// A comment.
    Comment,
    /// Likes of this count.
    Like(u64),
    /// A vote for this option.
    Vote(u32),
}

/// What one viewer counted.
#[derive(Debug, Default)]
pub struct Seen {
    /// Seq accounting.
    pub track: Track,
    /// Events received.
    pub delivered: u64,
    /// Frames received.
    pub frames: u64,
    /// `reset` frames.
    pub resets: u64,
    /// Error replies by code.
    pub errors: BTreeMap<String, u64>,
    /// Acks.
    pub acks: u64,
    /// Likes acknowledged.
    pub likes_acked: u64,
    /// Votes acknowledged, by option.
    pub votes_acked: BTreeMap<u32, u64>,
    /// Commands waiting for replies, by id.
    pub pending: BTreeMap<u64, Pending>,
    /// The last poll event's tallies seen (seq, votes per option).
    pub last_poll: Option<(u64, Vec<u64>)>,
    /// The latest `reconnect` request from the gateway.
    pub reconnect_asked: bool,
    /// (publish → receive µs) samples not yet merged into the shared histogram.
    pub latencies: Vec<(u64, u64)>,
}

impl Seen {
    /// Accounts for one line of a server frame received at `now_us` (Unix µs).
    pub fn on_line(&mut self, line: &[u8], now_us: u64) {
        if line.starts_with(b"{\"type\":\"event\"") {
            let Some(seq) = num_after(line, b"\"seq\":") else {
                return;
            };
            self.delivered += 1;
            self.track.on_event(seq);
            if let Some(t) = num_after(line, b"\"data\":{\"t\":") {
                self.latencies.push((now_us, now_us.saturating_sub(t)));
            } else if find(line, b"\"kind\":\"poll\"").is_some() {
                self.on_poll(seq, line);
            }
        } else if line.starts_with(b"{\"type\":\"presence\"") {
        } else if line.starts_with(b"{\"type\":\"ack\"") {
            self.acks += 1;
            let id = num_after(line, b"\"id\":").unwrap_or(0);
            match self.pending.remove(&id) {
                Some(Pending::Like(n)) => self.likes_acked += n,
                Some(Pending::Vote(o)) => *self.votes_acked.entry(o).or_default() += 1,
                _ => {}
            }
        } else if line.starts_with(b"{\"type\":\"error\"") {
            if let Some(id) = num_after(line, b"\"id\":") {
                self.pending.remove(&id);
            }
            let code = str_after(line, b"\"code\":\"")
                .unwrap_or("unknown")
                .to_owned();
            *self.errors.entry(code).or_default() += 1;
        } else if line.starts_with(b"{\"type\":\"reset\"") {
            self.resets += 1;
            if let Some(seq) = num_after(line, b"\"seq\":") {
                self.track.restart(seq);
            }
        } else if line.starts_with(b"{\"type\":\"reconnect\"") {
            self.reconnect_asked = true;
        }
    }

    fn on_poll(&mut self, seq: u64, line: &[u8]) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
            return;
        };
        let votes: Vec<u64> = v["data"]["options"]
            .as_array()
            .map(|o| o.iter().map(|x| x["votes"].as_u64().unwrap_or(0)).collect())
            .unwrap_or_default();
        if self.last_poll.as_ref().is_none_or(|(s, _)| seq > *s) {
            self.last_poll = Some((seq, votes));
        }
    }
}

/// Finds `needle` in `hay` (scans for the first byte, then compares).
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let last_start = hay.len().checked_sub(needle.len())?;
    let mut i = 0;
    while i <= last_start {
        let at = hay[i..=last_start].iter().position(|&b| b == first)? + i;
        if &hay[at + 1..at + needle.len()] == rest {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// The unsigned integer right after `key`.
pub fn num_after(line: &[u8], key: &[u8]) -> Option<u64> {
    let start = find(line, key)? + key.len();
    let digits = line[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&line[start..start + digits])
        .ok()?
        .parse()
        .ok()
}

fn str_after<'a>(line: &'a [u8], key: &[u8]) -> Option<&'a str> {
    let start = find(line, key)? + key.len();
    let len = line[start..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&line[start..start + len]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_events_in_place() {
        let mut s = Seen {
            track: Track::start(0),
            ..Seen::default()
        };
        let line = br#"{"type":"event","room":"r","epoch":"e","seq":1,"kind":"lt","ts":5,"data":{"t":1000,"pad":"x"}}"#;
        s.on_line(line, 1_500);
        assert_eq!(
            (
                s.delivered,
                s.track.distinct,
                s.latencies.iter().map(|l| l.1).collect::<Vec<_>>()
            ),
            (1, 1, vec![500])
        );
        s.on_line(
            br#"{"type":"error","id":3,"code":"rate_limited","message":"x"}"#,
            0,
        );
        assert_eq!(s.errors.get("rate_limited"), Some(&1));
        s.pending.insert(4, Pending::Like(3));
        s.on_line(br#"{"type":"ack","id":4}"#, 0);
        assert_eq!(s.likes_acked, 3);
        s.on_line(
            br#"{"type":"reset","room":"r","epoch":"e","seq":9,"snapshot":{}}"#,
            0,
        );
        assert_eq!((s.resets, s.track.reset_lost), (1, 8));
    }
}
