//! Gateways failing under their viewers, over real processes and real Redis: viewers
//! joining and resuming across three gateways while a publisher goes at full rate (on
//! every Redis topology), a gateway SIGKILLed mid-stream, a drain (SIGTERM) of
//! thousands of viewers, and thousands reconnecting at once after a SIGKILL.
//!
//! Every viewer keeps what it is sent by the client rule of the protocol (per room
//! `(epoch, last_seq)`; an event with seq ≤ last_seq is dropped; `joined` and `reset`
//! set both) and the test fails at the first gap, reorder, epoch change without a
//! `reset`, or second event under one (epoch, seq). At the end, every event a viewer
//! kept is compared with what the publisher was answered for that (epoch, seq): from
//! its join, each viewer has had every seq exactly once, in order, with the right data,
//! or an explicit `reset` / `recovered:false` — never a silent gap.
//!
//! The tests load both cores and measure time, so they run one at a time.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use support::store::Store;
use support::{API_KEY, End, Gateway, Viewer};
use tokio::sync::watch;

/// One test at a time (see the module's documentation).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The gateway's default `--history-len`: a resume from further back than this is
/// answered `recovered:false`, by design.
const HISTORY_LEN: u64 = 1_000;

/// What the publisher was answered: (room, epoch, seq) → the key in the event's data.
#[derive(Default)]
struct Published {
    at: HashMap<(String, String, u64), String>,
    /// Publishes answered 503 or 504 and sent again.
    retried: u64,
}

impl Published {
    /// Publishes `data` (which holds `key`) with `key` as its idempotency key, as a
    /// backend does: a 503 (not sequenced) or 504 `outcome_unknown` (perhaps sequenced)
    /// is sent again with the same key, at most 20 times, 100 ms apart; the key then
    /// makes it one event.
    async fn publish(&mut self, gw: &Gateway, room: &str, key: String, data: Value) {
        let body = json!({"kind": "comment", "data": data, "idempotency_key": key});
        let path = format!("/v1/rooms/{room}/events");
        for _ in 0..=20 {
            let (status, answer) = gw.http("POST", &path, Some(API_KEY), Some(&body)).await;
            match status {
                200 => {
                    let epoch = answer["epoch"].as_str().unwrap().to_owned();
                    let seq = answer["seq"].as_u64().unwrap();
                    let had = self.at.insert((room.to_owned(), epoch, seq), key);
                    assert!(
                        had.is_none(),
                        "{room}: the API gave one (epoch, seq {seq}) twice"
                    );
                    return;
                }
                503 | 504 => self.retried += 1,
                _ => panic!("publish: {status} {answer}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{room}: {key} still not sequenced after 20 retries");
    }

    /// Every event `seen` kept is the one published under its (epoch, seq).
    fn check(&self, seen: &Seen) {
        for (epoch, seq, key) in &seen.kept {
            let published = self.at.get(&(seen.room.clone(), epoch.clone(), *seq));
            assert_eq!(
                published,
                Some(key),
                "{}: the event it got under ({epoch}, {seq})",
                seen.name
            );
        }
    }
}

/// What the viewers of a test saw, summed, each checked against what was published.
#[derive(Default)]
struct Totals {
    dropped: u64,
    restarts: u64,
    missed: u64,
    retried: u64,
}

impl Totals {
    fn check(&mut self, published: &Published, seen: &Seen) {
        published.check(seen);
        self.dropped += seen.dropped;
        self.restarts += seen.restarts;
        self.missed += seen.missed;
        self.retried += seen.retried;
    }
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} events missed and sent on resume, {} dropped by the client rule, {} \
             restarts (reset, recovered:false), {} joins retried after `unavailable`",
            self.missed, self.dropped, self.restarts, self.retried
        )
    }
}

/// One viewer's view of a room, across reconnections, kept by the client rule.
struct Seen {
    name: String,
    room: String,
    epoch: String,
    last: u64,
    /// Every event kept, in order: (epoch, seq, key).
    kept: Vec<(String, u64, String)>,
    /// The key of every event kept, by (epoch, seq).
    at: HashMap<(String, u64), String>,
    /// Events dropped by the client rule (seq ≤ last_seq): delivered again, or from
    /// before the join point.
    dropped: u64,
    /// Explicit restarts of continuity: `reset`, `recovered:false`.
    restarts: u64,
    /// Events it had missed when it resumed (`recovered:true`), sent after `joined`.
    missed: u64,
    /// Joins answered `unavailable` and sent again.
    retried: u64,
}

