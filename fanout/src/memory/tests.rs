use super::*;
use crate::mailbox;

fn room(s: &str) -> RoomId {
    RoomId::new(s).expect("room")
}

fn kind() -> EventKind {
    EventKind::new("comment").expect("kind")
}

fn store(config: MemoryConfig) -> MemoryFanout {
    MemoryFanout::new(config, Arc::new(Hub::new()))
}

fn seq_of(b: &bytes::Bytes) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(b).expect("json");
    v["seq"].as_u64().expect("seq")
}

#[tokio::test]
async fn publish_sequences_and_delivers_in_order() {
    let s = store(MemoryConfig::default());
    let r = room("r");
    let (tx, mut rx) = mailbox(100);
    s.hub().subscribe(&r, 1, tx);
    for i in 1..=5u64 {
        let p = s.publish(&r, &kind(), "{}", None).await.expect("publish");
        assert_eq!(p.seq, i);
    }
    let mut buf = Vec::new();
    rx.recv_many(&mut buf, 100).await;
    assert_eq!(
        buf.iter().map(|d| d.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        buf.iter().map(|d| seq_of(&d.frame)).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
}

#[tokio::test]
async fn idempotency_key_returns_first_seq() {
    let s = store(MemoryConfig::default());
    let r = room("r");
    let first = s
        .publish(&r, &kind(), "{}", Some("k1"))
        .await
        .expect("publish");
    for _ in 0..4 {
        let again = s
            .publish(&r, &kind(), "{}", Some("k1"))
            .await
            .expect("publish");
        assert_eq!((again.seq, again.duplicate), (first.seq, true));
    }
    assert_eq!(s.info(&r).await.expect("info").seq, 1);
}

#[test]
fn keys_forgotten_at_the_bound_cast_doubt_for_their_lifetime() {
    let config = MemoryConfig {
        idempotency_max: 2,
        idempotency_ttl: std::time::Duration::from_millis(1_000),
        ..MemoryConfig::default()
    };
    let mut state = room::RoomState::new(&config, 0);
    assert!(state.may_have_lost_keys(999), "the store's start");
    assert!(!state.may_have_lost_keys(1_000));
    state.remember_key("a", 1, String::new(), 5_000);
    state.remember_key("b", 2, String::new(), 5_100);
    assert!(!state.may_have_lost_keys(5_200), "nothing forgotten yet");
    state.remember_key("c", 3, String::new(), 5_200); // forgets "a", used at 5,000
    assert!(state.idempotent_seq("a", 5_200).is_none());
    assert!(state.may_have_lost_keys(5_999));
    assert!(!state.may_have_lost_keys(6_000), "a's lifetime is over");
}

#[tokio::test]
async fn view_replays_or_resets() {
    let config = MemoryConfig {
        history_len: 5,
        ..MemoryConfig::default()
    };
    let s = store(config);
    let r = room("r");
    for _ in 0..10 {
        s.publish(&r, &kind(), "{}", None).await.expect("publish");
    }
    let fresh = s.view(&r, None, 3).await.expect("view");
    assert_eq!(fresh.seq, 10);
    assert!(fresh.replay.is_none());
    assert_eq!(
        fresh.recent.iter().map(seq_of).collect::<Vec<_>>(),
        vec![8, 9, 10]
    );

    let since = Since {
        epoch: fresh.epoch.to_string(),
        seq: 7,
    };
    let resumed = s.view(&r, Some(&since), 3).await.expect("view");
    let replay = resumed.replay.expect("recovered");
    assert_eq!(
        replay.iter().map(seq_of).collect::<Vec<_>>(),
        vec![8, 9, 10]
    );

    let too_old = Since {
        epoch: fresh.epoch.to_string(),
        seq: 2,
    };
    assert!(
        s.view(&r, Some(&too_old), 3)
            .await
            .expect("view")
            .replay
            .is_none()
    );
    let wrong_epoch = Since {
        epoch: "nope".into(),
        seq: 9,
    };
    assert!(
        s.view(&r, Some(&wrong_epoch), 3)
            .await
            .expect("view")
            .replay
            .is_none()
    );

    assert!(matches!(
        s.history(&r, 2, 100).await,
        Err(FanoutError::Gone { since: 2, .. })
    ));
    assert_eq!(
        s.history(&r, 8, 100).await.expect("history").events.len(),
        2
    );
}

#[tokio::test]
async fn polls_count_one_vote_per_user() {
    let s = store(MemoryConfig::default());
    let r = room("r");
    let new = NewPoll {
        question: "Which?".into(),
        options: vec!["a".into(), "b".into()],
        duration_s: 60,
    };
    let (id, p) = s.create_poll(&r, new).await.expect("poll");
    assert_eq!(p.seq, 1);
    s.vote(&r, &id, "u1", 0).await.expect("vote");
    assert_eq!(
        s.vote(&r, &id, "u1", 1).await,
        Err(FanoutError::AlreadyVoted(id.clone()))
    );
    assert_eq!(
        s.vote(&r, &id, "u2", 7).await,
        Err(FanoutError::BadOption(id.clone(), 7))
    );
    s.vote(&r, &id, "u2", 1).await.expect("vote");
    s.tick().await;
    s.tick().await; // nothing changed: no second update
    let h = s.history(&r, 1, 10).await.expect("history");
    assert_eq!(h.events.len(), 1, "one coalesced tally update");
    let v: serde_json::Value = serde_json::from_slice(&h.events[0]).expect("json");
    assert_eq!(v["data"]["options"][0]["votes"], 1);
    assert_eq!(v["data"]["options"][1]["votes"], 1);
    s.close_poll(&r, &id).await.expect("close");
    assert_eq!(
        s.vote(&r, &id, "u3", 0).await,
        Err(FanoutError::PollClosed(id.clone()))
    );
    assert_eq!(
        s.close_poll(&r, &id).await,
        Err(FanoutError::PollClosed(id.clone()))
    );
    let unknown = PollId::new("p-99").expect("id");
    assert_eq!(
        s.vote(&r, &unknown, "u3", 0).await,
        Err(FanoutError::UnknownPoll(unknown))
    );
}

#[tokio::test]
async fn likes_accumulate() {
    let s = store(MemoryConfig::default());
    let r = room("r");
    s.add_likes(&r, 5).await.expect("likes");
    let p = s.add_likes(&r, 7).await.expect("likes");
    assert_eq!(p.seq, 2);
    assert_eq!(s.info(&r).await.expect("info").likes, 12);
}

#[tokio::test]
async fn idle_rooms_expire_with_a_new_epoch() {
    let config = MemoryConfig {
        room_ttl: Duration::ZERO,
        ..MemoryConfig::default()
    };
    let s = store(config);
    let r = room("r");
    let first = s.publish(&r, &kind(), "{}", None).await.expect("publish");
    s.tick().await;
    let again = s.publish(&r, &kind(), "{}", None).await.expect("publish");
    assert_eq!(again.seq, 1);
    assert_ne!(again.epoch, first.epoch);
}

#[tokio::test]
async fn room_limit_is_enforced() {
    let s = store(MemoryConfig {
        max_rooms: 2,
        ..MemoryConfig::default()
    });
    s.publish(&room("a"), &kind(), "{}", None).await.expect("a");
    s.publish(&room("b"), &kind(), "{}", None).await.expect("b");
    assert_eq!(
        s.publish(&room("c"), &kind(), "{}", None).await,
        Err(FanoutError::TooManyRooms(2))
    );
}
