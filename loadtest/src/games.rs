//! The `interact` scenario's room games: a keyword game, a quiz, a lottery and a coupon
//! opened in each room before the viewers join, closed after the measured phase, and
//! their records checked against what the viewers were told — exactly.

use std::collections::BTreeMap;

use danmaku_protocol::RoomId;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::api::api;
use crate::cli::Scenario;
use crate::plan::Plan;
use crate::stats::GamesSeen;

/// The games opened in one room.
#[derive(Debug, Clone, Default)]
pub struct RoomGames {
    room: Option<RoomId>,
    keyword: Option<String>,
    quiz: Option<String>,
    lottery: Option<String>,
    coupon: Option<String>,
}

/// The scenario's game settings, when it asks for any game.
struct Asked<'a> {
    keyword: Option<&'a str>,
    quiz: bool,
    lottery_winners: Option<u32>,
    coupon: Option<(u64, u32, u32)>,
}

fn asked(scenario: &Scenario) -> Option<Asked<'_>> {
    match scenario {
        Scenario::Interact {
            keyword,
            quiz,
            lottery_winners,
            coupon_stock,
            coupon_per_user,
            coupon_claims,
            ..
        } if keyword.is_some() || *quiz || lottery_winners.is_some() || coupon_stock.is_some() => {
            Some(Asked {
                keyword: keyword.as_deref(),
                quiz: *quiz,
                lottery_winners: *lottery_winners,
                coupon: coupon_stock.map(|s| (s, *coupon_per_user, *coupon_claims)),
            })
        }
        _ => None,
    }
}

/// Long enough for any run: the games are closed explicitly at its end.
const GAME_S: u64 = 86_400;

/// Opens the scenario's games in every room (none when it asks for none).
///
/// # Errors
/// When the API refuses one.
pub async fn open(plan: &Plan) -> anyhow::Result<Vec<RoomGames>> {
    let Some(a) = asked(&plan.cli.scenario) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for room in &plan.rooms {
        let mut g = RoomGames {
            room: Some(room.clone()),
            ..RoomGames::default()
        };
        let post = |what: &'static str, body: Value| async move {
            let path = format!("/v1/rooms/{room}/{what}");
            api::<Value>(plan, "POST", &path, &body.to_string()).await
        };
        let id = |v: Value, field: &str| v[field].as_str().map(str::to_owned);
        if let Some(k) = a.keyword {
            let v = post("keywords", json!({"keyword": k, "duration_s": GAME_S})).await?;
            g.keyword = id(v, "keyword");
        }
        if a.quiz {
            let body = json!({"question": "Which one?", "options": ["A", "B", "C"], "answer": 0, "duration_s": GAME_S});
            g.quiz = id(post("quizzes", body).await?, "quiz");
        }
        if let Some(winners) = a.lottery_winners {
            let body = json!({"prize": "lucky bag", "winners": winners, "duration_s": GAME_S, "entry": "command"});
            g.lottery = id(post("lotteries", body).await?, "lottery");
        }
        if let Some((stock, per_user, _)) = a.coupon {
            let body = json!({"title": "load test", "stock": stock, "per_user": per_user, "duration_s": GAME_S});
            g.coupon = id(post("coupons", body).await?, "coupon");
        }
        out.push(g);
    }
    Ok(out)
}

/// What the gateway holds of the games at the end, summed over the rooms.
#[derive(Debug, Clone, Default)]
pub struct Held {
    keyword: (u64, u64),
    quiz_counts: Vec<u64>,
    entrants: u64,
    winners: u64,
    /// Draws that did not recompute from their audit record (their rooms).
    bad_draws: Vec<String>,
    claims_listed: u64,
    /// Every room's winners, and its claims list's (user, code) pairs.
    winner_ids: Vec<String>,
    claims: Vec<(String, String)>,
    stock: u64,
    /// Failures to close or read a game.
    unread: Vec<String>,
    /// When the first game was closed, Unix µs.
    closed_at_us: u64,
}

