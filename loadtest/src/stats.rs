//! Measurements: histograms, per-room delivery accounting, and the worker report that
//! worker processes send to the coordinator.

use std::collections::{BTreeMap, BTreeSet};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// A histogram of microseconds, 3 significant figures, up to 10 minutes.
pub fn histogram() -> Histogram<u64> {
    // INVARIANT: these bounds are valid for hdrhistogram.
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| unreachable!("valid bounds"))
}

/// A histogram as (value, count) pairs, to cross process boundaries.
pub type Buckets = Vec<(u64, u64)>;

/// Flattens a histogram.
pub fn to_buckets(h: &Histogram<u64>) -> Buckets {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// Adds buckets into a histogram.
pub fn add_buckets(h: &mut Histogram<u64>, b: &Buckets) {
    for &(v, n) in b {
        let _ = h.record_n(v.max(1), n);
    }
}

/// A histogram from buckets (merging a worker's report, for the coordinator).
pub fn merge_hist(b: &Buckets) -> Histogram<u64> {
    let mut h = histogram();
    add_buckets(&mut h, b);
    h
}

/// What one viewer saw of its room: seqs tracked for loss, duplicates and reorders.
#[derive(Debug, Default, Clone)]
pub struct Track {
    /// The seq continuity started from (joined or reset), for the expected count.
    pub base: u64,
    /// The next seq expected.
    pub next: u64,
    /// Seqs skipped over that may still arrive (reorder).
    missing: BTreeSet<u64>,
    /// Distinct events received.
    pub distinct: u64,
    /// Events received twice.
    pub duplicated: u64,
    /// Events received after a later one.
    pub reordered: u64,
    /// Events lost to a `reset` or an unrecovered rejoin.
    pub reset_lost: u64,
    /// Distinct seqs a `skipped` marker covered (not delivered, and told).
    pub skipped: u64,
    /// Of those, the seqs told with reason `targeted` (events for other viewers).
    pub skipped_targeted: u64,
}

impl Track {
    /// Starts tracking after `seq` (the joined seq).
    pub fn start(seq: u64) -> Self {
        Self {
            base: seq,
            next: seq + 1,
            ..Self::default()
        }
    }

    /// Counts one received event.
    pub fn on_event(&mut self, seq: u64) {
        if self.cover(seq) {
            self.distinct += 1;
        }
    }

    /// Counts the seqs `from..=to` a `skipped` marker covered (`targeted`: for reason
    /// `targeted`, otherwise `sampled`).
    pub fn on_skipped(&mut self, from: u64, to: u64, targeted: bool) {
        // Bounded like the holes below: a marker covers at most 100,000 seqs here.
        for seq in from..=to.min(from.saturating_add(100_000)) {
            if self.cover(seq) {
                self.skipped += 1;
                self.skipped_targeted += u64::from(targeted);
            }
        }
    }

    /// Accounts `seq` as covered; whether it was new (a second cover is a duplicate).
    fn cover(&mut self, seq: u64) -> bool {
        if seq == self.next {
            self.next += 1;
            true
        } else if seq > self.next {
            // Bounded: a viewer far behind records at most 100,000 holes.
            for s in self.next..seq.min(self.next + 100_000) {
                self.missing.insert(s);
            }
            self.next = seq + 1;
            true
        } else if self.missing.remove(&seq) {
            self.reordered += 1;
            true
        } else {
            self.duplicated += 1;
            false
        }
    }

    /// Forgets what was covered after `last` (the room's final seq as the coordinator
    /// read it): the accounting stops there. The covers taken back count as events
    /// first, then as skipped seqs.
    pub fn cap(&mut self, last: u64) {
        if self.next <= last.saturating_add(1) {
            return;
        }
        let holes = self.missing.split_off(&last.saturating_add(1)).len() as u64;
        let covered = (self.next - 1 - last).saturating_sub(holes);
        let events = covered.min(self.distinct);
        self.distinct -= events;
        self.skipped = self.skipped.saturating_sub(covered - events);
        self.skipped_targeted = self.skipped_targeted.min(self.skipped);
        self.next = last + 1;
    }

    /// Continuity restarts after `seq` (a `reset` or `recovered:false`).
    pub fn restart(&mut self, seq: u64) {
        if seq >= self.next {
            self.reset_lost += seq + 1 - self.next;
            self.next = seq + 1;
        }
        self.missing.clear();
    }
}

/// Sums of [`Track`]s for one room.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct RoomCount {
    /// Viewers tracked.
    pub viewers: u64,
    /// Sum of the seqs the viewers started from.
    pub base_sum: u64,
    /// Distinct events received.
    pub distinct: u64,
    /// Duplicates received.
    pub duplicated: u64,
    /// Reordered events.
    pub reordered: u64,
    /// Events skipped by resets.
    pub reset_lost: u64,
    /// Events not delivered to adaptive viewers and told by `skipped` markers.
    #[serde(default)]
    pub skipped: u64,
    /// Of those, events for other viewers (reason `targeted`).
    #[serde(default)]
    pub skipped_targeted: u64,
}

