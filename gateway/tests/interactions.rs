//! Keyword games, quizzes and lotteries over real gateways (one with the memory store,
//! three on every Redis topology): counts and entries exact under concurrency, the
//! quiz's answer absent from everything before its close, lottery draws that the test
//! recomputes itself from the audit record (its own SHA-256, not the gateway's code),
//! `lottery.won` for exactly the winners, and the snapshot of a viewer who joins
//! mid-game.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use danmaku_gateway::auth::Claims;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::store::Store;
use support::{API_KEY, Gateway, Viewer};

/// Taps and comments beyond the default budgets are not what is tested here; merging
/// after 2 copies makes most keyword comments merged copies.
const FLAGS: &[&str] = &[
    "--votes-per-s",
    "100",
    "--votes-burst",
    "100",
    "--comments-per-s",
    "100",
    "--comments-burst",
    "100",
    "--merge-after",
    "2",
];

async fn open(gw: &Gateway, room: &str, what: &str, body: &Value) -> Value {
    let (status, answer) = gw
        .http(
            "POST",
            &format!("/v1/rooms/{room}/{what}"),
            Some(API_KEY),
            Some(body),
        )
        .await;
    assert_eq!(status, 200, "{body}: {answer}");
    answer
}

async fn close(gw: &Gateway, room: &str, what: &str, id: &str) -> (u16, Value) {
    let path = format!("/v1/rooms/{room}/{what}/{id}/close");
    gw.http("POST", &path, Some(API_KEY), None).await
}

async fn record(gw: &Gateway, room: &str, what: &str, id: &str) -> Value {
    let path = format!("/v1/rooms/{room}/{what}/{id}");
    let (status, answer) = gw.http("GET", &path, Some(API_KEY), None).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

async fn command(v: &mut Viewer, cmd: Value) -> Value {
    let id = v.send(cmd).await;
    v.reply(id).await
}

/// The next event of `kind`, skipping the others.
async fn next_of_kind(v: &mut Viewer, kind: &str) -> Value {
    loop {
        let e = v.next_event().await;
        if e["kind"] == kind {
            return e;
        }
    }
}

/// `n` viewers spread over the gateways, joined to `room`, with their user ids.
async fn viewers(
    gws: &[Arc<Gateway>],
    room: &str,
    n: usize,
    prefix: &str,
) -> Vec<(String, Viewer)> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let user = format!("{prefix}{i}");
        let mut v = Viewer::connect(&gws[i % gws.len()], &user).await;
        v.join(room).await;
        out.push((user, v));
    }
    out
}