impl Seen {
    /// From the `joined` reply to a fresh join.
    fn joined(name: &str, reply: &Value) -> Self {
        assert_eq!(reply["type"], "joined", "{name}: {reply}");
        Self {
            name: name.to_owned(),
            room: reply["room"].as_str().unwrap().to_owned(),
            epoch: reply["epoch"].as_str().unwrap().to_owned(),
            last: reply["seq"].as_u64().unwrap(),
            kept: Vec::new(),
            at: HashMap::new(),
            dropped: 0,
            restarts: 0,
            missed: 0,
            retried: 0,
        }
    }

    /// Takes one message; true when it was an event kept (the next seq).
    fn take(&mut self, m: &Value) -> bool {
        match m["type"].as_str() {
            Some("event") => {}
            Some("reset") => {
                self.restart(m);
                return false;
            }
            Some("reconnect") => panic!("{}: told to reconnect: {m}", self.name),
            _ => return false,
        }
        assert_eq!(m["room"].as_str(), Some(self.room.as_str()), "{m}");
        let epoch = m["epoch"].as_str().unwrap().to_owned();
        let seq = m["seq"].as_u64().unwrap();
        let key = m["data"]["key"].as_str().unwrap().to_owned();
        if let Some(had) = self.at.get(&(epoch.clone(), seq)) {
            assert_eq!(
                had, &key,
                "{}: two events under ({epoch}, {seq})",
                self.name
            );
            self.dropped += 1;
            return false;
        }
        assert_eq!(
            epoch, self.epoch,
            "{}: an event of another epoch without a reset: {m}",
            self.name
        );
        if seq <= self.last {
            self.dropped += 1;
            return false;
        }
        assert_eq!(
            seq,
            self.last + 1,
            "{}: a gap after {}: {m}",
            self.name,
            self.last
        );
        self.last = seq;
        self.at.insert((epoch.clone(), seq), key.clone());
        self.kept.push((epoch, seq, key));
        true
    }

    /// From the `joined` reply to a resume (a join with `since` = (epoch, last)).
    fn resumed(&mut self, reply: &Value) {
        assert_eq!(reply["type"], "joined", "{}: {reply}", self.name);
        if reply["recovered"] == true {
            assert_eq!(
                reply["epoch"].as_str(),
                Some(self.epoch.as_str()),
                "{reply}"
            );
            let head = reply["seq"].as_u64().unwrap();
            assert!(head >= self.last, "{reply}");
            self.missed += head - self.last;
        } else {
            self.restart(reply);
        }
    }

    /// Continuity restarts where `m` (a `reset` or a `joined`) says.
    fn restart(&mut self, m: &Value) {
        self.epoch = m["epoch"].as_str().unwrap().to_owned();
        self.last = m["seq"].as_u64().unwrap();
        self.restarts += 1;
    }
}

