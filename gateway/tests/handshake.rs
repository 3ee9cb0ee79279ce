//! The WebSocket upgrade over a raw socket: answered without hyper when it arrives
//! whole (101 and `hello` in one write, bytes behind the request kept), by hyper when
//! it does not.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::{Gateway, WAIT, token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// RFC 6455 §1.3's example key and its accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn request(gw: &Gateway) -> String {
    format!(
        "GET /ws?token={} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: danmaku.v1\r\n\r\n",
        token("raw"),
        gw.addr
    )
}

/// A masked client text frame.
fn text_frame(payload: &str) -> Vec<u8> {
    let mask = [7u8, 1, 2, 3];
    let mut f = vec![0x81, 0x80 | u8::try_from(payload.len()).unwrap()];
    f.extend_from_slice(&mask);
    f.extend(payload.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Reads the response head, then server text frames until one contains `until`;
/// returns the head and the frames' payloads.
async fn read_until(stream: &mut TcpStream, until: &str) -> (String, Vec<String>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            let frames: Vec<String> = support::server_frames(&buf[end + 4..])
                .0
                .into_iter()
                .map(|(_, payload)| String::from_utf8_lossy(payload).into_owned())
                .collect();
            if frames.iter().any(|f| f.contains(until)) {
                return (head, frames);
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("reply in time")
}

#[tokio::test]
async fn a_whole_upgrade_is_answered_at_once_and_keeps_what_follows_it() {
    let gw = Gateway::start(&[]);
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    // The request and the first command in one segment: the command must not be lost
    // with the request's bytes.
    let mut bytes = request(&gw).into_bytes();
    bytes.extend(text_frame(r#"{"type":"join","id":1,"room":"raw-1"}"#));
    stream.write_all(&bytes).await.unwrap();
    let (head, frames) = read_until(&mut stream, r#""type":"joined""#).await;
    let lower = head.to_ascii_lowercase();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(lower.contains(&format!(
        "sec-websocket-accept: {}",
        ACCEPT.to_ascii_lowercase()
    )));
    assert!(
        lower.contains("sec-websocket-protocol: danmaku.v1"),
        "{head}"
    );
    // Answered by the gateway itself: hyper would have added a `date` header.
    assert!(!lower.contains("\r\ndate:"), "{head}");
    assert!(frames[0].contains(r#""type":"hello""#), "{frames:?}");
    assert!(frames.iter().any(|f| f.contains(r#""room":"raw-1""#)));
}

#[tokio::test]
async fn an_upgrade_in_two_pieces_is_answered_by_hyper() {
    let gw = Gateway::start(&[]);
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let req = request(&gw);
    let (first, rest) = req.split_at(40);
    stream.write_all(first.as_bytes()).await.unwrap();
    // A slow client: the gateway sees an incomplete request first.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(rest.as_bytes()).await.unwrap();
    stream
        .write_all(&text_frame(r#"{"type":"join","id":1,"room":"raw-2"}"#))
        .await
        .unwrap();
    let (head, frames) = read_until(&mut stream, r#""type":"joined""#).await;
    let lower = head.to_ascii_lowercase();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(lower.contains("\r\ndate:"), "hyper's answer: {head}");
    assert!(lower.contains(&format!(
        "sec-websocket-accept: {}",
        ACCEPT.to_ascii_lowercase()
    )));
    assert!(frames[0].contains(r#""type":"hello""#), "{frames:?}");
}

#[tokio::test]
async fn the_diagnostic_echo_is_off_unless_asked_for() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let off = Gateway::start(&[]);
    let url = format!("ws://{}/diagnostic/echo?token={}", off.addr, token("e"));
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 404),
        other => panic!("the echo answered without --diagnostic-echo: {other:?}"),
    }
    let on = Gateway::start(&["--diagnostic-echo"]);
    let url = format!("ws://{}/diagnostic/echo?token={}", on.addr, token("e"));
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    ws.send(Message::text("echo me")).await.unwrap();
    let back = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
    assert_eq!(back.unwrap().unwrap(), Message::text("echo me"));
    // Its admission is /ws's: no token, no echo.
    let bare = format!("ws://{}/diagnostic/echo", on.addr);
    match tokio_tungstenite::connect_async(&bare).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("the echo let in a viewer without a token: {other:?}"),
    }
}
