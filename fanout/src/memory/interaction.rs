//! Keyword games, quizzes and lotteries in the memory store.
//!
//! A room's [`Board`] holds them, open and recently closed (at most
//! [`KEPT`] closed ones, for `GET`). Its methods return the events to sequence; the
//! store sequences them under the room's lock, so each state change and its event are
//! one step.

use std::collections::HashSet;

use danmaku_protocol::InteractionId;
use danmaku_protocol::audience::Audience;

use crate::interaction::{
    Draw, Entry, Kind, MAX_ENTRANTS, MAX_OPEN_INTERACTIONS, NewInteraction, doc, draw,
    keyword_counts, new_seed, prize_in, quiz_counts, won_data,
};
use crate::{FanoutError, InteractionRecord};

/// Closed interactions kept per room for `GET`.
const KEPT: usize = 100;

/// An event to sequence: a state (`audience` `None`) or a lottery's `lottery.won`.
pub(crate) struct Due {
    pub(crate) kind: Kind,
    pub(crate) data: String,
    /// The winners, for `lottery.won`.
    pub(crate) audience: Option<Audience>,
}

enum Game {
    Keyword {
        goal: Option<u64>,
        comments: u64,
    },
    Quiz {
        answer: u32,
        counts: Vec<u64>,
        /// The users who answered right, in answer order.
        correct: Vec<Box<str>>,
    },
    Lottery {
        seed: [u8; 32],
        winners: u32,
        /// The quiz whose correct answerers enter.
        quiz: Option<InteractionId>,
        command: bool,
        tags: Vec<String>,
        drawn: Option<Draw>,
    },
}

struct Interaction {
    id: InteractionId,
    kind: Kind,
    spec: String,
    ends_at: u64,
    open: bool,
    /// The normalized text a counting comment contains.
    matcher: Option<Box<str>>,
    /// Participants, answerers or entrants; at most [`MAX_ENTRANTS`].
    users: HashSet<Box<str>>,
    game: Game,
    /// Counts changed since the last event.
    dirty: bool,
}

impl Interaction {
    fn state(&self) -> &'static str {
        match (&self.game, self.open) {
            (_, true) => "open",
            (Game::Lottery { .. }, false) => "drawn",
            (_, false) => "closed",
        }
    }

    fn encode(&self) -> String {
        let users = self.users.len() as u64;
        let counts = match &self.game {
            Game::Keyword { goal, comments } => keyword_counts(*comments, users, *goal),
            Game::Quiz {
                answer,
                counts,
                correct,
            } => quiz_counts(
                counts,
                (!self.open).then_some((*answer, correct.len() as u64)),
            ),
            Game::Lottery { drawn: Some(d), .. } => d.counts(),
            Game::Lottery { .. } => format!("\"entrants\":{users}"),
        };
        doc(
            self.id.as_str(),
            self.state(),
            &self.spec,
            self.ends_at,
            &counts,
        )
    }

    /// Takes `user` in; `false` when the bound is reached.
    fn take(&mut self, user: &str) -> bool {
        if self.users.len() >= MAX_ENTRANTS {
            return false;
        }
        self.users.insert(Box::from(user))
    }
}

fn eligible(tags: &[String], have: &[&str]) -> bool {
    tags.is_empty() || tags.iter().any(|t| have.contains(&t.as_str()))
}

/// A room's keyword games, quizzes and lotteries.
#[derive(Default)]
pub(crate) struct Board {
    items: Vec<Interaction>,
    /// The last id number given, per kind (keyword, quiz, lottery).
    last: [u64; 3],
}