/// A small deterministic spread of counts: 1..=4.
fn times(i: usize) -> usize {
    (i * 7 + 3) % 4 + 1
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// 1,000 viewers over the gateways send the keyword 1–4 times each (most copies merged,
/// some in longer texts, some comments without it): `comments` and `participants` exact.
async fn a_keyword_flood_is_counted_exactly(gws: &[Arc<Gateway>]) {
    let room = "keyword-flood";
    let mut watcher = Viewer::connect(&gws[0], "watcher").await;
    watcher.join(room).await;
    let opened = open(
        &gws[0],
        room,
        "keywords",
        &json!({"keyword": "买买买", "duration_s": 120, "goal": 2000}),
    )
    .await;
    let id = opened["keyword"].as_str().unwrap().to_owned();
    let e = next_of_kind(&mut watcher, "keyword").await;
    assert_eq!(
        (e["priority"].as_str(), e["data"]["state"].as_str()),
        (Some("high"), Some("open"))
    );
    assert_eq!(e["data"]["comments"], 0);

    // A lottery entered by the same keyword, for the same crowd.
    let lottery = open(
        &gws[0],
        room,
        "lotteries",
        &json!({"prize": "lucky bag", "winners": 10, "duration_s": 120, "entry": {"comment": "买买买"}}),
    )
    .await;
    let lottery = lottery["lottery"].as_str().unwrap().to_owned();

    let crowd = viewers(gws, room, 1_000, "k").await;
    let tasks: Vec<_> = crowd
        .into_iter()
        .enumerate()
        .map(|(i, (user, mut v))| {
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for t in 0..times(i) {
                    // Full-width or mixed copies normalize to the keyword too.
                    let text = match t {
                        0 => "买买买",
                        1 => "我要买买买!",
                        2 => "ＢＵＹ 买买买",
                        _ => "买买买",
                    };
                    ids.push(
                        v.send(json!({"type": "comment", "room": room, "text": text}))
                            .await,
                    );
                }
                if i % 10 == 0 {
                    ids.push(
                        v.send(json!({"type": "comment", "room": room, "text": "买买"}))
                            .await,
                    );
                }
                let mut merged = 0;
                for id in ids {
                    let r = v.reply(id).await;
                    assert_eq!(r["type"], "ack", "{r}");
                    merged += usize::from(r["merged"] == true);
                }
                (merged, (user, v))
            })
        })
        .collect();
    let (mut merged, mut crowd) = (0, Vec::new());
    for t in tasks {
        let (m, v) = t.await.unwrap();
        merged += m;
        crowd.push(v);
    }
    let sent: usize = (0..1_000).map(times).sum();
    assert!(merged > sent / 2, "only {merged} of {sent} copies merged");

    let (status, closed) = close(&gws[1 % gws.len()], room, "keywords", &id).await;
    assert_eq!(status, 200, "{closed}");
    let last = loop {
        let e = next_of_kind(&mut watcher, "keyword").await;
        if e["data"]["state"] == "closed" {
            break e;
        }
        assert_eq!(e["data"]["state"], "open", "{e}");
    };
    assert_eq!(last["seq"], closed["seq"], "{last}");
    assert_eq!(
        last["data"]["comments"].as_u64(),
        Some(sent as u64),
        "{last}"
    );
    assert_eq!(last["data"]["participants"], 1_000, "{last}");
    assert_eq!(last["data"]["reached"], true, "{last}");
    let rec = record(&gws[gws.len() - 1], room, "keywords", &id).await;
    assert_eq!(rec["keyword"]["comments"].as_u64(), Some(sent as u64));

    // Every commenter entered the lottery once; the draw checks out.
    let drawn = draw_and_check(gws, &mut watcher, room, &lottery).await;
    let entrants = drawn["entrants"].as_array().unwrap();
    assert_eq!(entrants.len(), 1_000);
    winners_alone_are_told(gws, &mut crowd, room, &drawn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyword_flood_on_one_gateway_is_exact() {
    a_keyword_flood_is_counted_exactly(&[Arc::new(Gateway::start(FLAGS))]).await;
}

async fn keyword_on_redis(store: Store) {
    a_keyword_flood_is_counted_exactly(&store.gateways_with(FLAGS)).await;
}

on_every_store!(a_keyword_flood_on_three_gateways_is_exact, keyword_on_redis);

/// A quiz on the gateways: the answer is in no event and no snapshot before the close;
/// one answer per user; the counts and the correct list exact; then a lottery among
/// its correct answerers, and a command lottery limited to a tag, both recomputed here.
async fn quizzes_and_lotteries_are_exact_and_verifiable(gws: &[Arc<Gateway>]) {
    let room = "quiz-show";
    let mut watcher = Viewer::connect(&gws[0], "watcher").await;
    watcher.join(room).await;
    let opened = open(
        &gws[0],
        room,
        "quizzes",
        &json!({"question": "Which one ships free?", "options": ["A", "B", "C"], "answer": 2, "duration_s": 120}),
    )
    .await;
    let quiz = opened["quiz"].as_str().unwrap().to_owned();
    let mut seen = Vec::new();
    let e = next_of_kind(&mut watcher, "quiz").await;
    seen.push(e.clone());
    assert_eq!(e["data"]["options"], json!(["A", "B", "C"]));

    // Three answer first, one after another: the correct list keeps answer order.
    let mut first = viewers(gws, room, 3, "first").await;
    for (_, v) in &mut first {
        let r = command(
            v,
            json!({"type": "answer", "room": room, "quiz": quiz, "option": 2}),
        )
        .await;
        assert_eq!(r["type"], "ack", "{r}");
    }
    // One answer per user, whatever the gateway: the same users again, each on the
    // next gateway.
    for i in 0..first.len() {
        let mut again = Viewer::connect(&gws[(i + 1) % gws.len()], &format!("first{i}")).await;
        again.join(room).await;
        let r = command(
            &mut again,
            json!({"type": "answer", "room": room, "quiz": quiz, "option": 0}),
        )
        .await;
        assert_eq!(r["code"], "already_answered", "first{i} again: {r}");
    }
    let crowd = viewers(gws, room, 240, "q").await;
    let tasks: Vec<_> = crowd
        .into_iter()
        .enumerate()
        .map(|(i, (user, mut v))| {
            let quiz = quiz.clone();
            tokio::spawn(async move {
                let answer = json!({"type": "answer", "room": room, "quiz": quiz, "option": i % 3});
                let a = v.send(answer.clone()).await;
                let b = v.send(answer).await;
                (v.reply(a).await, v.reply(b).await, (user, v))
            })
        })
        .collect();
    let mut crowd = Vec::new();
    for t in tasks {
        let (a, b, v) = t.await.unwrap();
        assert_eq!(a["type"], "ack", "{a}");
        assert_eq!(b["code"], "already_answered", "{b}");
        crowd.push(v);
    }
    // A joiner mid-quiz sees it, without the answer.
    let mut mid = Viewer::connect(&gws[gws.len() - 1], "mid").await;
    let joined = mid.join(room).await;
    let in_snapshot = &joined["snapshot"]["quizzes"][0];
    assert_eq!(in_snapshot["id"], quiz.as_str(), "{joined}");
    assert!(in_snapshot.get("answer").is_none(), "{joined}");
    assert!(in_snapshot.get("counts").is_none(), "{joined}");

    let (status, closed) = close(&gws[1 % gws.len()], room, "quizzes", &quiz).await;
    assert_eq!(status, 200, "{closed}");
    let last = loop {
        let e = next_of_kind(&mut watcher, "quiz").await;
        seen.push(e.clone());
        if e["data"]["state"] == "closed" {
            break e;
        }
    };
    for e in &seen[..seen.len() - 1] {
        assert!(e["data"].get("answer").is_none(), "answer leaked: {e}");
        assert!(e["data"].get("counts").is_none(), "counts leaked: {e}");
    }
    assert_eq!(last["data"]["answer"], 2);
    assert_eq!(last["data"]["counts"], json!([80, 80, 83]), "{last}");
    assert_eq!(last["data"]["correct"], 83);
    assert_eq!(last["data"]["answers"], 243);
    let rec = record(&gws[0], room, "quizzes", &quiz).await;
    let correct: Vec<&str> = rec["correct_users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert_eq!(&correct[..3], ["first0", "first1", "first2"]);
    let want: HashSet<String> = (0..240)
        .filter(|i| i % 3 == 2)
        .map(|i| format!("q{i}"))
        .chain((0..3).map(|i| format!("first{i}")))
        .collect();
    assert_eq!(
        correct
            .iter()
            .map(|u| (*u).to_owned())
            .collect::<HashSet<_>>(),
        want
    );
    let r = command(
        &mut mid,
        json!({"type": "answer", "room": room, "quiz": quiz, "option": 2}),
    )
    .await;
    assert_eq!(r["code"], "quiz_closed", "{r}");

    // A lottery among the quiz's correct answerers.
    let lottery = open(
        &gws[0],
        room,
        "lotteries",
        &json!({"prize": "lucky bag", "winners": 5, "duration_s": 120, "entry": {"quiz": quiz}}),
    )
    .await;
    let from_quiz = lottery["lottery"].as_str().unwrap().to_owned();
    let drawn = draw_and_check(gws, &mut watcher, room, &from_quiz).await;
    assert_eq!(drawn["entrants"].as_array().unwrap().len(), 83);
    let mut everyone: Vec<(String, Viewer)> = first.into_iter().chain(crowd).collect();
    everyone.push(("mid".into(), mid));
    winners_alone_are_told(gws, &mut everyone, room, &drawn).await;

    // A command lottery for fans only: entries once each, others not eligible.
    let lottery = open(
        &gws[0],
        room,
        "lotteries",
        &json!({"prize": "a signed poster", "winners": 3, "duration_s": 120, "entry": "command", "tags": ["fan"]}),
    )
    .await;
    let poster = lottery["lottery"].as_str().unwrap().to_owned();
    let mut fans = Vec::new();
    for i in 0..30 {
        let user = format!("fan{i}");
        let mut v = Viewer::connect_tagged(&gws[i % gws.len()], &user, &["fan"]).await;
        v.join(room).await;
        fans.push((user, v));
    }
    let enter = json!({"type": "enter", "room": room, "lottery": poster});
    for (_, v) in &mut fans {
        assert_eq!(command(v, enter.clone()).await["type"], "ack");
        assert_eq!(command(v, enter.clone()).await["code"], "already_entered");
    }
    let r = command(&mut everyone[0].1, enter.clone()).await;
    assert_eq!(r["code"], "not_eligible", "{r}");
    // A viewer joining mid-lottery sees it, with its commitment and no seed.
    let mut late = Viewer::connect(&gws[gws.len() - 1], "late").await;
    let joined = late.join(room).await;
    let shown = &joined["snapshot"]["lotteries"][0];
    assert_eq!(shown["id"], poster.as_str(), "{joined}");
    assert_eq!(shown["commitment"].as_str().map(str::len), Some(64));
    assert!(shown.get("seed").is_none(), "{joined}");
    let drawn = draw_and_check(gws, &mut watcher, room, &poster).await;
    assert_eq!(drawn["entrants"].as_array().unwrap().len(), 30);
    fans.push(("late".into(), late));
    winners_alone_are_told(gws, &mut fans, room, &drawn).await;
    let r = command(&mut fans[0].1, enter).await;
    assert_eq!(r["code"], "lottery_closed", "{r}");
}

/// Closes the lottery and checks its draw against the audit record, recomputed here:
/// the commitment is the seed's hash, the digest the sorted entrants', the winners
/// those with the smallest SHA-256 of `seed:user`. Returns the record.
async fn draw_and_check(gws: &[Arc<Gateway>], watcher: &mut Viewer, room: &str, id: &str) -> Value {
    let before = record(&gws[0], room, "lotteries", id).await;
    assert_eq!(before["lottery"]["state"], "open", "{before}");
    assert!(before["lottery"].get("seed").is_none(), "{before}");
    let commitment = before["lottery"]["commitment"].as_str().unwrap().to_owned();
    let public = format!("/v1/rooms/{room}/lotteries/{id}/draw");
    let (status, open) = gws[1 % gws.len()].http("GET", &public, None, None).await;
    assert_eq!(status, 200, "the draw's record needs no key: {open}");
    assert_eq!(
        open,
        json!({"lottery": before["lottery"]}),
        "no entrants before the draw"
    );
    let (status, closed) = close(&gws[gws.len() - 1], room, "lotteries", id).await;
    assert_eq!(status, 200, "{closed}");
    let drawn = loop {
        let e = next_of_kind(watcher, "lottery").await;
        if e["data"]["id"] == id && e["data"]["state"] == "drawn" {
            break e;
        }
    };
    assert_eq!(drawn["seq"], closed["seq"]);
    let rec = record(&gws[0], room, "lotteries", id).await;
    assert_eq!(
        rec["lottery"], drawn["data"],
        "the record is the drawn state"
    );
    let (status, audit) = gws[1 % gws.len()].http("GET", &public, None, None).await;
    assert_eq!(
        (status, &audit),
        (200, &rec),
        "anyone reads the drawn record"
    );
    let seed_hex = rec["lottery"]["seed"].as_str().unwrap();
    let seed: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&seed_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert_eq!(
        sha256_hex(&seed),
        commitment,
        "the seed is the one committed to"
    );
    let mut entrants: Vec<String> = rec["entrants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_owned())
        .collect();
    entrants.sort();
    assert_eq!(
        rec["lottery"]["entrants"].as_u64(),
        Some(entrants.len() as u64)
    );
    assert_eq!(
        rec["lottery"]["entrants_digest"].as_str().unwrap(),
        sha256_hex(entrants.join("\n").as_bytes())
    );
    let mut ranked: Vec<(String, &String)> = entrants
        .iter()
        .map(|u| (sha256_hex(format!("{seed_hex}:{u}").as_bytes()), u))
        .collect();
    ranked.sort();
    let n = usize::try_from(rec["lottery"]["winners"].as_u64().unwrap()).unwrap();
    let want: Vec<&String> = ranked.iter().take(n).map(|(_, u)| *u).collect();
    let got: Vec<String> = rec["lottery"]["winner_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got.iter().collect::<Vec<_>>(), want);
    verifier_agrees(&gws[0], room, id, &rec);
    rec
}

/// The example verifier anyone can run says the draw holds, and catches a record whose
/// winners were changed.
fn verifier_agrees(gw: &Gateway, room: &str, id: &str, rec: &Value) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/lottery/verify_lottery.py"
    );
    let url = format!("http://{}", gw.addr);
    let out = std::process::Command::new("python3")
        .args([script, "--url", &url, "--room", room, "--lottery", id])
        .args(["--api-key", API_KEY])
        .output()
        .expect("python3 runs the verifier");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.starts_with("verified"),
        "{said}"
    );
    let mut forged = rec.clone();
    let entrants = forged["entrants"].as_array().unwrap().clone();
    let winners = forged["lottery"]["winner_ids"].as_array().unwrap().clone();
    let Some(other) = entrants.iter().find(|u| !winners.contains(u)) else {
        return;
    };
    forged["lottery"]["winner_ids"][0] = other.clone();
    // Scenarios run at once in this process, with the same rooms on other stores.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = std::env::temp_dir().join(format!("forged-{}-{n}.json", std::process::id()));
    std::fs::write(&file, forged.to_string()).unwrap();
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg("--record")
        .arg(&file)
        .output()
        .expect("python3 runs the verifier");
    let _ = std::fs::remove_file(&file);
    assert_eq!(out.status.code(), Some(1), "a forged draw must fail");
    assert!(String::from_utf8_lossy(&out.stdout).contains("the winners should be"));
}

/// Every viewer reads up to a marker published after the draw: the winners got one
/// `lottery.won` each, nobody else any.
async fn winners_alone_are_told(
    gws: &[Arc<Gateway>],
    viewers: &mut [(String, Viewer)],
    room: &str,
    drawn: &Value,
) {
    let winners: HashSet<&str> = drawn["lottery"]["winner_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    let id = drawn["lottery"]["id"].as_str().unwrap();
    let marker = gws[0].publish(room, json!({"text": "marker"})).await;
    let mut told = HashMap::new();
    for (user, v) in viewers.iter_mut() {
        loop {
            let e = v.next_event().await;
            if e["seq"].as_u64() == Some(marker) {
                break;
            }
            if e["kind"] == "lottery.won" && e["data"]["id"] == id {
                assert_eq!(e["data"]["prize"], drawn["lottery"]["prize"]);
                *told.entry(user.as_str()).or_insert(0) += 1;
            }
        }
    }
    assert_eq!(
        told.keys().copied().collect::<HashSet<_>>(),
        winners,
        "{told:?}"
    );
    assert!(told.values().all(|&n| n == 1), "{told:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quizzes_and_lotteries_on_one_gateway_are_exact() {
    quizzes_and_lotteries_are_exact_and_verifiable(&[Arc::new(Gateway::start(FLAGS))]).await;
}

async fn quiz_on_redis(store: Store) {
    quizzes_and_lotteries_are_exact_and_verifiable(&store.gateways_with(FLAGS)).await;
}

on_every_store!(
    quizzes_and_lotteries_on_three_gateways_are_exact,
    quiz_on_redis
);

/// A keyword game, a quiz and a lottery close by themselves at `ends_at` — each
/// announced once, whichever gateway's tick comes first — and the lottery is drawn.
async fn they_close_at_their_end_once(gws: &[Arc<Gateway>]) {
    let room = "timed-games";
    let mut watcher = Viewer::connect(&gws[0], "watcher").await;
    watcher.join(room).await;
    let mut v = Viewer::connect(&gws[gws.len() - 1], "v").await;
    v.join(room).await;
    let k = open(
        &gws[0],
        room,
        "keywords",
        &json!({"keyword": "go", "duration_s": 1}),
    )
    .await;
    let q = open(
        &gws[1 % gws.len()],
        room,
        "quizzes",
        &json!({"question": "?", "options": ["a", "b"], "answer": 0, "duration_s": 1}),
    )
    .await;
    let l = open(
        &gws[0],
        room,
        "lotteries",
        &json!({"prize": "p", "winners": 1, "duration_s": 1, "entry": "command"}),
    )
    .await;
    let (k, q, l) = (
        k["keyword"].as_str().unwrap().to_owned(),
        q["quiz"].as_str().unwrap().to_owned(),
        l["lottery"].as_str().unwrap().to_owned(),
    );
    let r = command(
        &mut v,
        json!({"type": "comment", "room": room, "text": "go go"}),
    )
    .await;
    assert_eq!(r["type"], "ack", "{r}");
    let r = command(
        &mut v,
        json!({"type": "answer", "room": room, "quiz": q, "option": 0}),
    )
    .await;
    assert_eq!(r["type"], "ack", "{r}");
    let r = command(&mut v, json!({"type": "enter", "room": room, "lottery": l})).await;
    assert_eq!(r["type"], "ack", "{r}");
    let mut ended = HashMap::new();
    while ended.len() < 3 {
        let e = v.next_event().await;
        let state = e["data"]["state"].as_str().unwrap_or_default();
        if state == "closed" || state == "drawn" {
            ended.insert(e["data"]["id"].as_str().unwrap().to_owned(), e);
        }
    }
    assert_eq!(ended[&k]["data"]["comments"], 1);
    assert_eq!(ended[&q]["data"]["correct"], 1);
    assert_eq!(ended[&l]["data"]["winner_ids"], json!(["v"]));
    // Nothing more about them up to a marker published after: each end told once (the
    // winner's own `lottery.won` aside).
    let marker = gws[0].publish(room, json!({"text": "marker"})).await;
    let mut after = Vec::new();
    loop {
        let e = watcher.next_event().await;
        if e["seq"].as_u64() == Some(marker) {
            break;
        }
        let state = e["data"]["state"].as_str().unwrap_or_default();
        if state == "closed" || state == "drawn" {
            after.push(e["data"]["id"].as_str().unwrap().to_owned());
        }
    }
    after.sort();
    let mut want = vec![k, q, l];
    want.sort();
    assert_eq!(after, want, "each end once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn games_on_one_gateway_close_at_their_end() {
    they_close_at_their_end_once(&[Arc::new(Gateway::start(FLAGS))]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn games_on_three_gateways_close_at_their_end_once() {
    they_close_at_their_end_once(&Store::single().gateways_with(FLAGS)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_games_and_moves_are_refused_with_the_reason() {
    let gw = Gateway::start(&[]);
    let post = |what: &'static str, body: Value| {
        let gw = &gw;
        async move {
            gw.http(
                "POST",
                &format!("/v1/rooms/r/{what}"),
                Some(API_KEY),
                Some(&body),
            )
            .await
        }
    };
    for (what, body, why) in [
        (
            "keywords",
            json!({"keyword": "", "duration_s": 9}),
            "`keyword`",
        ),
        (
            "keywords",
            json!({"keyword": "x".repeat(33), "duration_s": 9}),
            "`keyword`",
        ),
        (
            "keywords",
            json!({"keyword": "go", "duration_s": 0}),
            "`duration_s`",
        ),
        (
            "keywords",
            json!({"keyword": "go", "duration_s": 9, "goal": 0}),
            "`goal`",
        ),
        (
            "keywords",
            json!({"keyword": "go", "duration_s": 9, "extra": 1}),
            "unknown field",
        ),
        (
            "quizzes",
            json!({"question": "?", "options": ["a"], "answer": 0, "duration_s": 9}),
            "`options`",
        ),
        (
            "quizzes",
            json!({"question": "?", "options": ["a", "b"], "answer": 2, "duration_s": 9}),
            "`answer`",
        ),
        (
            "quizzes",
            json!({"question": "", "options": ["a", "b"], "answer": 0, "duration_s": 9}),
            "`question`",
        ),
        (
            "lotteries",
            json!({"prize": "p", "winners": 0, "duration_s": 9, "entry": "command"}),
            "`winners`",
        ),
        (
            "lotteries",
            json!({"prize": "p", "winners": 101, "duration_s": 9, "entry": "command"}),
            "`winners`",
        ),
        (
            "lotteries",
            json!({"prize": "p", "winners": 1, "duration_s": 9, "entry": "shout"}),
            "`entry`",
        ),
        (
            "lotteries",
            json!({"prize": "p", "winners": 1, "duration_s": 9, "entry": {"quiz": "c-1"}}),
            "not a quiz id",
        ),
        (
            "lotteries",
            json!({"prize": "p", "winners": 1, "duration_s": 9, "entry": "command", "tags": ["Bad Tag"]}),
            "`tags`",
        ),
    ] {
        let (status, answer) = post(what, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(why),
            "{body}: {answer}"
        );
    }
    // A quiz lottery needs a quiz of this room.
    let (status, answer) = post(
        "lotteries",
        json!({"prize": "p", "winners": 1, "duration_s": 9, "entry": {"quiz": "q-7"}}),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("unknown_quiz"))
    );
    // The bound of open games per room.
    for _ in 0..danmaku_fanout::interaction::MAX_OPEN_INTERACTIONS {
        let (status, _) = post("keywords", json!({"keyword": "go", "duration_s": 60})).await;
        assert_eq!(status, 200);
    }
    let (status, answer) = post("keywords", json!({"keyword": "go", "duration_s": 60})).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 16")
    );

    for (path, code) in [
        ("/v1/rooms/r/quizzes/q-9", "unknown_quiz"),
        ("/v1/rooms/r/lotteries/l-9", "unknown_lottery"),
        ("/v1/rooms/r/keywords/k-99", "unknown_interaction"),
        ("/v1/rooms/r/keywords/q-1", "unknown_interaction"),
    ] {
        let (status, answer) = gw.http("GET", path, Some(API_KEY), None).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (404, Some(code)),
            "{path}"
        );
    }
    let (status, _) = gw
        .http(
            "POST",
            "/v1/rooms/r/keywords/k-1/close",
            Some(API_KEY),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, answer) = gw
        .http(
            "POST",
            "/v1/rooms/r/keywords/k-1/close",
            Some(API_KEY),
            None,
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("interaction_closed"))
    );
    let (status, _) = gw.http("GET", "/v1/rooms/r/keywords/k-1", None, None).await;
    assert_eq!(status, 401, "the API key is needed");

    let mut v = Viewer::connect(&gw, "v").await;
    let answer = json!({"type": "answer", "room": "r2", "quiz": "q-1", "option": 0});
    assert_eq!(command(&mut v, answer.clone()).await["code"], "not_joined");
    v.join("r2").await;
    assert_eq!(command(&mut v, answer).await["code"], "unknown_quiz");
    let enter = json!({"type": "enter", "room": "r2", "lottery": "l-1"});
    assert_eq!(command(&mut v, enter).await["code"], "unknown_lottery");
    let r = command(
        &mut v,
        json!({"type": "answer", "room": "r2", "quiz": "q-1"}),
    )
    .await;
    assert_eq!(r["code"], "bad_request", "{r}");
    let r = command(&mut v, json!({"type": "enter", "room": "r2"})).await;
    assert_eq!(r["code"], "bad_request", "{r}");
    // Opened in r2: a comment lottery takes no `enter`, a quiz no out-of-range option.
    let (status, _) = gw
        .http(
            "POST",
            "/v1/rooms/r2/lotteries",
            Some(API_KEY),
            Some(
                &json!({"prize": "p", "winners": 1, "duration_s": 60, "entry": {"comment": "hi"}}),
            ),
        )
        .await;
    assert_eq!(status, 200);
    let enter = json!({"type": "enter", "room": "r2", "lottery": "l-1"});
    let r = command(&mut v, enter).await;
    assert_eq!(r["code"], "not_eligible", "{r}");
    let (status, _) = gw
        .http(
            "POST",
            "/v1/rooms/r2/quizzes",
            Some(API_KEY),
            Some(&json!({"question": "?", "options": ["a", "b"], "answer": 0, "duration_s": 60})),
        )
        .await;
    assert_eq!(status, 200);
    let r = command(
        &mut v,
        json!({"type": "answer", "room": "r2", "quiz": "q-1", "option": 5}),
    )
    .await;
    assert_eq!(r["code"], "bad_request", "{r}");
    // A backend cannot forge the games' own kinds.
    for kind in [
        "keyword",
        "quiz",
        "lottery",
        "lottery.won",
        "seats",
        "cohost.invite",
    ] {
        let (status, answer) = gw
            .http(
                "POST",
                "/v1/rooms/r2/events",
                Some(API_KEY),
                Some(&json!({"kind": kind, "data": {}})),
            )
            .await;
        assert_eq!(status, 400, "{kind}: {answer}");
    }
}

/// The gateway that opened a keyword game, a quiz, a lottery and a coupon is killed
/// before their end: another gateway with viewers in the room closes every one (its
/// periodic sweep, within ~10 s), each once, the quiz with its answer counted and the
/// lottery drawn among the entrants.
async fn timers_survive_the_gateway_that_opened_them(store: Store) {
    let gws = store.gateways_with(FLAGS);
    let room = "orphaned-games";
    let mut v = Viewer::connect(&gws[1], "v").await;
    v.join(room).await;
    let id = |r: Value, what: &str| r[what].as_str().unwrap().to_owned();
    // Long enough for the moves below before the kill, whatever the machine's load;
    // the kill comes before the end, so another gateway's sweep is what closes them.
    let opened = std::time::Instant::now();
    let k = open(
        &gws[0],
        room,
        "keywords",
        &json!({"keyword": "666", "duration_s": 3}),
    )
    .await;
    let k = id(k, "keyword");
    let body = json!({"question": "?", "options": ["a", "b"], "answer": 1, "duration_s": 3});
    let q = id(open(&gws[0], room, "quizzes", &body).await, "quiz");
    let body = json!({"prize": "p", "winners": 1, "duration_s": 3, "entry": "command"});
    let l = id(open(&gws[0], room, "lotteries", &body).await, "lottery");
    let body = json!({"title": "t", "stock": 3, "duration_s": 3});
    let c = id(open(&gws[0], room, "coupons", &body).await, "coupon");
    let r = command(&mut v, json!({"type": "enter", "room": room, "lottery": l})).await;
    assert_eq!(r["type"], "ack", "{r}");
    let r = command(
        &mut v,
        json!({"type": "answer", "room": room, "quiz": q, "option": 1}),
    )
    .await;
    assert_eq!(r["type"], "ack", "{r}");
    assert!(
        opened.elapsed() < std::time::Duration::from_millis(2_500),
        "the moves took {:?}: too slow to kill the gateway before the end",
        opened.elapsed()
    );
    gws[0].sigkill();
    let mut ended: HashMap<String, Value> = HashMap::new();
    while ended.len() < 4 {
        let e = v.next_event().await;
        let data = &e["data"];
        let ends = matches!(data["state"].as_str(), Some("closed" | "drawn"));
        let id = data["id"]
            .as_str()
            .or(data["coupon"].as_str())
            .unwrap_or_default();
        if ends && ended.insert(id.to_owned(), data.clone()).is_some() {
            panic!("{id} ended twice: {e}");
        }
    }
    assert_eq!(ended[&k]["comments"], 0, "{}", ended[&k]);
    assert_eq!(
        (&ended[&q]["counts"], &ended[&q]["correct"]),
        (&json!([0, 1]), &json!(1)),
        "{}",
        ended[&q]
    );
    assert_eq!(ended[&l]["winner_ids"], json!(["v"]), "{}", ended[&l]);
    assert_eq!(ended[&c]["state"], "closed", "{}", ended[&c]);
    // Once each: a marker published after follows with nothing more about them.
    let marker = gws[2].publish(room, json!({"text": "marker"})).await;
    loop {
        let e = v.next_event().await;
        if e["seq"].as_u64() == Some(marker) {
            break;
        }
        let state = e["data"]["state"].as_str().unwrap_or_default();
        assert!(state != "drawn" && state != "closed", "told twice: {e}");
    }
}

on_every_store!(
    timers_on_redis_survive_the_gateway_that_opened_them,
    timers_survive_the_gateway_that_opened_them
);

/// A host opens each kind of game and a coupon over its own connection, with the API's
/// bodies: every viewer on every gateway gets the game's event at the ack's seq, the
/// games take moves, and the API reads them back; viewers and moderators are
/// `forbidden`, bad bodies `bad_request` with the field named.
async fn a_host_opens_games_over_its_connection(gws: &[Arc<Gateway>]) {
    let room = "host-opens";
    let last = &gws[gws.len() - 1];
    let as_role = |role: &str| Claims {
        role: Some(role.into()),
        ..Claims::default()
    };
    let mut host = Viewer::connect_claims(&gws[0], "host-1", as_role("host")).await;
    host.join(room).await;
    let mut vip = Viewer::connect_tagged(&gws[0], "vip-1", &["vip"]).await;
    vip.join(room).await;
    let mut v = Viewer::connect(last, "v-1").await;
    v.join(room).await;

    let open = |what: &str, body: Value| {
        let mut cmd = body;
        cmd["type"] = json!("open");
        cmd["room"] = json!(room);
        cmd["what"] = json!(what);
        cmd
    };
    let quiz =
        json!({"question": "几号链接?", "options": ["1", "2", "3"], "answer": 2, "duration_s": 60});
    let r = command(&mut host, open("quiz", quiz)).await;
    assert_eq!(
        (r["type"].as_str(), r["opened"]["what"].as_str()),
        (Some("ack"), Some("quiz")),
        "{r}"
    );
    let q = r["opened"]["id"].as_str().unwrap().to_owned();
    assert!(q.starts_with("q-"), "{r}");
    let e = next_of_kind(&mut v, "quiz").await;
    assert_eq!(
        (e["seq"].clone(), e["data"]["id"].as_str()),
        (r["seq"].clone(), Some(q.as_str())),
        "{e}"
    );
    assert_eq!(
        (e["priority"].as_str(), e["data"]["state"].as_str()),
        (Some("high"), Some("open")),
        "{e}"
    );
    assert!(
        e["data"].get("answer").is_none(),
        "the answer before the close: {e}"
    );
    let a = command(
        &mut v,
        json!({"type": "answer", "room": room, "quiz": q, "option": 2}),
    )
    .await;
    assert_eq!(a["type"], "ack", "{a}");
    let (status, _) = close(&gws[1 % gws.len()], room, "quizzes", &q).await;
    assert_eq!(status, 200);
    assert_eq!(
        record(&gws[0], room, "quizzes", &q).await["correct_users"],
        json!(["v-1"])
    );

    let r = command(
        &mut host,
        open(
            "keyword",
            json!({"keyword": "买买买", "duration_s": 60, "goal": 5}),
        ),
    )
    .await;
    assert_eq!(r["opened"]["what"], "keyword", "{r}");
    let k = r["opened"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        next_of_kind(&mut v, "keyword").await["data"]["id"],
        k.as_str()
    );
    let r = command(
        &mut host,
        open(
            "lottery",
            json!({"prize": "口红", "winners": 1, "duration_s": 60, "entry": "command"}),
        ),
    )
    .await;
    assert_eq!(r["opened"]["what"], "lottery", "{r}");
    let l = r["opened"]["id"].as_str().unwrap().to_owned();
    let e = next_of_kind(&mut v, "lottery").await;
    assert_eq!(
        (e["seq"].clone(), e["data"]["id"].as_str()),
        (r["seq"].clone(), Some(l.as_str())),
        "{e}"
    );
    let a = command(&mut v, json!({"type": "enter", "room": room, "lottery": l})).await;
    assert_eq!(a["type"], "ack", "{a}");
    assert_eq!(
        record(last, room, "lotteries", &l).await["entrants"],
        json!(["v-1"])
    );

    // A coupon for the VIPs: the ack counts the one on the host's gateway; the VIP
    // claims it, the plain viewer may not.
    let r = command(&mut host, open("coupon", json!({"title": "VIP 9折", "stock": 5, "duration_s": 60, "audience": {"tags": ["vip"]}}))).await;
    assert_eq!(
        (
            r["opened"]["what"].as_str(),
            r["opened"]["audience_online"].as_u64()
        ),
        (Some("coupon"), Some(1)),
        "{r}"
    );
    let c = r["opened"]["id"].as_str().unwrap().to_owned();
    let e = next_of_kind(&mut vip, "coupon").await;
    assert_eq!(
        (e["seq"].clone(), e["data"]["coupon"].as_str()),
        (r["seq"].clone(), Some(c.as_str())),
        "{e}"
    );
    let a = command(
        &mut vip,
        json!({"type": "claim", "room": room, "coupon": c}),
    )
    .await;
    assert_eq!(a["claim"]["coupon"], c.as_str(), "{a}");
    let a = command(&mut v, json!({"type": "claim", "room": room, "coupon": c})).await;
    assert_eq!(a["code"], "not_eligible", "{a}");

    // Who may open, and what.
    let mut moderator = Viewer::connect_claims(last, "mod-1", as_role("moderator")).await;
    moderator.join(room).await;
    let body = json!({"keyword": "666", "duration_s": 9});
    for who in [&mut v, &mut moderator] {
        let r = command(who, open("keyword", body.clone())).await;
        assert_eq!(r["code"], "forbidden", "{r}");
    }
    let mut elsewhere = Viewer::connect_claims(last, "host-2", as_role("host")).await;
    let r = command(&mut elsewhere, open("keyword", body.clone())).await;
    assert_eq!(r["code"], "not_joined", "{r}");
    for (cmd, why) in [
        (open("keyword", json!({"keyword": "666"})), "duration_s"),
        (
            open(
                "keyword",
                json!({"keyword": "666", "duration_s": 9, "colour": "red"}),
            ),
            "colour",
        ),
        (
            open(
                "quiz",
                json!({"question": "?", "options": ["a"], "answer": 0, "duration_s": 9}),
            ),
            "`options`",
        ),
        (
            open(
                "lottery",
                json!({"prize": "p", "winners": 1, "duration_s": 9, "entry": "dance"}),
            ),
            "`entry`",
        ),
        (
            open("coupon", json!({"title": "t", "stock": 0, "duration_s": 9})),
            "`stock`",
        ),
        (open("poll", json!({})), "`what`"),
    ] {
        let r = command(&mut host, cmd.clone()).await;
        assert_eq!(r["code"], "bad_request", "{cmd}: {r}");
        assert!(r["message"].as_str().unwrap().contains(why), "{cmd}: {r}");
    }
    let r = command(
        &mut host,
        open(
            "lottery",
            json!({"prize": "p", "winners": 1, "duration_s": 9, "entry": {"quiz": "q-404"}}),
        ),
    )
    .await;
    assert_eq!(r["code"], "unknown_quiz", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_opens_games_on_one_gateway() {
    a_host_opens_games_over_its_connection(&[Arc::new(Gateway::start(FLAGS))]).await;
}

async fn host_opens_on_redis(store: Store) {
    a_host_opens_games_over_its_connection(&store.gateways_with(FLAGS)).await;
}

on_every_store!(a_host_opens_games_on_three_gateways, host_opens_on_redis);
