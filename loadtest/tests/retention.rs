//! The `retention` scenario against three gateway processes on one Redis, their
//! analytics clock 60 times faster: 20 simulated minutes of viewers in about 20 real
//! seconds, and the room's analytics must show what they did. And against a gateway
//! that records nothing, the same scenario must fail.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Gateway, KEY, Redis, SECRET, TempDir, gateway};

/// Runs the scenario against `gws`; returns its exit code and JSON results.
fn retention(gws: &[Gateway], args: &[&str]) -> (i32, Value, Duration) {
    let dir = TempDir::new();
    let json = dir.path().join("out.json");
    let urls: Vec<&str> = gws.iter().map(|g| g.url.as_str()).collect();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_danmaku-loadtest"))
        .env_remove("DANMAKU_API_KEY")
        .env_remove("DANMAKU_JWT_SECRET")
        .arg("retention")
        .args(["--url", &urls.join(",")])
        .args(["--api-key", KEY, "--jwt-secret", SECRET, "--quiet"])
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (out.status.code().unwrap_or(-1), v, elapsed)
}

/// The check named `what` of `scope`.
fn check<'a>(v: &'a Value, scope: &str, what: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["scope"] == scope && c["what"] == what)
        .unwrap()
}

#[test]
fn three_gateways_on_redis_show_what_the_viewers_did() {
    let redis = Redis::start();
    let url = redis.url();
    let gws: Vec<Gateway> = (1..=3)
        .map(|i| {
            let id = format!("gw{i}");
            gateway(&[
                "--redis-url",
                &url,
                "--gateway-id",
                &id,
                "--analytics-time-scale",
                "60",
            ])
        })
        .collect();
    // 4 minutes of arrivals, dwells up to 16: 20 simulated minutes; variant B stays
    // 30 % longer.
    let (code, v, elapsed) = retention(
        &gws,
        &[
            "--viewers",
            "300",
            "--time-scale",
            "60",
            "--dwell",
            "A=exp:240,B=exp:312",
            "--arrivals-s",
            "240",
            "--max-dwell-s",
            "960",
            "--resume-share",
            "0.2",
            "--return-share",
            "0.1",
        ],
    );
    assert_eq!(code, 0, "{:#}", v["failures"]);
    assert_eq!(v["pass"], true);
    assert!(elapsed < Duration::from_secs(40), "{elapsed:?}");
    let doc = &v["analytics"];
    assert_eq!(doc["viewers"]["unique"], 300, "every viewer counted once");
    let joins = doc["viewers"]["joins"].as_u64().unwrap();
    assert!(joins > 300, "the returning viewers' second visits: {joins}");
    assert!(doc["recovery"]["resumes"].as_u64().unwrap() >= 40, "{doc}");
    assert!(doc["interactions"]["comments"].as_u64().unwrap() >= 300);
    // Both variants, and B's viewers staying longer.
    let mean = |s: &str| doc["by_variant"][s]["dwell_s"]["mean"].as_f64().unwrap();
    assert!(mean("B") > mean("A"), "{} vs {}", mean("B"), mean("A"));
    // The retention curves were checked at every milestone, with visits at each.
    for k in [1, 5, 15] {
        let c = check(&v, "room", &format!("present after {k} min"));
        assert_eq!(c["ok"], true, "{c}");
        assert_ne!(c["api"], "0", "someone stayed {k} minutes: {c}");
    }
    assert_eq!(check(&v, "room", "retention minutes")["ok"], true);
}

#[test]
fn a_gateway_that_records_nothing_fails_the_run() {
    let gw = gateway(&["--analytics", "false", "--analytics-time-scale", "60"]);
    let (code, v, _) = retention(
        &[gw],
        &[
            "--viewers",
            "40",
            "--arrivals-s",
            "60",
            "--max-dwell-s",
            "240",
            "--dwell",
            "A=exp:60,B=exp:78",
            "--return-share",
            "0",
        ],
    );
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["pass"], false);
    let c = check(&v, "room", "joins");
    assert_eq!((&c["simulated"], &c["api"]), (&"40".into(), &"0".into()));
    assert!(
        v["failures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f.as_str().unwrap().starts_with("room joins")),
        "{v}"
    );
}
