//! A room's welcome: templates the gateway renders for each joiner alone, by whether
//! it was seen in the room within 30 days and by its tags.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::audience::valid_tag;

/// Longest template, in characters.
pub const MAX_TEMPLATE_CHARS: usize = 200;
/// Most tag templates.
pub const MAX_TAG_TEMPLATES: usize = 32;
/// A user seen in a room within this many days is returning.
pub const HORIZON_DAYS: u64 = 30;

/// A room's welcome templates. `{name}` is the joiner's name, `{visits}` the number of
/// distinct UTC days it joined the room on (today included).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Welcome {
    /// For a joiner not seen in the room within 30 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
    /// For a returning joiner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returning: Option<String>,
    /// By tag: a joiner with one of these tags gets its template (the first of its
    /// tags, in its token's order, that has one), whether new or returning.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

fn template(field: &str, t: &str) -> Result<(), String> {
    let n = t.chars().count();
    if n == 0 || n > MAX_TEMPLATE_CHARS || t.trim().is_empty() {
        return Err(format!(
            "`{field}` must be a template of 1..={MAX_TEMPLATE_CHARS} characters"
        ));
    }
    Ok(())
}

impl Welcome {
    /// Reads and checks templates from a `PUT …/welcome` body.
    ///
    /// # Errors
    /// What is wrong, naming the field.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, String> {
        let shape = "the body must be {\"new\"?,\"returning\"?,\"tags\"?:{tag: template}}";
        if !v.is_object() {
            return Err(shape.to_owned());
        }
        let w: Self = serde_json::from_value(v.clone()).map_err(|e| {
            format!("the body must be {{\"new\"?,\"returning\"?,\"tags\"?:{{tag: template}}}}: {e}")
        })?;
        if let Some(t) = &w.new {
            template("new", t)?;
        }
        if let Some(t) = &w.returning {
            template("returning", t)?;
        }
        if w.tags.len() > MAX_TAG_TEMPLATES {
            return Err(format!(
                "`tags` holds at most {MAX_TAG_TEMPLATES} templates"
            ));
        }
        for (tag, t) in &w.tags {
            if !valid_tag(tag) {
                return Err(format!(
                    "`tags`: `{tag}` is not a tag of [a-z0-9_.:-]{{1,32}}"
                ));
            }
            template(&format!("tags.{tag}"), t)?;
        }
        Ok(w)
    }

    /// Whether there is nothing to render.
    pub fn is_empty(&self) -> bool {
        self.new.is_none() && self.returning.is_none() && self.tags.is_empty()
    }

    /// The `joined.welcome` of a joiner named `name` with `tags`: `{"text","returning",
    /// "visits"}`; `None` when no template applies.
    pub fn render<'t>(
        &self,
        name: &str,
        mut tags: impl Iterator<Item = &'t str>,
        returning: bool,
        visits: u64,
    ) -> Option<String> {
        let t = tags.find_map(|tag| self.tags.get(tag)).or(if returning {
            self.returning.as_ref()
        } else {
            self.new.as_ref()
        })?;
        let text = t
            .replace("{visits}", &visits.to_string())
            .replace("{name}", name);
        Some(
            serde_json::json!({"text": text, "returning": returning, "visits": visits}).to_string(),
        )
    }
}

/// What a join does to a user's seen record in a room: its `(last day, visits)` before
/// (`None` when never seen) and `today` (UTC days since the epoch) give the record
/// after and whether the user is returning. A user last seen more than
/// [`HORIZON_DAYS`] ago starts over as new.
pub fn visit(before: Option<(u64, u64)>, today: u64) -> ((u64, u64), bool) {
    match before {
        Some((last, visits)) if today.saturating_sub(last) <= HORIZON_DAYS => {
            let visits = if today > last { visits + 1 } else { visits };
            ((last.max(today), visits), true)
        }
        _ => ((today, 1), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_tag_template_wins_and_placeholders_are_filled() {
        let w = Welcome::from_json(&json!({
            "new": "欢迎新朋友 {name}!",
            "returning": "欢迎回来 {name},第 {visits} 次来",
            "tags": {"vip": "VIP {name} 驾到"}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let r = |tags: &[&str], returning, visits| {
            let out = w
                .render("Ann", tags.iter().copied(), returning, visits)
                .unwrap_or_default();
            serde_json::from_str::<serde_json::Value>(&out).unwrap_or_default()
        };
        assert_eq!(r(&[], false, 1)["text"], "欢迎新朋友 Ann!");
        assert_eq!(r(&["fan"], true, 3)["text"], "欢迎回来 Ann,第 3 次来");
        assert_eq!(
            r(&["fan", "vip"], true, 3),
            json!({"text": "VIP Ann 驾到", "returning": true, "visits": 3})
        );
        let only_new = Welcome::from_json(&json!({"new": "hi"})).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            only_new.render("Ann", [].into_iter(), true, 2),
            None,
            "no template applies"
        );
    }

    #[test]
    fn bad_templates_are_refused_naming_the_field() {
        for (body, field) in [
            (json!({"new": ""}), "`new`"),
            (json!({"returning": "x".repeat(201)}), "`returning`"),
            (json!({"tags": {"VIP": "x"}}), "`VIP`"),
            (json!({"tags": {"vip": " "}}), "tags.vip"),
            (json!({"hello": "x"}), "the body must be"),
            (json!([]), "the body must be"),
        ] {
            let Err(e) = Welcome::from_json(&body) else {
                panic!("{body} was taken");
            };
            assert!(e.contains(field), "{body}: {e}");
        }
    }

    #[test]
    fn visits_count_distinct_days_within_the_horizon() {
        let (r, returning) = visit(None, 100);
        assert_eq!((r, returning), ((100, 1), false), "new");
        let (r, returning) = visit(Some(r), 100);
        assert_eq!(
            (r, returning),
            ((100, 1), true),
            "a second join today: returning, 1 visit"
        );
        let (r, _) = visit(Some(r), 101);
        assert_eq!(r, (101, 2));
        let (r, returning) = visit(Some(r), 101 + HORIZON_DAYS);
        assert_eq!(
            (r, returning),
            ((131, 3), true),
            "30 days later: still returning"
        );
        let (r, returning) = visit(Some(r), 131 + HORIZON_DAYS + 1);
        assert_eq!(
            (r, returning),
            ((162, 1), false),
            "beyond the horizon: new again"
        );
        assert_eq!(
            visit(Some((50, 4)), 49),
            ((50, 4), true),
            "a clock behind counts no day"
        );
    }
}
