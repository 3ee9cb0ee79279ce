//! Behind a balancer: the client's address from `X-Forwarded-For` or the PROXY
//! protocol, believed only from `--trusted-proxies`, is the one the per-IP connection
//! limit counts.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;

use support::{Gateway, Viewer, exchange, token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The status of a viewer's upgrade sent with `headers`, over `tcp` (or a new
/// connection), the socket kept open when it succeeded.
async fn upgrade(
    gw: &Gateway,
    sub: &str,
    headers: &[(&'static str, &str)],
    tcp: Option<TcpStream>,
    kept: &mut Vec<Box<dyn std::any::Any>>,
) -> u16 {
    let url = format!("{}?token={}", gw.ws_url(), token(sub));
    let mut req = url.into_client_request().unwrap();
    for (name, value) in headers {
        req.headers_mut().insert(*name, value.parse().unwrap());
    }
    let tcp = match tcp {
        Some(tcp) => tcp,
        None => TcpStream::connect(gw.addr).await.unwrap(),
    };
    match tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp)).await {
        Ok(ws) => {
            kept.push(Box::new(ws));
            101
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("unexpected handshake error: {e}"),
    }
}

/// A connection to `gw` that starts with the PROXY header `header`.
async fn proxied(gw: &Gateway, header: &[u8]) -> TcpStream {
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(header).await.unwrap();
    tcp
}

fn v1(client: &str) -> Vec<u8> {
    format!("PROXY TCP4 {client} 127.0.0.1 40000 8080\r\n").into_bytes()
}

fn v2(client: SocketAddr, gateway: SocketAddr) -> Vec<u8> {
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (client, gateway),
    )
    .build()
    .unwrap()
}

#[tokio::test]
async fn a_trusted_proxys_forwarded_for_is_the_client() {
    let gw = Gateway::start(&[
        "--trusted-proxies",
        "10.0.0.0/8,127.0.0.1",
        "--max-conns-per-ip",
        "2",
    ]);
    let mut kept = Vec::new();
    let xff = |v| [("X-Forwarded-For", v)];
    for i in 0..2 {
        let s = upgrade(&gw, &format!("a{i}"), &xff("203.0.113.1"), None, &mut kept).await;
        assert_eq!(s, 101);
    }
    // The same client again: over the limit, however the header came.
    assert_eq!(
        upgrade(&gw, "a2", &xff("203.0.113.1"), None, &mut kept).await,
        429
    );
    assert_eq!(
        upgrade(
            &gw,
            "a3",
            &xff("203.0.113.1:5555, 10.1.1.1"),
            None,
            &mut kept
        )
        .await,
        429,
        "behind a second trusted proxy (with a port): still the same client"
    );
    // A forged entry in front of the real one does not make another client.
    assert_eq!(
        upgrade(
            &gw,
            "a4",
            &xff("198.51.100.99, 203.0.113.1"),
            None,
            &mut kept
        )
        .await,
        429
    );
    // Another client behind the same proxy has its own count.
    assert_eq!(
        upgrade(&gw, "b0", &xff("203.0.113.2"), None, &mut kept).await,
        101
    );
    // The proxy's own connections (no header) are its own address's.
    assert_eq!(upgrade(&gw, "p0", &[], None, &mut kept).await, 101);
}

#[tokio::test]
async fn forwarded_for_from_anyone_else_is_ignored() {
    // Loopback is not listed: every connection here is 127.0.0.1's, whatever it says.
    let gw = Gateway::start(&["--trusted-proxies", "10.0.0.0/8", "--max-conns-per-ip", "2"]);
    let mut kept = Vec::new();
    for (i, forged) in ["203.0.113.1", "203.0.113.2"].iter().enumerate() {
        let s = upgrade(
            &gw,
            &format!("u{i}"),
            &[("X-Forwarded-For", forged)],
            None,
            &mut kept,
        )
        .await;
        assert_eq!(s, 101);
    }
    let s = upgrade(
        &gw,
        "u2",
        &[("X-Forwarded-For", "203.0.113.3")],
        None,
        &mut kept,
    )
    .await;
    assert_eq!(
        s, 429,
        "a header from an untrusted peer makes no new client"
    );
}

#[tokio::test]
async fn the_proxy_protocol_gives_the_client() {
    let gw = Gateway::start(&[
        "--proxy-protocol",
        "--trusted-proxies",
        "127.0.0.1",
        "--max-conns-per-ip",
        "1",
    ]);
    let mut kept = Vec::new();
    // Version 1 from 203.0.113.1: a viewer that works.
    let tcp = proxied(&gw, &v1("203.0.113.1")).await;
    let url = format!("{}?token={}", gw.ws_url(), token("v1"));
    let mut viewer = Viewer::connect_over(&url, tcp).await;
    let joined = viewer.join("behind-haproxy").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    // The same client again is over its limit; another (version 2, IPv6) is not.
    let again = proxied(&gw, &v1("203.0.113.1")).await;
    assert_eq!(upgrade(&gw, "v1b", &[], Some(again), &mut kept).await, 429);
    let client: SocketAddr = "[2001:db8::7]:40000".parse().unwrap();
    let other = proxied(&gw, &v2(client, gw.addr)).await;
    assert_eq!(upgrade(&gw, "v2", &[], Some(other), &mut kept).await, 101);
    // The balancer's own health check (LOCAL / UNKNOWN) and the HTTP API, with the
    // header arriving in pieces.
    let header = v1("203.0.113.9");
    let (head, tail) = header.split_at(9);
    let answer = exchange(
        gw.addr,
        &[
            head,
            tail,
            b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ],
    )
    .await;
    assert_eq!(answer.status, 200);
    let answer = exchange(
        gw.addr,
        &[b"PROXY UNKNOWN\r\nGET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"],
    )
    .await;
    assert_eq!(answer.status, 200);
    // A backend's publish through the balancer reaches the viewer.
    let body = r#"{"kind":"comment","data":{"n":1}}"#;
    let publish = format!(
        "POST /v1/rooms/behind-haproxy/events HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        support::API_KEY,
        body.len()
    );
    let answer = exchange(
        gw.addr,
        &[&[&v1("198.51.100.1")[..], publish.as_bytes()].concat()],
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let event = viewer.next_event().await;
    assert_eq!(event["seq"], answer.body["seq"], "{event}");
}

/// What the gateway answers `bytes` with before it closes: nothing, for a refused
/// connection.
async fn answered(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(support::WAIT, tcp.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the gateway closes the connection");
    got
}

#[tokio::test]
async fn without_a_proxy_header_or_from_an_untrusted_peer_nothing_is_served() {
    let health = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let gw = Gateway::start(&["--proxy-protocol", "--trusted-proxies", "127.0.0.1"]);
    assert!(
        answered(gw.addr, health).await.is_empty(),
        "no PROXY header: closed"
    );
    assert!(
        answered(gw.addr, b"PROXY TCP4 nonsense\r\n")
            .await
            .is_empty()
    );
    let untrusted = Gateway::start(&["--proxy-protocol", "--trusted-proxies", "127.0.0.2"]);
    let with_header = [&v1("203.0.113.1")[..], health].concat();
    assert!(
        answered(untrusted.addr, &with_header).await.is_empty(),
        "a peer that is not a trusted proxy: closed, header or not"
    );
    // The same request from a trusted peer is served (the test above can fail).
    let served = answered(gw.addr, &with_header).await;
    assert!(
        served.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&served)
    );
    // Each refusal is counted: the two above (the other gateway's are its own).
    let scrape = b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let text = answered(gw.addr, &[&v1("203.0.113.1")[..], scrape].concat()).await;
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.lines()
            .any(|l| l == r#"danmaku_handshakes_refused_total{reason="proxy"} 2"#),
        "{text}"
    );
}

#[test]
fn proxy_settings_are_checked_at_start() {
    for (args, says) in [
        (
            &["--proxy-protocol"][..],
            "--proxy-protocol needs --trusted-proxies",
        ),
        (
            &["--trusted-proxies", "10.0.0.0/8,balancer.internal"][..],
            "--trusted-proxies: `balancer.internal` is not an IP address or a CIDR network",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_danmaku-gateway"))
            .args(["--listen", "127.0.0.1:0", "--log", "warn"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
