//! The `retention` scenario's own record of what its viewers did, the figures the
//! analytics API must show for it (exact counts; for times, the bounds the
//! measurements and the gateways' timing allow), and the comparison.
//!
//! Every time is of the analytics clock (Unix ms times the scale). The load test
//! knows each of its instants only between two readings of the clock: a join
//! between sending `join` and reading `joined`, an end between sending `leave` (or the
//! close) and reading `left` (or the gateway's close), each widened by
//! [`EPSILON_MS`] real for the clock's whole ms and the gateway's scheduling. A
//! gateway counts an open visit present at a milestone when it checks (every flush):
//! a visit ending less than a tick after its milestone may or may not count.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

/// Real ms each measured instant is widened by, either side.
pub const EPSILON_MS: u64 = 25;
/// The dwell milestones of the retention curves, in minutes.
pub const MILESTONES: [u64; 3] = [1, 5, 15];
/// The interaction kinds of the document the scenario does not make (must be 0).
const UNUSED_KINDS: [&str; 4] = ["votes", "answers", "entries", "claims"];
const MINUTE_MS: u64 = 60_000;

/// An instant known between two readings, simulated ms.
pub type Span = (u64, u64);

/// One visit as the load test saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visit {
    /// The viewer's index (its user).
    pub user: usize,
    /// Its variant's index.
    pub variant: usize,
    /// When it began (the first join).
    pub start: Span,
    /// When it ended (the last leave or close).
    pub end: Span,
    /// Joins with `since` that continued it, and of them those answered
    /// `recovered:true`.
    pub resumes: u64,
    /// Of the resumes, those answered `recovered:true`.
    pub recovered: u64,
    /// Comments acknowledged.
    pub comments: u64,
    /// Like commands acknowledged.
    pub likes: u64,
    /// Connections that joined (each one's first `joined` is a first render).
    pub connections: u64,
}

impl Visit {
    /// The dwell's bounds, simulated ms.
    pub fn dwell(&self) -> Span {
        (
            self.end.0.saturating_sub(self.start.1),
            self.end.1.saturating_sub(self.start.0),
        )
    }
}

/// A figure known between two counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Bound {
    /// Counted for certain.
    pub lo: u64,
    /// Counted at most.
    pub hi: u64,
}

impl Bound {
    fn holds(self, v: u64) -> bool {
        (self.lo..=self.hi).contains(&v)
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}–{}", self.lo, self.hi)
        }
    }
}

/// A join minute's figures: visits begun, and still present 1, 5, 15 minutes on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Row {
    /// Visits begun in the minute.
    pub joined: Bound,
    /// Of them, present at each milestone.
    pub present: [Bound; 3],
}

/// What the API must show for a scope (the room, or one variant).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Expected {
    /// Visits begun.
    pub joins: u64,
    /// Distinct users.
    pub unique: u64,
    /// Resumes that continued a visit.
    pub resumes: u64,
    /// Of them, answered `recovered:true`.
    pub recovered: u64,
    /// Comments acknowledged.
    pub comments: u64,
    /// Like commands acknowledged.
    pub likes: u64,
    /// Connections' first renders.
    pub renders: u64,
    /// Each visit's dwell bounds, simulated seconds.
    #[serde(skip)]
    pub dwell: Vec<(f64, f64)>,
    /// By join minute (Unix ms of the analytics clock).
    pub minutes: BTreeMap<u64, Row>,
}

/// The figures `visits` must show; `tick_ms` is how late (simulated ms) a gateway may
/// notice a milestone.
pub fn expect<'a>(visits: impl IntoIterator<Item = &'a Visit>, tick_ms: u64) -> Expected {
    let mut e = Expected::default();
    let mut users = BTreeSet::new();
    for v in visits {
        e.joins += 1;
        users.insert(v.user);
        e.resumes += v.resumes;
        e.recovered += v.recovered;
        e.comments += v.comments;
        e.likes += v.likes;
        e.renders += v.connections;
        let (lo, hi) = v.dwell();
        e.dwell.push((lo as f64 / 1000.0, hi as f64 / 1000.0));
        let (first, last) = (minute(v.start.0), minute(v.start.1));
        let certain_minute = first == last;
        let mut m = first;
        while m <= last {
            let row = e.minutes.entry(m).or_default();
            row.joined.hi += 1;
            row.joined.lo += u64::from(certain_minute);
            for (i, k) in MILESTONES.iter().enumerate() {
                let mark = k * MINUTE_MS;
                let surely = lo >= mark + tick_ms;
                let maybe = hi >= mark;
                row.present[i].lo += u64::from(certain_minute && surely);
                row.present[i].hi += u64::from(maybe);
            }
            m += MINUTE_MS;
        }
    }
    e.unique = users.len() as u64;
    e
}

