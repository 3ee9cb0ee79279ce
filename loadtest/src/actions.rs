//! What a task viewer does besides reading, by scenario: comment, like and vote
//! (`interact`), or drop its connection (`resume`), at random times.

use std::time::Duration;

use crate::cli::Scenario;

/// One viewer's actions and its random numbers.
pub struct Actions {
    /// Mean seconds between comments.
    pub comment_every: Option<f64>,
    /// Mean seconds between like commands.
    pub like_every: Option<f64>,
    /// Whether the viewer still has to vote.
    pub vote: bool,
    /// Whether the viewer's comments are all the same text (a cheer the room floods).
    pub repeats: bool,
    /// (fraction of viewers that drop in a round, seconds between rounds).
    pub drop: Option<(f64, f64)>,
    /// The room games' moves still to make, first (after the vote): a quiz answer, a
    /// lottery entry, coupon claims.
    pub moves: std::collections::VecDeque<Act>,
    rng: u64,
}

/// What the next command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Vote (once, first).
    Vote,
    /// Comment.
    Comment,
    /// Like this many times.
    Like(u64),
    /// Answer the room's quiz.
    Answer,
    /// Enter the room's lottery.
    Enter,
    /// Claim the room's coupon.
    Claim,
}

impl Actions {
    /// The actions of viewer `i` in `scenario`.
    pub fn new(scenario: &Scenario, i: usize) -> Self {
        let every = |rate: f64| (rate > 0.0).then(|| 1.0 / rate);
        let mut a = Self {
            comment_every: None,
            like_every: None,
            vote: false,
            repeats: false,
            drop: None,
            moves: std::collections::VecDeque::new(),
            rng: (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        };
        match scenario {
            Scenario::Interact {
                comment_rate,
                like_rate,
                no_vote,
                repeat_share,
                quiz,
                lottery_winners,
                coupon_stock,
                coupon_claims,
                ..
            } => {
                a.comment_every = every(*comment_rate);
                a.like_every = every(*like_rate);
                a.vote = !*no_vote;
                a.repeats = crate::cli::in_share(i, *repeat_share);
                if *quiz {
                    a.moves.push_back(Act::Answer);
                }
                if lottery_winners.is_some() {
                    a.moves.push_back(Act::Enter);
                }
                if coupon_stock.is_some() {
                    a.moves.extend((0..*coupon_claims).map(|_| Act::Claim));
                }
            }
            Scenario::Resume {
                drop_fraction,
                drop_every_s,
                ..
            } => a.drop = Some((*drop_fraction, *drop_every_s)),
            _ => {}
        }
        a
    }

    /// A uniform number in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An exponential wait with the given mean (Poisson arrivals).
    pub fn wait(&mut self, mean_s: f64) -> Duration {
        Duration::from_secs_f64(-mean_s * (1.0 - self.uniform()).ln())
    }

    /// The wait until the first command, if the viewer sends any (`can_vote`: the
    /// room has an open poll).
    pub fn first_wait(&mut self, can_vote: bool) -> Option<Duration> {
        let mut t = None::<Duration>;
        if !self.moves.is_empty() {
            // The games' moves come at once, within the first 100 ms, as in a storm.
            t = Some(Duration::from_secs_f64(0.1 * self.uniform()));
        } else if self.vote && can_vote {
            t = Some(self.wait(0.5));
        }
        for every in [self.comment_every, self.like_every].into_iter().flatten() {
            let w = self.wait(every);
            t = Some(t.map_or(w, |t| t.min(w)));
        }
        t
    }

    /// The next command to send (`can_vote`: the room has an open poll).
    pub fn next(&mut self, can_vote: bool) -> Act {
        if self.vote && can_vote {
            self.vote = false;
            return Act::Vote;
        }
        if let Some(m) = self.moves.pop_front() {
            return m;
        }
        let comment_share = match (self.comment_every, self.like_every) {
            (Some(c), Some(l)) => (1.0 / c) / (1.0 / c + 1.0 / l),
            (Some(_), None) => 1.0,
            _ => 0.0,
        };
        if self.uniform() < comment_share {
            Act::Comment
        } else {
            Act::Like(1 + (self.uniform() * 5.0) as u64)
        }
    }

    /// The wait until the command after this one, if any: none between a game's
    /// moves (a claim storm is claims at once).
    pub fn next_wait(&mut self) -> Option<Duration> {
        if !self.moves.is_empty() {
            return Some(Duration::ZERO);
        }
        let mean = match (self.comment_every, self.like_every) {
            (Some(c), Some(l)) => 1.0 / (1.0 / c + 1.0 / l),
            (Some(c), None) => c,
            (None, Some(l)) => l,
            (None, None) => return None,
        };
        Some(self.wait(mean))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cli::Load;

    /// One viewer in one room, for a second: a scenario's shape in unit tests.
    pub(crate) fn load() -> Load {
        Load {
            viewers: 1,
            rooms: 1,
            zipf: 0.0,
            rate: 1.0,
            size: 100,
            duration_s: 1.0,
            publishers: 0,
            publish_by_room: false,
            publish_rooms: 0,
            idempotent: false,
            adaptive_fraction: 0.0,
            adaptive_max_rate: 20,
            high_share: 1.0,
            retract_rate: 0.0,
            retract_by: crate::cli::RetractBy::Moderator,
        }
    }

    #[test]
    fn interact_viewers_vote_first_then_comment_or_like() {
        let scenario = Scenario::Interact {
            load: load(),
            comment_rate: 1.0,
            like_rate: 1.0,
            no_vote: false,
            repeat_share: 0.0,
            keyword: None,
            quiz: true,
            lottery_winners: None,
            coupon_stock: Some(10),
            coupon_per_user: 1,
            coupon_claims: 2,
        };
        let mut a = Actions::new(&scenario, 3);
        assert!(a.first_wait(true).is_some());
        assert_eq!(a.next(true), Act::Vote);
        assert_eq!(a.next(true), Act::Answer);
        assert_eq!(
            a.next_wait(),
            Some(Duration::ZERO),
            "the claims follow at once"
        );
        assert_eq!((a.next(true), a.next(true)), (Act::Claim, Act::Claim));
        let rest: Vec<Act> = (0..200).map(|_| a.next(true)).collect();
        assert!(!rest.contains(&Act::Vote), "one vote only");
        assert!(rest.contains(&Act::Comment));
        assert!(rest.iter().all(|x| match x {
            Act::Like(n) => (1..=5).contains(n),
            _ => true,
        }));
    }

    #[test]
    fn fanout_viewers_do_nothing() {
        let mut a = Actions::new(&Scenario::Fanout(load()), 0);
        assert_eq!(a.first_wait(true), None);
        assert_eq!(a.next_wait(), None);
        assert_eq!(a.drop, None);
    }
}
