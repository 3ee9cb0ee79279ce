//! Co-host seats: the signalling of who is on stage with the host (the media stays with
//! the RTC vendor). One state machine for both stores: the memory store applies it
//! under the room's lock; the Redis store reads the state, applies it here and writes
//! it back only if nobody wrote in between (a version check in one script), so every
//! transition is exact across gateways.
//!
//! # The state machine, per user
//! ```text
//! (none) --request--> requested --accept (host)--> seated
//!                     requested --cancel | reject (host) | 30 s--> (none)
//! (none) --invite (host)--> invited --accept_invite--> seated
//!                           invited --decline | 30 s--> (none)
//! seated --leave | kick (host) | all connections gone 30 s--> (none)
//! ```
//! Any other move is refused naming the user's state. Seats are numbered from 0.

use serde::{Deserialize, Serialize};

/// Most seats a room may have.
pub const MAX_SEATS: u32 = 16;
/// Most requests waiting at once.
pub const MAX_QUEUE: usize = 100;
/// Most invitations waiting at once.
pub const MAX_INVITES: usize = 32;
/// How long a request or an invitation waits, and how long a seat outlives its
/// holder's last connection, in ms, by default.
pub const LEASE_MS: u64 = 30_000;

/// A co-host action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A viewer asks for a seat.
    Request,
    /// A viewer withdraws its request.
    Cancel,
    /// A viewer takes the seat it was invited to.
    AcceptInvite,
    /// A viewer declines an invitation.
    Decline,
    /// A seated viewer leaves its seat.
    Leave,
    /// The host seats a requester (at `seat`, or the first free one).
    Accept {
        /// The requester.
        user: String,
        /// The seat, from 0.
        seat: Option<u32>,
    },
    /// The host turns a request down.
    Reject {
        /// The requester.
        user: String,
    },
    /// The host invites a viewer (to `seat`, or whichever is free when accepted).
    Invite {
        /// The invitee.
        user: String,
        /// The seat, from 0.
        seat: Option<u32>,
    },
    /// The host takes a seat back.
    Kick {
        /// The seated user.
        user: String,
    },
}

impl Action {
    /// Whether only a host may take it.
    pub fn is_host_action(&self) -> bool {
        matches!(
            self,
            Self::Accept { .. } | Self::Reject { .. } | Self::Invite { .. } | Self::Kick { .. }
        )
    }
}

/// Who acts.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// The user id.
    pub user: &'a str,
    /// The display name.
    pub name: &'a str,
}

/// Why a move was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeatError {
    /// The move does not fit the user's state (the text names it).
    #[error("{0}")]
    Wrong(String),
    /// The seat asked for is held.
    #[error("seat {0} is taken")]
    Taken(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Seated {
    user: String,
    name: String,
    since: u64,
    /// When a connection of the user was last seen in the room (ms).
    alive: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Waiting {
    user: String,
    name: String,
    since: u64,
    seat: Option<u32>,
}

/// A room's seats: who sits where, who asked, who is invited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seats {
    seats: Vec<Option<Seated>>,
    queue: Vec<Waiting>,
    invites: Vec<Waiting>,
}

/// An event a move makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Told {
    /// The room's public `seats` state changed: its new `data`.
    Seats(String),
    /// A targeted event: `kind` (`cohost.request`, …) with `data`, to `user`, or to the
    /// room's hosts when `user` is `None`.
    To {
        /// The event kind.
        kind: &'static str,
        /// Its one viewer, or `None` for the room's hosts.
        user: Option<String>,
        /// Its data.
        data: String,
    },
}

fn wrong(m: String) -> SeatError {
    SeatError::Wrong(m)
}

impl Seats {
    /// The state as stored (JSON).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A stored state; `None` for text that is not one.
    pub fn from_json(s: &str) -> Option<Self> {
        serde_json::from_str(s).ok()
    }

