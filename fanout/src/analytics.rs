//! Retention data: what the gateways record of each room's viewers, summed exactly
//! across gateways, and the document the analytics API answers.
//!
//! Gateways send [`Op`]s (a join, a leave, a dwell milestone, an interaction, an
//! online sample); a store applies them to the room's **counters** — a flat map of
//! named integers, the same names in every store (a Redis hash, a map in memory) — and
//! to the room's **visits** (one per user: when it began, which connection holds it,
//! whether it ended), so that a resume continues its visit. [`Counters::doc`] turns
//! the counters into the API's document. Everything here is pure.
//!
//! Counter names: `<scope>|<what>`, the scope `*` (the whole room) or a variant of the
//! room's experiment; `<what>` is `j` (joins: visits begun), `u` (distinct users), `r`
//! (resumes), `rr` (resumes that recovered), `i:<kind>` (interactions), `d:<from>` and
//! `f:<from>` (the dwell and first-render histograms: how many fell in the bucket that
//! begins at `<from>` ms), `ds`/`dn` (dwell sum in ms, visits ended), `fn` (first
//! renders), `m:<minute>:j` and `m:<minute>:<1|5|15>` (joined in that minute; of them,
//! still present 1, 5, 15 minutes later). The room's timeline (scope-free): `t:<minute>:j`,
//! `t:<minute>:l`, `t:<minute>:i`, `t:<minute>:o` (joins, leaves, interactions, the
//! largest online count seen). `mins` counts the minutes recorded (at most
//! [`MAX_MINUTES`]).

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// The minutes of a room's retention and timeline that are recorded; later minutes are
/// not (a room live for two days).
pub const MAX_MINUTES: i64 = 2_880;
/// Visits (users) a room keeps for resumes and distinct counts; beyond, a new user's
/// visit is counted but not kept (a resume of it begins a new visit) and it is not
/// counted as distinct.
pub const MAX_VISITS: usize = 100_000;
/// The dwell milestones of the retention curves, in minutes.
pub const MILESTONES: [u64; 3] = [1, 5, 15];
/// The interaction kinds counted.
pub const KINDS: [&str; 6] = ["comments", "likes", "votes", "answers", "entries", "claims"];
/// A minute, in ms.
pub const MINUTE_MS: u64 = 60_000;

/// One thing a gateway saw, to be counted in its room. Times are ms of the analytics
/// clock; `variant` is the viewer's in the room's experiment.
#[allow(missing_docs)] // The fields are told in each variant's description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A join. `owner` names the connection (unique across gateways); `resumed` is
    /// `Some(recovered)` for a join with `since`; `first_render_ms` is the connection's
    /// first `joined`, from the upgrade request.
    Join {
        user: String,
        owner: String,
        at: u64,
        variant: Option<String>,
        resumed: Option<bool>,
        first_render_ms: Option<u64>,
    },
    /// A leave or a disconnect of a joined room; `since` is when this connection
    /// joined (the visit began then unless it continued an earlier one).
    Leave {
        user: String,
        owner: String,
        at: u64,
        since: u64,
        variant: Option<String>,
    },
    /// The visit that began at `start` is still present `minutes` minutes later.
    Mark {
        user: String,
        owner: String,
        start: u64,
        minutes: u64,
        variant: Option<String>,
    },
    /// An interaction (`kind` one of [`KINDS`]) at `at`.
    Interaction {
        kind: &'static str,
        at: u64,
        variant: Option<String>,
    },
    /// The room's online count at `at`.
    Online { at: u64, online: u64 },
}

/// Entries the analytics stream keeps at most (`MAXLEN ~`): the oldest go first.
pub const STREAM_MAX_LEN: u64 = 100_000;

/// The version of the stream's entry schema ([`Op::entry`]).
pub const STREAM_SCHEMA: u64 = 1;

