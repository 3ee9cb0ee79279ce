//! Each scenario, briefly, against a real gateway process; assertions on the JSON.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Gateway, KEY, SECRET, TempDir, gateway};

/// How a test runs the CLI: against what, with which credentials, how quietly.
struct Run<'a> {
    url: &'a str,
    pid: Option<u32>,
    key: &'a str,
    secret: Option<&'a str>,
    quiet: bool,
}

/// What a run left behind.
struct Ran {
    code: i32,
    stderr: String,
    json: Option<Value>,
    html: Option<String>,
    elapsed: Duration,
}

impl<'a> Run<'a> {
    /// A quiet run against `gw` with the right credentials.
    fn on(gw: &'a Gateway) -> Self {
        Self {
            url: &gw.url,
            pid: Some(gw.child.id()),
            ..Self::at(&gw.url)
        }
    }

    /// A quiet run against `url`, where no gateway need listen.
    fn at(url: &'a str) -> Self {
        Self {
            url,
            pid: None,
            key: KEY,
            secret: Some(SECRET),
            quiet: true,
        }
    }

    fn run(&self, args: &[&str]) -> Ran {
        let dir = TempDir::new();
        let json = dir.path().join("out.json");
        let html = dir.path().join("out.html");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_danmaku-loadtest"));
        // The environment may hold the caller's own credentials.
        cmd.env_remove("DANMAKU_API_KEY")
            .env_remove("DANMAKU_JWT_SECRET")
            .args(args)
            .args(["--url", self.url, "--api-key", self.key]);
        if let Some(secret) = self.secret {
            cmd.args(["--jwt-secret", secret]);
        }
        if self.quiet {
            cmd.arg("--quiet");
        }
        if let Some(pid) = self.pid {
            cmd.args(["--gateway-pid", &pid.to_string()]);
        }
        let started = Instant::now();
        let out = cmd
            .arg("--json")
            .arg(&json)
            .arg("--html")
            .arg(&html)
            .output()
            .unwrap();
        let elapsed = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
        Ran {
            code: out.status.code().unwrap_or(-1),
            stderr,
            json: std::fs::read_to_string(&json)
                .ok()
                .map(|t| serde_json::from_str(&t).unwrap()),
            html: std::fs::read_to_string(&html).ok(),
            elapsed,
        }
    }
}

