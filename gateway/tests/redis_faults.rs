//! What a publisher is told when Redis fails under it, over real processes: a hung
//! Redis gets a bounded answer that says the outcome is unknown (and a retry with the
//! same idempotency key is then one event), a Redis that is down gets 503 at once —
//! never a 200 without a seq, never a 503 for an event that was sequenced.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use danmaku_fanout::testing::{StallProxy, TestRedis};
use serde_json::{Value, json};
use support::{API_KEY, Gateway, Viewer};

fn gateway(redis: &TestRedis) -> Gateway {
    Gateway::start(&["--redis-url", &redis.url()])
}

async fn publish(gw: &Gateway, key: &str) -> (u16, Value, Duration) {
    let body = json!({"kind": "card", "data": {"key": key}, "idempotency_key": key});
    let started = Instant::now();
    let (status, answer) = gw
        .http("POST", "/v1/rooms/r/events", Some(API_KEY), Some(&body))
        .await;
    (status, answer, started.elapsed())
}

#[tokio::test]
async fn a_hung_redis_is_answered_504_in_time_and_the_retry_is_one_event() {
    let redis = TestRedis::start();
    let gw = gateway(&redis);
    let mut v = Viewer::connect(&gw, "v").await;
    v.join("r").await;
    let (status, first, _) = publish(&gw, "k-0").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(v.next_event().await["seq"], 1);

    redis.pause();
    let (status, answer, took) = publish(&gw, "k-1").await;
    redis.resume();
    assert_eq!(status, 504, "{answer}");
    assert_eq!(answer["error"]["code"], "outcome_unknown");
    assert!(
        took < Duration::from_millis(2_500),
        "answered after {took:?}"
    );

    // The client does what the answer says: retry with the same key.
    let (status, retried, _) = publish(&gw, "k-1").await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(
        retried["seq"], 2,
        "the paused call ran once, the retry found it"
    );
    let (_, info) = gw.http("GET", "/v1/rooms/r", Some(API_KEY), None).await;
    assert_eq!(info["seq"], 2, "one event for the key");
    let e = v.next_event().await;
    assert_eq!(
        (e["seq"].as_u64(), e["data"]["key"].as_str()),
        (Some(2), Some("k-1"))
    );
}

#[tokio::test]
async fn a_redis_that_is_down_is_answered_503_at_once() {
    let mut redis = TestRedis::start();
    let gw = gateway(&redis);
    assert_eq!(publish(&gw, "k-0").await.0, 200);
    redis.stop();
    for i in 1..=4 {
        let (status, answer, took) = publish(&gw, &format!("k-{i}")).await;
        assert!(
            took < Duration::from_millis(1_500),
            "answered after {took:?}"
        );
        // The call that finds the connection broken cannot know whether Redis ran it
        // before it died; once the connection is known to be gone, nothing can have
        // been sequenced.
        if i == 1 && status == 504 {
            assert_eq!(answer["error"]["code"], "outcome_unknown");
            continue;
        }
        assert_eq!(status, 503, "{answer}");
        assert_eq!(answer["error"]["code"], "unavailable");
    }
    let (ready, _) = gw.http("GET", "/readyz", None, None).await;
    assert_eq!(ready, 503);
}

/// The value of a counter on the gateway's `/metrics`.
async fn counter(gw: &Gateway, name: &str) -> u64 {
    let (_, text) = gw.http_raw("GET", "/metrics", None, None).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test]
