//! The `data` of the event kinds the gateway makes itself: `likes`, `poll` and
//! `comment.merged`.
//!
//! Defined once, here: the memory store and the Redis store both encode these payloads
//! with these functions (the Redis script keeps only counters and Rust-made text), so
//! the two stores send byte-identical events.

use serde::{Deserialize, Serialize};

/// The `data` of a `likes` event: `{"total":…,"delta":…}`.
pub fn likes_data(total: u64, delta: u64) -> String {
    format!("{{\"total\":{total},\"delta\":{delta}}}")
}

/// Senders a `comment.merged` event names at most.
pub const MERGED_USERS: usize = 5;

/// A comment's text as merging compares it: Unicode NFKC, trimmed, lower-cased (so
/// "６６６ " and "666" are one text, as are "Nice" and "nice").
pub fn merge_text(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let nfkc: String = text.nfkc().collect();
    nfkc.trim().to_lowercase()
}

/// The `data` of a `comment.merged` event:
/// `{"text":…,"count":…,"users":[…]}` (`count` merged copies of the normalized `text`,
/// `users` up to [`MERGED_USERS`] of their senders).
pub fn merged_data<'a>(text: &str, count: u64, users: impl IntoIterator<Item = &'a str>) -> String {
    let users: Vec<&str> = users.into_iter().take(MERGED_USERS).collect();
    serde_json::json!({"text": text, "count": count, "users": users}).to_string()
}

/// What a poll asks: fixed when it opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollSpec {
    /// The question.
    pub question: String,
    /// The option texts, in order.
    pub options: Vec<String>,
}

impl PollSpec {
    /// The spec as JSON (what the Redis store keeps next to the tallies).
    pub fn to_json(&self) -> String {
        // INVARIANT: a struct of strings always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A poll's state at one moment: the `data` of a `poll` event and an entry of a
/// snapshot's `polls`.
#[derive(Debug, Clone, Copy)]
pub struct PollDoc<'a> {
    /// The poll's id.
    pub poll: &'a str,
    /// Whether votes are still taken.
    pub open: bool,
    /// The question and options.
    pub spec: &'a PollSpec,
    /// Votes per option, in the spec's order (missing counts are 0).
    pub votes: &'a [u64],
    /// When the poll closes, Unix milliseconds.
    pub ends_at: u64,
}

#[derive(Serialize)]
struct PollOption<'a> {
    text: &'a str,
    votes: u64,
}

#[derive(Serialize)]
struct PollOut<'a> {
    poll: &'a str,
    state: &'static str,
    question: &'a str,
    options: Vec<PollOption<'a>>,
    ends_at: u64,
}

impl PollDoc<'_> {
    /// `{"poll":…,"state":"open"|"closed","question":…,"options":[{"text","votes"}],"ends_at":…}`.
    pub fn encode(&self) -> String {
        let out = PollOut {
            poll: self.poll,
            state: if self.open { "open" } else { "closed" },
            question: &self.spec.question,
            options: self
                .spec
                .options
                .iter()
                .enumerate()
                .map(|(i, text)| PollOption {
                    text,
                    votes: self.votes.get(i).copied().unwrap_or(0),
                })
                .collect(),
            ends_at: self.ends_at,
        };
        // INVARIANT: strings and integers always serialize.
        serde_json::to_string(&out).unwrap_or_default()
    }
}

/// A poll's state as a client reads it (a `poll` event's `data`, a snapshot entry).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PollState {
    /// The poll's id.
    pub poll: String,
    /// `open` or `closed`.
    pub state: String,
    /// The question.
    pub question: String,
    /// The options with their tallies, in order.
    pub options: Vec<PollTally>,
    /// When the poll closes, Unix milliseconds.
    pub ends_at: u64,
}

/// One option of a [`PollState`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PollTally {
    /// The option's text.
    pub text: String,
    /// Its votes.
    pub votes: u64,
}

impl PollState {
    /// Whether votes are still taken.
    pub fn is_open(&self) -> bool {
        self.state == "open"
    }

    /// The votes per option, in order.
    pub fn votes(&self) -> Vec<u64> {
        self.options.iter().map(|o| o.votes).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_comments_compare_normalized() {
        assert_eq!(merge_text(" ６６６ "), "666");
        assert_eq!(merge_text("Nice"), merge_text("nice"));
        assert_eq!(merge_text("ｱ"), "ア", "half-width katakana folds");
        assert_ne!(merge_text("666"), merge_text("6666"));
        let data = merged_data("666", 328, ["u-1", "u-2", "u-3", "u-4", "u-5", "u-6"]);
        let v: serde_json::Value = serde_json::from_str(&data).unwrap_or_default();
        assert_eq!(v["count"], 328);
        assert_eq!(v["users"].as_array().map(Vec::len), Some(MERGED_USERS));
    }

    #[test]
    fn likes_and_polls_encode_in_the_documented_shape() {
        assert_eq!(likes_data(12, 5), r#"{"total":12,"delta":5}"#);
        let spec = PollSpec {
            question: "Which \"one\"?".into(),
            options: vec!["红".into(), "blue".into()],
        };
        let doc = PollDoc {
            poll: "p-1",
            open: true,
            spec: &spec,
            votes: &[3],
            ends_at: 99,
        };
        assert_eq!(
            doc.encode(),
            r#"{"poll":"p-1","state":"open","question":"Which \"one\"?","options":[{"text":"红","votes":3},{"text":"blue","votes":0}],"ends_at":99}"#
        );
        let back: PollSpec = serde_json::from_str(&spec.to_json()).expect("round trip");
        assert_eq!(back, spec);
        let read: PollState = serde_json::from_str(&doc.encode()).expect("reads back");
        assert_eq!((read.is_open(), read.votes()), (true, vec![3, 0]));
        assert_eq!(
            (read.question.as_str(), read.options[0].text.as_str()),
            (spec.question.as_str(), "红")
        );
    }
}

/// A coupon's state, as the `data` of a `coupon` event and in `snapshot.coupons`.
#[derive(Debug, Clone, Serialize)]
pub struct CouponDoc<'a> {
    /// The coupon's id (`c-1`, …).
    pub coupon: &'a str,
    /// `open`, `sold_out` or `closed`.
    pub state: &'static str,
    /// What the coupon is for.
    pub title: &'a str,
    /// How many there were.
    pub stock: u64,
    /// How many are left.
    pub remaining: u64,
    /// How many one user may claim.
    pub per_user: u32,
    /// When claims end, Unix milliseconds (server clock).
    pub ends_at: u64,
}

impl CouponDoc<'_> {
    /// The state as one JSON object.
    pub fn encode(&self) -> String {
        // INVARIANT: strings and integers only, which serde_json always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}
