//! Rooms expire on Redis as in memory: every key of a room goes once the room is idle
//! for its TTL, so Redis returns to its baseline as rooms come and go; a room that
//! expired comes back with a new epoch; history is trimmed by age as well as length.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use danmaku_fanout::redis::{RedisConfig, RedisFanout};
use danmaku_fanout::testing::TestRedis;
use danmaku_fanout::{FanoutError, Hub, NewPoll, Polls, Rooms};
use danmaku_protocol::{EventKind, RoomId, Since};

fn config(redis: &TestRedis, room_ttl: Duration, history_age: Duration) -> RedisConfig {
    RedisConfig {
        urls: vec![redis.url()],
        room_ttl,
        history_age,
        idempotency_ttl: Duration::from_secs(1),
        ..RedisConfig::default()
    }
}

async fn connect(redis: &TestRedis, room_ttl: Duration, history_age: Duration) -> RedisFanout {
    RedisFanout::connect(config(redis, room_ttl, history_age), Arc::new(Hub::new()))
        .await
        .unwrap()
}

fn info_field(redis: &TestRedis, section: &str, field: &str) -> u64 {
    let info = redis.cli(&["INFO", section]);
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

fn dbsize(redis: &TestRedis) -> u64 {
    redis.cli(&["DBSIZE"]).trim().parse().unwrap()
}

/// Waits (bounded) until `done` holds, checking every 100 ms.
async fn eventually(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_short_lived_rooms_leave_redis_as_it_was() {
    let redis = TestRedis::start();
    let ttl = Duration::from_secs(2);
    let store = connect(&redis, ttl, ttl).await;
    let (keys_before, memory_before) =
        (dbsize(&redis), info_field(&redis, "memory", "used_memory"));
    let kind = EventKind::comment();
    let rooms: Vec<RoomId> = (0..10_000)
        .map(|i| RoomId::new(&format!("short-{i}")).unwrap())
        .collect();
    for chunk in rooms.chunks(200) {
        let work = chunk.iter().enumerate().map(|(i, room)| {
            let (store, kind) = (&store, &kind);
            async move {
                // Every kind of key a room can have: events, an idempotency key, likes,
                // a poll with a vote, an online report.
                store
                    .publish(room, kind, r#"{"text":"hi"}"#, Some("k"))
                    .await?;
                store.add_likes(room, 3).await?;
                if i % 20 == 0 {
                    let poll = NewPoll {
                        question: "Which?".into(),
                        options: vec!["a".into(), "b".into()],
                        duration_s: 1,
                    };
                    let (id, _) = store.create_poll(room, poll).await?;
                    store.vote(room, &id, "u-1", 1).await?;
                }
                store.online(room).await?;
                Ok::<_, FanoutError>(())
            }
        });
        for r in futures_util::future::join_all(work).await {
            r.unwrap();
        }
    }
    let (keys_peak, memory_peak) = (dbsize(&redis), info_field(&redis, "memory", "used_memory"));
    assert!(
        keys_peak >= keys_before + 20_000,
        "{keys_peak} keys at the peak"
    );
    // Redis expires keys in its background cycle: wait for it, bounded.
    eventually("every room's keys expire", Duration::from_secs(60), || {
        dbsize(&redis) == keys_before
    })
    .await;
    let memory_after = info_field(&redis, "memory", "used_memory");
    let grown = memory_after.saturating_sub(memory_before);
    assert!(
        grown < (memory_peak - memory_before) / 10,
        "memory back near its baseline: {memory_before} -> peak {memory_peak} -> {memory_after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_of_a_room_carries_its_tag_and_an_expiry() {
    let redis = TestRedis::start();
    let store = connect(&redis, Duration::from_secs(60), Duration::from_secs(60)).await;
    let room = RoomId::new("all-keys").unwrap();
    store
        .publish(&room, &EventKind::comment(), "{}", Some("k-1"))
        .await
        .unwrap();
    store.add_likes(&room, 2).await.unwrap();
    let poll = NewPoll {
        question: "Which?".into(),
        options: vec!["a".into(), "b".into()],
        duration_s: 30,
    };
    let (id, _) = store.create_poll(&room, poll).await.unwrap();
    store.vote(&room, &id, "u-1", 0).await.unwrap();
    store.online(&room).await.unwrap();
    let listed = redis.cli(&["KEYS", "*"]);
    let keys: Vec<&str> = listed.lines().filter(|k| !k.is_empty()).collect();
    // meta, stream, idempotency key, poll, voters, open and dirty sets, online counts
    assert_eq!(keys.len(), 8, "{keys:?}");
    for key in keys {
        assert!(key.starts_with("{dm:all-keys}:"), "{key}");
        let pttl: i64 = redis.cli(&["PTTL", key]).trim().parse().unwrap();
        assert!(pttl > 0, "{key} expires: PTTL {pttl}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_room_comes_back_with_a_new_epoch() {
    let redis = TestRedis::start();
    let ttl = Duration::from_secs(1);
    let store = connect(&redis, ttl, Duration::from_secs(600)).await;
    let room = RoomId::new("comes-back").unwrap();
    for _ in 0..3 {
        store
            .publish(&room, &EventKind::comment(), "{}", None)
            .await
            .unwrap();
    }
    let before = store.info(&room).await.unwrap();
    assert_eq!(before.seq, 3);
    eventually("the room expires", Duration::from_secs(30), || {
        redis.cli(&["EXISTS", "{dm:comes-back}:m"]).trim() == "0"
    })
    .await;
    let since = Since {
        epoch: before.epoch.to_string(),
        seq: 3,
    };
    let view = store.view(&room, Some(&since), 10).await.unwrap();
    assert!(view.replay.is_none(), "recovered:false");
    assert_ne!(view.epoch, before.epoch, "a new epoch");
    assert_eq!((view.seq, view.recent.len()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_in_use_outlives_its_ttl() {
    let redis = TestRedis::start();
    let ttl = Duration::from_secs(1);
    let store = connect(&redis, ttl, Duration::from_secs(600)).await;
    let room = RoomId::new("in-use").unwrap();
    let kind = EventKind::comment();
    let first = store.publish(&room, &kind, "{}", None).await.unwrap();
    // An event every 100 ms for three TTLs: each refresh window (TTL / 8) sees one.
    let start = Instant::now();
    let mut last = first.clone();
    while start.elapsed() < 3 * ttl {
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = store.publish(&room, &kind, "{}", None).await.unwrap();
        assert_eq!(last.epoch, first.epoch, "the room kept its epoch");
    }
    assert!(last.seq >= 20, "{} events, in one epoch", last.seq);
    let pttl: i64 = redis
        .cli(&["PTTL", "{dm:in-use}:m"])
        .trim()
        .parse()
        .unwrap();
    assert!(
        (1..=1_000).contains(&pttl),
        "the room still expires: PTTL {pttl}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_trimmed_by_age_as_well_as_length() {
    let redis = TestRedis::start();
    let age = Duration::from_millis(300);
    let store = connect(&redis, Duration::from_secs(60), age).await;
    let room = RoomId::new("aging").unwrap();
    let kind = EventKind::comment();
    for _ in 0..5 {
        store.publish(&room, &kind, "{}", None).await.unwrap();
    }
    assert_eq!(store.history(&room, 0, 100).await.unwrap().events.len(), 5);
    let published = Instant::now();
    eventually("the events age out", Duration::from_secs(10), || {
        published.elapsed() > age
    })
    .await;
    assert!(
        matches!(
            store.history(&room, 0, 100).await,
            Err(FanoutError::Gone { .. })
        ),
        "events older than the history age are gone"
    );
    let fresh = store.view(&room, None, 10).await.unwrap();
    assert!(fresh.recent.is_empty(), "and not in a snapshot");
    // Publishing trims them from the stream itself (every 16th event looks).
    for _ in 6..=16 {
        store.publish(&room, &kind, "{}", None).await.unwrap();
    }
    assert_eq!(redis.cli(&["XLEN", "{dm:aging}:s"]).trim(), "11");
    assert_eq!(store.history(&room, 5, 100).await.unwrap().events.len(), 11);
}
