//! The publishers: events posted through the HTTP API at an even rate, each carrying
//! its publish time (Unix µs) in `data.t` for the viewers' end-to-end latency.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::cli::{Load, RetractBy};
use crate::http::Http;
use crate::plan::Plan;
use crate::stats::histogram;
use crate::viewer::{self, Dial};
use crate::wsclient::Frame;

/// The `kind` of the load test's events.
pub const EVENT_KIND: &str = "lt";

/// What the publishers did.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishStats {
    /// Events scheduled.
    pub scheduled: u64,
    /// Events published (HTTP 200).
    pub published: u64,
    /// Published within 100 ms of their schedule.
    pub on_time: u64,
    /// Failed publishes by HTTP status.
    pub errors: BTreeMap<String, u64>,
    /// p99 of how late publishes started, ms.
    pub lag_p99_ms: f64,
    /// Median and p99 of a publish's answer time (request sent → answer read, retries
    /// included), ms: the share of the end-to-end latency before the event is sequenced
    /// and sent to the gateways.
    #[serde(default)]
    pub answer_p50_ms: f64,
    /// See `answer_p50_ms`.
    #[serde(default)]
    pub answer_p99_ms: f64,
    /// Publisher connections used.
    #[serde(default)]
    pub connections: u64,
    /// Publishes retried with their idempotency key after a 503, a 504 or a broken
    /// connection (`--idempotent`).
    #[serde(default)]
    pub retried: u64,
    /// Retractions made by the moderation storm (`--retract-rate`).
    #[serde(default)]
    pub retracts: u64,
}