impl Op {
    /// The op as one entry of the analytics stream (JSON, schema [`STREAM_SCHEMA`]),
    /// or `None` for what the stream does not carry (milestones, online samples: they
    /// follow from joins and leaves). `start` is a join's visit start, as the store
    /// answered it.
    pub fn entry(&self, room: &str, start: Option<u64>) -> Option<String> {
        let entry = match self {
            Self::Join {
                user,
                owner,
                at,
                variant,
                resumed,
                first_render_ms,
            } => json!({
                "v": STREAM_SCHEMA, "type": "join", "room": room, "user": user, "conn": owner,
                "at": at, "variant": variant, "resumed": resumed.is_some(),
                "recovered": resumed.unwrap_or(false), "visit_start": start,
                "first_render_ms": first_render_ms,
            }),
            Self::Leave {
                user,
                owner,
                at,
                variant,
                ..
            } => json!({
                "v": STREAM_SCHEMA, "type": "leave", "room": room, "user": user, "conn": owner,
                "at": at, "variant": variant,
            }),
            Self::Interaction { kind, at, variant } => json!({
                "v": STREAM_SCHEMA, "type": "interaction", "room": room, "kind": kind,
                "at": at, "variant": variant,
            }),
            Self::Mark { .. } | Self::Online { .. } => return None,
        };
        Some(entry.to_string())
    }
}

/// A user's visit, as a store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visit {
    /// When it began.
    pub start: u64,
    /// The connection that holds it (a resume elsewhere takes it over).
    pub owner: String,
    /// When it ended, and the dwell recorded then (taken back if it continues).
    pub ended: Option<(u64, u64)>,
    /// The milestones counted (bit i: [`MILESTONES`]`[i]`).
    pub marks: u8,
}

/// A room's visits, by user.
pub type Visits = BTreeMap<String, Visit>;

/// The first minute of `at`.
pub fn minute(at: u64) -> u64 {
    at - at % MINUTE_MS
}

/// The histogram bucket of `v`: `[from, to)`, exact below 100 and two significant
/// digits above, so a bucket is at most 10 % of its values wide and a percentile read
/// at its middle is within 5 %.
pub fn bucket(v: u64) -> (u64, u64) {
    if v < 100 {
        return (v, v + 1);
    }
    let mut step = 1;
    while v / step >= 100 {
        step *= 10;
    }
    let from = v / step * step;
    (from, from + step)
}

/// A room's counters (see the module's names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters(pub BTreeMap<String, i64>);

impl Counters {
    fn add(&mut self, name: String, n: i64) -> i64 {
        let v = self.0.entry(name).or_insert(0);
        *v += n;
        *v
    }

    /// Adds `n` to `what` in the room's scope and the variant's.
    fn add_scoped(&mut self, variant: Option<&str>, what: &str, n: i64) {
        self.add(format!("*|{what}"), n);
        if let Some(v) = variant {
            self.add(format!("{v}|{what}"), n);
        }
    }

    /// Whether `minute`'s fields may be written (a new minute counts toward
    /// [`MAX_MINUTES`]).
    fn minute_open(&mut self, minute: u64) -> bool {
        let known = self.0.contains_key(&format!("t:{minute}:j"))
            || self.0.contains_key(&format!("t:{minute}:o"))
            || self.0.contains_key(&format!("t:{minute}:l"))
            || self.0.contains_key(&format!("t:{minute}:i"));
        if known {
            return true;
        }
        if self.0.get("mins").copied().unwrap_or(0) >= MAX_MINUTES {
            return false;
        }
        self.add("mins".into(), 1);
        true
    }

    fn timeline(&mut self, at: u64, what: &str) {
        let m = minute(at);
        if self.minute_open(m) {
            self.add(format!("t:{m}:{what}"), 1);
        }
    }

    fn dwell(&mut self, variant: Option<&str>, dwell: u64, sign: i64) {
        let (from, _) = bucket(dwell);
        self.add_scoped(variant, &format!("d:{from}"), sign);
        self.add_scoped(
            variant,
            "ds",
            sign * i64::try_from(dwell).unwrap_or(i64::MAX),
        );
        self.add_scoped(variant, "dn", sign);
    }

