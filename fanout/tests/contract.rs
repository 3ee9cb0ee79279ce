//! One behavioural suite, run against the memory store and the Redis store (one
//! server, two shards, a Cluster), each delivering into the hub as the gateway builds
//! it (lanes, hot-room batching), so the stores cannot drift: ordering, idempotency,
//! resume, polls and likes, a viewer that overflows and catches up by its cursor,
//! history by age, and room expiry.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use danmaku_fanout::memory::{MemoryConfig, MemoryFanout};
use danmaku_fanout::position::{Cursor, Step};
use danmaku_fanout::redis::{RedisConfig, RedisFanout};
use danmaku_fanout::testing::TestRedis;
use danmaku_fanout::{
    Fanout, FanoutError, Hub, MailboxReceiver, NewEvent, NewPoll, RESET_SEQ, Rooms, mailbox, now_ms,
};
use danmaku_protocol::{EventKind, PollId, Priority, RoomId, Since};

fn room(s: &str) -> RoomId {
    RoomId::new(s).unwrap()
}

fn comment() -> EventKind {
    EventKind::new("comment").unwrap()
}

fn seq_of(b: &[u8]) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(b).unwrap();
    v["seq"].as_u64().unwrap()
}

async fn next_seqs(rx: &mut MailboxReceiver, n: usize) -> Vec<u64> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while out.len() < n {
        buf.clear();
        tokio::time::timeout(Duration::from_secs(10), rx.recv_many(&mut buf, 1000))
            .await
            .expect("deliveries in time");
        // A hot room's batch carries the events first..=seq.
        for d in buf.iter().filter(|d| d.seq != 0) {
            match d.seq {
                RESET_SEQ => out.push(RESET_SEQ),
                seq => out.extend(d.first..=seq),
            }
        }
    }
    out
}

/// Subscribes like a viewer's join does: mailbox into the hub, then the view.
async fn viewer(store: &dyn Fanout, r: &RoomId) -> MailboxReceiver {
    let (tx, rx) = mailbox(10_000);
    store.hub().subscribe(r, 1, tx);
    store.view(r, None, 10).await.unwrap();
    rx
}

async fn ordering(store: &dyn Fanout) {
    let r = room("order");
    let mut rx = viewer(store, &r).await;
    for i in 1..=200u64 {
        assert_eq!(
            store
                .publish(&r, &comment(), &format!("{{\"i\":{i}}}"), None)
                .await
                .unwrap()
                .seq,
            i
        );
    }
    assert_eq!(next_seqs(&mut rx, 200).await, (1..=200).collect::<Vec<_>>());
}

async fn idempotency(store: &dyn Fanout) {
    let r = room("idem");
    let first = store
        .publish(&r, &comment(), "{}", Some("k"))
        .await
        .unwrap();
    for _ in 0..5 {
        let again = store
            .publish(&r, &comment(), "{}", Some("k"))
            .await
            .unwrap();
        assert_eq!(
            (again.seq, again.duplicate, &again.epoch),
            (first.seq, true, &first.epoch)
        );
    }
    assert_eq!(store.info(&r).await.unwrap().seq, 1);
}

/// A retry is answered the seq its key got; on a store that began less than the key
/// TTL ago an unknown key may be one it lost, so a retry of it is refused, while a first
/// attempt under it is sequenced.
async fn idempotent_retry(store: &dyn Fanout) {
    let r = room("retry");
    let first = store
        .publish(&r, &comment(), "{}", Some("k"))
        .await
        .unwrap();
    let again = store
        .publish_retry(&r, &comment(), "{}", "k")
        .await
        .unwrap();
    assert_eq!((again.seq, again.duplicate), (first.seq, true));
    let unknown = store.publish_retry(&r, &comment(), "{}", "k2").await;
    assert!(
        matches!(unknown, Err(FanoutError::KeyUnknown)),
        "{unknown:?}"
    );
    let reused = store.publish_retry(&r, &comment(), "[]", "k").await;
    assert!(
        matches!(reused, Err(FanoutError::KeyReused { .. })),
        "{reused:?}"
    );
    assert_eq!(
        store.info(&r).await.unwrap().seq,
        1,
        "nothing else sequenced"
    );
}

