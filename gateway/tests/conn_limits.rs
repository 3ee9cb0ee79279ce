//! Per-connection and per-IP limits: idle close, handshake timeout, connection caps,
//! Origin allow-list.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::{Gateway, Viewer};
use tokio::io::AsyncReadExt;

async fn handshake_status(url: &str, origin: Option<&str>) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", o.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("unexpected handshake error: {e}"),
    }
}

#[tokio::test]
async fn a_silent_client_is_closed_idle() {
    // The client below never reads, so it never answers the server's pings.
    let gw = Gateway::start(&["--heartbeat-ms", "100"]);
    let mut v = Viewer::connect(&gw, "u1").await;
    // Silence is the condition under test: not reading means not answering pings.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(v.closed().await, 4000);
}

#[tokio::test]
async fn a_client_that_answers_pings_stays() {
    let gw = Gateway::start(&["--heartbeat-ms", "200"]);
    let mut v = Viewer::connect(&gw, "u1").await;
    v.join("r").await;
    // Reading answers pings (tungstenite replies with pongs); stay well past 2.5×.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1_500);
    let reader = async {
        loop {
            let m = v.next().await;
            if m["type"] == "event" {
                return m;
            }
        }
    };
    let publish = async {
        tokio::time::sleep_until(deadline).await;
        gw.publish("r", serde_json::json!({"still": "here"})).await
    };
    let (ev, seq) = tokio::join!(reader, publish);
    assert_eq!(ev["seq"].as_u64(), Some(seq));
}

#[tokio::test]
async fn a_silent_tcp_connection_is_dropped_after_the_handshake_timeout() {
    let gw = Gateway::start(&["--handshake-timeout-ms", "200"]);
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(support::WAIT, s.read(&mut buf))
        .await
        .expect("closed by the gateway");
    // hyper answers a timed-out head with 408 or just closes.
    let text = String::from_utf8_lossy(&buf[..n.unwrap_or(0)]).into_owned();
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[tokio::test]
async fn connections_per_ip_are_capped() {
    let gw = Gateway::start(&["--max-conns-per-ip", "2"]);
    let url = format!("{}?token={}", gw.ws_url(), support::token("u"));
    let a = Viewer::connect_url(&url).await;
    let _b = Viewer::connect_url(&url).await;
    assert_eq!(handshake_status(&url, None).await, 429);
    drop(a);
    // The slot frees when the gateway sees the first connection end.
    let mut status = 0;
    for _ in 0..250 {
        status = handshake_status(&url, None).await;
        if status == 101 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 101);
}

#[tokio::test]
async fn origins_outside_the_allow_list_are_refused() {
    let gw = Gateway::start(&[
        "--allowed-origins",
        "https://shop.example,https://m.shop.example",
    ]);
    let url = format!("{}?token={}", gw.ws_url(), support::token("u"));
    assert_eq!(
        handshake_status(&url, Some("https://evil.example")).await,
        403
    );
    assert_eq!(handshake_status(&url, None).await, 403);
    assert_eq!(
        handshake_status(&url, Some("https://m.shop.example")).await,
        101
    );
}