    /// Applies one op to the counters and the room's `visits` (user → visit).
    /// `window_ms`: how long after its end a visit may still be continued by a resume.
    /// Returns, for a join, when its visit began.
    pub fn apply(&mut self, visits: &mut Visits, op: &Op, window_ms: u64) -> Option<u64> {
        match op {
            Op::Join {
                user,
                owner,
                at,
                variant,
                resumed,
                first_render_ms,
            } => {
                let v = variant.as_deref();
                if let Some(ms) = first_render_ms {
                    let (from, _) = bucket(*ms);
                    self.add_scoped(v, &format!("f:{from}"), 1);
                    self.add_scoped(v, "fn", 1);
                }
                if let Some(recovered) = resumed {
                    self.add_scoped(v, "r", 1);
                    if *recovered {
                        self.add_scoped(v, "rr", 1);
                    }
                }
                let continued = resumed.is_some()
                    && visits.get(user).is_some_and(|visit| match visit.ended {
                        None => true,
                        Some((end, _)) => at.saturating_sub(end) <= window_ms,
                    });
                if continued {
                    let visit = visits.get_mut(user)?;
                    if let Some((_, dwell)) = visit.ended.take() {
                        self.dwell(v, dwell, -1);
                    }
                    visit.owner.clone_from(owner);
                    return Some(visit.start);
                }
                self.add_scoped(v, "j", 1);
                let m = minute(*at);
                if self.minute_open(m) {
                    self.add(format!("t:{m}:j"), 1);
                    self.add_scoped(v, &format!("m:{m}:j"), 1);
                }
                let known = visits.contains_key(user);
                if known || visits.len() < MAX_VISITS {
                    if !known {
                        self.add_scoped(v, "u", 1);
                    }
                    let visit = Visit {
                        start: *at,
                        owner: owner.clone(),
                        ended: None,
                        marks: 0,
                    };
                    visits.insert(user.clone(), visit);
                }
                Some(*at)
            }
            Op::Leave {
                user,
                owner,
                at,
                since,
                variant,
            } => {
                let start = match visits.get_mut(user) {
                    Some(visit) if visit.owner != *owner || visit.ended.is_some() => {
                        return None;
                    }
                    Some(visit) => {
                        let dwell = at.saturating_sub(visit.start);
                        visit.ended = Some((*at, dwell));
                        visit.start
                    }
                    None => *since,
                };
                self.dwell(variant.as_deref(), at.saturating_sub(start), 1);
                self.timeline(*at, "l");
                None
            }
            Op::Mark {
                user,
                owner,
                start,
                minutes,
                variant,
            } => {
                let bit = MILESTONES.iter().position(|m| m == minutes)?;
                if let Some(visit) = visits.get_mut(user) {
                    if visit.owner != *owner || visit.marks & (1 << bit) != 0 {
                        return None;
                    }
                    visit.marks |= 1 << bit;
                }
                let m = minute(*start);
                if self.0.contains_key(&format!("*|m:{m}:j")) {
                    self.add_scoped(variant.as_deref(), &format!("m:{m}:{minutes}"), 1);
                }
                None
            }
            Op::Interaction { kind, at, variant } => {
                self.add_scoped(variant.as_deref(), &format!("i:{kind}"), 1);
                self.timeline(*at, "i");
                None
            }
            Op::Online { at, online } => {
                let m = minute(*at);
                if self.minute_open(m) {
                    let field = format!("t:{m}:o");
                    let n = i64::try_from(*online).unwrap_or(i64::MAX);
                    let v = self.0.entry(field).or_insert(0);
                    *v = (*v).max(n);
                }
                None
            }
        }
    }

    fn get(&self, name: &str) -> i64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// The API's document: the room's figures, then `by_variant`.
    pub fn doc(&self, room: &str, now: u64, online: u64) -> Value {
        let mut scopes: Vec<&str> = self
            .0
            .keys()
            .filter_map(|k| k.split_once('|').map(|(s, _)| s))
            .filter(|s| *s != "*")
            .collect();
        scopes.dedup();
        let mut doc = self.scope("*");
        doc["room"] = room.into();
        doc["now"] = now.into();
        doc["viewers"]["online"] = online.into();
        doc["timeline"] = self.timeline_doc();
        let by: serde_json::Map<String, Value> = scopes
            .iter()
            .map(|s| ((*s).to_owned(), self.scope(s)))
            .collect();
        doc["by_variant"] = Value::Object(by);
        doc
    }