async fn resume(store: &dyn Fanout) {
    let r = room("resume");
    for _ in 0..10 {
        store.publish(&r, &comment(), "{}", None).await.unwrap();
    }
    let fresh = store.view(&r, None, 3).await.unwrap();
    assert_eq!(fresh.seq, 10);
    assert_eq!(
        fresh.recent.iter().map(|b| seq_of(b)).collect::<Vec<_>>(),
        vec![8, 9, 10]
    );
    let since = Since {
        epoch: fresh.epoch.to_string(),
        seq: 6,
    };
    let resumed = store.view(&r, Some(&since), 3).await.unwrap();
    assert_eq!(
        resumed
            .replay
            .unwrap()
            .iter()
            .map(|b| seq_of(b))
            .collect::<Vec<_>>(),
        vec![7, 8, 9, 10]
    );
    let wrong = Since {
        epoch: "other".into(),
        seq: 6,
    };
    assert!(
        store
            .view(&r, Some(&wrong), 3)
            .await
            .unwrap()
            .replay
            .is_none()
    );
    assert_eq!(store.history(&r, 8, 100).await.unwrap().events.len(), 2);
    assert!(matches!(
        store.history(&r, 11, 100).await,
        Err(FanoutError::Ahead { .. })
    ));
}

async fn polls_and_likes(store: &dyn Fanout) {
    let r = room("polls");
    let new = NewPoll {
        question: "Which?".into(),
        options: vec!["a".into(), "b".into()],
        duration_s: 60,
    };
    let (id, _) = store.create_poll(&r, new).await.unwrap();
    store.vote(&r, &id, "u1", 0).await.unwrap();
    assert_eq!(
        store.vote(&r, &id, "u1", 1).await,
        Err(FanoutError::AlreadyVoted(id.clone()))
    );
    store.vote(&r, &id, "u2", 1).await.unwrap();
    let unknown = PollId::new("p-99").unwrap();
    assert_eq!(
        store.vote(&r, &unknown, "u3", 0).await,
        Err(FanoutError::UnknownPoll(unknown))
    );
    let view = store.view(&r, None, 10).await.unwrap();
    assert_eq!(view.polls.len(), 1, "the open poll is in the snapshot");
    store.tick().await;
    let h = store.history(&r, 1, 10).await.unwrap();
    assert_eq!(h.events.len(), 1, "one coalesced tally update");
    let v: serde_json::Value = serde_json::from_slice(&h.events[0]).unwrap();
    assert_eq!(
        (
            v["data"]["options"][0]["votes"].as_u64(),
            v["data"]["options"][1]["votes"].as_u64()
        ),
        (Some(1), Some(1))
    );
    store.close_poll(&r, &id).await.unwrap();
    assert_eq!(
        store.vote(&r, &id, "u3", 0).await,
        Err(FanoutError::PollClosed(id.clone()))
    );
    store.add_likes(&r, 5).await.unwrap();
    store.add_likes(&r, 7).await.unwrap();
    assert_eq!(store.info(&r).await.unwrap().likes, 12);
}

