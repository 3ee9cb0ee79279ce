//! The operator's side of the binary: `--version`, `--healthcheck` against a live,
//! a draining and an absent gateway, and the log formats (JSON lines; no colour codes
//! when stderr is not a terminal).
#![allow(clippy::unwrap_used)]

mod support;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{Gateway, Viewer};

fn gateway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_danmaku-gateway"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn version_prints_the_version_and_commit() {
    let out = gateway(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!(
            "danmaku-gateway {} (commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
}

#[tokio::test]
async fn healthcheck_is_ready_only_while_the_gateway_is() {
    let gw = Gateway::start(&["--drain-ms", "3000"]);
    // A viewer keeps the gateway draining for the drain time.
    let _viewer = Viewer::connect(&gw, "u-1").await;
    // Asked on 0.0.0.0 with the gateway's port: the check asks loopback.
    let listen = format!("0.0.0.0:{}", gw.addr.port());
    let out = gateway(&["--healthcheck", "--listen", &listen]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ready"));
    // Draining: /readyz says 503.
    gw.sigterm();
    let mut answer = None;
    for _ in 0..50 {
        let out = gateway(&["--healthcheck", "--listen", &listen]);
        if !out.status.success() {
            answer = Some(out);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = answer.expect("the check fails once the gateway drains");
    assert_eq!(out.status.code(), Some(1));
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(why.contains("503") && why.contains("draining"), "{why}");
    gw.exited().await;
    // Nothing listening: refused, exit 1, with the reason.
    let out = gateway(&["--healthcheck", "--listen", &listen]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not ready"));
}

/// Starts a gateway with `args`, stops it with SIGTERM and returns its stderr.
async fn logs_of(args: &[&str]) -> String {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_danmaku-gateway"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--log",
            "info",
            "--drain-ms",
            "10",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let stdout = child.stdout.take().unwrap();
    let mut banner = tokio::io::BufReader::new(stdout).lines();
    let line = banner.next_line().await.unwrap().unwrap();
    let addr: std::net::SocketAddr = line.split_whitespace().last().unwrap().parse().unwrap();
    // Once it answers, it is serving (and handles SIGTERM).
    let listen = addr.to_string();
    let ready =
        tokio::task::spawn_blocking(move || gateway(&["--healthcheck", "--listen", &listen]));
    assert!(ready.await.unwrap().status.success());
    let pid = child.id().unwrap().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stderr).unwrap()
}

#[tokio::test]
async fn json_logs_are_one_object_a_line() {
    let logs = logs_of(&["--log-format", "json"]).await;
    let lines: Vec<&str> = logs.lines().collect();
    assert!(lines.len() >= 2, "draining and stopped are logged: {logs}");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        assert!(v["message"].is_string(), "{line}");
    }
    assert!(
        lines.iter().any(|l| l.contains("\"message\":\"stopped\"")),
        "{logs}"
    );
}

#[tokio::test]
async fn text_logs_into_a_pipe_have_no_colour_codes() {
    let logs = logs_of(&[]).await;
    assert!(logs.contains("stopped"), "{logs}");
    assert!(!logs.contains('\u{1b}'), "escape codes in {logs:?}");
}

#[test]
fn an_unknown_log_format_is_refused() {
    let out = gateway(&["--log-format", "yaml", "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--log-format yaml"));
}