    fn scope(&self, s: &str) -> Value {
        let g = |what: &str| self.get(&format!("{s}|{what}"));
        let interactions: serde_json::Map<String, Value> = KINDS
            .iter()
            .map(|k| ((*k).to_owned(), g(&format!("i:{k}")).into()))
            .collect();
        let dwell = self.histogram(&format!("{s}|d:"));
        let render = self.histogram(&format!("{s}|f:"));
        let (dn, ds) = (g("dn"), g("ds"));
        json!({
            "viewers": {"joins": g("j"), "unique": g("u")},
            "dwell_s": {
                "count": dn,
                "p50": percentile(&dwell, 0.5) / 1000.0,
                "p90": percentile(&dwell, 0.9) / 1000.0,
                "mean": if dn > 0 { ds as f64 / dn as f64 / 1000.0 } else { 0.0 },
                "histogram": dwell.iter().map(|(from, to, n)| json!({
                    "from": *from as f64 / 1000.0, "to": *to as f64 / 1000.0, "count": n
                })).collect::<Vec<_>>(),
            },
            "first_render_ms": {
                "count": g("fn"),
                "p50": percentile(&render, 0.5),
                "p99": percentile(&render, 0.99),
                "histogram": render.iter().map(|(from, to, n)| json!({
                    "from": from, "to": to, "count": n
                })).collect::<Vec<_>>(),
            },
            "recovery": {"resumes": g("r"), "recovered": g("rr")},
            "interactions": interactions,
            "retention": self.retention(s),
        })
    }

    /// The non-empty buckets under `prefix`, in order: (from, to, count).
    fn histogram(&self, prefix: &str) -> Vec<(u64, u64, i64)> {
        let mut out: Vec<(u64, u64, i64)> = self
            .0
            .iter()
            .filter_map(|(k, n)| {
                let from: u64 = k.strip_prefix(prefix)?.parse().ok()?;
                (*n > 0).then(|| (from, bucket(from).1, *n))
            })
            .collect();
        out.sort_unstable();
        out
    }

    fn retention(&self, s: &str) -> Value {
        let prefix = format!("{s}|m:");
        let mut minutes: Vec<u64> = self
            .0
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix)?.strip_suffix(":j")?.parse().ok())
            .collect();
        minutes.sort_unstable();
        let rows: Vec<Value> = minutes
            .iter()
            .map(|m| {
                let joined = self.get(&format!("{prefix}{m}:j"));
                let mut row = json!({"minute": m, "joined": joined, "present": {}});
                for k in MILESTONES {
                    let n = self.get(&format!("{prefix}{m}:{k}"));
                    let share = if joined > 0 {
                        (n as f64 / joined as f64 * 1000.0).round() / 1000.0
                    } else {
                        0.0
                    };
                    row[format!("after_{k}m")] = share.into();
                    row["present"][format!("after_{k}m")] = n.into();
                }
                row
            })
            .collect();
        Value::Array(rows)
    }

    fn timeline_doc(&self) -> Value {
        let mut minutes: BTreeMap<u64, Value> = BTreeMap::new();
        for (k, n) in &self.0 {
            let Some(rest) = k.strip_prefix("t:") else {
                continue;
            };
            let Some((m, what)) = rest.split_once(':') else {
                continue;
            };
            let Ok(m) = m.parse::<u64>() else { continue };
            let name = match what {
                "j" => "joins",
                "l" => "leaves",
                "i" => "interactions",
                "o" => "online",
                _ => continue,
            };
            let row = minutes.entry(m).or_insert_with(
                || json!({"minute": m, "joins": 0, "leaves": 0, "interactions": 0, "online": 0}),
            );
            row[name] = (*n).into();
        }
        Value::Array(minutes.into_values().collect())
    }
}