/// The order in which rooms take turns publishing: every room once per cycle, but
/// not by rank. Rooms are ranked by size (Zipf), and independent rooms do not
/// publish their events in the same millisecond; a stride of about n/φ, coprime to
/// n, spreads neighbouring ranks across the cycle.
fn publish_order(n: usize) -> Vec<usize> {
    if n < 3 {
        return (0..n).collect();
    }
    let mut stride = ((n as f64) / 1.618_034).round() as usize;
    while gcd(stride, n) != 1 {
        stride += 1;
    }
    // Room r takes its turn at r·stride mod n.
    let mut order = vec![0; n];
    for r in 0..n {
        order[r * stride % n] = r;
    }
    order
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Attempts after the first for a publish whose outcome is unknown (`--idempotent`).
const PUBLISH_RETRIES: u32 = 3;

/// How many of `rooms` (the first, the biggest) `load` publishes into.
pub fn publish_rooms(load: &Load, rooms: usize) -> usize {
    match load.publish_rooms {
        0 => rooms,
        n => n.min(rooms),
    }
}

/// Events to publish for `load`.
pub fn scheduled(load: &Load) -> u64 {
    (load.rate * load.duration_s).round() as u64
}

/// Publishes `load`'s events over its duration, counting each one answered with 200
/// in `published` as it goes; returns when the last is answered.
pub async fn publish(plan: &Plan, load: &Load, published: Arc<AtomicU64>) -> PublishStats {
    let rate = load.rate;
    let total = scheduled(load);
    let mut p = if load.publishers > 0 {
        load.publishers
    } else {
        ((rate / 50.0).ceil() as usize).clamp(2, 64)
    } as u64;
    let by_room = load.publish_by_room;
    let retries = if load.idempotent { PUBLISH_RETRIES } else { 0 };
    let published_rooms = publish_rooms(load, plan.rooms.len());
    if by_room {
        p = p.min(published_rooms.max(1) as u64);
    }
    let pad = "x".repeat(load.size.saturating_sub(32));
    let order = Arc::new(publish_order(published_rooms));
    let t0 = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::new();
    // The latest seq published into the first room: what the storm retracts.
    let latest = Arc::new(AtomicU64::new(0));
    let storm = (load.retract_rate > 0.0).then(|| {
        let storm = Storm {
            room: plan.rooms[0].clone(),
            latest: latest.clone(),
            rate: load.retract_rate,
            n: (load.retract_rate * load.duration_s).floor() as u64,
            // Half a publish apart from the publishes: a retraction does not land on
            // the same instant as an event (two fan-outs back to back).
            first: t0 + Duration::from_secs_f64(0.5 / load.rate.max(f64::MIN_POSITIVE)),
        };
        let moderator = match load.retract_by {
            RetractBy::Moderator => plan.moderator_dial().or_else(|| {
                eprintln!("the moderation storm's moderator needs --jwt-secret: the API retracts");
                None
            }),
            RetractBy::Api => None,
        };
        let (http_base, key) = (plan.http[0].clone(), plan.cli.common.api_key.clone());
        tokio::spawn(async move {
            match moderator {
                Some(dial) => storm.by_moderator(&dial).await,
                None => storm.by_api(&http_base, &key).await,
            }
        })
    });
    for j in 0..p {
        let http_base = plan.http[j as usize % plan.http.len()].clone();
        let rooms = plan.rooms.clone();
        let order = order.clone();
        let key = plan.cli.common.api_key.clone();
        let pad = pad.clone();
        let high_share = load.high_share;
        let counter = published.clone();
        let latest = latest.clone();
        tasks.push(tokio::spawn(async move {
            let mut stats = PublishStats::default();
            let (mut lag, mut answers) = (histogram(), histogram());
            let mut http = Http::new(&http_base);
            // Events `k` of this connection: every `p`th, or those of its rooms.
            let mine = |k: u64| !by_room || order[k as usize % order.len()] as u64 % p == j;
            let mut k = if by_room { 0 } else { j };
            while k < total {
                if !mine(k) {
                    k += 1;
                    continue;
                }
                let at = t0 + Duration::from_secs_f64(k as f64 / rate);
                tokio::time::sleep_until(at).await;
                let late = Instant::now().saturating_duration_since(at);
                let _ = lag.record((late.as_micros() as u64).max(1));
                let room = &rooms[order[k as usize % order.len()]];
                // Below a high share of 1, the events outside it are normal.
                let priority = if crate::cli::in_share(k as usize, high_share) {
                    ""
                } else {
                    ",\"priority\":\"normal\""
                };
                let t = crate::now_us();
                let path = format!("/v1/rooms/{room}/events");
                let mut answer = None;
                let sent = Instant::now();
                // Whether an attempt so far may have been sequenced (504, or cut off):
                // only then is the next one marked a retry. After a 503 nothing was
                // done, and the key alone keeps a later success single.
                let mut doubt = false;
                for attempt in 0..=retries {
                    let idempotency = match (retries, doubt) {
                        (0, _) => String::new(),
                        (_, false) => format!(",\"idempotency_key\":\"lt-{k}\""),
                        (_, true) => format!(",\"idempotency_key\":\"lt-{k}\",\"retry\":true"),
                    };
                    let body = format!(
                        "{{\"kind\":\"{EVENT_KIND}\"{priority}{idempotency},\"data\":{{\"t\":{t},\"pad\":\"{pad}\"}}}}"
                    );
                    let a = http.request("POST", &path, &key, body.as_bytes()).await;
                    let (refused, unknown) = match &a {
                        Ok((503, _)) => (true, false),
                        Ok((504, _)) | Err(_) => (false, true),
                        _ => (false, false),
                    };
                    doubt |= unknown;
                    answer = Some(a);
                    if !(refused || unknown) || attempt == retries {
                        break;
                    }
                    stats.retried += 1;
                    // A store that is briefly away gets a moment, not all the attempts
                    // at once.
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt + 1))).await;
                }
                let _ = answers.record((sent.elapsed().as_micros() as u64).max(1));
                let Some(answer) = answer else { break };
                match answer {
                    Ok((200, body)) => {
                        if *room == rooms[0]
                            && let Some(seq) = crate::api::seq_of(&body)
                        {
                            latest.fetch_max(seq, Ordering::Relaxed);
                        }
                        stats.published += 1;
                        counter.fetch_add(1, Ordering::Relaxed);
                        if late <= Duration::from_millis(100) {
                            stats.on_time += 1;
                        }
                    }
                    Ok((status, _)) => *stats.errors.entry(status.to_string()).or_default() += 1,
                    Err(_) => *stats.errors.entry("io".into()).or_default() += 1,
                }
                k += if by_room { 1 } else { p };
            }
            (stats, lag, answers)
        }));
    }
    let mut all = PublishStats {
        scheduled: total,
        connections: p,
        ..PublishStats::default()
    };
    let (mut lag, mut answers): (Histogram<u64>, Histogram<u64>) = (histogram(), histogram());
    for t in tasks {
        if let Ok((s, l, a)) = t.await {
            let _ = answers.add(&a);
            all.published += s.published;
            all.on_time += s.on_time;
            all.retried += s.retried;
            for (k, v) in s.errors {
                *all.errors.entry(k).or_default() += v;
            }
            let _ = lag.add(&l);
        }
    }
    if let Some(storm) = storm {
        all.retracts = storm.await.unwrap_or(0);
    }
    all.lag_p99_ms = lag.value_at_quantile(0.99) as f64 / 1000.0;
    all.answer_p50_ms = answers.value_at_quantile(0.5) as f64 / 1000.0;
    all.answer_p99_ms = answers.value_at_quantile(0.99) as f64 / 1000.0;
    all
}