/// A small deterministic source of choices (xorshift).
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Joins `room` on `v` (resuming after `since` when given) as a client does: an
/// `unavailable` answer (nothing was done; the protocol says a retry is safe) is sent
/// again, at most 20 times, 100 ms apart. Returns the `joined` reply and the retries.
async fn join(v: &mut Viewer, room: &str, since: Option<(&str, u64)>) -> (Value, u64) {
    for retries in 0..=20 {
        let reply = v.join_reply(room, since).await;
        if reply["type"] == "joined" {
            return (reply, retries);
        }
        assert_eq!(reply["code"], "unavailable", "{reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{room}: still unavailable after 20 retries");
}

/// A fresh viewer of `room` on `gw`, joined.
async fn fresh(gw: &Gateway, name: &str, room: &str) -> (Viewer, Seen) {
    let mut v = Viewer::connect(gw, name).await;
    let (joined, retried) = join(&mut v, room, None).await;
    let mut seen = Seen::joined(name, &joined);
    seen.retried = retried;
    (v, seen)
}

/// `seen`'s viewer again, on `gw`, resumed after the last seq it had; returns the new
/// connection and the `joined` reply (already taken by `seen`).
async fn resume(gw: &Gateway, seen: &mut Seen) -> (Viewer, Value) {
    let mut v = Viewer::connect(gw, &seen.name).await;
    let (room, epoch) = (seen.room.clone(), seen.epoch.clone());
    let (joined, retried) = join(&mut v, &room, Some((&epoch, seen.last))).await;
    seen.retried += retried;
    seen.resumed(&joined);
    (v, joined)
}

on_every_store!(join_and_resume_race_a_publisher_at_full_rate, race);

/// Events of the race, published back to back.
const RACE_EVENTS: u64 = 1_500;
/// Viewers joining and resuming during the race, each one after the other.
const RACERS: usize = 6;

/// Failure: viewers come and go while a publisher publishes back to back, through
/// three gateways: fresh joins race the publisher's writes (a join reads the head
/// while events are sequenced), and resumes (drop the connection, reconnect to another
/// gateway, join with `since` = the last seq seen) race them too.
/// Expected: a fresh join sees every event after its `joined.seq`; a resume gets
/// `recovered:true` and every event after its `since`, then live events; each once, in
/// order, with the data published under its seq (`recovered:false` only for a resume
/// from further back than the history holds).
async fn race(store: Store) {
    let _one = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let gws = store.gateways();
    let (done, finished) = watch::channel(None::<u64>);
    let publisher = {
        let gws = gws.clone();
        tokio::spawn(async move {
            let mut published = Published::default();
            for i in 0..RACE_EVENTS {
                let key = format!("k-{i}");
                let gw = &gws[usize::try_from(i).unwrap() % gws.len()];
                published
                    .publish(gw, "race", key.clone(), json!({"key": key}))
                    .await;
            }
            assert_eq!(published.at.len(), usize::try_from(RACE_EVENTS).unwrap());
            // One publisher in a new room: its events are seq 1..=RACE_EVENTS.
            done.send_replace(Some(RACE_EVENTS));
            published
        })
    };
    let racers: Vec<_> = (0..RACERS)
        .map(|r| tokio::spawn(racer(gws.clone(), r, finished.clone())))
        .collect();
    let published = publisher.await.unwrap();
    let publishing = started.elapsed();
    let (mut fresh, mut resumes, mut totals) = (0, 0, Totals::default());
    for racer in racers {
        let (chains, mid_stream) = racer.await.unwrap();
        for seen in &chains {
            totals.check(&published, seen);
        }
        fresh += mid_stream.0;
        resumes += mid_stream.1;
    }
    eprintln!(
        "race on {}: {RACE_EVENTS} events published in {publishing:?}; {fresh} fresh joins and \
         {resumes} resumes while publishing; {totals}; {} publishes retried after 503/504; \
         {:?} in all",
        store.name(),
        published.retried,
        started.elapsed()
    );
    assert!(
        fresh >= 10 && resumes >= 30 && totals.missed > 0,
        "joins ({fresh}) and resumes ({resumes}; {totals}) raced the publisher"
    );
}

/// One racer: joins fresh, reads a few events, moves to another gateway and resumes,
/// again and again, sometimes starting over as a new viewer, until it has the last
/// event. Returns what each of its viewers saw, and how many fresh joins and resumes
/// it made while the publisher was still publishing.
async fn racer(
    gws: Vec<Arc<Gateway>>,
    r: usize,
    mut done: watch::Receiver<Option<u64>>,
) -> (Vec<Seen>, (u64, u64)) {
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15 ^ (r as u64 + 1));
    let mut g = r % gws.len();
    let mut chains = Vec::new();
    let mut mid_stream = (0, 0);
    loop {
        let name = format!("racer{r}-{}", chains.len());
        let (mut v, mut seen) = fresh(&gws[g], &name, "race").await;
        if seen.last < RACE_EVENTS {
            mid_stream.0 += 1;
        }
        loop {
            let quota = 1 + dice.below(40);
            if read_some(&mut v, &mut seen, quota, &mut done).await {
                chains.push(seen);
                return (chains, mid_stream);
            }
            drop(v);
            g = (g + 1 + usize::try_from(dice.below(2)).unwrap()) % gws.len();
            if dice.below(4) == 0 {
                break; // this viewer is gone; a new one joins
            }
            let since = seen.last;
            let joined;
            (v, joined) = resume(&gws[g], &mut seen).await;
            if joined["recovered"] != true {
                assert!(
                    joined["seq"].as_u64().unwrap() - since >= HISTORY_LEN,
                    "{name}: not recovered from {since}, within the history: {joined}"
                );
            } else if joined["seq"].as_u64().unwrap() < RACE_EVENTS {
                mid_stream.1 += 1;
            }
        }
        chains.push(seen);
    }
}