impl RoomCount {
    /// Adds one viewer's track.
    pub fn add(&mut self, t: &Track) {
        self.viewers += 1;
        self.base_sum += t.base;
        self.distinct += t.distinct;
        self.duplicated += t.duplicated;
        self.reordered += t.reordered;
        self.reset_lost += t.reset_lost;
        self.skipped += t.skipped;
        self.skipped_targeted += t.skipped_targeted;
    }

    fn merge(&mut self, o: &Self) {
        self.viewers += o.viewers;
        self.base_sum += o.base_sum;
        self.distinct += o.distinct;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.reset_lost += o.reset_lost;
        self.skipped += o.skipped;
        self.skipped_targeted += o.skipped_targeted;
    }
}

/// Everything a worker measured.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Connections that joined.
    pub established: u64,
    /// Connections that failed, by cause.
    pub failures: BTreeMap<String, u64>,
    /// Connect times (TCP + WebSocket handshake), µs.
    pub connect_us: Buckets,
    /// Connect → hello → joined, µs.
    pub first_render_us: Buckets,
    /// Reconnect → joined on the new connection, µs.
    #[serde(default)]
    pub reconnect_us: Buckets,
    /// Publish → receive, µs.
    pub latency_us: Buckets,
    /// Latency per second of the run, µs.
    pub latency_series: Vec<Buckets>,
    /// Latency by the gateway the viewer was connected to (the `--url` index), µs.
    #[serde(default)]
    pub latency_by_gateway: Vec<Buckets>,
    /// Delivery accounting per room.
    pub rooms: BTreeMap<String, RoomCount>,
    /// Events received (all, with duplicates).
    pub delivered: u64,
    /// WebSocket frames received.
    pub frames: u64,
    /// `error` replies by code.
    pub errors: BTreeMap<String, u64>,
    /// Commands refused, by code.
    #[serde(default)]
    pub refused: BTreeMap<String, u64>,
    /// `reset` frames and unrecovered rejoins.
    pub resets: u64,
    /// Reconnects made (resume scenario, drain).
    pub reconnects: u64,
    /// Reconnects answered `recovered:true`.
    pub recovered: u64,
    /// Commands sent (comments, likes, votes).
    pub commands: u64,
    /// `ack` replies.
    pub acks: u64,
    /// Of those, comments acked `merged:true`.
    #[serde(default)]
    pub merged_acks: u64,
    /// Likes acknowledged (sum of counts).
    pub likes_acked: u64,
    /// Votes acknowledged per room and option.
    pub votes_acked: BTreeMap<String, BTreeMap<u32, u64>>,
    /// The latest poll tallies seen per room: (seq, votes per option).
    pub polls_seen: BTreeMap<String, (u64, Vec<u64>)>,
    /// This process's CPU seconds.
    pub cpu_s: f64,
    /// What the viewers' game moves got.
    #[serde(default)]
    pub games: GamesSeen,
}