/// Closes every game (drawing the lotteries) and reads their records.
pub async fn close(plan: &Plan, games: &[RoomGames]) -> Held {
    let mut held = Held {
        closed_at_us: crate::now_us(),
        ..Held::default()
    };
    for g in games {
        let Some(room) = &g.room else { continue };
        let mut read = async |what: &str, id: &Option<String>, close: bool| -> Option<Value> {
            let id = id.as_ref()?;
            let path = format!("/v1/rooms/{room}/{what}/{id}");
            if close && let Err(e) = api::<Value>(plan, "POST", &format!("{path}/close"), "").await
            {
                held.unread
                    .push(format!("closing {what}/{id} of {room}: {e}"));
            }
            match api::<Value>(plan, "GET", &path, "").await {
                Ok(v) => Some(v),
                Err(e) => {
                    held.unread
                        .push(format!("reading {what}/{id} of {room}: {e}"));
                    None
                }
            }
        };
        let keyword = read("keywords", &g.keyword, true).await;
        let quiz = read("quizzes", &g.quiz, true).await;
        let lottery = read("lotteries", &g.lottery, true).await;
        let coupon = read("coupons", &g.coupon, false).await;
        if let Some(k) = keyword {
            held.keyword.0 += k["keyword"]["comments"].as_u64().unwrap_or(0);
            held.keyword.1 += k["keyword"]["participants"].as_u64().unwrap_or(0);
        }
        if let Some(q) = quiz {
            let counts = q["quiz"]["counts"].as_array().cloned().unwrap_or_default();
            held.quiz_counts
                .resize(held.quiz_counts.len().max(counts.len()), 0);
            for (i, c) in counts.iter().enumerate() {
                held.quiz_counts[i] += c.as_u64().unwrap_or(0);
            }
        }
        if let Some(l) = lottery {
            held.entrants += l["lottery"]["entrants"].as_u64().unwrap_or(0);
            let winners = l["lottery"]["winner_ids"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            held.winners += winners.len() as u64;
            held.winner_ids
                .extend(winners.iter().filter_map(Value::as_str).map(str::to_owned));
            if !draw_recomputes(&l) {
                held.bad_draws.push(room.to_string());
            }
        }
        if let Some(c) = coupon {
            let claims = c["claims"].as_array().cloned().unwrap_or_default();
            held.claims_listed += claims.len() as u64;
            held.claims.extend(claims.iter().map(|c| {
                let s = |f: &str| c[f].as_str().unwrap_or_default().to_owned();
                (s("user"), s("code"))
            }));
            held.stock += c["coupon"]["stock"].as_u64().unwrap_or(0);
        }
        if g.lottery.is_some() {
            // The last `lottery.won` is for its winners alone: everyone else is told
            // they skipped it in front of their next event, which this is.
            let end = json!({"kind": "games.end", "data": {}});
            let path = format!("/v1/rooms/{room}/events");
            if let Err(e) = api::<Value>(plan, "POST", &path, &end.to_string()).await {
                held.unread.push(format!("ending the games of {room}: {e}"));
            }
        }
    }
    held
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether a drawn lottery's record recomputes: the seed hashes to the commitment, the
/// sorted entrants to the digest, and the winners are those with the smallest
/// SHA-256 of `seed:user`.
pub fn draw_recomputes(record: &Value) -> bool {
    let l = &record["lottery"];
    let (Some(seed), Some(commitment)) = (l["seed"].as_str(), l["commitment"].as_str()) else {
        return false;
    };
    let seed_bytes: Option<Vec<u8>> = (0..seed.len() / 2)
        .map(|i| u8::from_str_radix(seed.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    let Some(seed_bytes) = seed_bytes.filter(|b| b.len() == 32) else {
        return false;
    };
    let mut entrants: Vec<&str> = record["entrants"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    entrants.sort_unstable();
    let mut ranked: Vec<(String, &str)> = entrants
        .iter()
        .map(|u| (sha256_hex(format!("{seed}:{u}").as_bytes()), *u))
        .collect();
    ranked.sort_unstable();
    let n = l["winners"].as_u64().unwrap_or(0) as usize;
    let want: Vec<&str> = ranked.iter().take(n).map(|(_, u)| *u).collect();
    let got: Vec<&str> = l["winner_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    sha256_hex(&seed_bytes) == commitment
        && sha256_hex(entrants.join("\n").as_bytes()) == l["entrants_digest"].as_str().unwrap_or("")
        && l["entrants"].as_u64() == Some(entrants.len() as u64)
        && got == want
}

/// The games' results: what the viewers were told against what the gateway holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Games {
    /// Keyword comments acknowledged / counted by the game, participants likewise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyword: Option<BTreeMap<String, u64>>,
    /// Quiz answers acknowledged per option, and the quiz's counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quiz: Option<BTreeMap<String, Vec<u64>>>,
    /// Lottery entries acknowledged, entrants drawn from, winners, `lottery.won`
    /// received, draws that did not recompute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lottery: Option<BTreeMap<String, u64>>,
    /// The coupon storm: stock, claims acknowledged and listed, refusals, claims/s and
    /// the claim reply latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coupon: Option<BTreeMap<String, f64>>,
    /// Whether every count above matches.
    pub exact: bool,
}

/// Whether `a` and `b` hold the same items as many times each, in any order.
fn same<T: Ord + Clone>(a: &[T], b: &[T]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

fn quantile_ms(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    (sorted[i] as f64 / 1000.0 * 100.0).round() / 100.0
}

/// Compares what the viewers were told (`seen`) with what the gateway holds; returns
/// the results and a failure line per mismatch.
pub fn check(
    scenario: &Scenario,
    rooms: usize,
    seen: &GamesSeen,
    held: &Held,
    refused: &BTreeMap<String, u64>,
    viewers: u64,
) -> Option<(Games, Vec<String>)> {
    let a = asked(scenario)?;
    let mut failures = held.unread.clone();
    if seen.last_ack_us > held.closed_at_us {
        failures.push(format!(
            "a game move was acknowledged {} ms after the games closed: the viewers were still acting",
            (seen.last_ack_us - held.closed_at_us) / 1000
        ));
    }
    let mut g = Games::default();
    if a.keyword.is_some() {
        let (comments, participants) = held.keyword;
        if comments != seen.keyword_acked || participants != seen.keyword_participants {
            failures.push(format!(
                "keyword: {comments} comments and {participants} participants counted, {} and {} acknowledged",
                seen.keyword_acked, seen.keyword_participants
            ));
        }
        g.keyword = Some(BTreeMap::from([
            ("comments_acked".into(), seen.keyword_acked),
            ("comments_counted".into(), comments),
            ("participants_acked".into(), seen.keyword_participants),
            ("participants_counted".into(), participants),
        ]));
    }
    if a.quiz {
        let acked: Vec<u64> = (0..held.quiz_counts.len() as u32)
            .map(|o| seen.answers_acked.get(&o).copied().unwrap_or(0))
            .collect();
        if acked != held.quiz_counts {
            failures.push(format!(
                "quiz: counts {:?}, answers acknowledged {acked:?}",
                held.quiz_counts
            ));
        }
        g.quiz = Some(BTreeMap::from([
            ("answers_acked".into(), acked),
            ("counts".into(), held.quiz_counts.clone()),
        ]));
    }
    if let Some(n) = a.lottery_winners {
        let want_winners = held.entrants.min(u64::from(n) * rooms as u64);
        if held.entrants != seen.entries_acked
            || held.winners != want_winners
            || seen.won != held.winners
            || !same(&seen.won_by, &held.winner_ids)
            || !held.bad_draws.is_empty()
        {
            failures.push(format!(
                "lottery: {} entrants for {} entries acknowledged, {} winners, {} told they won ({}the winners), draws not recomputing in {:?}",
                held.entrants,
                seen.entries_acked,
                held.winners,
                seen.won,
                if same(&seen.won_by, &held.winner_ids) { "" } else { "not " },
                held.bad_draws
            ));
        }
        g.lottery = Some(BTreeMap::from([
            ("entries_acked".into(), seen.entries_acked),
            ("entrants".into(), held.entrants),
            ("winners".into(), held.winners),
            ("won_received".into(), seen.won),
            ("draws_not_recomputing".into(), held.bad_draws.len() as u64),
        ]));
    }
    if let Some((_, per_user, claims)) = a.coupon {
        let may = viewers * u64::from(per_user.min(claims));
        let want = held.stock.min(may);
        let over = seen.claims_over_per_user;
        let listed_as_acked = same(&seen.claims, &held.claims);
        if seen.claims_acked != want || held.claims_listed != want || over > 0 || !listed_as_acked {
            failures.push(format!(
                "coupon: {} claims acknowledged and {} listed ({}the same users and codes), {want} expected (stock {}), {over} viewers over per_user",
                seen.claims_acked,
                held.claims_listed,
                if listed_as_acked { "" } else { "not " },
                held.stock
            ));
        }
        let mut replies = seen.claim_reply_us.clone();
        replies.sort_unstable();
        let span_s = seen
            .claims_span_us
            .map_or(0.0, |(a, b)| b.saturating_sub(a) as f64 / 1e6);
        let per_s = if span_s > 0.0 {
            (replies.len() as f64 / span_s).round()
        } else {
            0.0
        };
        let count = |code: &str| refused.get(code).copied().unwrap_or(0) as f64;
        g.coupon = Some(BTreeMap::from([
            ("stock".into(), held.stock as f64),
            ("claims_sent".into(), replies.len() as f64),
            ("claims_acked".into(), seen.claims_acked as f64),
            ("claims_listed".into(), held.claims_listed as f64),
            ("sold_out".into(), count("sold_out")),
            ("already_claimed".into(), count("already_claimed")),
            ("claims_per_s".into(), per_s),
            ("claim_p50_ms".into(), quantile_ms(&replies, 0.5)),
            ("claim_p99_ms".into(), quantile_ms(&replies, 0.99)),
        ]));
    }
    g.exact = failures.is_empty();
    Some((g, failures))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario() -> Scenario {
        Scenario::Interact {
            load: crate::actions::tests::load(),
            comment_rate: 0.0,
            like_rate: 0.0,
            no_vote: true,
            repeat_share: 0.0,
            keyword: Some("go".into()),
            quiz: true,
            lottery_winners: None,
            coupon_stock: Some(2),
            coupon_per_user: 1,
            coupon_claims: 3,
        }
    }

    #[test]
    fn every_mismatch_fails_and_exact_counts_pass() {
        let mut seen = GamesSeen {
            keyword_acked: 7,
            keyword_participants: 3,
            claims_acked: 2,
            ..GamesSeen::default()
        };
        seen.answers_acked.insert(0, 3);
        seen.answers_acked.insert(1, 1);
        let held = Held {
            keyword: (7, 3),
            quiz_counts: vec![3, 1, 0],
            claims_listed: 2,
            stock: 2,
            ..Held::default()
        };
        let none = BTreeMap::new();
        let (g, failures) = check(&scenario(), 1, &seen, &held, &none, 4).expect("games");
        assert!(failures.is_empty() && g.exact, "{failures:?}");
        let off = Held {
            keyword: (8, 3),
            quiz_counts: vec![3, 0, 1],
            claims_listed: 3,
            ..held.clone()
        };
        let (g, failures) = check(&scenario(), 1, &seen, &off, &none, 4).expect("games");
        assert!(!g.exact);
        assert_eq!(failures.len(), 3, "{failures:?}");
        // The same number of claims, not the same ones.
        let pair = |u: &str, c: &str| (u.to_owned(), c.to_owned());
        let seen = GamesSeen {
            claims: vec![pair("lt-1", "aa"), pair("lt-2", "bb")],
            ..seen
        };
        let listed = Held {
            claims: vec![pair("lt-2", "bb"), pair("lt-1", "aa")],
            ..held.clone()
        };
        let (_, failures) = check(&scenario(), 1, &seen, &listed, &none, 4).expect("games");
        assert!(
            failures.is_empty(),
            "the same claims in another order: {failures:?}"
        );
        let other = Held {
            claims: vec![pair("lt-1", "aa"), pair("lt-3", "bb")],
            ..held
        };
        let (_, failures) = check(&scenario(), 1, &seen, &other, &none, 4).expect("games");
        assert!(
            failures.len() == 1 && failures[0].contains("not the same"),
            "{failures:?}"
        );
        assert!(
            check(
                &Scenario::Fanout(match scenario() {
                    Scenario::Interact { load, .. } => load,
                    _ => unreachable!(),
                }),
                1,
                &seen,
                &off,
                &none,
                4
            )
            .is_none()
        );
    }

    #[test]
    fn a_draw_recomputes_only_when_every_part_holds() {
        let seed = [9u8; 32];
        let seed_hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
        let entrants = ["b", "a", "c", "d"];
        let mut sorted = entrants.to_vec();
        sorted.sort_unstable();
        let mut ranked: Vec<(String, &str)> = sorted
            .iter()
            .map(|u| (sha256_hex(format!("{seed_hex}:{u}").as_bytes()), *u))
            .collect();
        ranked.sort_unstable();
        let winners: Vec<&str> = ranked.iter().take(2).map(|(_, u)| *u).collect();
        let record = json!({
            "lottery": {
                "seed": seed_hex,
                "commitment": sha256_hex(&seed),
                "entrants": 4,
                "entrants_digest": sha256_hex(sorted.join("\n").as_bytes()),
                "winners": 2,
                "winner_ids": winners,
            },
            "entrants": entrants,
        });
        assert!(draw_recomputes(&record));
        let mut forged = record.clone();
        forged["lottery"]["winner_ids"] = json!([ranked[3].1, ranked[0].1]);
        assert!(!draw_recomputes(&forged));
        let mut forged = record;
        forged["lottery"]["commitment"] = json!(sha256_hex(b"other"));
        assert!(!draw_recomputes(&forged));
    }
}