/// Reads `v` until it has kept `quota` more events (false) or the last event of the
/// race (true).
async fn read_some(
    v: &mut Viewer,
    seen: &mut Seen,
    quota: u64,
    done: &mut watch::Receiver<Option<u64>>,
) -> bool {
    let mut got = 0;
    loop {
        let last = *done.borrow();
        if last.is_some_and(|last| seen.last >= last) {
            return true;
        }
        if got == quota {
            return false;
        }
        tokio::select! {
            m = v.next() => got += u64::from(seen.take(&m)),
            _ = done.changed(), if last.is_none() => {}
        }
    }
}

/// How the gateway holding the viewers goes away.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Failure {
    /// SIGTERM: it drains (`reconnect`, then 1012 after `--drain-ms`) and exits.
    Drain,
    /// SIGKILL: its sockets are closed by the kernel, nothing said.
    Kill,
}

/// Viewers of one gateway moving to the others when it fails.
struct Move {
    viewers: usize,
    rooms: usize,
    /// Gateways that stay (the viewers move to them round-robin).
    others: usize,
    failure: Failure,
}

/// What a move measured, from the signal.
struct Moved {
    /// Until the process had exited (a drain only; a killed process is gone at once).
    exited: Option<Duration>,
    /// Until the first and the last viewer had its `joined` on another gateway.
    first_resumed: Duration,
    all_resumed: Duration,
}

/// Viewers opened at a time on the gateway that will fail.
const OPEN_AT_ONCE: usize = 200;
/// One publish every PACE, rooms in turn, through the gateways that stay.
const PACE: Duration = Duration::from_millis(10);
/// Publishes before the failure: every room has had events.
const BEFORE_FAILURE: u64 = 100;

/// `m.viewers` viewers on one gateway, over `m.rooms` rooms (all on one Redis), while a
/// publisher publishes through the gateways that stay; the gateway fails; every viewer
/// notices (the drain's `reconnect` and 1012, or its connection ends), resumes on
/// another with `since` = the last seq it got, must get `recovered:true`, then reads
/// until the room's last event, published after every viewer had resumed.
async fn viewers_move(m: Move) -> Moved {
    let store = Store::single();
    let mut gws = store.gateways_n(1 + m.others, &[]);
    let others: Vec<Arc<Gateway>> = gws.split_off(1);
    let failing = Arc::try_unwrap(gws.pop().unwrap()).ok().unwrap();
    let room = |i: usize| format!("room-{}", i % m.rooms);
    let opened = Instant::now();
    let viewers: Vec<(Viewer, Seen)> = futures_util::stream::iter(0..m.viewers)
        .map(|i| {
            let (failing, room) = (&failing, room(i));
            async move { fresh(failing, &format!("v{i}"), &room).await }
        })
        .buffer_unordered(OPEN_AT_ONCE)
        .collect()
        .await;
    eprintln!(
        "{} viewers opened on one gateway in {:?}",
        m.viewers,
        opened.elapsed()
    );

    let (everyone_resumed, all_resumed) = watch::channel(false);
    let (count, counted) = watch::channel(0u64);
    let publisher = {
        let (others, rooms) = (others.clone(), m.rooms);
        tokio::spawn(async move {
            let mut published = Published::default();
            let mut i = 0;
            while !*all_resumed.borrow() {
                let (room, key) = (format!("room-{}", i % rooms), format!("k-{i}"));
                let gw = &others[i % others.len()];
                published
                    .publish(gw, &room, key.clone(), json!({"key": key}))
                    .await;
                i += 1;
                count.send_replace(i as u64);
                tokio::time::sleep(PACE).await;
            }
            // Every viewer is on another gateway: one last event in every room.
            for r in 0..rooms {
                let (room, key) = (format!("room-{r}"), format!("end-{r}"));
                let data = json!({"key": key, "end": true});
                published.publish(&others[0], &room, key, data).await;
            }
            published
        })
    };

    let resumed = Arc::new(Resumed {
        count: AtomicUsize::new(0),
        of: m.viewers,
        all: everyone_resumed,
    });
    let movers: Vec<_> = viewers
        .into_iter()
        .enumerate()
        .map(|(i, (v, seen))| {
            let to = others[i % others.len()].clone();
            let resumed = resumed.clone();
            tokio::spawn(async move { mover(v, seen, &to, m.failure, &resumed).await })
        })
        .collect();

    let mut counted = counted;
    counted.wait_for(|n| *n >= BEFORE_FAILURE).await.unwrap();
    let signalled = Instant::now();
    let exited = match m.failure {
        Failure::Drain => {
            failing.sigterm();
            let status = failing.exited().await;
            assert_eq!(status.code(), Some(0), "the drained gateway exits 0");
            Some(signalled.elapsed())
        }
        Failure::Kill => {
            failing.sigkill();
            drop(failing);
            None
        }
    };
    let mut resumed_at = Vec::new();
    let mut seen_all = Vec::new();
    for mover in movers {
        let (seen, at) = mover.await.unwrap();
        resumed_at.push(at);
        seen_all.push(seen);
    }
    let published = publisher.await.unwrap();
    let mut totals = Totals::default();
    for seen in &seen_all {
        totals.check(&published, seen);
    }
    assert_eq!(totals.restarts, 0, "no reset, no recovered:false");
    assert!(
        totals.missed > 0,
        "events were published while the viewers moved"
    );
    let first = resumed_at.iter().min().unwrap();
    let last = resumed_at.iter().max().unwrap();
    let moved = Moved {
        exited,
        first_resumed: first.saturating_duration_since(signalled),
        all_resumed: last.saturating_duration_since(signalled),
    };
    eprintln!(
        "{:?} of the gateway of {} viewers in {} rooms, {} other gateway(s): {} events \
         published; process exited after {:?}; first viewer resumed after {:?}, all after \
         {:?}; {totals}; {} publishes retried after 503/504",
        m.failure,
        m.viewers,
        m.rooms,
        m.others,
        published.at.len(),
        moved.exited,
        moved.first_resumed,
        moved.all_resumed,
        published.retried,
    );
    moved
}