fn minute(at: u64) -> u64 {
    at - at % MINUTE_MS
}

/// One comparison, for the table and the JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// `room` or the variant's name.
    pub scope: String,
    /// What is compared.
    pub what: String,
    /// What the load test did (a range where timing allows one).
    pub simulated: String,
    /// What the API says.
    pub api: String,
    /// Whether it holds.
    pub ok: bool,
}

/// The `q` quantile's rank among `n`, from 1, as the API reads its histograms.
fn rank(n: usize, q: f64) -> usize {
    ((q * n as f64).ceil() as usize).clamp(1, n.max(1))
}

/// Compares a scope of the document (its root, or `by_variant.<name>`) with `e`.
pub fn check(scope: &str, doc: &Value, e: &Expected) -> Vec<Check> {
    let mut out = Vec::new();
    let mut push = |what: &str, simulated: String, api: String, ok: bool| {
        out.push(Check {
            scope: scope.to_owned(),
            what: what.to_owned(),
            simulated,
            api,
            ok,
        });
    };
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let exact = [
        ("joins", e.joins, &doc["viewers"]["joins"]),
        ("unique", e.unique, &doc["viewers"]["unique"]),
        ("resumes", e.resumes, &doc["recovery"]["resumes"]),
        ("recovered", e.recovered, &doc["recovery"]["recovered"]),
        ("comments", e.comments, &doc["interactions"]["comments"]),
        ("likes", e.likes, &doc["interactions"]["likes"]),
        ("first renders", e.renders, &doc["first_render_ms"]["count"]),
        ("dwells", e.dwell.len() as u64, &doc["dwell_s"]["count"]),
    ];
    for (what, want, got) in exact {
        push(what, want.to_string(), n(got).to_string(), n(got) == want);
    }
    for kind in UNUSED_KINDS {
        let got = n(&doc["interactions"][kind]);
        push(kind, "0".into(), got.to_string(), got == 0);
    }
    // Dwell: the k-th smallest of the gateways' dwells lies between the k-th smallest
    // of the lower bounds and of the upper; the API reads it at its bucket's middle,
    // within 5 %.
    let mut lo: Vec<f64> = e.dwell.iter().map(|d| d.0).collect();
    let mut hi: Vec<f64> = e.dwell.iter().map(|d| d.1).collect();
    lo.sort_by(f64::total_cmp);
    hi.sort_by(f64::total_cmp);
    for (what, q) in [("dwell p50 s", 0.5), ("dwell p90 s", 0.9)] {
        let got = doc["dwell_s"][if q < 0.6 { "p50" } else { "p90" }]
            .as_f64()
            .unwrap_or(0.0);
        let (a, b) = if lo.is_empty() {
            (0.0, 0.0)
        } else {
            let k = rank(lo.len(), q) - 1;
            (lo[k], hi[k])
        };
        let (min, max) = (0.95 * a, 1.05 * b);
        let ok = got >= min - 1e-6 && got <= max + 1e-6;
        push(
            what,
            format!("{a:.1}–{b:.1} (±5 %)"),
            format!("{got:.1}"),
            ok,
        );
    }
    if !e.dwell.is_empty() {
        let count = e.dwell.len() as f64;
        let (a, b) = (
            lo.iter().sum::<f64>() / count,
            hi.iter().sum::<f64>() / count,
        );
        let got = doc["dwell_s"]["mean"].as_f64().unwrap_or(0.0);
        let ok = got >= a - 1e-3 && got <= b + 1e-3;
        push(
            "dwell mean s",
            format!("{a:.1}–{b:.1}"),
            format!("{got:.1}"),
            ok,
        );
    }
    // Retention by join minute.
    let mut api: BTreeMap<u64, (u64, [u64; 3])> = BTreeMap::new();
    for row in doc["retention"].as_array().into_iter().flatten() {
        let present = MILESTONES.map(|k| n(&row["present"][format!("after_{k}m")]));
        api.insert(n(&row["minute"]), (n(&row["joined"]), present));
    }
    let minutes: BTreeSet<u64> = api.keys().chain(e.minutes.keys()).copied().collect();
    let mut wrong = Vec::new();
    for m in &minutes {
        let want = e.minutes.get(m).copied().unwrap_or_default();
        let (joined, present) = api.get(m).copied().unwrap_or_default();
        let ok =
            want.joined.holds(joined) && want.present.iter().zip(present).all(|(b, p)| b.holds(p));
        if !ok {
            wrong.push(format!(
                "minute {m}: joined {joined} (want {}), present {present:?} (want {}, {}, {})",
                want.joined, want.present[0], want.present[1], want.present[2]
            ));
        }
    }
    let total = |f: &dyn Fn(&Row) -> Bound| {
        e.minutes.values().fold(Bound::default(), |acc, r| Bound {
            lo: acc.lo + f(r).lo,
            hi: acc.hi + f(r).hi,
        })
    };
    for (i, k) in MILESTONES.iter().enumerate() {
        let got: u64 = api.values().map(|(_, p)| p[i]).sum();
        let want = total(&|r: &Row| r.present[i]);
        push(
            &format!("present after {k} min"),
            want.to_string(),
            got.to_string(),
            want.holds(got),
        );
    }
    push(
        "retention minutes",
        format!("{} minutes", e.minutes.len()),
        match wrong.len() {
            0 => format!("{} minutes", api.len()),
            1..=3 => wrong.join("; "),
            n => format!("{}; and {} more minutes", wrong[..3].join("; "), n - 3),
        },
        wrong.is_empty(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn visit(user: usize, start: u64, end: u64) -> Visit {
        Visit {
            user,
            start: (start, start + 100),
            end: (end, end + 100),
            connections: 1,
            ..Visit::default()
        }
    }

    /// A document showing exactly `visits` (dwell from the middle of each span).
    fn doc(visits: &[Visit]) -> Value {
        let e = expect(visits, 0);
        let mut dwell: Vec<f64> = visits
            .iter()
            .map(|v| (v.end.0 + 50 - v.start.0 - 50) as f64 / 1000.0)
            .collect();
        dwell.sort_by(f64::total_cmp);
        let rows: Vec<Value> = e
            .minutes
            .iter()
            .map(|(m, r)| {
                json!({"minute": m, "joined": r.joined.lo, "present": {
                    "after_1m": r.present[0].lo, "after_5m": r.present[1].lo,
                    "after_15m": r.present[2].lo}})
            })
            .collect();
        json!({
            "viewers": {"joins": e.joins, "unique": e.unique},
            "recovery": {"resumes": 0, "recovered": 0},
            "interactions": {"comments": 0, "likes": 0, "votes": 0},
            "first_render_ms": {"count": e.renders},
            "dwell_s": {"count": dwell.len(), "p50": dwell[rank(dwell.len(), 0.5) - 1],
                        "p90": dwell[rank(dwell.len(), 0.9) - 1],
                        "mean": dwell.iter().sum::<f64>() / dwell.len() as f64},
            "retention": rows,
        })
    }

    #[test]
    fn milestones_near_an_end_or_a_start_near_a_minute_are_ranges() {
        let m = 600 * MINUTE_MS;
        let visits = [
            // Well inside minute m, 2 minutes: present at 1 for certain.
            visit(1, m + 1_000, m + 121_000),
            // Ends 5 s after its 1-minute mark: within a 12 s tick, may or may not.
            visit(2, m + 2_000, m + 67_000),
            // Begins across the minute's end: minute m or the next.
            visit(3, m + MINUTE_MS - 50, m + 10 * MINUTE_MS),
        ];
        let e = expect(&visits, 12_000);
        assert_eq!((e.joins, e.unique, e.renders), (3, 3, 3));
        let row = e.minutes[&m];
        assert_eq!(row.joined, Bound { lo: 2, hi: 3 });
        assert_eq!(row.present[0], Bound { lo: 1, hi: 3 });
        assert_eq!(row.present[1], Bound { lo: 0, hi: 1 });
        assert_eq!(e.minutes[&(m + MINUTE_MS)].joined, Bound { lo: 0, hi: 1 });
    }

    #[test]
    fn a_document_that_shows_the_visits_passes_and_any_miscount_fails() {
        let m = 600 * MINUTE_MS;
        let mut visits: Vec<Visit> = (0..20)
            .map(|i| visit(i, m + i as u64 * 1_000, m + 30_000 + i as u64 * 20_000))
            .collect();
        visits.push(visit(0, m + 500_000, m + 700_000));
        let e = expect(&visits, 0);
        assert_eq!((e.joins, e.unique), (21, 20));
        let good = doc(&visits);
        let failed = |d: &Value| -> Vec<String> {
            check("room", d, &e)
                .into_iter()
                .filter(|c| !c.ok)
                .map(|c| c.what)
                .collect()
        };
        assert!(failed(&good).is_empty(), "{:?}", check("room", &good, &e));
        let mut d = good.clone();
        d["viewers"]["unique"] = json!(21);
        assert_eq!(failed(&d), ["unique"]);
        let mut d = good.clone();
        d["dwell_s"]["p90"] = json!(good["dwell_s"]["p90"].as_f64().unwrap_or(0.0) * 1.2);
        assert_eq!(failed(&d), ["dwell p90 s"]);
        let mut d = good.clone();
        d["retention"][0]["present"]["after_1m"] = json!(0);
        assert_eq!(failed(&d), ["present after 1 min", "retention minutes"]);
        let zeros = json!({});
        assert!(failed(&zeros).contains(&"joins".to_owned()));
    }
}