impl Board {
    /// Opens one; returns its id and the `data` of its first event.
    pub(crate) fn open(
        &mut self,
        new: NewInteraction,
        now: u64,
    ) -> Result<(InteractionId, String), FanoutError> {
        if self.items.iter().filter(|i| i.open).count() >= MAX_OPEN_INTERACTIONS {
            return Err(FanoutError::TooManyInteractions);
        }
        let kind = new.kind();
        let seed = match kind {
            Kind::Lottery => new_seed()?,
            _ => [0; 32],
        };
        let n = &mut self.last[kind as usize];
        *n += 1;
        let name = format!("{}-{n}", kind.prefix());
        // INVARIANT: "<letter>-<digits>" is a valid id.
        let id = InteractionId::new(&name).unwrap_or_else(|_| unreachable!("valid id"));
        let ends_at = now.saturating_add(new.duration_s().saturating_mul(1_000));
        let (spec, matcher) = (new.spec(&seed), new.matcher().map(String::into_boxed_str));
        let game = match new {
            NewInteraction::Keyword { goal, .. } => Game::Keyword { goal, comments: 0 },
            NewInteraction::Quiz {
                options, answer, ..
            } => Game::Quiz {
                answer,
                counts: vec![0; options.len()],
                correct: Vec::new(),
            },
            NewInteraction::Lottery {
                winners,
                entry,
                tags,
                ..
            } => Game::Lottery {
                seed,
                winners,
                quiz: match &entry {
                    Entry::Quiz(q) => Some(q.clone()),
                    _ => None,
                },
                command: entry == Entry::Command,
                tags,
                drawn: None,
            },
        };
        let item = Interaction {
            id: id.clone(),
            kind,
            spec,
            ends_at,
            open: true,
            matcher,
            users: HashSet::new(),
            game,
            dirty: false,
        };
        let data = item.encode();
        self.items.push(item);
        Ok((id, data))
    }

    fn find(&mut self, id: &InteractionId) -> Result<&mut Interaction, FanoutError> {
        self.items
            .iter_mut()
            .find(|i| i.id == *id)
            .ok_or_else(|| FanoutError::UnknownInteraction(id.clone()))
    }

    /// The open one of `kind` named `id`, taking part at `now`.
    fn open_one(
        &mut self,
        id: &InteractionId,
        kind: Kind,
        now: u64,
    ) -> Result<&mut Interaction, FanoutError> {
        let item = self.find(id)?;
        if item.kind != kind {
            return Err(FanoutError::UnknownInteraction(id.clone()));
        }
        if !item.open || item.ends_at <= now {
            return Err(FanoutError::InteractionClosed(id.clone()));
        }
        Ok(item)
    }

    /// A viewer's comment (normalized `text`) was admitted: counts it in the keyword
    /// games it matches and enters its sender into the comment lotteries it matches.
    pub(crate) fn on_comment(&mut self, user: &str, text: &str, tags: &[&str], now: u64) {
        for item in self.items.iter_mut().filter(|i| i.open && i.ends_at > now) {
            let Some(m) = &item.matcher else { continue };
            if !text.contains(&**m) {
                continue;
            }
            match &mut item.game {
                Game::Keyword { comments, .. } => {
                    *comments += 1;
                    item.take(user);
                    item.dirty = true;
                }
                Game::Lottery { tags: want, .. } => {
                    if eligible(want, tags) && item.take(user) {
                        item.dirty = true;
                    }
                }
                Game::Quiz { .. } => {}
            }
        }
    }

    pub(crate) fn answer(
        &mut self,
        id: &InteractionId,
        user: &str,
        option: u32,
        now: u64,
    ) -> Result<(), FanoutError> {
        let item = self.open_one(id, Kind::Quiz, now)?;
        let Game::Quiz { counts, .. } = &item.game else {
            return Err(FanoutError::UnknownInteraction(id.clone()));
        };
        if option as usize >= counts.len() {
            return Err(FanoutError::NoSuchOption(id.clone(), option));
        }
        if item.users.contains(user) {
            return Err(FanoutError::AlreadyAnswered(id.clone()));
        }
        if !item.take(user) {
            return Err(FanoutError::NotEligible(id.clone(), "the quiz is full"));
        }
        if let Game::Quiz {
            answer,
            counts,
            correct,
        } = &mut item.game
        {
            counts[option as usize] += 1;
            if option == *answer {
                correct.push(Box::from(user));
            }
        }
        item.dirty = true;
        Ok(())
    }

