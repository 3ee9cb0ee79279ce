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
    send(gw, key, false).await
}

/// Publishes the event of `key` as a retry of an attempt whose outcome is unknown.
async fn retry(gw: &Gateway, key: &str) -> (u16, Value, Duration) {
    send(gw, key, true).await
}

async fn send(gw: &Gateway, key: &str, retry: bool) -> (u16, Value, Duration) {
    let body =
        json!({"kind": "card", "data": {"key": key}, "idempotency_key": key, "retry": retry});
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

/// Publishes `key` on `gw` until Redis answers (it may be restarting); the event's
/// (epoch, seq).
async fn publish_until_sequenced(gw: &Gateway, key: &str) -> (String, u64) {
    for _ in 0..100 {
        let (status, answer, _) = publish(gw, key).await;
        if status == 200 {
            return (
                answer["epoch"].as_str().unwrap().to_owned(),
                answer["seq"].as_u64().unwrap(),
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{key} never sequenced");
}

/// Three gateways with a viewer each hold `r` at seq 20; Redis keeps a snapshot taken
/// at seq 10. Returns the viewers (having read 1..=20), what each holds ((epoch, seq)
/// to the event's key), the snapshot and the epoch.
async fn twenty_events_and_a_snapshot_at_ten(
    redis: &TestRedis,
    gws: &[Gateway],
) -> (Vec<Viewer>, Vec<Held>, std::path::PathBuf, String) {
    let mut viewers = Vec::new();
    for (i, gw) in gws.iter().enumerate() {
        let mut v = Viewer::connect(gw, &format!("v{i}")).await;
        v.join("r").await;
        viewers.push(v);
    }
    for i in 1..=10 {
        publish_until_sequenced(&gws[i % gws.len()], &format!("k-{i}")).await;
    }
    let snapshot = redis.snapshot();
    for i in 11..=20 {
        publish_until_sequenced(&gws[i % gws.len()], &format!("k-{i}")).await;
    }
    let mut held = Vec::new();
    for v in &mut viewers {
        let mut h = Held::new();
        for seq in 1..=20 {
            let e = v.next_event().await;
            assert_eq!(e["seq"], seq);
            h.take(&e);
        }
        held.push(h);
    }
    let epoch = held[0].epoch_of(1);
    (viewers, held, snapshot, epoch)
}

/// The events a viewer holds, by (epoch, seq): taking a second, different event
/// under one (epoch, seq) fails the test.
struct Held(std::collections::HashMap<(String, u64), String>);

impl Held {
    fn new() -> Self {
        Self(std::collections::HashMap::new())
    }

    fn take(&mut self, event: &Value) -> (String, u64) {
        let at = (
            event["epoch"].as_str().unwrap().to_owned(),
            event["seq"].as_u64().unwrap(),
        );
        let key = event["data"]["key"].as_str().unwrap().to_owned();
        if let Some(had) = self.0.insert(at.clone(), key.clone()) {
            assert_eq!(had, key, "two events under {at:?}");
        }
        at
    }

    fn epoch_of(&self, seq: u64) -> String {
        self.0.keys().find(|(_, s)| *s == seq).unwrap().0.clone()
    }
}

/// Reads `v` until the event at `last` (or a reset past it): it must have been told
/// that continuity restarted in an epoch other than `old`, and take no second event
/// under a seq.
async fn reset_then_up_to(v: &mut Viewer, held: &mut Held, old: &str, last: &(String, u64)) {
    let mut reset = None;
    loop {
        let m = v.next().await;
        match m["type"].as_str() {
            Some("reset") => {
                let epoch = m["epoch"].as_str().unwrap().to_owned();
                let past = epoch == last.0 && m["seq"].as_u64() >= Some(last.1);
                reset = Some(epoch);
                if past {
                    break; // the reset's snapshot already covers `last`
                }
            }
            // Every event is taken (and checked); the one at `last` ends the wait.
            Some("event") if held.take(&m) == *last => break,
            _ => {}
        }
    }
    assert!(
        reset.as_deref().is_some_and(|e| e != old),
        "told that continuity restarted, in a new epoch: {reset:?}"
    );
}

async fn rollovers(gws: &[Gateway]) -> u64 {
    let mut n = 0;
    for gw in gws {
        n += counter(gw, "danmaku_store_rollovers_total").await;
    }
    n
}

/// Redis comes back from a snapshot that lost its last 10 events (a stale RDB file, a
/// failover to a lagging replica): the room's seq is back under the same epoch. Each
/// gateway finds its room's head below what it delivered when it reconnects, the room
/// moves to a new epoch and every viewer gets a `reset` before any new event; a resume
/// from the lost tail gets `recovered:false` in the new epoch; a retried key the
/// snapshot kept answers the seq it got, in the epoch it got it.
#[tokio::test]
async fn a_redis_gone_back_under_an_epoch_moves_the_room_to_a_new_one() {
    let mut redis = TestRedis::start();
    let gws = [gateway(&redis), gateway(&redis), gateway(&redis)];
    let (mut viewers, mut held, snapshot, old) =
        twenty_events_and_a_snapshot_at_ten(&redis, &gws).await;

    redis.restart_from(&snapshot);
    for v in &mut viewers {
        let reset = v.next_of("reset").await;
        assert_ne!(reset["epoch"].as_str(), Some(old.as_str()), "{reset}");
    }
    let mut last = (String::new(), 0);
    for i in 21..=30 {
        last = publish_until_sequenced(&gws[i % 3], &format!("k-{i}")).await;
    }
    assert_ne!(last.0, old);
    for (v, held) in viewers.iter_mut().zip(&mut held) {
        for seq in 1..=10 {
            let e = v.next_event().await;
            assert_eq!(
                (e["epoch"].as_str(), e["seq"].as_u64()),
                (Some(last.0.as_str()), Some(seq))
            );
            held.take(&e);
        }
    }
    assert!(rollovers(&gws).await >= 1, "counted");

    let mut late = Viewer::connect(&gws[2], "late").await;
    let id = late
        .send(json!({"type": "join", "room": "r", "since": {"epoch": old, "seq": 15}}))
        .await;
    let joined = late.reply(id).await;
    assert_eq!(joined["recovered"], false, "{joined}");
    assert_eq!(joined["epoch"].as_str(), Some(last.0.as_str()), "{joined}");
    let (status, retried, _) = retry(&gws[0], "k-5").await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(
        (retried["epoch"].as_str(), retried["seq"].as_u64()),
        (Some(old.as_str()), Some(5)),
        "a key the snapshot kept"
    );
    // k-15's key went with the lost writes: its retry is refused, never a second seq.
    let (status, refused, _) = retry(&gws[1], "k-15").await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(
        refused["error"]["code"], "idempotency_key_unknown",
        "{refused}"
    );
    let (_, head) = gws[2].http("GET", "/v1/rooms/r", Some(API_KEY), None).await;
    assert_eq!(
        head["seq"].as_u64(),
        Some(last.1),
        "nothing sequenced: {head}"
    );
}

/// As above, but the gateway is cut off from Redis while it restarts and the publisher
/// goes on elsewhere, so by the time the gateway is back the room's seq is past what it
/// delivered (the new events overtook the lost ones). Its head alone looks fine; the
/// record under the last seq it delivered is another: the room moves to a new epoch.
#[tokio::test]
async fn a_redis_gone_back_and_overtaken_is_found_by_the_record_under_the_last_seq() {
    let mut redis = TestRedis::start();
    let proxy = StallProxy::start(&redis);
    let gws = [
        Gateway::start(&["--redis-url", &proxy.url()]),
        gateway(&redis),
    ];
    let (mut viewers, mut held, snapshot, old) =
        twenty_events_and_a_snapshot_at_ten(&redis, &gws[..1]).await;

    proxy.sever();
    redis.restart_from(&snapshot);
    for i in 21..=40 {
        let at = publish_until_sequenced(&gws[1], &format!("k-{i}")).await;
        assert_eq!(at.0, old, "nobody has noticed yet");
    }
    proxy.mend();
    // Until the gateway is back and has moved the room (the first of these may still
    // be sequenced in the old epoch).
    let mut last = (old.clone(), 0);
    for i in 0..200 {
        last = publish_until_sequenced(&gws[1], &format!("k-after-{i}")).await;
        if last.0 != old {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(last.0, old, "the room moved to a new epoch");
    reset_then_up_to(&mut viewers[0], &mut held[0], &old, &last).await;
    assert_eq!(rollovers(&gws[..1]).await, 1);
}

/// The same seq published twice in one epoch (which only a store that lost writes
/// does) moves the room to a new epoch at once, without a reconnect.
#[tokio::test]
async fn a_seq_published_twice_moves_the_room_to_a_new_epoch() {
    let redis = TestRedis::start();
    let gws = [gateway(&redis)];
    let mut v = Viewer::connect(&gws[0], "v").await;
    v.join("r").await;
    let mut held = Held::new();
    for i in 1..=5 {
        publish_until_sequenced(&gws[0], &format!("k-{i}")).await;
        held.take(&v.next_event().await);
    }
    let old = held.epoch_of(1);
    let again = danmaku_fanout::testing::data_record(3, &old, 1, "card", r#"{"key":"other"}"#);
    redis.cli(&["PUBLISH", "{dm:r}:c", &again]);
    let reset = v.next_of("reset").await;
    assert_ne!(reset["epoch"].as_str(), Some(old.as_str()), "{reset}");
    // A message of the old epoch still on its way is stale: not a new epoch again.
    let stale = danmaku_fanout::testing::data_record(9, &old, 1, "card", r#"{"key":"late"}"#);
    redis.cli(&["PUBLISH", "{dm:r}:c", &stale]);
    let last = publish_until_sequenced(&gws[0], "k-6").await;
    assert_ne!(last.0, old);
    let next = v.next().await;
    assert_eq!(next["type"], "event", "{next}");
    assert_eq!(held.take(&next), last);
    assert_eq!(rollovers(&gws).await, 1);
}

/// The ids of Redis's pub/sub clients.
fn pubsub_clients(redis: &TestRedis) -> Vec<String> {
    redis
        .cli(&["CLIENT", "LIST", "TYPE", "pubsub"])
        .lines()
        .filter_map(|l| l.split(' ').next()?.strip_prefix("id=").map(str::to_owned))
        .collect()
}

/// The gateway is paused (SIGSTOP) while 20 MB is published into its rooms elsewhere,
/// so Redis cuts its pub/sub connection at the output-buffer limit. After SIGCONT the
/// gateway finds the connection gone, reconnects and fills every room from its stream:
/// every viewer gets every event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_gateway_cut_at_the_output_buffer_limit_recovers_without_loss() {
    const ROOMS: usize = 20;
    const EVENTS: u64 = 1_000;
    let redis = TestRedis::start();
    // Redis's default cuts a pub/sub client at 32 MB (or 8 MB for 60 s): a smaller
    // limit, so that 20 MB is well over it.
    redis.cli(&[
        "CONFIG",
        "SET",
        "client-output-buffer-limit",
        "pubsub 4mb 2mb 1",
    ]);
    let args = ["--redis-url", &redis.url(), "--history-len", "1000"];
    let (paused, publisher) = (Gateway::start(&args), Gateway::start(&args));
    let mut viewers = Vec::new();
    for r in 0..ROOMS {
        let mut v = Viewer::connect(&paused, &format!("v{r}")).await;
        v.join(&format!("p{r}")).await;
        viewers.push(v);
    }
    let before = pubsub_clients(&redis);
    paused.signal("-STOP");
    let pad = "x".repeat(1_000);
    let publisher = std::sync::Arc::new(publisher);
    let tasks: Vec<_> = (0..ROOMS)
        .map(|r| {
            let (publisher, pad) = (publisher.clone(), pad.clone());
            tokio::spawn(async move {
                for i in 1..=EVENTS {
                    let body = json!({"kind": "card", "data": {"i": i, "pad": pad}});
                    let (status, answer) = publisher
                        .http(
                            "POST",
                            &format!("/v1/rooms/p{r}/events"),
                            Some(API_KEY),
                            Some(&body),
                        )
                        .await;
                    assert_eq!((status, answer["seq"].as_u64()), (200, Some(i)), "{answer}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let cut = pubsub_clients(&redis);
    paused.signal("-CONT");
    // (The other gateway's pub/sub connection, reading, stays.)
    assert!(
        before.iter().any(|id| !cut.contains(id)),
        "Redis cut the paused gateway's pub/sub connection: {before:?} then {cut:?}"
    );
    for v in &mut viewers {
        for i in 1..=EVENTS {
            let e = v.next_event().await;
            assert_eq!(
                (e["seq"].as_u64(), e["data"]["i"].as_u64()),
                (Some(i), Some(i))
            );
        }
    }
}