/// Runs the CLI; returns its exit code and JSON results.
fn loadtest(gw: &Gateway, args: &[&str]) -> (i32, Value) {
    let ran = Run::on(gw).run(args);
    let page = ran.html.unwrap();
    assert!(
        page.contains("<svg") && page.contains("latency"),
        "HTML report with charts"
    );
    (ran.code, ran.json.unwrap())
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

/// A moderation storm retracting at 10 a second while 100 viewers receive 50 events a
/// second: every event and every `retract` reaches every viewer, whoever retracts.
fn a_moderation_storm_retracts_while_every_event_is_delivered(by: &str) {
    let gw = gateway(&[]);
    let (code, v) = loadtest(
        &gw,
        &[
            "fanout",
            "--viewers",
            "100",
            "--rooms",
            "1",
            "--rate",
            "50",
            "--duration-s",
            "2",
            "--retract-rate",
            "10",
            "--retract-by",
            by,
        ],
    );
    assert_eq!(code, 0, "{v}");
    let retracts = v["publish"]["retracts"].as_u64().unwrap();
    assert!((15..=20).contains(&retracts), "{by}: {v}");
    let e = &v["events"];
    let all = (100 + retracts) * 100;
    assert_eq!(
        (&e["published"], &e["expected"]),
        (&100.into(), &all.into()),
        "{v}"
    );
    assert_eq!(
        (&e["delivered"], &e["lost"]),
        (&all.into(), &0.into()),
        "{v}"
    );
}

#[test]
fn a_moderator_connection_retracts_while_every_event_is_delivered() {
    a_moderation_storm_retracts_while_every_event_is_delivered("moderator");
}

#[test]
fn the_api_retracts_while_every_event_is_delivered() {
    a_moderation_storm_retracts_while_every_event_is_delivered("api");
}

#[test]
fn ordinary_clients_count_every_delivery_too() {
    // Plain tokio-tungstenite viewers on single-threaded runtimes in two worker
    // processes, publishers over one keep-alive connection per room (8 asked for, one
    // per room at most).
    let gw = gateway(&[]);
    let (code, v) = loadtest(
        &gw,
        &[
            "fanout",
            "--client",
            "tungstenite",
            "--procs",
            "2",
            "--viewers",
            "100",
            "--rooms",
            "4",
            "--rate",
            "40",
            "--duration-s",
            "2",
            "--publish-by-room",
            "--publishers",
            "8",
        ],
    );
    assert_eq!(code, 0, "{v}");
    let e = &v["events"];
    assert_eq!(e["published"], 80);
    assert_eq!(
        (e["expected"].as_u64(), e["delivered"].as_u64()),
        (Some(100 * 20), Some(100 * 20))
    );
    assert_eq!(
        (e["lost"].as_u64(), e["duplicated"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(
        v["parameters"]["client"], "tungstenite",
        "{}",
        v["parameters"]
    );
    assert_eq!(v["publish"]["connections"], 4, "{}", v["publish"]);
}

/// A tenth of the viewers are adaptive at 2 events/s in a room of 40 events/s, a tenth
/// of the events high: what they skip is told and counted as skipped, never lost, and
/// every viewer has every seq covered.
#[test]
fn adaptive_viewers_skips_are_counted_not_lost() {
    let gw = gateway(&[]);
    let (code, v) = loadtest(
        &gw,
        &[
            "fanout",
            "--viewers",
            "100",
            "--rate",
            "40",
            "--duration-s",
            "3",
            "--adaptive-fraction",
            "0.1",
            "--adaptive-max-rate",
            "2",
            "--high-share",
            "0.1",
        ],
    );
    assert_eq!(code, 0, "{v}");
    let e = &v["events"];
    assert_eq!(e["published"], 120);
    assert_eq!(e["expected"], 100 * 120);
    let (delivered, skipped) = (
        e["delivered"].as_u64().unwrap(),
        e["skipped"].as_u64().unwrap(),
    );
    assert_eq!(delivered + skipped, 100 * 120, "{e}");
    // The ten adaptive viewers get their 12 high events and a few others each.
    assert!((10 * 60..=10 * 110).contains(&skipped), "{e}");
    assert_eq!(
        (e["lost"].as_u64(), e["duplicated"].as_u64()),
        (Some(0), Some(0))
    );
    // Every skip was sampled (nothing was targeted), and the gateway counted each one
    // by priority: high events are never sampled.
    assert_eq!(e["skipped_targeted"], 0, "{e}");
    let by = v["skips_by_priority"].as_object().unwrap();
    let counted: u64 = by.values().filter_map(serde_json::Value::as_u64).sum();
    assert_eq!(counted, skipped, "{by:?}");
    assert!(
        by.keys()
            .all(|k| k.starts_with("sampled/") && k != "sampled/high"),
        "{by:?}"
    );
}

#[test]
fn repeated_comments_are_merged_and_counted() {
    let gw = gateway(&["--merge-window-ms", "500"]);
    let (code, v) = loadtest(
        &gw,
        &[
            "interact",
            "--viewers",
            "50",
            "--rate",
            "2",
            "--duration-s",
            "3",
            "--comment-rate",
            "1",
            "--like-rate",
            "0",
            "--no-vote",
            "--repeat-share",
            "1",
        ],
    );
    assert_eq!(code, 0, "{v}");
    let i = &v["interact"];
    let (acks, merged) = (
        i["acks"].as_u64().unwrap(),
        i["merged_acks"].as_u64().unwrap(),
    );
    // About 150 copies of "666" over 3 s: 3 per half-second window are sequenced.
    assert!(merged > acks / 2, "{i}");
    assert!(acks - merged <= 3 * 10, "{i}");
    assert_eq!(v["events"]["lost"], 0, "{v}");
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
fn interact_checks_the_room_games_exactly() {
    let gw = gateway(&["--votes-per-s", "50", "--votes-burst", "50"]);
    let (code, v) = loadtest(
        &gw,
        &[
            "interact",
            "--viewers",
            "300",
            "--rooms",
            "2",
            "--rate",
            "5",
            "--duration-s",
            "2",
            "--comment-rate",
            "1",
            "--like-rate",
            "0",
            "--no-vote",
            "--repeat-share",
            "0.5",
            "--keyword",
            "买买买",
            "--quiz",
            "--lottery-winners",
            "3",
            "--coupon-stock",
            "40",
            "--coupon-per-user",
            "2",
            "--coupon-claims",
            "4",
        ],
    );
    assert_eq!(code, 0, "{v}");
    let g = &v["interact"]["games"];
    assert_eq!(g["exact"], true, "{g}");
    assert!(
        g["keyword"]["comments_counted"].as_u64().unwrap() > 0,
        "{g}"
    );
    let participants = g["keyword"]["participants_counted"].as_u64().unwrap();
    assert!(
        (1..=150).contains(&participants),
        "the repeating half at most: {g}"
    );
    let counts: u64 = g["quiz"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(counts, 300, "{g}");
    assert_eq!(g["lottery"]["entrants"], 300);
    assert_eq!(
        (&g["lottery"]["winners"], &g["lottery"]["won_received"]),
        (&json!(6), &json!(6))
    );
    // Two rooms of 40 in stock; 1,200 claims.
    assert_eq!(g["coupon"]["claims_acked"], 80.0, "{g}");
    assert_eq!(g["coupon"]["claims_sent"], 1_200.0, "{g}");
    assert_eq!(v["events"]["lost"], 0, "{v}");
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
    let took = &v["resume"]["reconnect_ms"];
    assert!(
        took["p99"].as_f64().unwrap() >= took["p50"].as_f64().unwrap()
            && took["p50"].as_f64().unwrap() > 0.0,
        "{took}"
    );
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

/// An address where nothing listens (a port just given up).
fn closed_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("ws://{addr}/ws")
}

/// Far below the runs' own length: the credentials failed before the run.
const AT_ONCE: Duration = Duration::from_secs(20);

#[test]
fn a_wrong_api_key_fails_before_the_run() {
    let gw = gateway(&[]);
    let ran = Run {
        key: "not-the-key",
        ..Run::on(&gw)
    }
    .run(&[
        "fanout",
        "--viewers",
        "10",
        "--rate",
        "5",
        "--duration-s",
        "30",
    ]);
    assert_eq!(ran.code, 2, "a setup error");
    assert!(ran.stderr.contains("refused the API key"), "{}", ran.stderr);
    assert!(ran.elapsed < AT_ONCE, "failed after {:?}", ran.elapsed);
    assert!(ran.json.is_none(), "no run, no results");
}

#[test]
fn a_wrong_jwt_secret_fails_before_the_run() {
    let gw = gateway(&[]);
    let ran = Run {
        secret: Some("not-the-secret-0123456789"),
        ..Run::on(&gw)
    }
    .run(&["connect", "--connections", "10", "--hold-s", "30"]);
    assert_eq!(ran.code, 2, "a setup error");
    assert!(
        ran.stderr.contains("refused the viewer token"),
        "{}",
        ran.stderr
    );
    assert!(ran.elapsed < AT_ONCE, "failed after {:?}", ran.elapsed);
    let anonymous = Run {
        secret: None,
        ..Run::on(&gw)
    }
    .run(&["connect", "--connections", "10", "--hold-s", "30"]);
    assert_eq!(anonymous.code, 2);
    assert!(
        anonymous.stderr.contains("wants viewer tokens"),
        "{}",
        anonymous.stderr
    );
}

#[test]
fn connection_refused_names_the_address() {
    let url = closed_url();
    let addr = url.trim_start_matches("ws://").trim_end_matches("/ws");
    for args in [
        &["connect", "--connections", "5"][..],
        &["fanout", "--viewers", "5", "--duration-s", "1"][..],
    ] {
        let ran = Run::at(&url).run(args);
        assert_eq!(ran.code, 2, "{args:?}");
        assert!(
            ran.stderr.contains(addr) && ran.stderr.to_lowercase().contains("refused"),
            "{args:?}: {}",
            ran.stderr
        );
    }
}

#[test]
fn progress_shows_every_phase_unless_quiet() {
    let gw = gateway(&[]);
    let args = [
        "fanout",
        "--viewers",
        "20",
        "--rate",
        "20",
        "--duration-s",
        "1",
    ];
    let ran = Run {
        quiet: false,
        ..Run::on(&gw)
    }
    .run(&args);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    for phase in [
        "checking credentials",
        "connecting",
        "publishing",
        "reading room state",
        "reading the last events",
    ] {
        assert!(ran.stderr.contains(phase), "no {phase:?} in {}", ran.stderr);
    }
    assert!(ran.stderr.contains("published 0/20"), "{}", ran.stderr);
    let quiet = Run::on(&gw).run(&args);
    assert_eq!(quiet.code, 0);
    assert!(!quiet.stderr.contains("publishing"), "{}", quiet.stderr);
}

#[test]
fn interact_fails_when_its_commands_are_refused() {
    // Anonymous viewers may read but not comment, like or vote: every command gets
    // `error` with `forbidden`.
    let gw = gateway(&["--anonymous"]);
    let ran = Run {
        secret: None,
        ..Run::on(&gw)
    }
    .run(&[
        "interact",
        "--viewers",
        "10",
        "--rate",
        "5",
        "--duration-s",
        "1",
        "--like-rate",
        "3",
    ]);
    let v = ran.json.unwrap();
    assert_eq!(ran.code, 1, "{v}");
    assert_eq!(v["pass"], false);
    let i = &v["interact"];
    assert!(i["commands"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(i["refused"]["forbidden"], i["commands"], "{v}");
    let why = v["failures"][0].as_str().unwrap();
    assert!(
        why.contains("commands refused") && why.contains("forbidden"),
        "{why}"
    );
}

#[test]
fn publishing_into_the_biggest_rooms_only_leaves_the_others_idle() {
    // 5 rooms of 20 viewers (uniform), events into the first 2 only: the viewers of
    // those two get every event, the others are joined and get none, and none is lost.
    let gw = gateway(&[]);
    let (code, v) = loadtest(
        &gw,
        &[
            "fanout",
            "--viewers",
            "100",
            "--rooms",
            "5",
            "--rate",
            "20",
            "--duration-s",
            "2",
            "--publish-rooms",
            "2",
            "--publish-by-room",
            "--publishers",
            "8",
        ],
    );
    assert_eq!(code, 0, "{v}");
    let e = &v["events"];
    assert_eq!(e["published"], 40);
    assert_eq!(v["publish"]["connections"], 2, "{}", v["publish"]);
    // 40 events over 2 rooms: 20 each, to 20 viewers each.
    assert_eq!(
        (e["expected"].as_u64(), e["delivered"].as_u64()),
        (Some(2 * 20 * 20), Some(2 * 20 * 20))
    );
    assert_eq!(e["lost"].as_u64(), Some(0));
    assert_eq!(v["connections"]["established"], 100);
}

#[test]
fn idempotent_publishes_carry_keys_the_gateway_accepts() {
    // Every publish carries a key (a malformed one would be refused with 400 and
    // count as an error); nothing needed a retry, and each event arrived once.
    let gw = gateway(&[]);
    let (code, v) = loadtest(
        &gw,
        &[
            "fanout",
            "--viewers",
            "20",
            "--rooms",
            "2",
            "--rate",
            "20",
            "--duration-s",
            "1",
            "--idempotent",
            "--room-prefix",
            "idem",
        ],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["publish"]["published"], 20, "{}", v["publish"]);
    assert_eq!(v["publish"]["retried"], 0, "{}", v["publish"]);
    let e = &v["events"];
    assert_eq!(
        (e["delivered"].as_u64(), e["duplicated"].as_u64()),
        (Some(20 * 10), Some(0))
    );
    // The first event (room idem-0) was published with the key `lt-0`: another event
    // under that key is refused as a reuse.
    let (status, answer) = post(
        &gw,
        "/v1/rooms/idem-0/events",
        r#"{"kind":"other","data":{},"idempotency_key":"lt-0"}"#,
    );
    assert_eq!(status, 409, "{answer}");
    assert!(answer.contains("idempotency_key_reused"), "{answer}");
}

/// One HTTP request to the gateway's API: its status and body.
fn post(gw: &Gateway, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let host = gw.url.trim_start_matches("ws://").trim_end_matches("/ws");
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

#[test]
fn latency_is_told_per_gateway_and_publishes_by_their_answer_time() {
    // The same gateway twice: viewers alternate between the two URLs, and each URL's
    // viewers get a latency of their own; the publishers' answer times are told.
    let gw = gateway(&[]);
    let (code, v) = loadtest(
        &gw,
        &[
            "fanout",
            "--url",
            &gw.url,
            "--viewers",
            "20",
            "--rate",
            "20",
            "--duration-s",
            "1",
        ],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["parameters"]["urls"].as_array().map(Vec::len), Some(2));
    let by_gateway = v["latency_ms_by_gateway"].as_array().unwrap();
    assert_eq!(by_gateway.len(), 2, "{v}");
    for q in by_gateway {
        let (p50, max) = (q["p50"].as_f64().unwrap(), q["max"].as_f64().unwrap());
        assert!(p50 > 0.0 && max >= p50, "{q}");
        assert!(max <= v["latency_ms"]["max"].as_f64().unwrap(), "{q}");
    }
    let p = &v["publish"];
    assert!(p["answer_p50_ms"].as_f64().unwrap() > 0.0, "{p}");
    assert!(p["answer_p99_ms"].as_f64().unwrap() >= p["answer_p50_ms"].as_f64().unwrap());
}