/// What viewers' game moves (keyword comments, quiz answers, lottery entries, coupon
/// claims) got, summed over viewers and rooms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GamesSeen {
    /// Keyword comments acknowledged (sequenced or merged).
    pub keyword_acked: u64,
    /// Viewers with at least one keyword comment acknowledged.
    pub keyword_participants: u64,
    /// Quiz answers acknowledged, by option.
    pub answers_acked: BTreeMap<u32, u64>,
    /// Lottery entries acknowledged.
    pub entries_acked: u64,
    /// Coupon claims acknowledged (each with its code).
    pub claims_acked: u64,
    /// Viewers whose acknowledged claims exceed the coupon's `per_user`.
    pub claims_over_per_user: u64,
    /// The most claims one viewer got acknowledged.
    pub claims_most_per_viewer: u64,
    /// Claim replies (ack or refusal) and their send → reply µs.
    pub claim_reply_us: Vec<u64>,
    /// The first claim's send and the last claim reply, Unix µs.
    pub claims_span_us: Option<(u64, u64)>,
    /// `lottery.won` events received.
    pub won: u64,
    /// The users told `lottery.won`, once per event received.
    #[serde(default)]
    pub won_by: Vec<String>,
    /// The acknowledged claims: (user, code).
    #[serde(default)]
    pub claims: Vec<(String, String)>,
    /// When the last game move was acknowledged, Unix µs.
    #[serde(default)]
    pub last_ack_us: u64,
    /// This viewer's acknowledged claims and keyword comments (folded into the counts
    /// above when it finishes).
    #[serde(skip)]
    pub(crate) mine: (u64, u64),
    /// This viewer's `lottery.won` events and claim codes (folded into `won_by` and
    /// `claims` under its user id when it finishes).
    #[serde(skip)]
    pub(crate) mine_won: u64,
    #[serde(skip)]
    pub(crate) mine_codes: Vec<String>,
}

impl GamesSeen {
    fn reply(&mut self, p: crate::seen::Pending, now_us: u64) {
        if let crate::seen::Pending::Claim(sent) = p {
            self.claim_reply_us.push(now_us.saturating_sub(sent));
            let (first, last) = self.claims_span_us.unwrap_or((sent, now_us));
            self.claims_span_us = Some((first.min(sent), last.max(now_us)));
        }
    }

    /// A game move was acknowledged at `now_us` by the ack `line`.
    pub fn acked(&mut self, p: crate::seen::Pending, now_us: u64, line: &[u8]) {
        use crate::seen::Pending;
        match p {
            Pending::Keyword => {
                self.keyword_acked += 1;
                self.mine.1 += 1;
            }
            Pending::Answer(o) => *self.answers_acked.entry(o).or_default() += 1,
            Pending::Enter => self.entries_acked += 1,
            Pending::Claim(_) => {
                self.claims_acked += 1;
                self.mine.0 += 1;
                // Claims are few: their acks alone are parsed whole, for the code.
                let ack: serde_json::Value = serde_json::from_slice(line).unwrap_or_default();
                let code = ack["claim"]["code"].as_str().unwrap_or_default();
                self.mine_codes.push(code.to_owned());
            }
            _ => {}
        }
        self.last_ack_us = self.last_ack_us.max(now_us);
        self.reply(p, now_us);
    }

    /// A game move was refused at `now_us`.
    pub fn refused(&mut self, p: crate::seen::Pending, now_us: u64) {
        self.reply(p, now_us);
    }

    /// One viewer, `user`, is done: its own counts join the per-viewer ones.
    pub fn viewer_done(&mut self, per_user: u64, user: &str) {
        for _ in 0..std::mem::take(&mut self.mine_won) {
            self.won_by.push(user.to_owned());
        }
        for code in std::mem::take(&mut self.mine_codes) {
            self.claims.push((user.to_owned(), code));
        }
        let (claims, keywords) = std::mem::take(&mut self.mine);
        self.keyword_participants += u64::from(keywords > 0);
        self.claims_over_per_user += u64::from(claims > per_user);
        self.claims_most_per_viewer = self.claims_most_per_viewer.max(claims);
    }