    pub(crate) fn enter(
        &mut self,
        id: &InteractionId,
        user: &str,
        tags: &[&str],
        now: u64,
    ) -> Result<(), FanoutError> {
        let item = self.open_one(id, Kind::Lottery, now)?;
        let Game::Lottery {
            command,
            tags: want,
            ..
        } = &item.game
        else {
            return Err(FanoutError::UnknownInteraction(id.clone()));
        };
        if !command {
            return Err(FanoutError::NotEligible(
                id.clone(),
                "this lottery is not entered by command",
            ));
        }
        if !eligible(want, tags) {
            return Err(FanoutError::NotEligible(
                id.clone(),
                "this lottery is for other viewers",
            ));
        }
        if item.users.contains(user) {
            return Err(FanoutError::AlreadyEntered(id.clone()));
        }
        if !item.take(user) {
            return Err(FanoutError::NotEligible(id.clone(), "the lottery is full"));
        }
        item.dirty = true;
        Ok(())
    }

    /// Closes (and draws) one; returns its events.
    pub(crate) fn close(&mut self, id: &InteractionId) -> Result<Vec<Due>, FanoutError> {
        let i = self
            .items
            .iter()
            .position(|i| i.id == *id)
            .ok_or_else(|| FanoutError::UnknownInteraction(id.clone()))?;
        if !self.items[i].open {
            return Err(FanoutError::InteractionClosed(id.clone()));
        }
        Ok(self.close_at(i))
    }

    fn close_at(&mut self, i: usize) -> Vec<Due> {
        // A quiz lottery draws among the quiz's correct answerers.
        let from_quiz = match &self.items[i].game {
            Game::Lottery { quiz: Some(q), .. } => Some(
                self.items
                    .iter()
                    .find(|x| x.id == *q)
                    .and_then(|x| match &x.game {
                        Game::Quiz { correct, .. } => Some(correct.clone()),
                        _ => None,
                    })
                    .unwrap_or_default(),
            ),
            _ => None,
        };
        let item = &mut self.items[i];
        item.open = false;
        item.dirty = false;
        if let Some(correct) = from_quiz {
            item.users = correct.into_iter().take(MAX_ENTRANTS).collect();
        }
        let mut out = Vec::new();
        if let Game::Lottery {
            seed,
            winners,
            drawn,
            ..
        } = &mut item.game
        {
            let entrants = item.users.iter().map(|u| u.to_string()).collect();
            let d = draw(seed, entrants, *winners as usize);
            if !d.winners.is_empty() {
                let prize = prize_in(&format!("{{{}}}", item.spec));
                out.push(Due {
                    kind: Kind::Lottery,
                    data: won_data(item.id.as_str(), &prize),
                    audience: Some(Audience::Users(d.winners.clone())),
                });
            }
            *drawn = Some(d);
        }
        out.insert(
            0,
            Due {
                kind: item.kind,
                data: item.encode(),
                audience: None,
            },
        );
        out
    }

    /// Events of what changed or ended by `now`.
    pub(crate) fn due(&mut self, now: u64) -> Vec<Due> {
        let mut out = Vec::new();
        for i in 0..self.items.len() {
            let item = &mut self.items[i];
            if !item.open {
                continue;
            }
            if item.ends_at <= now {
                out.extend(self.close_at(i));
            } else if item.dirty {
                item.dirty = false;
                out.push(Due {
                    kind: item.kind,
                    data: item.encode(),
                    audience: None,
                });
            }
        }
        while self.items.iter().filter(|i| !i.open).count() > KEPT {
            match self.items.iter().position(|i| !i.open) {
                Some(i) => drop(self.items.remove(i)),
                None => break,
            }
        }
        out
    }

    /// The open ones' states, by kind (keywords, quizzes, lotteries).
    pub(crate) fn snapshot(&self) -> [Vec<bytes::Bytes>; 3] {
        let mut out: [Vec<bytes::Bytes>; 3] = Default::default();
        for item in self.items.iter().filter(|i| i.open) {
            out[item.kind as usize].push(bytes::Bytes::from(item.encode()));
        }
        out
    }

