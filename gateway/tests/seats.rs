//! Co-host seats over real gateways (one with the memory store, three on every Redis
//! topology): every transition of the state machine, the wrong ones refused naming the
//! user's state, host moves refused to viewers, the targeted signals reaching only whom
//! they are for, requests and invitations expiring, and a seat kept while its holder is
//! connected anywhere and lost a lease after the last connection went. The lease is 2 s
//! here (`--cohost-lease-ms`), 30 s by default.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use danmaku_gateway::auth::Claims;
use serde_json::{Value, json};
use support::store::Store;
use support::{API_KEY, Gateway, Viewer};

const FLAGS: &[&str] = &[
    "--cohost-lease-ms",
    "2000",
    "--votes-per-s",
    "100",
    "--votes-burst",
    "100",
];
const ROOM: &str = "stage-show";

async fn cohost(v: &mut Viewer, action: &str, user: Option<&str>, seat: Option<u32>) -> Value {
    let mut cmd = json!({"type": "cohost", "room": ROOM, "action": action});
    if let Some(u) = user {
        cmd["user"] = json!(u);
    }
    if let Some(s) = seat {
        cmd["seat"] = json!(s);
    }
    let id = v.send(cmd).await;
    v.reply(id).await
}

async fn ok(v: &mut Viewer, action: &str, user: Option<&str>, seat: Option<u32>) {
    let r = cohost(v, action, user, seat).await;
    assert_eq!(r["type"], "ack", "{action}: {r}");
}

async fn refused(v: &mut Viewer, action: &str, user: Option<&str>, seat: Option<u32>) -> Value {
    let r = cohost(v, action, user, seat).await;
    assert_eq!(r["type"], "error", "{action}: {r}");
    r
}

/// The next event of `kind`.
async fn next_of_kind(v: &mut Viewer, kind: &str) -> Value {
    loop {
        let e = v.next_event().await;
        if e["kind"] == kind {
            return e;
        }
    }
}

/// The next `seats` state for which `want` holds.
async fn seats_until(v: &mut Viewer, want: impl Fn(&Value) -> bool) -> Value {
    loop {
        let e = next_of_kind(v, "seats").await;
        if want(&e["data"]) {
            return e["data"].clone();
        }
    }
}

