use clap::Parser;

use super::*;
use crate::cli::Cli;
use crate::stats::{RoomCount, to_buckets};

fn plan(args: &[&str]) -> Plan {
    let argv = ["danmaku-loadtest"]
        .iter()
        .chain(args)
        .chain(&["--room-prefix", "t"]);
    Plan::new(Cli::parse_from(argv)).expect("plan")
}

/// A fanout run of 10 viewers in room t-0 that each got `delivered` of 20 events.
fn outcome(delivered: u64) -> Outcome {
    let mut latency = crate::stats::histogram();
    for us in [1_000, 2_000, 3_400, 12_000] {
        let _ = latency.record(us);
    }
    let mut report = WorkerReport {
        established: 10,
        latency_us: to_buckets(&latency),
        delivered: 10 * delivered,
        frames: 10 * delivered,
        ..WorkerReport::default()
    };
    report.rooms.insert(
        "t-0".into(),
        RoomCount {
            viewers: 10,
            base_sum: 0,
            distinct: 10 * delivered,
            ..RoomCount::default()
        },
    );
    Outcome {
        report,
        publish: Some(PublishStats {
            scheduled: 20,
            published: 20,
            on_time: 20,
            ..PublishStats::default()
        }),
        finals: BTreeMap::from([("t-0".to_owned(), 20)]),
        likes_total: 0,
        skips_by_priority: BTreeMap::new(),
        gateways: Vec::new(),
        ramp_s: 0.5,
        measured_s: 2.0,
        started_at_us: 1_709_211_909_000_000,
        games: None,
    }
}

#[test]
fn the_json_reads_back_into_the_same_results() {
    let s = Summary::build(&plan(&["fanout", "--viewers", "10"]), outcome(20));
    let json = s.results.to_json();
    let back: Results = serde_json::from_str(&json).expect("the JSON is a Results");
    assert_eq!(back, s.results);
    assert!(back.pass, "{:?}", back.failures);
    assert_eq!(back.events.expected, 200);
    assert_eq!(back.deliveries_per_s, 100.0);
    assert_eq!(back.latency_ms.p90, Some(12.007));
    assert_eq!(back.connect_ms.p90, None, "connect has no p90");
}

#[test]
fn json_keys_are_in_alphabetical_order() {
    let s = Summary::build(&plan(&["fanout", "--viewers", "10"]), outcome(20));
    let v: serde_json::Value = serde_json::from_str(&s.results.to_json()).expect("json");
    let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
}

#[test]
fn lost_events_fail_the_run_and_the_table_says_so() {
    let s = Summary::build(&plan(&["fanout", "--viewers", "10"]), outcome(19));
    assert_eq!(s.results.events.lost, 10);
    assert!(!s.results.pass);
    assert!(
        s.results.failures[0].contains("10 events lost"),
        "{:?}",
        s.results.failures
    );
    assert!(s.table().contains("FAIL: 10 events lost"), "{}", s.table());
}

#[test]
fn the_run_is_recorded_in_the_json_and_the_page() {
    let p = plan(&[
        "fanout",
        "--viewers",
        "10",
        "--rate",
        "12.5",
        "--max-p99-ms",
        "250",
    ]);
    let s = Summary::build(&p, outcome(20));
    let v: serde_json::Value = serde_json::from_str(&s.results.to_json()).expect("json");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["started_at"], "2024-02-29T13:05:09Z");
    assert_eq!(v["parameters"]["scenario"]["fanout"]["viewers"], 10);
    assert_eq!(v["parameters"]["scenario"]["fanout"]["rate"], 12.5);
    assert_eq!(v["parameters"]["max_p99_ms"], 250.0);
    assert_eq!(v["parameters"]["room_prefix"], "t");
    assert!(
        !s.results.to_json().contains("secret") && !s.results.to_json().contains("api_key"),
        "no credentials"
    );
    let page = s.html();
    for want in [
        env!("CARGO_PKG_VERSION"),
        "2024-02-29T13:05:09Z",
        "--viewers 10",
        "--rate 12.5",
        "max p99 (ms)</th><td>250<",
    ] {
        assert!(page.contains(want), "no {want:?} in the page");
    }
    let table = s.table();
    assert!(table.contains("danmaku-loadtest"), "{table}");
    assert!(table.contains("(2 s measured, ramp 0.5 s)"), "{table}");
    assert!(
        table.contains("100 deliveries/s, 100 frames/s, 1 events/frame"),
        "{table}"
    );
}

#[test]
fn a_gateways_memory_per_connection_counts_its_own_viewers() {
    // 50,000 bytes grown: 5,000 per viewer on the only gateway, 10,000 on one of two
    // (viewer n dials gateway n mod 2: it holds 5 of the 10) when both are watched.
    let per_connection = |urls: &[&str]| {
        let mut args = vec!["fanout", "--viewers", "10"];
        for u in urls {
            args.extend(["--url", u]);
        }
        let mut o = outcome(20);
        // One watched process per URL.
        o.gateways = vec![
            GatewayStats {
                pid: 1,
                rss_start_bytes: 1_000_000,
                rss_peak_bytes: 1_050_000,
                cpu_s: 0.5,
            };
            urls.len()
        ];
        Summary::build(&plan(&args), o).results.gateways[0].rss_growth_per_connection_bytes
    };
    assert_eq!(per_connection(&["ws://127.0.0.1:1/ws"]), 5_000);
    assert_eq!(
        per_connection(&["ws://127.0.0.1:1/ws", "ws://127.0.0.1:2/ws"]),
        10_000
    );
}