/// The `q` quantile of a histogram, read at the middle of its bucket (0 when empty).
fn percentile(buckets: &[(u64, u64, i64)], q: f64) -> f64 {
    let total: i64 = buckets.iter().map(|b| b.2).sum();
    if total <= 0 {
        return 0.0;
    }
    let rank = (q * total as f64).ceil().max(1.0) as i64;
    let mut seen = 0;
    for (from, to, n) in buckets {
        seen += n;
        if seen >= rank {
            return if to - from == 1 {
                *from as f64
            } else {
                (*from + *to) as f64 / 2.0
            };
        }
    }
    0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(user: &str, owner: &str, at: u64, resumed: Option<bool>) -> Op {
        Op::Join {
            user: user.into(),
            owner: owner.into(),
            at,
            variant: Some("A".into()),
            resumed,
            first_render_ms: Some(12),
        }
    }

    fn leave(user: &str, owner: &str, at: u64, since: u64) -> Op {
        Op::Leave {
            user: user.into(),
            owner: owner.into(),
            at,
            since,
            variant: Some("A".into()),
        }
    }

    #[test]
    fn buckets_are_exact_below_100_and_within_10_percent_above() {
        assert_eq!(bucket(0), (0, 1));
        assert_eq!(bucket(99), (99, 100));
        assert_eq!(bucket(100), (100, 110));
        assert_eq!(bucket(1_234), (1_200, 1_300));
        assert_eq!(bucket(99_999), (99_000, 100_000));
        for v in [150, 1_999, 65_432, 3_600_000] {
            let (from, to) = bucket(v);
            assert!(
                from <= v && v < to && (to - from) * 10 <= from.max(100),
                "{v}"
            );
        }
    }

    #[test]
    fn a_resume_continues_the_visit_and_its_dwell_is_counted_once() {
        let (mut c, mut visits) = (Counters::default(), BTreeMap::new());
        assert_eq!(
            c.apply(&mut visits, &join("u", "g1-1", 60_000, None), 5_000),
            Some(60_000)
        );
        c.apply(&mut visits, &leave("u", "g1-1", 90_000, 60_000), 5_000);
        assert_eq!(c.get("*|dn"), 1);
        // Back within the window, on another gateway: the same visit.
        let start = c.apply(&mut visits, &join("u", "g2-7", 93_000, Some(true)), 5_000);
        assert_eq!(start, Some(60_000));
        assert_eq!(
            (c.get("*|dn"), c.get("*|ds")),
            (0, 0),
            "the first dwell taken back"
        );
        // The old connection's late leave is not the visit's end.
        c.apply(&mut visits, &leave("u", "g1-1", 95_000, 60_000), 5_000);
        c.apply(&mut visits, &leave("u", "g2-7", 180_000, 93_000), 5_000);
        assert_eq!(
            (c.get("*|j"), c.get("*|u"), c.get("A|r"), c.get("A|rr")),
            (1, 1, 1, 1)
        );
        assert_eq!((c.get("*|dn"), c.get("*|ds")), (1, 120_000));
        // After the window a resume is a new visit (a join, and a resume).
        c.apply(&mut visits, &join("u", "g3-1", 200_000, Some(false)), 5_000);
        assert_eq!(
            (c.get("*|j"), c.get("*|u"), c.get("*|r"), c.get("*|rr")),
            (2, 1, 2, 1)
        );
        let doc = c.doc("r", 200_000, 1);
        assert_eq!(
            doc["viewers"],
            json!({"joins": 2, "unique": 1, "online": 1})
        );
        assert_eq!(
            doc["dwell_s"]["p50"], 125.0,
            "the bucket [120 s, 130 s) → its middle"
        );
        assert_eq!(doc["first_render_ms"]["count"], 3);
        assert_eq!(
            doc["by_variant"]["A"]["recovery"],
            json!({"resumes": 2, "recovered": 1})
        );
    }

    #[test]
    fn milestones_count_once_per_visit_into_its_join_minute() {
        let (mut c, mut visits) = (Counters::default(), BTreeMap::new());
        c.apply(&mut visits, &join("u", "o", 61_000, None), 0);
        c.apply(&mut visits, &join("v", "o2", 62_000, None), 0);
        let mark = |user: &str, owner: &str, minutes| Op::Mark {
            user: user.into(),
            owner: owner.into(),
            start: 61_000,
            minutes,
            variant: Some("A".into()),
        };
        c.apply(&mut visits, &mark("u", "o", 1), 0);
        c.apply(&mut visits, &mark("u", "o", 1), 0);
        c.apply(&mut visits, &mark("u", "someone-else", 5), 0);
        let doc = c.doc("r", 0, 0);
        assert_eq!(
            doc["retention"],
            json!([{"minute": 60_000, "joined": 2, "after_1m": 0.5, "after_5m": 0.0,
                    "after_15m": 0.0, "present": {"after_1m": 1, "after_5m": 0, "after_15m": 0}}])
        );
        assert_eq!(doc["timeline"][0]["joins"], 2);
    }

    #[test]
    fn minutes_and_visits_are_bounded() {
        let (mut c, mut visits) = (Counters::default(), BTreeMap::new());
        for m in 0..(MAX_MINUTES as u64 + 10) {
            c.apply(
                &mut visits,
                &Op::Online {
                    at: m * MINUTE_MS,
                    online: m,
                },
                0,
            );
        }
        assert_eq!(c.get("mins"), MAX_MINUTES);
        assert_eq!(
            c.doc("r", 0, 0)["timeline"].as_array().map(Vec::len),
            Some(MAX_MINUTES as usize)
        );
    }
}