    /// The public state: `{count, seats:[{seat,user,name,since}|null,…], queue:[{user,name,since}…]}`.
    pub fn public(&self) -> String {
        let seats: Vec<serde_json::Value> = self
            .seats
            .iter()
            .enumerate()
            .map(|(i, s)| match s {
                Some(s) => {
                    serde_json::json!({"seat": i, "user": s.user, "name": s.name, "since": s.since})
                }
                None => serde_json::Value::Null,
            })
            .collect();
        let queue: Vec<serde_json::Value> = self
            .queue
            .iter()
            .map(|w| serde_json::json!({"user": w.user, "name": w.name, "since": w.since}))
            .collect();
        serde_json::json!({"count": self.seats.len(), "seats": seats, "queue": queue}).to_string()
    }

    /// The users seated now.
    pub fn seated(&self) -> impl Iterator<Item = &str> {
        self.seats.iter().flatten().map(|s| s.user.as_str())
    }

    fn state_of(&self, user: &str) -> &'static str {
        if self.seats.iter().flatten().any(|s| s.user == user) {
            "seated"
        } else if self.queue.iter().any(|w| w.user == user) {
            "requested"
        } else if self.invites.iter().any(|w| w.user == user) {
            "invited"
        } else {
            "none"
        }
    }

    fn refuse(&self, user: &str, action: &str, needs: &str) -> SeatError {
        wrong(format!(
            "cannot {action}: {user} is {} (needs {needs})",
            self.state_of(user)
        ))
    }

    /// Sets the number of seats. Seats beyond a smaller count are emptied.
    pub fn set_count(&mut self, count: u32, now: u64) -> Vec<Told> {
        let mut told = Vec::new();
        let count = count as usize;
        for gone in self.seats.iter().skip(count).flatten() {
            told.push(to_user(
                "cohost.rejected",
                &gone.user,
                r#"{"reason":"seat_removed"}"#,
            ));
        }
        self.seats.resize(count, None);
        self.invites
            .retain(|w| w.seat.is_none_or(|s| (s as usize) < count));
        let _ = now;
        told.insert(0, Told::Seats(self.public()));
        told
    }

    /// A free seat: `want` if free, else (when `want` is `None`) the first free one.
    fn free_seat(&self, want: Option<u32>) -> Result<usize, SeatError> {
        match want {
            Some(s) => match self.seats.get(s as usize) {
                None => Err(wrong(format!(
                    "there is no seat {s} (seats 0..{})",
                    self.seats.len()
                ))),
                Some(Some(_)) => Err(SeatError::Taken(s)),
                Some(None) => Ok(s as usize),
            },
            None => self
                .seats
                .iter()
                .position(Option::is_none)
                .ok_or_else(|| wrong("every seat is taken".into())),
        }
    }

    fn sit(&mut self, seat: usize, user: &str, name: &str, now: u64) {
        self.seats[seat] = Some(Seated {
            user: user.to_owned(),
            name: name.to_owned(),
            since: now,
            alive: now,
        });
    }

    /// Applies `action` by `actor` (whose host role the caller checked) at `now`.
    ///
    /// # Errors
    /// [`SeatError`] when the move does not fit (nothing changed then).
    pub fn apply(
        &mut self,
        actor: Actor<'_>,
        action: &Action,
        now: u64,
    ) -> Result<Vec<Told>, SeatError> {
        if self.seats.is_empty() {
            return Err(wrong(
                "the room has no seats (PUT /v1/rooms/{room}/seats first)".into(),
            ));
        }
        let me = actor.user;
        let mut told = Vec::new();
        match action {
            Action::Request => {
                if self.state_of(me) != "none" {
                    return Err(self.refuse(me, "request", "none"));
                }
                if self.queue.len() >= MAX_QUEUE {
                    return Err(wrong(format!("the queue is full ({MAX_QUEUE} requests)")));
                }
                self.queue.push(Waiting {
                    user: me.to_owned(),
                    name: actor.name.to_owned(),
                    since: now,
                    seat: None,
                });
                let data = serde_json::json!({"user": me, "name": actor.name}).to_string();
                told.push(Told::To {
                    kind: "cohost.request",
                    user: None,
                    data,
                });
            }
            Action::Cancel => {
                let i = self
                    .queue
                    .iter()
                    .position(|w| w.user == me)
                    .ok_or_else(|| self.refuse(me, "cancel", "requested"))?;
                self.queue.remove(i);
            }
            Action::AcceptInvite => {
                let i = self
                    .invites
                    .iter()
                    .position(|w| w.user == me)
                    .ok_or_else(|| self.refuse(me, "accept_invite", "invited"))?;
                let seat = self.free_seat(self.invites[i].seat)?;
                self.invites.remove(i);
                self.sit(seat, me, actor.name, now);
                told.push(to_user(
                    "cohost.accepted",
                    me,
                    &format!("{{\"seat\":{seat}}}"),
                ));
            }
            Action::Decline => {
                let i = self
                    .invites
                    .iter()
                    .position(|w| w.user == me)
                    .ok_or_else(|| self.refuse(me, "decline", "invited"))?;
                self.invites.remove(i);
                return Ok(told);
            }
            Action::Leave => {
                let seat = self
                    .seats
                    .iter()
                    .position(|s| s.as_ref().is_some_and(|s| s.user == me))
                    .ok_or_else(|| self.refuse(me, "leave", "seated"))?;
                self.seats[seat] = None;
            }
            Action::Accept { user, seat } => {
                let i = self
                    .queue
                    .iter()
                    .position(|w| w.user == *user)
                    .ok_or_else(|| self.refuse(user, "accept", "requested"))?;
                let seat = self.free_seat(*seat)?;
                let w = self.queue.remove(i);
                self.sit(seat, user, &w.name, now);
                told.push(to_user(
                    "cohost.accepted",
                    user,
                    &format!("{{\"seat\":{seat}}}"),
                ));
            }
            Action::Reject { user } => {
                let i = self
                    .queue
                    .iter()
                    .position(|w| w.user == *user)
                    .ok_or_else(|| self.refuse(user, "reject", "requested"))?;
                self.queue.remove(i);
                told.push(to_user("cohost.rejected", user, r#"{"reason":"rejected"}"#));
            }
            Action::Invite { user, seat } => {
                if self.state_of(user) != "none" {
                    return Err(self.refuse(user, "invite", "none"));
                }
                if let Some(s) = seat {
                    self.free_seat(Some(*s))?;
                }
                if self.invites.len() >= MAX_INVITES {
                    return Err(wrong(format!(
                        "{MAX_INVITES} invitations are waiting already"
                    )));
                }
                self.invites.push(Waiting {
                    user: user.clone(),
                    name: user.clone(),
                    since: now,
                    seat: *seat,
                });
                let data = match seat {
                    Some(s) => format!("{{\"seat\":{s},\"by\":{}}}", json_str(me)),
                    None => format!("{{\"by\":{}}}", json_str(me)),
                };
                // An invitation is private: the room sees it only once accepted.
                return Ok(vec![to_user("cohost.invite", user, &data)]);
            }
            Action::Kick { user } => {
                let seat = self
                    .seats
                    .iter()
                    .position(|s| s.as_ref().is_some_and(|s| s.user == *user))
                    .ok_or_else(|| self.refuse(user, "kick", "seated"))?;
                self.seats[seat] = None;
                told.push(to_user("cohost.rejected", user, r#"{"reason":"kicked"}"#));
            }
        }
        told.insert(0, Told::Seats(self.public()));
        Ok(told)
    }

    /// Marks the seated users for whom `present` holds as seen at `now`; drops requests
    /// and invitations older than `lease` ms and the seats of users not seen for as
    /// long. Returns what that tells (nothing when nothing changed), and whether the
    /// state changed at all (a lease renewed).
    pub fn sweep(
        &mut self,
        now: u64,
        lease: u64,
        present: impl Fn(&str) -> bool,
    ) -> (Vec<Told>, bool) {
        let before = self.clone();
        for s in self.seats.iter_mut().flatten() {
            if present(&s.user) {
                s.alive = now;
            }
        }
        let mut told = Vec::new();
        let old = |since: u64| now.saturating_sub(since) >= lease;
        for w in self.queue.iter().filter(|w| old(w.since)) {
            told.push(to_user(
                "cohost.rejected",
                &w.user,
                r#"{"reason":"expired"}"#,
            ));
        }
        let public_before = before.public();
        self.queue.retain(|w| !old(w.since));
        self.invites.retain(|w| !old(w.since));
        for seat in &mut self.seats {
            if seat.as_ref().is_some_and(|s| old(s.alive)) {
                *seat = None;
            }
        }
        let public = self.public();
        if public != public_before {
            told.insert(0, Told::Seats(public));
        }
        let changed = *self != before;
        (told, changed)
    }
}

impl Told {
    /// The event to sequence: its kind, data and audience (a targeted event's user, or
    /// the room's hosts).
    pub fn event(
        &self,
    ) -> (
        danmaku_protocol::EventKind,
        &str,
        Option<danmaku_protocol::audience::Audience>,
    ) {
        use danmaku_protocol::EventKind;
        use danmaku_protocol::audience::{Audience, HOSTS};
        match self {
            Self::Seats(data) => (EventKind::seats(), data, None),
            Self::To { kind, user, data } => {
                let audience = match user {
                    Some(u) => Audience::Users(vec![u.clone()]),
                    None => Audience::Tags(vec![HOSTS.to_owned()]),
                };
                // INVARIANT: the kinds above are valid event kinds.
                let kind = EventKind::new(kind).unwrap_or_else(|_| EventKind::seats());
                (kind, data, Some(audience))
            }
        }
    }
}

/// The seated users of `seats` that this process's `hub` holds a connection of in
/// `room`.
pub fn present_here(
    seats: &Seats,
    hub: &crate::Hub,
    room: &danmaku_protocol::RoomId,
) -> Vec<String> {
    let users: Vec<&str> = seats.seated().collect();
    let here = hub.present(room, &users);
    users
        .into_iter()
        .zip(here)
        .filter(|(_, p)| *p)
        .map(|(u, _)| u.to_owned())
        .collect()
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn to_user(kind: &'static str, user: &str, data: &str) -> Told {
    Told::To {
        kind,
        user: Some(user.to_owned()),
        data: data.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(user: &str) -> Actor<'_> {
        Actor { user, name: user }
    }

    fn room(n: u32) -> Seats {
        let mut s = Seats::default();
        s.set_count(n, 0);
        s
    }

    #[test]
    fn every_transition_and_the_wrong_ones_named() {
        let mut s = room(2);
        let host = a("host");
        // request → accept → leave
        let told = s.apply(a("u1"), &Action::Request, 1).expect("request");
        assert!(matches!(
            &told[1],
            Told::To {
                kind: "cohost.request",
                user: None,
                ..
            }
        ));
        assert_eq!(
            s.apply(a("u1"), &Action::Request, 2),
            Err(SeatError::Wrong(
                "cannot request: u1 is requested (needs none)".into()
            ))
        );
        s.apply(
            host,
            &Action::Accept {
                user: "u1".into(),
                seat: Some(1),
            },
            3,
        )
        .expect("accept");
        assert!(
            s.public()
                .contains(r#"{"name":"u1","seat":1,"since":3,"user":"u1"}"#),
            "{}",
            s.public()
        );
        assert_eq!(
            s.apply(a("u1"), &Action::Cancel, 4),
            Err(SeatError::Wrong(
                "cannot cancel: u1 is seated (needs requested)".into()
            ))
        );
        s.apply(a("u1"), &Action::Leave, 5).expect("leave");
        // request → cancel; request → reject
        s.apply(a("u2"), &Action::Request, 6).expect("request");
        s.apply(a("u2"), &Action::Cancel, 7).expect("cancel");
        s.apply(a("u2"), &Action::Request, 8).expect("request");
        let told = s
            .apply(host, &Action::Reject { user: "u2".into() }, 9)
            .expect("reject");
        assert!(told.iter().any(|t| matches!(
            t,
            Told::To {
                kind: "cohost.rejected",
                ..
            }
        )));
        // invite → decline; invite → accept_invite → kick
        let told = s
            .apply(
                host,
                &Action::Invite {
                    user: "u3".into(),
                    seat: None,
                },
                10,
            )
            .expect("invite");
        assert_eq!(told.len(), 1, "an invitation tells the invitee alone");
        s.apply(a("u3"), &Action::Decline, 11).expect("decline");
        s.apply(
            host,
            &Action::Invite {
                user: "u3".into(),
                seat: Some(0),
            },
            12,
        )
        .expect("invite");
        s.apply(a("u3"), &Action::AcceptInvite, 13)
            .expect("accept_invite");
        assert_eq!(s.seated().collect::<Vec<_>>(), ["u3"]);
        // A taken seat, an unknown seat, a kick.
        s.apply(a("u4"), &Action::Request, 14).expect("request");
        assert_eq!(
            s.apply(
                host,
                &Action::Accept {
                    user: "u4".into(),
                    seat: Some(0)
                },
                15
            ),
            Err(SeatError::Taken(0))
        );
        assert!(
            s.apply(
                host,
                &Action::Accept {
                    user: "u4".into(),
                    seat: Some(7)
                },
                15
            )
            .is_err()
        );
        s.apply(host, &Action::Kick { user: "u3".into() }, 16)
            .expect("kick");
        assert_eq!(
            s.apply(host, &Action::Kick { user: "u3".into() }, 17),
            Err(SeatError::Wrong(
                "cannot kick: u3 is none (needs seated)".into()
            ))
        );
        assert!(
            Seats::default().apply(a("u"), &Action::Request, 0).is_err(),
            "no seats yet"
        );
    }

    #[test]
    fn requests_invites_and_absent_seats_expire_after_the_lease() {
        let mut s = room(2);
        s.apply(a("r"), &Action::Request, 0).expect("request");
        s.apply(
            a("host"),
            &Action::Invite {
                user: "i".into(),
                seat: None,
            },
            0,
        )
        .expect("invite");
        s.apply(
            a("host"),
            &Action::Invite {
                user: "x".into(),
                seat: None,
            },
            0,
        )
        .expect("invite");
        s.apply(a("x"), &Action::AcceptInvite, 1).expect("seated");
        // Present: the seat stays past the lease.
        let (told, changed) = s.sweep(LEASE_MS - 1, LEASE_MS, |_| true);
        assert!(told.is_empty() && changed, "a lease renewed, nothing told");
        let (told, _) = s.sweep(LEASE_MS, LEASE_MS, |_| false);
        assert!(
            matches!(&told[0], Told::Seats(_)),
            "the request expired: {told:?}"
        );
        assert!(told.iter().any(
            |t| matches!(t, Told::To { kind: "cohost.rejected", user: Some(u), .. } if u == "r")
        ));
        assert_eq!(
            s.seated().collect::<Vec<_>>(),
            ["x"],
            "seen at {}",
            LEASE_MS - 1
        );
        assert_eq!(
            s.apply(a("i"), &Action::AcceptInvite, LEASE_MS).map(|_| ()),
            Err(SeatError::Wrong(
                "cannot accept_invite: i is none (needs invited)".into()
            ))
        );
        let (told, _) = s.sweep(2 * LEASE_MS - 1, LEASE_MS, |_| false);
        assert!(
            matches!(&told[0], Told::Seats(p) if !p.contains("\"x\"")),
            "{told:?}"
        );
        assert_eq!(Seats::from_json(&s.to_json()), Some(s));
    }
}