    pub(crate) fn record(&mut self, id: &InteractionId) -> Result<InteractionRecord, FanoutError> {
        let item = self.find(id)?;
        let users = match &item.game {
            Game::Keyword { .. } => Vec::new(),
            Game::Quiz { correct, .. } => correct.iter().map(|u| u.to_string()).collect(),
            Game::Lottery { drawn: Some(d), .. } => d.entrants.clone(),
            Game::Lottery { quiz: Some(_), .. } => Vec::new(),
            Game::Lottery { .. } => {
                let mut all: Vec<String> = item.users.iter().map(|u| u.to_string()).collect();
                all.sort_unstable();
                all
            }
        };
        Ok(InteractionRecord {
            state: bytes::Bytes::from(item.encode()),
            users,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiz(board: &mut Board) -> InteractionId {
        let new = NewInteraction::Quiz {
            question: "2+2?".into(),
            options: vec!["3".into(), "4".into()],
            answer: 1,
            duration_s: 60,
        };
        board.open(new, 0).expect("open").0
    }

    #[test]
    fn a_quiz_hides_its_answer_until_closed_and_takes_one_answer_per_user() {
        let mut b = Board::default();
        let q = quiz(&mut b);
        assert_eq!(q.as_str(), "q-1");
        b.answer(&q, "a", 1, 1).expect("a");
        b.answer(&q, "b", 0, 2).expect("b");
        assert!(matches!(
            b.answer(&q, "a", 0, 3),
            Err(FanoutError::AlreadyAnswered(_))
        ));
        assert!(matches!(
            b.answer(&q, "c", 2, 3),
            Err(FanoutError::NoSuchOption(..))
        ));
        let open = String::from_utf8_lossy(&b.snapshot()[Kind::Quiz as usize][0]).into_owned();
        assert!(!open.contains("answer\":"), "{open}");
        let closed = b.close(&q).expect("close");
        assert!(
            closed[0]
                .data
                .contains(r#""answer":1,"counts":[1,1],"correct":1"#)
        );
        assert_eq!(b.record(&q).expect("record").users, ["a"]);
        assert!(matches!(
            b.answer(&q, "d", 1, 4),
            Err(FanoutError::InteractionClosed(_))
        ));
    }

    #[test]
    fn keywords_count_comments_and_participants_and_lotteries_draw_their_entrants() {
        let mut b = Board::default();
        let (k, _) = b
            .open(
                NewInteraction::Keyword {
                    keyword: "Buy".into(),
                    goal: Some(3),
                    duration_s: 60,
                },
                0,
            )
            .expect("keyword");
        let (l, _) = b
            .open(
                NewInteraction::Lottery {
                    prize: "bag".into(),
                    winners: 1,
                    entry: Entry::Comment("buy".into()),
                    tags: vec!["fan".into()],
                    duration_s: 60,
                },
                0,
            )
            .expect("lottery");
        b.on_comment("a", "buy buy", &[], 1);
        b.on_comment("a", "i buy", &["fan"], 2);
        b.on_comment("b", "buy!", &[], 3);
        b.on_comment("c", "sell", &["fan"], 4);
        let due = b.due(5);
        let kw = due.iter().find(|d| d.kind == Kind::Keyword).expect("kw");
        assert!(
            kw.data
                .contains(r#""comments":3,"participants":2,"reached":true"#)
        );
        let drawn = b.close(&l).expect("draw");
        assert!(drawn[0].data.contains(r#""state":"drawn""#));
        assert!(
            drawn[0].data.contains(r#""winner_ids":["a"]"#),
            "{}",
            drawn[0].data
        );
        assert_eq!(drawn[1].audience, Some(Audience::Users(vec!["a".into()])));
        assert_eq!(drawn[1].data, r#"{"id":"l-1","prize":"bag"}"#);
        assert_eq!(k.as_str(), "k-1");
    }
}
