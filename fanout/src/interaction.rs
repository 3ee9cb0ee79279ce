//! Keyword games, quizzes and lotteries: what both stores share — what opens one, the
//! JSON of its events, and the lottery's draw.
//!
//! An interaction's event `data` is one object made of three parts, in this order: its
//! id and state, its *spec* (fixed when it opens, made here once), its end, and its
//! *counts* (which change):
//!
//! ```text
//! {"id":"q-1","state":"open",<spec>,"ends_at":<ms>,<counts>}
//! ```
//!
//! The memory store joins them with [`doc`]; the Redis script joins the same parts the
//! same way, so both stores tell a viewer the same bytes.
//!
//! # The draw
//! At open a lottery gets a random 32-byte seed and publishes its commitment, the hex
//! SHA-256 of the seed's bytes. At the close [`draw`] publishes the seed (hex), the
//! number of entrants, the hex SHA-256 of the entrant ids sorted by their bytes and
//! joined by `\n`, and the winners: the entrants with the smallest hex SHA-256 of
//! `seed_hex + ":" + user_id`, in that order (two equal hashes, which SHA-256 makes
//! practically impossible, would be ordered by user id).

use danmaku_protocol::data::merge_text;
use danmaku_protocol::{EventKind, InteractionId};
use sha2::{Digest, Sha256};

/// Most keyword games, quizzes and lotteries open in one room at once.
pub const MAX_OPEN_INTERACTIONS: usize = 16;
/// Most users one interaction keeps: a keyword's participants, a quiz's answers, a
/// lottery's entrants. Beyond it a keyword still counts comments (its `participants`
/// stays at the bound) and a quiz or lottery refuses with `not_eligible`.
pub const MAX_ENTRANTS: usize = 100_000;
/// Most winners of one lottery.
pub const MAX_WINNERS: u32 = 100;

/// What kind of interaction an id names, by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `k-…`: a keyword game.
    Keyword,
    /// `q-…`: a quiz.
    Quiz,
    /// `l-…`: a lottery.
    Lottery,
}

impl Kind {
    /// The kind of `id`, or `None` for an id of no kind here (a coupon's, or made up).
    pub fn of(id: &InteractionId) -> Option<Self> {
        match id.as_str().split_once('-') {
            Some(("k", _)) => Some(Self::Keyword),
            Some(("q", _)) => Some(Self::Quiz),
            Some(("l", _)) => Some(Self::Lottery),
            _ => None,
        }
    }

    /// The prefix of its ids, `k`, `q` or `l`.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Keyword => "k",
            Self::Quiz => "q",
            Self::Lottery => "l",
        }
    }

    /// The kind of its events.
    pub fn event_kind(self) -> EventKind {
        match self {
            Self::Keyword => EventKind::keyword(),
            Self::Quiz => EventKind::quiz(),
            Self::Lottery => EventKind::lottery(),
        }
    }

    /// Its name in the API's records (`{"quiz":…}`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Keyword => "keyword",
            Self::Quiz => "quiz",
            Self::Lottery => "lottery",
        }
    }
}

/// How a lottery is entered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A viewer comment during the window whose normalized text contains this keyword
    /// (as the backend gave it).
    Comment(String),
    /// Answering this quiz correctly (whenever during the quiz); drawn from its correct
    /// answerers.
    Quiz(InteractionId),
    /// The client's `enter` command.
    Command,
}

impl Entry {
    fn to_json(&self) -> String {
        match self {
            Self::Comment(k) => format!("{{\"comment\":{}}}", json_string(k)),
            Self::Quiz(q) => format!("{{\"quiz\":\"{}\"}}", q.as_str()),
            Self::Command => "\"command\"".to_owned(),
        }
    }
}

/// An interaction to open (checked by the API: the bounds above, non-empty texts).
#[derive(Debug, Clone)]
pub enum NewInteraction {
    /// A keyword the room floods.
    Keyword {
        /// The keyword as the backend gave it.
        keyword: String,
        /// Comments that reach the goal (`"reached":true` in the event).
        goal: Option<u64>,
        /// How long it runs.
        duration_s: u64,
    },
    /// A quiz; the answer is told only at the close.
    Quiz {
        /// The question.
        question: String,
        /// 2..=6 options.
        options: Vec<String>,
        /// The right option's index.
        answer: u32,
        /// How long it takes answers.
        duration_s: u64,
    },
    /// A lottery drawn at its close.
    Lottery {
        /// What is won.
        prize: String,
        /// How many win (1..=[`MAX_WINNERS`]).
        winners: u32,
        /// How it is entered.
        entry: Entry,
        /// When not empty, only viewers with one of these tags may enter.
        tags: Vec<String>,
        /// How long it takes entries.
        duration_s: u64,
    },
}

