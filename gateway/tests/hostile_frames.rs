//! Hostile WebSocket frames and commands after the upgrade, over real sockets: each row
//! asserts the exact answer (an `error` code, or the close code), and a witness viewer
//! in another room checks after each that nothing reached it.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{Value, json};
use support::{Gateway, Viewer, WAIT, Witness, token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A viewer on a raw socket: upgraded, `hello` read.
async fn raw_viewer(gw: &Gateway) -> TcpStream {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let req = format!(
        "GET /ws?token={} HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        token("raw")
    );
    s.write_all(req.as_bytes()).await.unwrap();
    // The 101 head, then the `hello` frame.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n")
            && buf.len() > end + 4 + 2
            && String::from_utf8_lossy(&buf).contains("\"hello\"")
        {
            return s;
        }
    }
}

/// One client frame: `first` is the FIN/RSV/opcode byte; masked unless `unmasked`.
fn frame(first: u8, payload: &[u8], unmasked: bool) -> Vec<u8> {
    let mut f = vec![first];
    let mask_bit = if unmasked { 0 } else { 0x80 };
    match payload.len() {
        n if n < 126 => f.push(mask_bit | u8::try_from(n).unwrap()),
        n if n <= 0xffff => {
            f.push(mask_bit | 126);
            f.extend_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
        }
        n => {
            f.push(mask_bit | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if unmasked {
        f.extend_from_slice(payload);
    } else {
        let mask = [3u8, 1, 4, 1];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    }
    f
}

/// Reads server frames until a close frame; returns its code (or `None` when the
/// connection ended without one).
async fn close_code(s: &mut TcpStream) -> Option<u16> {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let (frames, taken) = support::server_frames(&buf);
            if let Some((_, payload)) = frames.iter().find(|(first, _)| first & 0x0f == 0x8) {
                return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            }
            buf.drain(..taken);
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("closed in time")
}

#[tokio::test]
async fn broken_frames_close_with_1002_and_harm_no_one_else() {
    let gw = Gateway::start(&[]);
    let mut w = Witness::join(&gw, "w").await;
    let text = br#"{"type":"ping","id":1}"#;
    for (what, bytes) in [
        ("an unmasked frame", frame(0x81, text, true)),
        ("reserved bits", frame(0x81 | 0x40, text, false)),
        ("opcode 3", frame(0x83, text, false)),
        ("opcode 0xB (a reserved control)", frame(0x8B, b"", false)),
        ("a 126-byte ping", frame(0x89, &[0u8; 126], false)),
        ("a fragmented ping", frame(0x09, b"x", false)),
        (
            "a continuation with nothing to continue",
            frame(0x80, text, false),
        ),
        (
            "a new text frame inside a fragmented one",
            [frame(0x01, b"{", false), frame(0x81, b"}", false)].concat(),
        ),
    ] {
        let mut s = raw_viewer(&gw).await;
        s.write_all(&bytes).await.unwrap();
        assert_eq!(close_code(&mut s).await, Some(1002), "{what}");
        w.check(&gw, what).await;
    }
}

#[tokio::test]
async fn huge_declared_lengths_and_endless_fragments_close_with_1009() {
    let gw = Gateway::start(&[]);
    let mut w = Witness::join(&gw, "w").await;
    let rss_before = gw.rss();

    // 2^62 bytes declared, none sent: refused from the header alone.
    let mut s = raw_viewer(&gw).await;
    let mut head = vec![0x81, 0x80 | 127];
    head.extend_from_slice(&(1u64 << 62).to_be_bytes());
    head.extend_from_slice(&[1, 2, 3, 4]);
    s.write_all(&head).await.unwrap();
    assert_eq!(close_code(&mut s).await, Some(1009), "a 2^62-byte frame");
    w.check(&gw, "a huge declared length").await;

    // One-byte fragments with no end: the message limit (4096 bytes) closes it.
    let mut s = raw_viewer(&gw).await;
    let mut bytes = frame(0x01, b"[", false);
    for _ in 0..5_000 {
        bytes.extend_from_slice(&frame(0x00, b"1", false));
    }
    let _ = s.write_all(&bytes).await;
    assert_eq!(close_code(&mut s).await, Some(1009), "endless fragments");
    w.check(&gw, "endless fragments").await;
    assert!(
        gw.rss() < rss_before + 64 * 1024 * 1024,
        "the declared sizes were not allocated"
    );
}

#[tokio::test]
async fn a_ping_flood_is_answered_without_harm() {
    let gw = Gateway::start(&[]);
    let mut w = Witness::join(&gw, "w").await;
    let rss_before = gw.rss();
    let mut v = Viewer::connect(&gw, "flood").await;
    let ping = tokio_tungstenite::tungstenite::Message::Ping(vec![7u8; 100].into());
    use futures_util::SinkExt;
    for _ in 0..20_000 {
        if v.ws.feed(ping.clone()).await.is_err() {
            break;
        }
    }
    let _ = v.ws.flush().await;
    w.check(&gw, "a ping flood").await;
    assert!(
        gw.rss() < rss_before + 64 * 1024 * 1024,
        "pongs queued without bound"
    );
}

async fn error_of(v: &mut Viewer, raw: &str) -> Value {
    use futures_util::SinkExt;
    v.ws.send(tokio_tungstenite::tungstenite::Message::text(raw))
        .await
        .unwrap();
    v.next_of("error").await
}

#[tokio::test]
async fn malformed_json_and_impossible_commands_get_errors() {
    let gw = Gateway::start(&["--max-frame-bytes", "65536"]);
    let mut w = Witness::join(&gw, "w").await;
    let mut v = Viewer::connect(&gw, "u").await;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_object = format!(r#"{{"type":"ping","id":1,"x":{deep}}}"#);
    for (what, raw, code) in [
        (
            "truncated JSON",
            r#"{"type":"join","id":1,"room":"r""#,
            "bad_request",
        ),
        ("a JSON array", "[1,2,3]", "bad_request"),
        ("a JSON string", r#""join""#, "bad_request"),
        ("10,000-deep nesting", deep.as_str(), "bad_request"),
        ("no id", r#"{"type":"ping"}"#, "bad_request"),
        ("an id of -1", r#"{"type":"ping","id":-1}"#, "bad_request"),
        (
            "a room with ../",
            r#"{"type":"join","id":2,"room":"../etc"}"#,
            "invalid_room",
        ),
        (
            "a room with NUL",
            r#"{"type":"join","id":3,"room":"a\u0000b"}"#,
            "invalid_room",
        ),
        (
            "a 65-byte room",
            &json!({"type":"join","id":4,"room":"r".repeat(65)}).to_string(),
            "invalid_room",
        ),
        (
            "since with a negative seq",
            r#"{"type":"join","id":5,"room":"r","since":{"epoch":"e","seq":-1}}"#,
            "bad_request",
        ),
        (
            "since with seq 2^64",
            r#"{"type":"join","id":6,"room":"r","since":{"epoch":"e","seq":18446744073709551616}}"#,
            "bad_request",
        ),
        (
            "since with a text seq",
            r#"{"type":"join","id":7,"room":"r","since":{"epoch":"e","seq":"7"}}"#,
            "bad_request",
        ),
    ] {
        let e = error_of(&mut v, raw).await;
        assert_eq!(e["code"], code, "{what}: {e}");
        w.check(&gw, what).await;
    }
    // Deep nesting in a field the gateway does not read is skipped without recursion:
    // the command is served.
    use futures_util::SinkExt;
    v.ws.send(tokio_tungstenite::tungstenite::Message::text(deep_object))
        .await
        .unwrap();
    assert_eq!(v.reply(1).await["type"], "pong");
    w.check(&gw, "deep nesting in an unknown field").await;
}

#[tokio::test]
async fn impossible_resume_positions_get_recovered_false() {
    let gw = Gateway::start(&[]);
    gw.publish("r", json!({"n": 1})).await;
    let mut v = Viewer::connect(&gw, "u").await;
    let epoch = v.join("r").await["epoch"].as_str().unwrap().to_owned();
    for (what, since) in [
        (
            "a seq beyond the head",
            json!({"epoch": epoch, "seq": 1_000_000}),
        ),
        ("the largest seq", json!({"epoch": epoch, "seq": u64::MAX})),
        ("an unknown epoch", json!({"epoch": "nope", "seq": 1})),
    ] {
        let mut r = Viewer::connect(&gw, "r").await;
        let id = r
            .send(json!({"type": "join", "room": "r", "since": since}))
            .await;
        let joined = r.reply(id).await;
        assert_eq!(
            (joined["type"].as_str(), joined["recovered"].as_bool()),
            (Some("joined"), Some(false)),
            "{what}: {joined}"
        );
        assert_eq!(joined["seq"], 1, "{what}");
    }
}

#[tokio::test]
async fn a_thousand_joins_on_one_connection_are_capped() {
    let gw = Gateway::start(&[]);
    let mut w = Witness::join(&gw, "w").await;
    let mut v = Viewer::connect(&gw, "u").await;
    use futures_util::SinkExt;
    for i in 0..1_000u64 {
        let cmd = json!({"type": "join", "id": i + 1, "room": format!("room-{i}")});
        v.ws.feed(tokio_tungstenite::tungstenite::Message::text(
            cmd.to_string(),
        ))
        .await
        .unwrap();
    }
    v.ws.flush().await.unwrap();
    let (mut joined, mut refused) = (0, 0);
    while joined + refused < 1_000 {
        let m = v.next().await;
        match (m["type"].as_str(), m["code"].as_str()) {
            (Some("joined"), _) => joined += 1,
            (Some("error"), Some("too_many_rooms")) => refused += 1,
            _ => {}
        }
    }
    assert_eq!((joined, refused), (10, 990));
    w.check(&gw, "1,000 joins").await;
}