/// Every event states its priority (nothing for normal), live and in history; the
/// room's own kinds have theirs (likes low, polls high).
async fn priorities(store: &dyn Fanout) {
    let r = room("prio");
    let mut rx = viewer(store, &r).await;
    let card = EventKind::new("card").unwrap();
    for p in [Priority::High, Priority::Normal, Priority::Low] {
        let event = NewEvent {
            priority: p,
            ..NewEvent::new(&card, "{}")
        };
        store.publish_event(&r, event).await.unwrap();
    }
    store.add_likes(&r, 1).await.unwrap();
    let new = NewPoll {
        question: "Which?".into(),
        options: vec!["a".into(), "b".into()],
        duration_s: 60,
    };
    store.create_poll(&r, new).await.unwrap();
    let want = [
        Priority::High,
        Priority::Normal,
        Priority::Low,
        Priority::Low,
        Priority::High,
    ];
    let mut live = Vec::new();
    let mut buf = Vec::new();
    while live.len() < want.len() {
        buf.clear();
        tokio::time::timeout(Duration::from_secs(10), rx.recv_many(&mut buf, 100))
            .await
            .expect("deliveries in time");
        for d in buf.iter().filter(|d| d.seq != 0) {
            live.extend(d.frame.split(|&b| b == b'\n').map(Priority::of_frame));
        }
    }
    assert_eq!(live, want, "live");
    let h = store.history(&r, 0, 10).await.unwrap();
    let stored: Vec<_> = h.events.iter().map(|e| Priority::of_frame(e)).collect();
    assert_eq!(stored, want, "history");
    let high: serde_json::Value = serde_json::from_slice(&h.events[0]).unwrap();
    assert_eq!(high["priority"], "high");
    let normal: serde_json::Value = serde_json::from_slice(&h.events[1]).unwrap();
    assert!(
        normal.get("priority").is_none(),
        "a v1 event is unchanged: {normal}"
    );
}

/// The hub as the gateway builds it: lanes of 64 viewers, hot rooms batched.
fn lanes() -> Arc<Hub> {
    Arc::new(Hub::with_lanes(64, Duration::from_millis(80)))
}

