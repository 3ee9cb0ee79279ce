//! `/metrics` against `docs/metrics.md`: a real gateway (memory store, then Redis) is
//! scraped in both formats; each text must pass a strict exposition check (HELP and
//! TYPE for every family, sample names by type, label syntax, cumulative buckets,
//! `# EOF` for OpenMetrics), and its families must be exactly the catalogue's, with the
//! catalogue's types and labels.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};

use danmaku_fanout::testing::TestRedis;
use support::{Gateway, Viewer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CATALOGUE: &str = include_str!("../../docs/metrics.md");

/// A family as exposed or catalogued: its type and label names (`le` left out).
#[derive(Debug, PartialEq, Eq, Clone)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
}

/// The catalogue's table: name → family.
fn catalogue() -> BTreeMap<String, Family> {
    let table = CATALOGUE
        .split_once("## Catalogue")
        .map(|(_, t)| t)
        .expect("a Catalogue section");
    let mut out = BTreeMap::new();
    for row in table.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (name, kind, labels) = (cells[1].trim_matches('`'), cells[2], cells[3]);
        let labels = labels
            .split(',')
            .map(|l| l.trim().trim_matches('`').to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        let family = Family {
            kind: kind.to_owned(),
            labels,
        };
        assert!(
            out.insert(name.to_owned(), family).is_none(),
            "{name} is catalogued twice"
        );
    }
    assert!(out.len() > 30, "catalogue rows not found");
    out
}