/// Counts the viewers that resumed; says when all have.
struct Resumed {
    count: AtomicUsize,
    of: usize,
    all: watch::Sender<bool>,
}

impl Resumed {
    fn one(&self) {
        if self.count.fetch_add(1, Ordering::Relaxed) + 1 == self.of {
            self.all.send_replace(true);
        }
    }
}

/// One viewer of the failing gateway: reads until its connection ends there, resumes
/// on `to`, reads until its room's last event. Returns what it saw and when it had
/// resumed.
async fn mover(
    mut v: Viewer,
    mut seen: Seen,
    to: &Gateway,
    failure: Failure,
    resumed: &Resumed,
) -> (Seen, Instant) {
    let mut told = None;
    let end = loop {
        match v.next_or_end().await {
            Ok(m) if m["type"] == "reconnect" => told = Some(m),
            Ok(m) => {
                seen.take(&m);
            }
            Err(end) => break end,
        }
    };
    match failure {
        Failure::Drain => {
            let told = told.unwrap_or_else(|| panic!("{}: no reconnect before {end:?}", seen.name));
            assert_eq!(
                (told["reason"].as_str(), told["after_ms"].as_u64()),
                (Some("draining"), Some(500)),
                "{told}"
            );
            assert_eq!(end, End::Close(1012), "{}", seen.name);
        }
        Failure::Kill => {
            assert!(told.is_none(), "{}: {told:?}", seen.name);
            assert_eq!(end, End::Lost, "{}", seen.name);
        }
    }
    drop(v);
    let (mut v, joined) = resume(to, &mut seen).await;
    assert_eq!(joined["recovered"], true, "{}: {joined}", seen.name);
    let at = Instant::now();
    resumed.one();
    loop {
        let m = v.next().await;
        if seen.take(&m) && m["data"]["end"] == true {
            return (seen, at);
        }
    }
}