/// A viewer with a tiny mailbox follows the room with a [`Cursor`], as a connection
/// does: overflows are caught up from history, batches are split, and what it passes
/// on is every seq once, in order.
async fn overflow_caught_up_by_cursor(store: &dyn Fanout) {
    let r = room("tiny");
    let (tx, mut rx) = mailbox(4);
    store.hub().subscribe(&r, 2, tx);
    let view = store.view(&r, None, 0).await.unwrap();
    let mut cursor = Cursor::new(view.epoch.clone(), view.seq);
    for i in 1..=300u64 {
        store
            .publish(&r, &comment(), &format!("{{\"i\":{i}}}"), None)
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    let mut buf = Vec::new();
    while cursor.last() < 300 {
        buf.clear();
        let woke =
            tokio::time::timeout(Duration::from_millis(500), rx.recv_many(&mut buf, 64)).await;
        for d in buf.iter().filter(|d| d.seq != 0) {
            match cursor.step(d.first, d.seq) {
                Step::Write { skip } => {
                    got.extend(d.frame.split(|&b| b == b'\n').skip(skip).map(seq_of));
                    cursor.wrote(d.seq);
                }
                Step::Duplicate => {}
                Step::Gap { .. } => {
                    // The mailbox refuses the room once it dropped one: a gap here
                    // would be a lost delivery.
                    panic!("a gap without an overflow at {}", d.first);
                }
                Step::Reset => panic!("no reset in one epoch"),
            }
        }
        if woke.is_err() || !rx.take_overflowed().is_empty() {
            let h = store.history(&r, cursor.last(), 1_000).await.unwrap();
            assert_eq!(&h.epoch, cursor.epoch());
            got.extend(h.events.iter().map(|e| seq_of(e)));
            cursor.filled(h.events.len());
        }
    }
    assert_eq!(got, (1..=300).collect::<Vec<_>>());
}

/// The clock-driven bounds: events leave history after its age, and a room nobody
/// touches for its TTL comes back with a new epoch. Needs a store built with
/// [`SHORT_AGE`] and [`SHORT_TTL`].
async fn ageing_and_expiry(store: &dyn Fanout) {
    let r = room("expiring");
    for _ in 0..3 {
        store.publish(&r, &comment(), "{}", None).await.unwrap();
    }
    let before = store.info(&r).await.unwrap();
    assert_eq!(store.history(&r, 0, 10).await.unwrap().events.len(), 3);
    // Time passes; no event marks it.
    tokio::time::sleep(SHORT_AGE + Duration::from_millis(100)).await;
    assert!(
        matches!(
            store.history(&r, 0, 10).await,
            Err(FanoutError::Gone { .. })
        ),
        "aged out of history"
    );
    tokio::time::sleep(SHORT_TTL + Duration::from_millis(300)).await;
    store.tick().await;
    let since = Since {
        epoch: before.epoch.to_string(),
        seq: 3,
    };
    let view = store.view(&r, Some(&since), 10).await.unwrap();
    assert!(view.replay.is_none(), "recovered:false");
    assert_ne!(view.epoch, before.epoch, "a new epoch");
    assert_eq!(view.seq, 0);
}

const SHORT_AGE: Duration = Duration::from_millis(300);
const SHORT_TTL: Duration = Duration::from_millis(1_000);

async fn suite(store: &dyn Fanout) {
    ordering(store).await;
    idempotency(store).await;
    idempotent_retry(store).await;
    resume(store).await;
    polls_and_likes(store).await;
    priorities(store).await;
    overflow_caught_up_by_cursor(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_ages_and_expires_rooms() {
    let config = MemoryConfig {
        history_age: SHORT_AGE,
        room_ttl: SHORT_TTL,
        ..MemoryConfig::default()
    };
    ageing_and_expiry(&MemoryFanout::new(config, lanes())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stores_age_and_expire_rooms() {
    let (a, b) = (TestRedis::start(), TestRedis::start());
    let cluster = danmaku_fanout::testing::TestCluster::start();
    for (urls, is_cluster) in [
        (vec![a.url()], false),
        (vec![a.url(), b.url()], false),
        (cluster.urls(), true),
    ] {
        let config = RedisConfig {
            urls,
            cluster: is_cluster,
            prefix: format!("age{}", u8::from(is_cluster)),
            history_age: SHORT_AGE,
            room_ttl: SHORT_TTL,
            ..RedisConfig::default()
        };
        let store = RedisFanout::connect(config, lanes()).await.unwrap();
        ageing_and_expiry(&store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_keeps_the_contract() {
    let store = MemoryFanout::new(MemoryConfig::default(), lanes());
    suite(&store).await;
}

fn redis_config(redis: &TestRedis) -> RedisConfig {
    RedisConfig {
        urls: vec![redis.url()],
        position_check: Duration::from_millis(200),
        ..RedisConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_keeps_the_contract() {
    let redis = TestRedis::start();
    let store = RedisFanout::connect(redis_config(&redis), lanes())
        .await
        .unwrap();
    suite(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_fills_a_lost_tail_and_resets_on_a_new_epoch() {
    let redis = TestRedis::start();
    let store = RedisFanout::connect(redis_config(&redis), lanes())
        .await
        .unwrap();
    let r = room("tail");
    let mut rx = viewer(&store, &r).await;
    store.publish(&r, &comment(), "{}", None).await.unwrap();
    assert_eq!(next_seqs(&mut rx, 1).await, vec![1]);
    // Sequence an event behind pub/sub's back: only the stream has it.
    let quiet = redis.cli(&["HINCRBY", "{dm:tail}:m", "seq", "1"]);
    assert_eq!(quiet.trim(), "2");
    let epoch = redis.cli(&["HGET", "{dm:tail}:m", "epoch"]);
    let record = danmaku_fanout::testing::data_record(2, epoch.trim(), now_ms(), "comment", "{}");
    redis.cli(&["XADD", "{dm:tail}:s", "2-0", "r", &record]);
    assert_eq!(
        next_seqs(&mut rx, 1).await,
        vec![2],
        "the position check found the lost tail"
    );

    // The store loses the room (restart without persistence): a new epoch, a reset.
    redis.cli(&["FLUSHALL"]);
    store.publish(&r, &comment(), "{}", None).await.unwrap();
    let got = next_seqs(&mut rx, 1).await;
    assert_eq!(got, vec![RESET_SEQ], "never a silent gap");
}

/// With Redis up for longer than the key TTL, an unknown key is proof that the first
/// attempt never reached it: the retry is sequenced. Once a gateway found the room's
/// writes lost (its seq went back), a retry of an unknown key is refused for the keys'
/// lifetime: its first attempt may have been one of the lost writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_lost_writes_refuses_retries_of_keys_it_does_not_know() {
    let redis = TestRedis::start();
    let config = RedisConfig {
        idempotency_ttl: Duration::from_secs(1),
        ..redis_config(&redis)
    };
    let store = RedisFanout::connect(config, lanes()).await.unwrap();
    let uptime = || {
        let info = redis.cli(&["INFO", "server"]);
        let line = info.lines().find(|l| l.starts_with("uptime_in_seconds:"));
        line.and_then(|l| l[18..].trim().parse::<u64>().ok())
            .unwrap()
    };
    while uptime() < 1 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = room("lost");
    let mut rx = viewer(&store, &r).await;
    let never_reached = store
        .publish_retry(&r, &comment(), "{}", "a")
        .await
        .unwrap();
    assert_eq!((never_reached.seq, never_reached.duplicate), (1, false));
    for _ in 2..=3 {
        store.publish(&r, &comment(), "{}", None).await.unwrap();
    }
    assert_eq!(next_seqs(&mut rx, 3).await, vec![1, 2, 3]);

    // Redis goes back to seq 1 (as a restart from an older snapshot would, but without
    // the restart, so only the gateway's finding can tell).
    redis.cli(&["HSET", "{dm:lost}:m", "seq", "1"]);
    assert_eq!(
        next_seqs(&mut rx, 1).await,
        vec![RESET_SEQ],
        "found by the position check"
    );
    let unknown = store.publish_retry(&r, &comment(), "{}", "b").await;
    assert!(
        matches!(unknown, Err(FanoutError::KeyUnknown)),
        "{unknown:?}"
    );
    let known = store
        .publish_retry(&r, &comment(), "{}", "a")
        .await
        .unwrap();
    assert_eq!(
        (known.seq, known.duplicate),
        (1, true),
        "a key that survived"
    );
    let first = store
        .publish(&r, &comment(), "{}", Some("b"))
        .await
        .unwrap();
    assert_eq!((first.seq, first.duplicate), (1, false), "in the new epoch");
}

/// Runs the suite on a Redis store, then publishes into `rooms` more rooms so they
/// spread over every shard or master.
async fn suite_then_spread(config: RedisConfig, rooms: usize) {
    let store = RedisFanout::connect(config, lanes()).await.unwrap();
    suite(&store).await;
    for i in 0..rooms {
        store
            .publish(&room(&format!("spread-{i}")), &comment(), "{}", None)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sharded_redis_servers_keep_the_contract() {
    let (a, b) = (TestRedis::start(), TestRedis::start());
    let config = RedisConfig {
        urls: vec![a.url(), b.url()],
        position_check: Duration::from_millis(200),
        ..RedisConfig::default()
    };
    suite_then_spread(config, 20).await;
    for server in [&a, &b] {
        let keys: u64 = server.cli(&["DBSIZE"]).trim().parse().unwrap();
        assert!(keys > 0, "rooms are spread over both shards");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_keeps_the_contract() {
    let cluster = danmaku_fanout::testing::TestCluster::start();
    let config = RedisConfig {
        urls: cluster.urls(),
        cluster: true,
        position_check: Duration::from_millis(200),
        ..RedisConfig::default()
    };
    // Rooms land in slots owned by every master.
    suite_then_spread(config, 30).await;
    for node in 0..3 {
        let keys: u64 = cluster.cli(node, &["DBSIZE"]).trim().parse().unwrap();
        assert!(keys > 0, "master {node} holds rooms");
    }
}