    /// Adds another's counts.
    pub fn merge(&mut self, o: &GamesSeen) {
        self.keyword_acked += o.keyword_acked;
        self.keyword_participants += o.keyword_participants;
        for (k, v) in &o.answers_acked {
            *self.answers_acked.entry(*k).or_default() += v;
        }
        self.entries_acked += o.entries_acked;
        self.claims_acked += o.claims_acked;
        self.claims_over_per_user += o.claims_over_per_user;
        self.claims_most_per_viewer = self.claims_most_per_viewer.max(o.claims_most_per_viewer);
        self.claim_reply_us.extend_from_slice(&o.claim_reply_us);
        if let Some((a, b)) = o.claims_span_us {
            let (x, y) = self.claims_span_us.unwrap_or((a, b));
            self.claims_span_us = Some((x.min(a), y.max(b)));
        }
        self.won += o.won;
        self.won_by.extend_from_slice(&o.won_by);
        self.claims.extend_from_slice(&o.claims);
        self.last_ack_us = self.last_ack_us.max(o.last_ack_us);
    }
}

/// Adds each of `other`'s histograms into the one at its index in `into`.
fn merge_each(into: &mut Vec<Buckets>, other: &[Buckets]) {
    if into.len() < other.len() {
        into.resize(other.len(), Vec::new());
    }
    for (i, b) in other.iter().enumerate() {
        into[i].extend_from_slice(b);
    }
}

impl WorkerReport {
    /// Adds another worker's report into this one.
    pub fn merge(&mut self, o: &WorkerReport) {
        self.established += o.established;
        for (k, v) in &o.failures {
            *self.failures.entry(k.clone()).or_default() += v;
        }
        self.connect_us.extend_from_slice(&o.connect_us);
        self.first_render_us.extend_from_slice(&o.first_render_us);
        self.reconnect_us.extend_from_slice(&o.reconnect_us);
        self.latency_us.extend_from_slice(&o.latency_us);
        merge_each(&mut self.latency_series, &o.latency_series);
        merge_each(&mut self.latency_by_gateway, &o.latency_by_gateway);
        for (k, v) in &o.rooms {
            self.rooms.entry(k.clone()).or_default().merge(v);
        }
        self.delivered += o.delivered;
        self.frames += o.frames;
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.refused {
            *self.refused.entry(k.clone()).or_default() += v;
        }
        self.resets += o.resets;
        self.reconnects += o.reconnects;
        self.recovered += o.recovered;
        self.commands += o.commands;
        self.acks += o.acks;
        self.merged_acks += o.merged_acks;
        self.likes_acked += o.likes_acked;
        for (room, opts) in &o.votes_acked {
            let mine = self.votes_acked.entry(room.clone()).or_default();
            for (opt, n) in opts {
                *mine.entry(*opt).or_default() += n;
            }
        }
        for (room, seen) in &o.polls_seen {
            keep_latest_poll(&mut self.polls_seen, room, seen);
        }
        self.cpu_s += o.cpu_s;
        self.games.merge(&o.games);
    }
}

/// Keeps the poll tallies with the highest seq for `room`.
pub fn keep_latest_poll(
    polls: &mut BTreeMap<String, (u64, Vec<u64>)>,
    room: &str,
    seen: &(u64, Vec<u64>),
) {
    match polls.get(room) {
        Some((seq, _)) if *seq >= seen.0 => {}
        _ => {
            polls.insert(room.to_owned(), seen.clone());
        }
    }
}

/// CPU seconds (user + system) of a process, from /proc.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Resident memory of a process in bytes, from /proc.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_after_the_final_seq_leave_the_accounting() {
        let mut t = Track::start(0);
        for seq in [1, 2, 3, 5, 6] {
            t.on_event(seq);
        }
        t.cap(4);
        assert_eq!(
            (t.distinct, t.next),
            (3, 5),
            "5 and 6 came after the final seq 4"
        );
        t.cap(9);
        assert_eq!(t.distinct, 3, "a later cap takes nothing back");
    }

    #[test]
    fn track_counts_loss_dups_and_reorders() {
        let mut t = Track::start(10);
        for s in [11, 12, 12, 14, 13, 15, 9] {
            t.on_event(s);
        }
        assert_eq!((t.distinct, t.duplicated, t.reordered), (5, 2, 1));
        t.restart(20);
        assert_eq!(t.reset_lost, 5);
        t.on_event(21);
        assert_eq!(t.next, 22);
    }
}