/// Failure: a gateway is SIGKILLed mid-stream (no drain, no close frame) with 200
/// viewers of a room on it; two other gateways on the same Redis keep publishing.
/// Expected: each viewer's connection ends; it reconnects to one of the other two and
/// resumes with `since` = its last seq: `recovered:true`, every event it missed once,
/// in order, then live events; all 200 within 10 s of the SIGKILL (generous: about
/// 0.5 s measured on a debug build, 2 cores).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_s_viewers_resume_on_another_without_loss() {
    let _one = ONE_AT_A_TIME.lock().await;
    let moved = viewers_move(Move {
        viewers: 200,
        rooms: 1,
        others: 2,
        failure: Failure::Kill,
    })
    .await;
    assert!(
        moved.all_resumed < Duration::from_secs(10),
        "{:?}",
        moved.all_resumed
    );
}

/// Failure: a gateway holding `viewers` viewers is drained (SIGTERM), another gateway
/// on the same Redis running, while events are published (through the other).
/// Expected: every viewer gets `reconnect` (`draining`, 500 ms) and then close 1012,
/// resumes on the other gateway with `recovered:true` and loses nothing; the drained
/// process exits 0. Returns the time from SIGTERM to the process's exit, and to the
/// last viewer's resume.
async fn drain(viewers: usize) -> (Duration, Duration) {
    let _one = ONE_AT_A_TIME.lock().await;
    let moved = viewers_move(Move {
        viewers,
        rooms: 20,
        others: 1,
        failure: Failure::Drain,
    })
    .await;
    (moved.exited.unwrap(), moved.all_resumed)
}

/// Bounds, generous for a debug build on 2 shared cores (measured: about 1 s and 2 s
/// for 1,000 viewers, 2 s and 8 s for 5,000; RELIABILITY.md has the figures): the
/// process exits within 5 s of the SIGTERM — `--drain-ms` (500) plus closing every
/// viewer, well inside the gateway's own grace of drain-ms + 10 s, after which it would
/// stop waiting for viewers — and every viewer has resumed within 30 s of it.
fn assert_drain_bounds((exited, all_resumed): (Duration, Duration)) {
    assert!(exited < Duration::from_secs(5), "drain took {exited:?}");
    assert!(
        all_resumed < Duration::from_secs(30),
        "resumes took {all_resumed:?}"
    );
}

/// [`drain`] of 1,000 viewers: the default run's size of the 5,000-viewer test below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_of_1000_viewers_is_timed_and_loses_nothing() {
    assert_drain_bounds(drain(1_000).await);
}

/// [`drain`] of 5,000 viewers (opened 200 at a time): all 5,000 resume on the one
/// other gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "5,000 viewers hold both cores for ~20 s, and on a debug build the gateway \
            they move to answers many of their joins `unavailable` (retried) under that \
            load: too heavy and too timing-bound for the default run; --ignored runs it"]
async fn a_drain_of_5000_viewers_is_timed_and_loses_nothing() {
    assert_drain_bounds(drain(5_000).await);
}

/// Failure: a gateway holding `viewers` viewers is SIGKILLed, two gateways on the same
/// Redis remaining, while events are published (through those two).
/// Expected: every connection ends at once and every viewer reconnects at the same
/// moment (no batching, no backoff) to one of the two; each resumes with
/// `recovered:true` and loses nothing. Returns the storm's duration: from the SIGKILL
/// to the last viewer's resume.
async fn storm(viewers: usize) -> Duration {
    let _one = ONE_AT_A_TIME.lock().await;
    viewers_move(Move {
        viewers,
        rooms: 20,
        others: 2,
        failure: Failure::Kill,
    })
    .await
    .all_resumed
}

/// Bound, generous for a debug build on 2 shared cores (measured: about 1.5 s for
/// 1,000 viewers, 9 s for 5,000; RELIABILITY.md has the figures): every viewer has
/// resumed within 30 s of the SIGKILL.
fn assert_storm_bound(took: Duration) {
    assert!(took < Duration::from_secs(30), "the storm took {took:?}");
}

/// [`storm`] of 1,000 viewers: the default run's size of the 5,000-viewer test below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_of_1000_viewers_onto_the_remaining_gateways() {
    assert_storm_bound(storm(1_000).await);
}

/// [`storm`] of 5,000 viewers, 2,500 onto each remaining gateway at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "5,000 viewers hold both cores for ~20 s: too heavy for the default run; \
            --ignored runs it"]
async fn a_reconnect_storm_of_5000_viewers_onto_the_remaining_gateways() {
    assert_storm_bound(storm(5_000).await);
}
