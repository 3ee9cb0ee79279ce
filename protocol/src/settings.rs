//! A room's settings: what its hosts change live — slow mode, the comment budget,
//! merging, blocked words, the minimum level to comment, the VIP tags its entrances
//! name, and an experiment whose variant each viewer lands in.
//!
//! A settings call is a partial update ([`RoomSettings::patch`]): the fields it names
//! change, the others keep their value. The whole result is what the `settings` event
//! and `snapshot.settings` carry ([`RoomSettings::encode`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audience::valid_tag;
use crate::data::merge_text;

/// Most blocked words of a room.
pub const MAX_BLOCKED_WORDS: usize = 500;
/// Longest blocked word, in characters (after normalization).
pub const MAX_WORD_CHARS: usize = 50;
/// Longest slow mode, in seconds.
pub const MAX_SLOW_MODE_S: u32 = 3_600;
/// Highest room comment budget a setting may give (comments per second).
pub const MAX_COMMENTS_PER_S: u32 = 1_000_000;
/// Most copies sequenced one by one before merging.
pub const MAX_MERGE_AFTER: u32 = 1_000;
/// The merge window's bounds, in ms.
pub const MERGE_WINDOW_MS: std::ops::RangeInclusive<u64> = 100..=60_000;
/// Highest minimum level.
pub const MAX_MIN_LEVEL: i64 = 1_000_000;
/// Most VIP tags.
pub const MAX_VIP_TAGS: usize = 32;
/// Most variants of an experiment.
pub const MAX_VARIANTS: usize = 8;

/// An experiment: each viewer lands in one of its variants, the same one every time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Experiment {
    /// Its name (`[a-z0-9_.:-]{1,32}`): a user's variant is a hash of it and the user.
    pub name: String,
    /// 2..=8 distinct variant names (`[a-z0-9_.:-]{1,32}`, or upper-case letters).
    pub variants: Vec<String>,
}

/// A room's settings, whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSettings {
    /// A viewer comments at most once per this many seconds (0: off).
    pub slow_mode_s: u32,
    /// Viewer comments the room admits per second on every gateway (0: no budget).
    pub comments_per_s: u32,
    /// Copies of one text sequenced one by one in a window before the rest merge (0:
    /// never merge).
    pub merge_after: u32,
    /// How long a merge window lasts, in ms.
    pub merge_window_ms: u64,
    /// Words no viewer comment may contain, normalized as comments are (NFKC,
    /// lower-cased), sorted.
    pub blocked_words: Vec<String>,
    /// Viewers whose token's `level` is below it may not comment.
    pub min_level: i64,
    /// Whether joins are told in `entrance` events (at most one a second).
    #[serde(default)]
    pub entrances: bool,
    /// Viewers with any of these tags are named one by one in `entrance` events.
    pub vip_tags: Vec<String>,
    /// The room's experiment, if any.
    pub experiment: Option<Experiment>,
}

/// Why a settings update was refused; the text names the field and its bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("settings: {0}")]
pub struct SettingsError(String);

fn bad(m: impl Into<String>) -> SettingsError {
    SettingsError(m.into())
}

/// A whole number field within `lo..=hi`.
fn number(field: &str, v: &Value, lo: i64, hi: i64) -> Result<i64, SettingsError> {
    v.as_i64()
        .filter(|n| (lo..=hi).contains(n))
        .ok_or_else(|| bad(format!("`{field}` must be a whole number in {lo}..={hi}")))
}

fn count(field: &str, v: &Value, hi: u32) -> Result<u32, SettingsError> {
    let n = number(field, v, 0, i64::from(hi))?;
    u32::try_from(n).map_err(|_| bad(format!("`{field}` must be in 0..={hi}")))
}

