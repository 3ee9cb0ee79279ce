//! Dev mode: without credentials the gateway prints a line to paste into a shell, and
//! what it exports works.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use support::{Gateway, Viewer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Starts the gateway without credentials; returns it and the banner's `export` line.
fn start_in_dev_mode() -> (Gateway, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_danmaku-gateway"))
        .args(["--listen", "127.0.0.1:0", "--log", "warn"])
        .env_remove("DANMAKU_JWT_SECRET")
        .env_remove("DANMAKU_API_KEYS")
        .env_remove("DANMAKU_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn gateway");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut next = || lines.next().and_then(Result::ok).unwrap_or_default();
    let first = next();
    let addr = first
        .split_whitespace()
        .last()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"));
    let gw = Gateway { child, addr };
    let export = std::iter::repeat_with(next)
        .take(10)
        .find(|l| l.starts_with("export "))
        .unwrap_or_else(|| panic!("no export line after {first:?}"));
    (gw, export)
}

/// `NAME=value` words of an `export` line.
fn exported<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{name} not in {line:?}"))
}

#[tokio::test]
async fn the_printed_token_and_key_work() {
    let (gw, export) = start_in_dev_mode();
    let (token, key) = (exported(&export, "TOKEN"), exported(&export, "KEY"));
    assert!(
        token
            .bytes()
            .chain(key.bytes())
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
        "safe to paste unquoted: {export}"
    );
    let mut v = Viewer::connect_url(&format!("{}?token={token}", gw.ws_url())).await;
    v.join("demo").await;
    let mut s = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    let body = r#"{"kind":"comment","data":{"text":"hi"}}"#;
    let req = format!(
        "POST /v1/rooms/demo/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.expect("read");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let event = v.next_event().await;
    assert_eq!(event["data"]["text"], "hi");
}