/// A moderation storm: `n` retractions at `rate` a second from `first`, each of the
/// latest event published into `room`.
struct Storm {
    room: danmaku_protocol::RoomId,
    latest: Arc<AtomicU64>,
    rate: f64,
    n: u64,
    first: Instant,
}

impl Storm {
    /// When retraction `i` is due.
    fn due(&self, i: u64) -> Instant {
        self.first + Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// Retracts through the backend API; returns how many were answered 200.
    async fn by_api(self, http_base: &crate::endpoint::Endpoint, key: &str) -> u64 {
        let mut http = Http::new(http_base);
        let path = format!("/v1/rooms/{}/moderation", self.room);
        let mut done = 0;
        for i in 0..self.n {
            tokio::time::sleep_until(self.due(i)).await;
            let seq = self.latest.load(Ordering::Relaxed);
            if seq == 0 {
                continue;
            }
            let body = format!("{{\"action\":\"retract\",\"seq\":{seq}}}");
            if let Ok((200, _)) = http.request("POST", &path, key, body.as_bytes()).await {
                done += 1;
            }
        }
        done
    }

    /// Retracts as a moderator joined to the room, sending `moderate` over its own
    /// connection (and reading the room's events meanwhile, as any viewer must); returns
    /// how many were acknowledged.
    async fn by_moderator(self, dial: &Dial) -> u64 {
        let mut ws = match viewer::open(dial).await {
            Ok(ws) => ws,
            Err(cause) => {
                eprintln!("the moderation storm's moderator could not connect: {cause}");
                return 0;
            }
        };
        if let Err(cause) = viewer::join(&mut ws, &self.room, None, None).await {
            eprintln!("the moderation storm's moderator could not join: {cause}");
            return 0;
        }
        let (mut sent, mut acked, mut refused) = (0u64, 0u64, 0u64);
        let mut i = 0;
        // After the last retraction, its answer may take a moment.
        let mut give_up = None;
        loop {
            let next = if i < self.n {
                self.due(i)
            } else {
                *give_up.get_or_insert(Instant::now() + viewer::STEP_TIMEOUT)
            };
            if i >= self.n && acked + refused >= sent {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep_until(next) => {
                    if i >= self.n {
                        break;
                    }
                    i += 1;
                    let seq = self.latest.load(Ordering::Relaxed);
                    if seq == 0 {
                        continue;
                    }
                    // Ids from 2 (1 was the join).
                    sent += 1;
                    let cmd = format!(
                        "{{\"type\":\"moderate\",\"id\":{},\"room\":\"{}\",\"action\":\"retract\",\"seq\":{seq}}}",
                        sent + 1,
                        self.room
                    );
                    if ws.send_text(cmd.as_bytes()).await.is_err() {
                        eprintln!("the moderation storm's moderator lost its connection after {sent} retractions");
                        break;
                    }
                }
                frame = ws.next_frame() => match frame {
                    Ok(Frame::Text(text)) => {
                        for line in text.split(|&b| b == b'\n') {
                            let Ok(l) = danmaku_protocol::ServerLine::decode(line) else { continue };
                            match (l.ty, l.id) {
                                (danmaku_protocol::FrameType::Ack, Some(id)) if id >= 2 => acked += 1,
                                (danmaku_protocol::FrameType::Error, Some(id)) if id >= 2 => refused += 1,
                                _ => {}
                            }
                        }
                    }
                    Ok(Frame::Close(_)) | Err(_) => {
                        eprintln!("the moderation storm's moderator lost its connection after {sent} retractions");
                        break;
                    }
                },
            }
        }
        if acked + refused < sent {
            eprintln!(
                "the moderation storm's moderator had {} retractions unanswered",
                sent - acked - refused
            );
        }
        if refused > 0 {
            eprintln!("the moderation storm's moderator was refused {refused} retractions");
        }
        let _ = ws.close(Duration::from_secs(1)).await;
        acked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_order_is_a_spread_permutation() {
        for n in [1, 2, 3, 10, 100, 1_000] {
            let order = publish_order(n);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "n = {n}");
        }
        // The 10 biggest of 1,000 rooms are at least 40 turns apart.
        let order = publish_order(1_000);
        let mut at: Vec<usize> = (0..10)
            .map(|r| order.iter().position(|&x| x == r).unwrap_or(0))
            .collect();
        at.sort_unstable();
        assert!(at.windows(2).all(|w| w[1] - w[0] >= 40), "{at:?}");
    }
}