/// A list of strings, each checked by `item`, at most `max` of them; sorted, distinct.
fn strings(
    field: &str,
    v: &Value,
    max: usize,
    item: impl Fn(&str) -> Option<String>,
    what: &str,
) -> Result<Vec<String>, SettingsError> {
    let items = v.as_array().filter(|a| a.len() <= max).ok_or_else(|| {
        bad(format!(
            "`{field}` must be an array of at most {max} {what}"
        ))
    })?;
    let mut out = Vec::with_capacity(items.len());
    for i in items {
        let s = i.as_str().and_then(&item);
        out.push(s.ok_or_else(|| bad(format!("`{field}` must hold {what}")))?);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn blocked_word(raw: &str) -> Option<String> {
    let word = merge_text(raw);
    let fits = !word.is_empty() && word.chars().count() <= MAX_WORD_CHARS;
    (fits && !word.chars().any(char::is_control)).then_some(word)
}

/// Whether `raw` may name an experiment's variant: `[A-Za-z0-9_.:-]{1,32}`.
pub fn valid_variant(raw: &str) -> bool {
    (1..=32).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
}

fn experiment(v: &Value) -> Result<Option<Experiment>, SettingsError> {
    if v.is_null() {
        return Ok(None);
    }
    let what = "`experiment` must be null or {\"name\":…,\"variants\":[2..=8 names]}";
    let o = v.as_object().ok_or_else(|| bad(what))?;
    if o.keys().any(|k| k != "name" && k != "variants") {
        return Err(bad(what));
    }
    let name = o
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| valid_tag(n))
        .ok_or_else(|| bad("`experiment.name` must match [a-z0-9_.:-]{1,32}"))?;
    let list = o
        .get("variants")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(what))?;
    let mut variants = Vec::with_capacity(list.len());
    for v in list {
        match v.as_str() {
            Some(s) if valid_variant(s) && !variants.iter().any(|x: &String| x == s) => {
                variants.push(s.to_owned());
            }
            _ => {
                return Err(bad(
                    "`experiment.variants` must be distinct names of [A-Za-z0-9_.:-]{1,32}",
                ));
            }
        }
    }
    if !(2..=MAX_VARIANTS).contains(&variants.len()) {
        return Err(bad(format!(
            "`experiment.variants` must hold 2..={MAX_VARIANTS} names"
        )));
    }
    Ok(Some(Experiment {
        name: name.to_owned(),
        variants,
    }))
}

impl RoomSettings {
    /// These settings with the fields of `patch` (a JSON object naming any of them)
    /// changed; the others kept.
    ///
    /// # Errors
    /// [`SettingsError`] naming the first field that is unknown or out of bounds; then
    /// nothing changes.
    pub fn patch(&self, patch: &Value) -> Result<Self, SettingsError> {
        let fields = patch
            .as_object()
            .ok_or_else(|| bad("the body must be an object of the settings to change"))?;
        if fields.is_empty() {
            return Err(bad("name at least one setting to change"));
        }
        let mut s = self.clone();
        for (field, v) in fields {
            match field.as_str() {
                "slow_mode_s" => s.slow_mode_s = count(field, v, MAX_SLOW_MODE_S)?,
                "comments_per_s" => s.comments_per_s = count(field, v, MAX_COMMENTS_PER_S)?,
                "merge_after" => s.merge_after = count(field, v, MAX_MERGE_AFTER)?,
                "merge_window_ms" => {
                    let (lo, hi) = (*MERGE_WINDOW_MS.start(), *MERGE_WINDOW_MS.end());
                    let n = number(field, v, lo as i64, hi as i64)?;
                    s.merge_window_ms = n.unsigned_abs();
                }
                "blocked_words" => {
                    let what = "words of 1..=50 characters";
                    s.blocked_words = strings(field, v, MAX_BLOCKED_WORDS, blocked_word, what)?;
                }
                "min_level" => s.min_level = number(field, v, 0, MAX_MIN_LEVEL)?,
                "entrances" => {
                    s.entrances = v
                        .as_bool()
                        .ok_or_else(|| bad("`entrances` must be true or false"))?;
                }
                "vip_tags" => {
                    let tag = |t: &str| valid_tag(t).then(|| t.to_owned());
                    let what = "tags matching [a-z0-9_.:-]{1,32}";
                    s.vip_tags = strings(field, v, MAX_VIP_TAGS, tag, what)?;
                }
                "experiment" => s.experiment = experiment(v)?,
                other => {
                    return Err(bad(format!(
                        "unknown setting `{other}`: give slow_mode_s, comments_per_s, \
                         merge_after, merge_window_ms, blocked_words, min_level, entrances, \
                         vip_tags or experiment"
                    )));
                }
            }
        }
        Ok(s)
    }

    /// The settings as JSON: the `data` of a `settings` event and `snapshot.settings`.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Settings from their [`encode`](Self::encode)d JSON; `None` when it is not that.
    pub fn decode(json: &[u8]) -> Option<Self> {
        serde_json::from_slice(json).ok()
    }

    /// The first blocked word that `normalized` (a comment's text as
    /// [`merge_text`] makes it) contains.
    pub fn blocked_in(&self, normalized: &str) -> Option<&str> {
        self.blocked_words
            .iter()
            .map(String::as_str)
            .find(|w| normalized.contains(w))
    }

    /// The variant of the room's experiment that `user` is in: `cohort` when it names
    /// one of the variants, else the variant its hash picks. `None` without an
    /// experiment.
    pub fn variant(&self, user: &str, cohort: Option<&str>) -> Option<&str> {
        let e = self.experiment.as_ref()?;
        if let Some(v) = cohort.and_then(|c| e.variants.iter().find(|v| **v == c)) {
            return Some(v);
        }
        let n = e.variants.len() as u64;
        let i = usize::try_from(fnv1a(&[&e.name, ":", user]) % n).unwrap_or(0);
        e.variants.get(i).map(String::as_str)
    }
}

