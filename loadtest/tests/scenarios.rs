//! Each scenario, briefly, against a real gateway process; assertions on the JSON.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

const SECRET: &str = "loadtest-secret-0123456789";
const KEY: &str = "loadtest-key";

struct Gateway {
    child: Child,
    url: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The gateway binary, built next to this package's binary by `cargo test --workspace`.
fn gateway_bin() -> PathBuf {
    let bin =
        PathBuf::from(env!("CARGO_BIN_EXE_danmaku-loadtest")).with_file_name("danmaku-gateway");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test --workspace` or `cargo build -p danmaku-gateway`",
        bin.display()
    );
    bin
}

fn gateway(extra: &[&str]) -> Gateway {
    let mut child = Command::new(gateway_bin())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--jwt-secret",
            SECRET,
            "--api-keys",
            KEY,
            "--log",
            "warn",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.split_whitespace().last().unwrap().to_owned();
    Gateway {
        child,
        url: format!("ws://{addr}/ws"),
    }
}

/// A directory of one run's own for its output files (tests run in parallel),
/// removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "danmaku-lt-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the CLI; returns its exit code and JSON results.
fn loadtest(gw: &Gateway, args: &[&str]) -> (i32, Value) {
    let dir = TempDir::new();
    let json = dir.path().join("out.json");
    let html = dir.path().join("out.html");
    let pid = gw.child.id().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_danmaku-loadtest"))
        .args(args)
        .args([
            "--url",
            &gw.url,
            "--api-key",
            KEY,
            "--jwt-secret",
            SECRET,
            "--quiet",
            "--gateway-pid",
            &pid,
        ])
        .arg("--json")
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<svg") && page.contains("latency"),
        "HTML report with charts"
    );
    (out.status.code().unwrap_or(-1), v)
}

#[test]
fn connect_scenario_opens_and_joins_every_connection() {
    let gw = gateway(&[]);
    let (code, v) = loadtest(&gw, &["connect", "--connections", "300", "--rooms", "3"]);
    assert_eq!(code, 0);
    assert_eq!(v["scenario"], "connect");
    assert_eq!(v["connections"]["established"], 300);
    assert_eq!(v["connections"]["failed"], 0);
    assert!(v["first_render_ms"]["p99"].as_f64().unwrap() > 0.0);
    assert!(
        v["first_render_ms"]["p50"].as_f64().unwrap() >= v["connect_ms"]["p50"].as_f64().unwrap()
    );
    assert!(v["gateways"][0]["rss_peak_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn refused_connections_are_counted_by_cause() {
    // The gateway takes 40 connections; the other 60 get its 503 at the upgrade.
    let gw = gateway(&["--max-connections", "40"]);
    let (code, v) = loadtest(&gw, &["connect", "--connections", "100", "--hold-s", "0.5"]);
    assert_eq!(code, 1, "failed connections fail the run: {v}");
    assert_eq!(v["connections"]["established"], 40, "{v}");
    assert_eq!(v["connections"]["failed"], 60, "{v}");
    assert_eq!(v["connections"]["failures"]["http_503"], 60, "{v}");
}

#[test]
fn fanout_scenario_counts_every_delivery() {
    let gw = gateway(&[]);
    let (code, v) = loadtest(
        &gw,
        &[
            "fanout",
            "--viewers",
            "200",
            "--rooms",
            "5",
            "--zipf",
            "1.0",
            "--rate",
            "50",
            "--duration-s",
            "2",
        ],
    );
    assert_eq!(code, 0, "{v}");
    let e = &v["events"];
    assert_eq!(e["published"], 100);
    // Every room got 20 events; each viewer expects its room's 20.
    assert_eq!(e["expected"], 200 * 20);
    assert_eq!(e["delivered"], 200 * 20);
    assert_eq!(
        (
            e["lost"].as_u64(),
            e["duplicated"].as_u64(),
            e["reordered"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );
    assert!(v["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
    assert!(v["deliveries_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(v["pass"], true);
}

#[test]
fn passive_viewers_answer_heartbeats_and_stay_connected() {
    // Fanout viewers are read by the reader threads' epoll loops; they must still answer
    // the gateway's pings, or it closes them (4000) after 2.5 heartbeats and they resume.
    let gw = gateway(&["--heartbeat-ms", "200"]);
    let (code, v) = loadtest(
        &gw,
        &[
            "fanout",
            "--viewers",
            "100",
            "--rooms",
            "2",
            "--rate",
            "20",
            "--duration-s",
            "2",
            "--threads",
            "2",
        ],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["resume"]["reconnects"], 0, "no viewer was closed: {v}");
    assert_eq!(v["events"]["delivered"], v["events"]["expected"]);
    assert_eq!(v["events"]["delivered"], 100 * 20);
}

#[test]
fn interact_scenario_checks_likes_and_votes() {
    let gw = gateway(&["--likes-per-s", "100", "--likes-burst", "100"]);
    let (code, v) = loadtest(
        &gw,
        &[
            "interact",
            "--viewers",
            "60",
            "--rooms",
            "2",
            "--rate",
            "10",
            "--duration-s",
            "2",
            "--like-rate",
            "3",
            "--comment-rate",
            "0.5",
        ],
    );
    assert_eq!(code, 0, "{v}");
    let i = &v["interact"];
    assert!(i["likes_acked"].as_u64().unwrap() > 0);
    assert_eq!(i["likes_total"], i["likes_acked"]);
    assert_eq!(i["polls_exact"], true);
    assert_eq!(i["votes_acked"], 60);
    assert_eq!(v["events"]["lost"], 0);
}

#[test]
fn resume_scenario_loses_nothing_across_reconnects() {
    let gw = gateway(&[]);
    let (code, v) = loadtest(
        &gw,
        &[
            "resume",
            "--viewers",
            "100",
            "--rate",
            "40",
            "--duration-s",
            "3",
            "--drop-fraction",
            "0.3",
            "--drop-every-s",
            "1",
        ],
    );
    assert_eq!(code, 0, "{v}");
    assert!(v["resume"]["reconnects"].as_u64().unwrap() > 0);
    assert_eq!(v["resume"]["reconnects"], v["resume"]["recovered"]);
    assert_eq!(v["events"]["lost"], 0);
    assert_eq!(v["events"]["duplicated"], 0);
}

#[test]
fn a_missed_threshold_fails_the_run() {
    let gw = gateway(&[]);
    let (code, v) = loadtest(
        &gw,
        &[
            "fanout",
            "--viewers",
            "20",
            "--rate",
            "20",
            "--duration-s",
            "1",
            "--min-deliveries-per-s",
            "1000000",
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(v["pass"], false);
    assert!(v["failures"][0].as_str().unwrap().contains("deliveries/s"));
}

#[test]
fn worker_processes_share_the_viewers() {
    let gw = gateway(&[]);
    let (code, v) = loadtest(
        &gw,
        &[
            "fanout",
            "--viewers",
            "90",
            "--rooms",
            "3",
            "--rate",
            "30",
            "--duration-s",
            "1",
            "--procs",
            "3",
        ],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["connections"]["established"], 90);
    assert_eq!(v["events"]["expected"], 90 * 10);
    assert_eq!(v["events"]["delivered"], 90 * 10);
    assert_eq!(v["loadgen"]["procs"], 3);
}