impl NewInteraction {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Keyword { .. } => Kind::Keyword,
            Self::Quiz { .. } => Kind::Quiz,
            Self::Lottery { .. } => Kind::Lottery,
        }
    }

    /// How long it runs.
    pub fn duration_s(&self) -> u64 {
        match self {
            Self::Keyword { duration_s, .. }
            | Self::Quiz { duration_s, .. }
            | Self::Lottery { duration_s, .. } => *duration_s,
        }
    }

    /// The normalized text a comment must contain to count (a keyword's, or a
    /// comment-entry lottery's).
    pub fn matcher(&self) -> Option<String> {
        match self {
            Self::Keyword { keyword, .. }
            | Self::Lottery {
                entry: Entry::Comment(keyword),
                ..
            } => Some(merge_text(keyword)),
            _ => None,
        }
    }

    /// The spec part of its events (see the module docs); a lottery's names the
    /// commitment of `seed`.
    pub fn spec(&self, seed: &[u8; 32]) -> String {
        match self {
            Self::Keyword { keyword, goal, .. } => {
                let mut s = format!("\"keyword\":{}", json_string(keyword));
                if let Some(g) = goal {
                    s.push_str(&format!(",\"goal\":{g}"));
                }
                s
            }
            Self::Quiz {
                question, options, ..
            } => format!(
                "\"question\":{},\"options\":{}",
                json_string(question),
                serde_json::to_string(options).unwrap_or_else(|_| "[]".into())
            ),
            Self::Lottery {
                prize,
                winners,
                entry,
                tags,
                ..
            } => {
                let mut s = format!(
                    "\"prize\":{},\"winners\":{winners},\"entry\":{},\"commitment\":\"{}\"",
                    json_string(prize),
                    entry.to_json(),
                    hex(&Sha256::digest(seed))
                );
                if !tags.is_empty() {
                    let tags = serde_json::to_string(tags).unwrap_or_else(|_| "[]".into());
                    s.push_str(&format!(",\"tags\":{tags}"));
                }
                s
            }
        }
    }
}

/// A JSON string of `s`.
fn json_string(s: &str) -> String {
    // INVARIANT: a string always serializes.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// 32 random bytes from the operating system's generator: a lottery's seed.
///
/// # Errors
/// [`crate::FanoutError::Unavailable`] when the system has no randomness to give.
pub fn new_seed() -> Result<[u8; 32], crate::FanoutError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| crate::FanoutError::Unavailable(format!("no randomness for a seed: {e}")))?;
    Ok(seed)
}

/// An event's `data`: `{"id":…,"state":…,<spec>,"ends_at":…,<counts>}`.
pub fn doc(id: &str, state: &str, spec: &str, ends_at: u64, counts: &str) -> String {
    format!("{{\"id\":\"{id}\",\"state\":\"{state}\",{spec},\"ends_at\":{ends_at},{counts}}}")
}

/// A keyword game's counts.
pub fn keyword_counts(comments: u64, participants: u64, goal: Option<u64>) -> String {
    let reached = goal.is_some_and(|g| comments >= g);
    format!(
        "\"comments\":{comments},\"participants\":{participants}{}",
        if reached { ",\"reached\":true" } else { "" }
    )
}

/// A quiz's counts: while open only how many answered; at the close the answer too.
pub fn quiz_counts(counts: &[u64], closed: Option<(u32, u64)>) -> String {
    let answers: u64 = counts.iter().sum();
    match closed {
        None => format!("\"answers\":{answers}"),
        Some((answer, correct)) => format!(
            "\"answers\":{answers},\"answer\":{answer},\"counts\":{},\"correct\":{correct}",
            serde_json::to_string(counts).unwrap_or_else(|_| "[]".into())
        ),
    }
}

/// A lottery's draw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draw {
    /// The seed, hex.
    pub seed: String,
    /// The entrants, sorted by their bytes.
    pub entrants: Vec<String>,
    /// Hex SHA-256 of the sorted entrants joined by `\n`.
    pub entrants_digest: String,
    /// The winners, by their hash.
    pub winners: Vec<String>,
}