/// FNV-1a, 64 bits: a hash that is the same in every process, build and language (so
/// a backend can compute a viewer's variant too).
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts.iter().flat_map(|p| p.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> RoomSettings {
        RoomSettings {
            comments_per_s: 200,
            merge_after: 3,
            merge_window_ms: 1_000,
            ..RoomSettings::default()
        }
    }

    #[test]
    fn a_patch_changes_what_it_names_and_keeps_the_rest() {
        let s = base()
            .patch(&json!({"slow_mode_s": 5, "blocked_words": ["ＳＰＡＭ", "spam", " Scam "]}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.slow_mode_s, 5);
        assert_eq!(
            s.blocked_words,
            ["scam", "spam"],
            "normalized, sorted, distinct"
        );
        assert_eq!((s.comments_per_s, s.merge_after), (200, 3), "kept");
        let back = RoomSettings::decode(s.encode().as_bytes());
        assert_eq!(back.as_ref(), Some(&s));
        let s = s.patch(&json!({"experiment": {"name": "opening-v2", "variants": ["A", "B"]}}));
        let s = s.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.slow_mode_s, 5, "an earlier patch is kept by a later one");
        assert!(
            s.encode()
                .contains(r#""experiment":{"name":"opening-v2","variants":["A","B"]}"#)
        );
        let cleared = s
            .patch(&json!({"experiment": null}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cleared.experiment, None);
    }

    #[test]
    fn blocked_words_match_the_normalized_text() {
        let s = base()
            .patch(&json!({"blocked_words": ["加微信", "SPAM"]}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.blocked_in(&merge_text("buy ＳＰａｍ now")), Some("spam"));
        assert_eq!(s.blocked_in(&merge_text("快 加微信 吧")), Some("加微信"));
        assert_eq!(s.blocked_in(&merge_text("nice")), None);
    }

    #[test]
    fn bad_settings_are_refused_naming_the_field() {
        for (patch, field) in [
            (json!([]), "object"),
            (json!({}), "at least one"),
            (json!({"slow_mode_s": 3601}), "slow_mode_s"),
            (json!({"slow_mode_s": -1}), "slow_mode_s"),
            (json!({"slow_mode_s": 1.5}), "slow_mode_s"),
            (json!({"comments_per_s": "9"}), "comments_per_s"),
            (json!({"merge_window_ms": 99}), "merge_window_ms"),
            (json!({"blocked_words": [""]}), "blocked_words"),
            (json!({"blocked_words": ["a\u{1f}b"]}), "blocked_words"),
            (json!({"blocked_words": ["x".repeat(51)]}), "blocked_words"),
            (json!({"blocked_words": vec!["w"; 501]}), "blocked_words"),
            (json!({"min_level": 1_000_001}), "min_level"),
            (json!({"vip_tags": ["VIP"]}), "vip_tags"),
            (
                json!({"experiment": {"name": "e", "variants": ["A"]}}),
                "variants",
            ),
            (
                json!({"experiment": {"name": "e", "variants": ["A", "A"]}}),
                "variants",
            ),
            (
                json!({"experiment": {"name": "E!", "variants": ["A", "B"]}}),
                "name",
            ),
            (
                json!({"experiment": {"name": "e", "variants": ["A", "B"], "x": 1}}),
                "experiment",
            ),
            (json!({"slow": 1}), "unknown setting `slow`"),
        ] {
            let Err(e) = base().patch(&patch) else {
                panic!("{patch} was taken");
            };
            assert!(e.to_string().contains(field), "{patch}: {e}");
        }
    }

    #[test]
    fn a_variant_is_the_cohort_it_names_or_a_stable_hash() {
        let s = base()
            .patch(&json!({"experiment": {"name": "opening-v2", "variants": ["A", "B"]}}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.variant("u-1", Some("B")), Some("B"));
        let hashed = s.variant("u-1", Some("not-a-variant"));
        assert_eq!(
            hashed,
            s.variant("u-1", None),
            "an unknown cohort is ignored"
        );
        let mut seen = std::collections::HashSet::new();
        for i in 0..100 {
            let user = format!("u-{i}");
            let v = s.variant(&user, None);
            assert_eq!(v, s.variant(&user, None), "stable");
            seen.insert(v.map(str::to_owned));
        }
        assert_eq!(seen.len(), 2, "both variants are used");
        assert_eq!(
            base().variant("u-1", Some("A")),
            None,
            "no experiment, no variant"
        );
        // The hash is FNV-1a of "<name>:<user>", which any backend can compute.
        assert_eq!(fnv1a(&["a"]), 0xaf63_dc4c_8601_ec8c);
    }
}