fn seat_of(seats: &Value, user: &str) -> Option<u64> {
    seats["seats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["user"] == user)
        .map(|s| s["seat"].as_u64().unwrap())
}

async fn connect(gw: &Gateway, user: &str, host: bool) -> Viewer {
    let claims = Claims {
        role: host.then(|| "host".into()),
        ..Claims::default()
    };
    let mut v = Viewer::connect_claims(gw, user, claims).await;
    v.join(ROOM).await;
    v
}

async fn every_move_of_the_seats(gws: &[Arc<Gateway>]) {
    let at = |i: usize| &gws[i % gws.len()];
    let mut host = connect(at(0), "host", true).await;
    let mut a = connect(at(1), "a", false).await;
    let mut b = connect(at(2), "b", false).await;
    let mut c = connect(at(0), "c", false).await;
    // Reads the seats states; sends nothing (a reply is read past the events before it).
    let mut watcher = connect(at(1), "watcher", false).await;

    let r = refused(&mut a, "request", None, None).await;
    assert!(r["message"].as_str().unwrap().contains("no seats"), "{r}");
    let (status, set) = at(0)
        .http(
            "PUT",
            &format!("/v1/rooms/{ROOM}/seats"),
            Some(API_KEY),
            Some(&json!({"count": 2})),
        )
        .await;
    assert_eq!(status, 200, "{set}");
    let seats = seats_until(&mut watcher, |_| true).await;
    assert_eq!(
        seats,
        json!({"count": 2, "seats": [null, null], "queue": []})
    );

    // request → (host told alone) → accept at seat 1.
    ok(&mut a, "request", None, None).await;
    let e = next_of_kind(&mut host, "cohost.request").await;
    assert_eq!(e["data"]["user"], "a");
    let r = refused(&mut a, "request", None, None).await;
    assert_eq!(r["code"], "bad_request");
    assert!(
        r["message"].as_str().unwrap().contains("a is requested"),
        "{r}"
    );
    // Every host move, by a viewer (even the one it is about), is forbidden.
    for (who, action) in [(&mut b, "accept"), (&mut c, "invite"), (&mut a, "kick")] {
        let r = refused(who, action, Some("a"), None).await;
        assert_eq!(r["code"], "forbidden", "{action}: {r}");
    }
    let r = refused(&mut b, "reject", Some("a"), None).await;
    assert_eq!(r["code"], "forbidden", "reject: {r}");
    ok(&mut host, "accept", Some("a"), Some(1)).await;
    let e = next_of_kind(&mut a, "cohost.accepted").await;
    assert_eq!(e["data"]["seat"], 1);
    let seats = seats_until(&mut watcher, |s| seat_of(s, "a").is_some()).await;
    assert_eq!(seat_of(&seats, "a"), Some(1));
    assert_eq!(seats["queue"], json!([]));

    // request → seat taken → reject.
    ok(&mut b, "request", None, None).await;
    let r = refused(&mut host, "accept", Some("b"), Some(1)).await;
    assert_eq!(r["code"], "seat_taken", "{r}");
    ok(&mut host, "reject", Some("b"), None).await;
    let e = next_of_kind(&mut b, "cohost.rejected").await;
    assert_eq!(e["data"]["reason"], "rejected");
    // request → cancel.
    ok(&mut b, "request", None, None).await;
    ok(&mut b, "cancel", None, None).await;
    let r = refused(&mut b, "cancel", None, None).await;
    assert!(r["message"].as_str().unwrap().contains("b is none"), "{r}");

    // invite → decline; invite → accept_invite at the first free seat.
    ok(&mut host, "invite", Some("c"), None).await;
    let e = next_of_kind(&mut c, "cohost.invite").await;
    assert_eq!(e["data"]["by"], "host");
    ok(&mut c, "decline", None, None).await;
    ok(&mut host, "invite", Some("c"), None).await;
    ok(&mut c, "accept_invite", None, None).await;
    let seats = seats_until(&mut watcher, |s| seat_of(s, "c").is_some()).await;
    assert_eq!(
        (seat_of(&seats, "c"), seat_of(&seats, "a")),
        (Some(0), Some(1))
    );
    let r = refused(&mut host, "invite", Some("c"), None).await;
    assert!(
        r["message"].as_str().unwrap().contains("c is seated"),
        "{r}"
    );

    // A joiner's snapshot holds the seats.
    let late = Viewer::connect(at(2), "late").await.join(ROOM).await;
    assert_eq!(seat_of(&late["snapshot"]["seats"], "c"), Some(0), "{late}");

    // leave; kick.
    ok(&mut c, "leave", None, None).await;
    ok(&mut host, "kick", Some("a"), None).await;
    let e = next_of_kind(&mut a, "cohost.rejected").await;
    assert_eq!(e["data"]["reason"], "kicked");
    let seats = seats_until(&mut watcher, |s| s["seats"] == json!([null, null])).await;
    assert_eq!(seats["count"], 2);
    let r = refused(&mut a, "leave", None, None).await;
    assert!(r["message"].as_str().unwrap().contains("a is none"), "{r}");

    // A request and an invitation expire after the lease.
    ok(&mut b, "request", None, None).await;
    ok(&mut host, "invite", Some("c"), None).await;
    let e = next_of_kind(&mut b, "cohost.rejected").await;
    assert_eq!(e["data"]["reason"], "expired");
    let r = refused(&mut c, "accept_invite", None, None).await;
    assert!(r["message"].as_str().unwrap().contains("c is none"), "{r}");

    // A seat outlives leases while its holder is connected (on another gateway than
    // the host), and is lost a lease after its last connection went.
    ok(&mut host, "invite", Some("a"), Some(0)).await;
    ok(&mut a, "accept_invite", None, None).await;
    ok(&mut host, "invite", Some("c"), Some(1)).await;
    ok(&mut c, "accept_invite", None, None).await;
    seats_until(&mut watcher, |s| {
        seat_of(s, "a").is_some() && seat_of(s, "c").is_some()
    })
    .await;
    drop(c);
    let seats = seats_until(&mut watcher, |s| seat_of(s, "c").is_none()).await;
    assert_eq!(
        seat_of(&seats, "a"),
        Some(0),
        "a is still connected: {seats}"
    );
    // c went a lease ago and a was seated with it: a's seat was renewed meanwhile, by
    // its gateway. A second host on a third gateway seats b.
    let mut host2 = connect(at(2), "host2", true).await;
    ok(&mut host2, "invite", Some("b"), Some(1)).await;
    ok(&mut b, "accept_invite", None, None).await;
    let seats = seats_until(&mut watcher, |s| seat_of(s, "b").is_some()).await;
    assert_eq!(seat_of(&seats, "a"), Some(0), "{seats}");
    drop(a);
    let seats = seats_until(&mut watcher, |s| seat_of(s, "a").is_none()).await;
    assert_eq!(seat_of(&seats, "b"), Some(1), "{seats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seats_on_one_gateway() {
    every_move_of_the_seats(&[Arc::new(Gateway::start(FLAGS))]).await;
}

async fn seats_on_redis(store: Store) {
    every_move_of_the_seats(&store.gateways_with(FLAGS)).await;
}

on_every_store!(seats_on_three_gateways, seats_on_redis);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_seat_calls_are_refused() {
    let gw = Gateway::start(&[]);
    for body in [
        json!({"count": 0}),
        json!({"count": 17}),
        json!({"seats": 2}),
    ] {
        let (status, answer) = gw
            .http("PUT", "/v1/rooms/r/seats", Some(API_KEY), Some(&body))
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    let mut v = Viewer::connect(&gw, "v").await;
    v.join("r").await;
    for (cmd, why) in [
        (
            json!({"type": "cohost", "room": "r"}),
            "missing field `action`",
        ),
        (
            json!({"type": "cohost", "room": "r", "action": "fly"}),
            "`action` must be",
        ),
        (
            json!({"type": "cohost", "room": "r", "action": "kick"}),
            "missing field `user`",
        ),
        (
            json!({"type": "cohost", "room": "r", "action": "request", "seat": -1}),
            "`seat`",
        ),
    ] {
        let id = v.send(cmd.clone()).await;
        let r = v.reply(id).await;
        assert_eq!(r["code"], "bad_request", "{cmd}: {r}");
        assert!(r["message"].as_str().unwrap().contains(why), "{cmd}: {r}");
    }
}