async fn a_silently_stalled_pubsub_connection_is_found_and_replaced_without_loss() {
    let redis = TestRedis::start();
    let proxy = StallProxy::start(&redis);
    let gw = Gateway::start(&[
        "--redis-url",
        &proxy.url(),
        "--redis-probe-timeout-ms",
        "1000",
    ]);
    let mut v = Viewer::connect(&gw, "v").await;
    v.join("r").await;
    assert_eq!(publish(&gw, "k-1").await.0, 200);
    assert_eq!(v.next_event().await["seq"], 1);

    assert!(
        proxy.stall_pubsub() >= 1,
        "the gateway's pub/sub connection goes through the proxy"
    );
    for i in 2..=6 {
        assert_eq!(publish(&gw, &format!("k-{i}")).await.0, 200);
    }
    // A join of another room during the stall is answered at once, and the viewers of
    // other rooms are not held up by it.
    let mut other = Viewer::connect(&gw, "o").await;
    let started = Instant::now();
    other.join("other").await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "join took {:?}",
        started.elapsed()
    );
    for seq in 2..=6 {
        assert_eq!(v.next_event().await["seq"], seq, "every event, in order");
    }
    // The probe finds the stall and the connection is replaced.
    let deadline = Instant::now() + support::WAIT;
    while counter(&gw, "danmaku_pubsub_stalls_total").await == 0 {
        assert!(Instant::now() < deadline, "the stall was never detected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(publish(&gw, "k-7").await.0, 200);
    assert_eq!(v.next_event().await["seq"], 7);
    gw.publish("other", json!({"text": "after"})).await;
    assert_eq!(other.next_event().await["data"]["text"], "after");
    let (ready, _) = gw.http("GET", "/readyz", None, None).await;
    assert_eq!(ready, 200);
}

#[tokio::test]
async fn fifty_identical_idempotent_publishes_over_three_gateways_are_one_event() {
    let redis = TestRedis::start();
    let gws: Vec<std::sync::Arc<Gateway>> = (0..3)
        .map(|_| std::sync::Arc::new(gateway(&redis)))
        .collect();
    let mut v = Viewer::connect(&gws[2], "v").await;
    v.join("r").await;
    let publishes = (0..50).map(|i| {
        let gw = gws[i % 3].clone();
        tokio::spawn(async move { publish(&gw, "the-one").await })
    });
    let answers = futures_util::future::join_all(publishes).await;
    let seqs: std::collections::BTreeSet<u64> = answers
        .into_iter()
        .map(|a| {
            let (status, body, _) = a.unwrap();
            assert_eq!(status, 200, "{body}");
            body["seq"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(
        seqs.into_iter().collect::<Vec<_>>(),
        [1],
        "one seq for the key"
    );
    assert_eq!(v.next_event().await["seq"], 1);
    assert_eq!(
        publish(&gws[0], "another").await.1["seq"],
        2,
        "and only one event"
    );
    assert_eq!(v.next_event().await["seq"], 2);
}

#[tokio::test]
async fn script_flush_while_publishing_loses_nothing() {
    const EVENTS: u64 = 400;
    let redis = std::sync::Arc::new(TestRedis::start());
    let gw = std::sync::Arc::new(gateway(&redis));
    let mut v = Viewer::connect(&gw, "v").await;
    v.join("r").await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flusher = {
        let (redis, done) = (redis.clone(), done.clone());
        tokio::task::spawn_blocking(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                assert_eq!(redis.cli(&["SCRIPT", "FLUSH"]).trim(), "OK");
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    for i in 1..=EVENTS {
        let (status, body, _) = publish(&gw, &format!("k-{i}")).await;
        assert_eq!((status, body["seq"].as_u64()), (200, Some(i)), "{body}");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    flusher.await.unwrap();
    let errors = redis.cli(&["INFO", "errorstats"]);
    assert!(
        errors.contains("errorstat_NOSCRIPT"),
        "no publish met a flushed script: {errors}"
    );
    for seq in 1..=EVENTS {
        assert_eq!(v.next_event().await["seq"], seq);
    }
}

#[tokio::test]
async fn a_gateway_cut_off_from_redis_sends_its_viewers_to_another() {
    let redis = TestRedis::start();
    let proxy = StallProxy::start(&redis);
    let cut = Gateway::start(&["--redis-url", &proxy.url(), "--redis-lost-after-ms", "1000"]);
    let healthy = gateway(&redis);
    let mut v = Viewer::connect(&cut, "v").await;
    let joined = v.join("r").await;
    let epoch = joined["epoch"].as_str().unwrap().to_owned();
    assert_eq!(publish(&healthy, "k-1").await.0, 200);
    assert_eq!(v.next_event().await["seq"], 1);

    proxy.sever();
    for i in 2..=5 {
        assert_eq!(publish(&healthy, &format!("k-{i}")).await.0, 200);
    }
    // Told to move, then closed; nothing it saw was wrong.
    let mut seen = 1;
    let reconnect = loop {
        let m = v.next().await;
        match m["type"].as_str() {
            Some("reconnect") => break m,
            Some("event") => {
                seen += 1;
                assert_eq!(m["seq"], seen);
            }
            _ => {}
        }
    };
    assert_eq!(reconnect["reason"], "store unavailable");
    assert_eq!(v.closed().await, 1012);
    // The viewer resumes on the healthy gateway and loses nothing.
    let mut moved = Viewer::connect(&healthy, "v").await;
    let id = moved
        .send(json!({"type": "join", "room": "r", "since": {"epoch": epoch, "seq": seen}}))
        .await;
    let rejoined = moved.reply(id).await;
    assert_eq!(rejoined["recovered"], true, "{rejoined}");
    for seq in seen + 1..=5 {
        assert_eq!(moved.next_event().await["seq"], seq);
    }
}