impl Draw {
    /// The counts of the `drawn` event.
    pub fn counts(&self) -> String {
        format!(
            "\"entrants\":{},\"seed\":\"{}\",\"entrants_digest\":\"{}\",\"winner_ids\":{}",
            self.entrants.len(),
            self.seed,
            self.entrants_digest,
            serde_json::to_string(&self.winners).unwrap_or_else(|_| "[]".into())
        )
    }
}

/// Draws `n` winners among `entrants` (in any order, without repeats) with `seed`.
pub fn draw(seed: &[u8; 32], mut entrants: Vec<String>, n: usize) -> Draw {
    entrants.sort_unstable();
    let seed = hex(seed);
    let entrants_digest = hex(&Sha256::digest(entrants.join("\n").as_bytes()));
    let mut ranked: Vec<(String, &String)> = entrants
        .iter()
        .map(|u| (hex(&Sha256::digest(format!("{seed}:{u}").as_bytes())), u))
        .collect();
    ranked.sort_unstable();
    let winners = ranked.into_iter().take(n).map(|(_, u)| u.clone()).collect();
    Draw {
        seed,
        entrants,
        entrants_digest,
        winners,
    }
}

/// A seed given as hex (as the Redis store keeps it).
pub fn seed_from_hex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A lottery's prize as the `data` of its `lottery.won` event.
pub fn won_data(id: &str, prize_json: &str) -> String {
    format!("{{\"id\":\"{id}\",\"prize\":{prize_json}}}")
}

/// The prize in a lottery's event `data`, as JSON.
pub fn prize_in(doc: &str) -> String {
    serde_json::from_str::<serde_json::Value>(doc)
        .ok()
        .map_or_else(|| "\"\"".to_owned(), |v| v["prize"].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_draw_is_the_smallest_hashes_of_seed_and_user() {
        let seed = [7u8; 32];
        let entrants: Vec<String> = (0..50).map(|i| format!("u{i}")).collect();
        let d = draw(&seed, entrants.clone(), 3);
        let seed_hex = "07".repeat(32);
        assert_eq!(d.seed, seed_hex);
        // Recomputed the long way.
        let mut ranked: Vec<(String, String)> = entrants
            .iter()
            .map(|u| (hex(&Sha256::digest(format!("{seed_hex}:{u}"))), u.clone()))
            .collect();
        ranked.sort();
        let want: Vec<String> = ranked.into_iter().take(3).map(|(_, u)| u).collect();
        assert_eq!(d.winners, want);
        let mut sorted = entrants;
        sorted.sort();
        assert_eq!(
            d.entrants_digest,
            hex(&Sha256::digest(sorted.join("\n").as_bytes()))
        );
        // Fewer entrants than winners: all of them win.
        assert_eq!(draw(&seed, vec!["a".into()], 3).winners, ["a"]);
        assert_eq!(draw(&seed, Vec::new(), 3).winners, Vec::<String>::new());
    }

    #[test]
    fn the_commitment_is_the_hash_of_the_seed_and_the_prize_is_found() {
        let seed = [1u8; 32];
        let new = NewInteraction::Lottery {
            prize: "a \",\"winners\": bag".into(),
            winners: 2,
            entry: Entry::Comment("买买买".into()),
            tags: vec!["vip".into()],
            duration_s: 30,
        };
        let spec = new.spec(&seed);
        let d = doc("l-1", "open", &spec, 5, "\"entrants\":0");
        let v: serde_json::Value = serde_json::from_str(&d).expect("json");
        assert_eq!(v["commitment"], hex(&Sha256::digest(seed)));
        assert_eq!(v["entry"]["comment"], "买买买");
        assert_eq!(v["tags"][0], "vip");
        assert_eq!(prize_in(&d), r#""a \",\"winners\": bag""#);
        assert_eq!(seed_from_hex(&hex(&seed)), Some(seed));
        assert_eq!(seed_from_hex("zz"), None);
    }

    #[test]
    fn a_quiz_tells_its_answer_only_when_closed() {
        let open = quiz_counts(&[3, 4], None);
        assert_eq!(open, r#""answers":7"#);
        let closed = quiz_counts(&[3, 4], Some((1, 4)));
        assert_eq!(
            closed,
            r#""answers":7,"answer":1,"counts":[3,4],"correct":4"#
        );
        assert_eq!(
            keyword_counts(5, 2, Some(5)),
            r#""comments":5,"participants":2,"reached":true"#
        );
        assert_eq!(
            Kind::of(&InteractionId::new("q-3").expect("id")),
            Some(Kind::Quiz)
        );
        assert_eq!(Kind::of(&InteractionId::new("c-3").expect("id")), None);
    }
}