/// Checks one exposition strictly; returns its families under their scraped names
/// (counters with `_total`).
fn check_exposition(text: &str, openmetrics: bool) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut helped = BTreeSet::new();
    let mut current: Option<(String, String)> = None;
    // Per histogram series (labels but `le`): the last bucket count, and `+Inf`'s.
    let mut buckets: BTreeMap<String, (f64, Option<f64>)> = BTreeMap::new();
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    let mut lines: Vec<&str> = text.lines().collect();
    if openmetrics {
        assert_eq!(lines.pop(), Some("# EOF"), "OpenMetrics ends with # EOF");
    }
    for line in lines {
        assert!(!line.is_empty(), "an empty line in the exposition");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has a text");
            assert!(!help.trim().is_empty(), "{name}: empty HELP");
            assert!(helped.insert(name.to_owned()), "{name}: HELP twice");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a type");
            assert!(helped.contains(name), "{name}: TYPE before or without HELP");
            assert!(valid_name(name), "{name}: not a metric name");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "{name}: type {kind}"
            );
            let scraped = if kind == "counter" && openmetrics {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            assert!(
                !families.contains_key(&scraped),
                "{name}: two families of one name"
            );
            if kind == "counter" && !openmetrics {
                assert!(name.ends_with("_total"), "{name}: a counter without _total");
            }
            families.insert(
                scraped,
                Family {
                    kind: kind.to_owned(),
                    labels: BTreeSet::new(),
                },
            );
            current = Some((name.to_owned(), kind.to_owned()));
            continue;
        }
        assert!(!line.starts_with('#'), "a stray comment: {line}");
        let (family, kind) = current
            .clone()
            .unwrap_or_else(|| panic!("a sample outside a family: {line}"));
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("{line}: value {v}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (
                n,
                parse_labels(l.strip_suffix('}').expect("labels end with }"), line),
            ),
            None => (series, Vec::new()),
        };
        let suffix = name
            .strip_prefix(family.as_str())
            .unwrap_or_else(|| panic!("{line}: not of the family {family}"));
        let allowed: &[&str] = match (kind.as_str(), openmetrics) {
            ("counter", true) => &["_total"],
            ("histogram", _) => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        assert!(allowed.contains(&suffix), "{line}: {suffix:?} in a {kind}");
        let key = if kind == "counter" && openmetrics {
            format!("{family}_total")
        } else {
            family.clone()
        };
        let others: Vec<&(String, String)> = labels.iter().filter(|(k, _)| k != "le").collect();
        let entry = families.get_mut(&key).expect("declared");
        entry.labels.extend(others.iter().map(|(k, _)| k.clone()));
        let id = format!("{family}{others:?}");
        match suffix {
            "_bucket" => {
                let le = labels
                    .iter()
                    .find(|(k, _)| k == "le")
                    .unwrap_or_else(|| panic!("{line}: a bucket without le"));
                let slot = buckets.entry(id).or_insert((0.0, None));
                assert!(value >= slot.0, "{line}: buckets not cumulative");
                slot.0 = value;
                if le.1 == "+Inf" {
                    slot.1 = Some(value);
                }
            }
            "_count" => {
                counts.insert(id, value);
            }
            _ => assert!(value.is_finite() || kind == "gauge", "{line}"),
        }
    }
    for (id, count) in &counts {
        let inf = buckets.get(id).and_then(|b| b.1);
        assert_eq!(inf, Some(*count), "{id}: +Inf bucket is not _count");
    }
    families
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `k="v",…` → pairs, strictly: valid names, quoted and escaped values, no duplicate.
fn parse_labels(mut s: &str, line: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    while !s.is_empty() {
        let (key, rest) = s
            .split_once("=\"")
            .unwrap_or_else(|| panic!("{line}: label"));
        assert!(
            valid_name(key) && !key.starts_with("__"),
            "{line}: label {key}"
        );
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    Some((_, 'n')) => value.push('\n'),
                    _ => panic!("{line}: bad escape"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("{line}: unterminated label value"),
            }
        };
        assert!(out.iter().all(|(k, _)| k != key), "{line}: {key} twice");
        out.push((key.to_owned(), value));
        s = &rest[end + 1..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
    out
}

/// GET /metrics with `accept`; (content type, body).
async fn scrape(gw: &Gateway, accept: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let req = format!(
        "GET /metrics HTTP/1.1\r\nHost: t\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    let text = String::from_utf8(resp).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    (content_type, body.to_owned())
}

/// Exercises the gateway a little (so the HTTP families have series), scrapes it in
/// both formats and compares each with the catalogue.
async fn matches_the_catalogue(gw: &Gateway) {
    let mut viewer = Viewer::connect(gw, "u-1").await;
    viewer.join("catalogue").await;
    gw.publish("catalogue", serde_json::json!({"n": 1})).await;
    viewer.next_event().await;
    let (status, _) = gw.http("GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    let want = catalogue();
    for (accept, openmetrics) in [
        ("text/plain", false),
        ("application/openmetrics-text; version=1.0.0", true),
    ] {
        let (content_type, text) = scrape(gw, accept).await;
        let expected_type = if openmetrics {
            "application/openmetrics-text"
        } else {
            "text/plain; version=0.0.4"
        };
        assert!(content_type.starts_with(expected_type), "{content_type}");
        let got = check_exposition(&text, openmetrics);
        let exposed: BTreeSet<&String> = got.keys().collect();
        let listed: BTreeSet<&String> = want.keys().collect();
        let missing: Vec<_> = exposed.difference(&listed).collect();
        let absent: Vec<_> = listed.difference(&exposed).collect();
        assert!(
            missing.is_empty(),
            "exposed but not in docs/metrics.md: {missing:?}"
        );
        assert!(
            absent.is_empty(),
            "in docs/metrics.md but not exposed: {absent:?}"
        );
        for (name, family) in &got {
            assert_eq!(
                &want[name], family,
                "{name}: catalogue and exposition differ"
            );
        }
    }
}

#[tokio::test]
async fn memory_store_exposes_the_catalogue() {
    let gw = Gateway::start(&[]);
    matches_the_catalogue(&gw).await;
}

#[tokio::test]
async fn redis_store_exposes_the_catalogue() {
    let redis = TestRedis::start();
    let gw = Gateway::start(&["--redis-url", &redis.url()]);
    matches_the_catalogue(&gw).await;
    // The store's calls are timed.
    let (_, text) = scrape(&gw, "text/plain").await;
    let count = text
        .lines()
        .find_map(|l| l.strip_prefix("danmaku_store_call_seconds_count "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(count.is_some_and(|n| n > 0), "store calls timed: {count:?}");
}
