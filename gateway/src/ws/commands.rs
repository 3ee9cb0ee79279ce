//! Client commands: join, leave, comment, like, vote, the room games, co-host moves,
//! moderation, a host's `open`, ping.

use std::time::Instant;

use danmaku_fanout::{Arriving, FanoutError, Ingress, NewEvent};
use danmaku_protocol::audience::{self, Viewer};
use danmaku_protocol::data::merge_text;
use danmaku_protocol::moderation::Moderation;
use danmaku_protocol::server::{Claimed, Joined, Opened};
use danmaku_protocol::settings::RoomSettings;
use danmaku_protocol::{
    CohostAction, Command, ErrorCode, EventKind, InteractionId, Mode, Opening, PollId, Priority,
    RoomId, ServerFrame, Since,
};
use std::sync::Arc;

use super::adaptive::Adaptive;
use super::conn::{Conn, JoinedRoom};
use super::skips::Skips;
use crate::auth::Role;
use danmaku_fanout::position::Cursor;

impl Conn {
    /// Handles one JSON object of a client frame; queues its reply.
    pub(super) async fn on_command(&mut self, line: &str) {
        let command = match danmaku_protocol::decode_command(line, &self.ctx.settings.limits) {
            Ok(c) => c,
            Err(e) => return self.error(e.id, e.code, &e.message, None),
        };
        match command {
            Command::Join {
                id,
                room,
                since,
                mode,
            } => self.join(id, room, since, mode).await,
            Command::Leave { id, room } => self.leave(id, &room),
            Command::Comment { id, room, text } => self.comment(id, &room, &text).await,
            Command::Like { id, room, count } => self.like(id, &room, count),
            Command::Vote {
                id,
                room,
                poll,
                option,
            } => self.vote(id, &room, &poll, option).await,
            Command::Claim { id, room, coupon } => self.claim(id, &room, &coupon).await,
            Command::Answer {
                id,
                room,
                quiz,
                option,
            } => self.answer(id, &room, &quiz, option).await,
            Command::Enter { id, room, lottery } => self.enter(id, &room, &lottery).await,
            Command::Cohost {
                id,
                room,
                action,
                user,
                seat,
            } => self.cohost(id, &room, action, user, seat).await,
            Command::Moderate {
                id,
                room,
                moderation,
            } => self.moderate(id, &room, &moderation).await,
            Command::Open {
                id,
                room,
                what,
                body,
            } => self.open_game(id, &room, what, body).await,
            Command::Ping { id } => {
                let pong = ServerFrame::Pong {
                    id,
                    server_time: danmaku_fanout::now_ms(),
                };
                self.out.push(pong.encode());
            }
        }
    }

    async fn join(&mut self, id: u64, room: RoomId, since: Option<Since>, mode: Mode) {
        if !self.identity.may_join(room.as_str()) {
            return self.error(
                Some(id),
                ErrorCode::Forbidden,
                "your token does not allow this room",
                None,
            );
        }
        if let Some(i) = self.room_index(&room) {
            // A second join of the same room re-syncs it.
            let old = self.rooms.swap_remove(i);
            self.ctx.fanout.hub().unsubscribe(&old.room, self.key);
            self.outlet.untrack(old.key);
        }
        if self.rooms.len() >= self.ctx.settings.limits.max_rooms {
            let msg = format!(
                "at most {} rooms per connection",
                self.ctx.settings.limits.max_rooms
            );
            return self.error(Some(id), ErrorCode::TooManyRooms, &msg, None);
        }
        let started = Instant::now();
        let hub = self.ctx.fanout.hub().clone();
        // Subscribe before reading the room's position: an event sequenced in between
        // is then both in the mailbox and covered by `seq`, and dropped as a duplicate.
        let viewer = Some(self.identity.viewer.clone());
        let key = hub.subscribe_as(&room, self.key, self.mailbox.clone(), viewer);
        let recent = self.ctx.settings.ws.snapshot_recent;
        // The token's own tags (not the synthetic staff ones) name a VIP and pick a
        // tag's welcome.
        let tags: Vec<&str> = self
            .identity
            .viewer
            .tags()
            .filter(|t| !t.starts_with('@'))
            .collect();
        let who = Arriving {
            user: &self.identity.user,
            name: &self.identity.name,
            tags: &tags,
            today: self.ctx.today(),
            counted: !self.identity.read_only,
            defaults: &self.ctx.settings.rooms,
        };
        let (viewed, arrival) = tokio::join!(
            super::conn::view_and_online(&self.ctx, &room, since.as_ref(), recent),
            self.ctx.fanout.arrive(&room, &who)
        );
        let joined = viewed.and_then(|v| Ok((v, arrival?)));
        let ((mut view, online), arrival) = match joined {
            Ok(v) => v,
            Err(e) => {
                hub.unsubscribe(&room, self.key);
                return self.fanout_error(id, &e);
            }
        };
        let standing = arrival.standing;
        if let Some(until) = standing.banned_until {
            hub.unsubscribe(&room, self.key);
            let msg = match until {
                u64::MAX => "you are banned from this room".to_owned(),
                t => format!("you are banned from this room until {t} (Unix ms)"),
            };
            return self.error(Some(id), ErrorCode::Forbidden, &msg, None);
        }
        let replay = view.replay.take();
        let (epoch, seq) = (view.epoch.clone(), view.seq);
        let welcome = arrival.welcome.as_ref().and_then(|w| {
            w.render(
                &self.identity.name,
                tags.iter().copied(),
                arrival.returning,
                arrival.visits,
            )
        });
        // The room's experiment: its variant is a tag of this viewer in this room alone.
        let own = view.settings.as_deref().and_then(RoomSettings::decode);
        let settings = own.as_ref().unwrap_or(&self.ctx.settings.rooms);
        let variant = settings
            .variant(&self.identity.user, self.identity.cohort.as_deref())
            .map(str::to_owned);
        let viewer = match &variant {
            None => self.identity.viewer.clone(),
            Some(v) => {
                let mut tags: Vec<String> =
                    self.identity.viewer.tags().map(str::to_owned).collect();
                tags.push(audience::variant_tag(v));
                let viewer = Arc::new(Viewer::new(self.identity.user.clone(), tags));
                hub.set_viewer(&room, self.key, viewer.clone());
                viewer
            }
        };
        let snapshot = super::conn::snapshot(&self.ctx, &room, view, online, &viewer);
        let recovered = replay.is_some();
        let joined = Joined {
            id,
            room: &room,
            epoch: &epoch,
            seq,
            recovered,
            snapshot: &snapshot,
            welcome: welcome.as_deref(),
            variant: variant.as_deref(),
        };
        self.out.push(joined.encode());
        self.ctx.recorder.joined(
            self.key,
            &room,
            &self.identity.user,
            variant.as_deref(),
            since.as_ref().map(|_| recovered),
            self.requested.take().map(|t| t.elapsed()),
        );
        let adaptive = match mode {
            Mode::All => None,
            Mode::Adaptive { max_rate } => Some(Box::new(Adaptive::new(max_rate, Instant::now()))),
        };
        let pinned = adaptive.is_some();
        self.outlet.track(key, Cursor::new(epoch, seq), pinned);
        // One room more, not four (a vector's first growth): most viewers join one.
        self.rooms.reserve_exact(1);
        self.rooms.push(JoinedRoom {
            room,
            key,
            adaptive,
            skips: Skips::default(),
            pinned,
            muted_until: standing.muted_until.unwrap_or(0),
            viewer,
        });
        // A replay is the events after `since` (a seq in history, so below the head),
        // up to `seq`.
        if let (Some(replay), Some(since)) = (replay, since) {
            let idx = self.rooms.len() - 1;
            for (i, event) in replay.into_iter().enumerate() {
                self.emit(idx, since.seq.saturating_add(1 + i as u64), event);
            }
        }
        self.ctx.metrics.join_latency.observe(started.elapsed());
    }

    fn leave(&mut self, id: u64, room: &RoomId) {
        let Some(i) = self.room_index(room) else {
            return self.error(
                Some(id),
                ErrorCode::NotJoined,
                "not joined to this room",
                None,
            );
        };
        let r = self.rooms.swap_remove(i);
        self.ctx.fanout.hub().unsubscribe(&r.room, self.key);
        self.outlet.untrack(r.key);
        self.ctx.recorder.left(self.key, &r.room);
        self.out.push(
            ServerFrame::Left {
                id,
                room: room.as_str(),
            }
            .encode(),
        );
    }

    async fn comment(&mut self, id: u64, room: &RoomId, text: &str) {
        if !self.may_act(id, room) {
            return;
        }
        if let Err(wait) = self.buckets.comments.take(Instant::now()) {
            let msg = format!("{} comments/s", self.ctx.settings.rates.comments.per_s);
            return self.error(Some(id), ErrorCode::RateLimited, &msg, Some(wait));
        }
        let data = serde_json::json!({"user": &*self.identity.user, "name": &*self.identity.name, "text": text});
        let data = data.to_string();
        let kind = EventKind::comment();
        // A host's or moderator's words are high and never budgeted nor merged.
        let staff = self.identity.role != Role::Viewer;
        // The normalized text merges copies, counts in keyword games and is what
        // blocked words are matched against.
        let normalized = (!staff).then(|| merge_text(text));
        let tags: Vec<&str> = self.identity.viewer.tags().collect();
        let event = NewEvent {
            priority: Priority::of_viewer(&kind, staff),
            ingress: (!staff).then(|| Ingress {
                defaults: &self.ctx.settings.rooms,
                level: self.identity.level,
                user: &self.identity.user,
                merge_text: normalized.as_deref().filter(|t| !t.is_empty()),
                tags: &tags,
            }),
            ..NewEvent::new(&kind, &data)
        };
        let started = Instant::now();
        match self.ctx.fanout.publish_event(room, event).await {
            Ok(p) => {
                self.ctx.metrics.publish_latency.observe(started.elapsed());
                let m = &self.ctx.metrics;
                if p.merged {
                    m.comments_merged.inc();
                } else {
                    m.events_in.inc();
                }
                let ack = ServerFrame::Ack {
                    id,
                    seq: (!p.merged).then_some(p.seq),
                    merged: p.merged,
                    claim: None,
                    opened: None,
                };
                self.out.push(ack.encode());
                self.count(room, "comments");
            }
            Err(FanoutError::RoomBusy {
                per_s,
                retry_after_ms,
            }) => {
                self.ctx.metrics.room_busy.inc();
                let msg = format!("this room takes at most {per_s} comments a second");
                self.error(Some(id), ErrorCode::RoomBusy, &msg, Some(retry_after_ms));
            }
            Err(e) => self.fanout_error(id, &e),
        }
    }

    fn like(&mut self, id: u64, room: &RoomId, count: u32) {
        if !self.may_act(id, room) {
            return;
        }
        let now = danmaku_fanout::now_ms();
        let muted = self
            .room_index(room)
            .map_or(0, |i| self.rooms[i].muted_until);
        if muted > now {
            return self.fanout_error(id, &FanoutError::muted(muted, now));
        }
        if let Err(wait) = self.buckets.likes.take(Instant::now()) {
            let msg = format!("{} likes/s", self.ctx.settings.rates.likes.per_s);
            return self.error(Some(id), ErrorCode::RateLimited, &msg, Some(wait));
        }
        self.ctx.likes.add(room, u64::from(count));
        self.ctx.metrics.likes_in.inc_by(u64::from(count));
        self.ack(id);
        self.count(room, "likes");
    }

    async fn vote(&mut self, id: u64, room: &RoomId, poll: &PollId, option: u32) {
        if !self.may_act(id, room) {
            return;
        }
        if !self.tap(id, "votes") {
            return;
        }
        match self
            .ctx
            .fanout
            .vote(room, poll, &self.identity.user, option)
            .await
        {
            Ok(()) => {
                self.ctx.metrics.votes_in.inc();
                self.ack(id);
                self.count(room, "votes");
            }
            Err(e) => self.fanout_error(id, &e),
        }
    }

    /// Claims one of a coupon's stock; the `ack` carries the code to redeem it with.
    async fn claim(&mut self, id: u64, room: &RoomId, coupon: &InteractionId) {
        if !self.may_act(id, room) {
            return;
        }
        if !self.tap(id, "claims") {
            return;
        }
        let code = claim_code();
        let viewer = &self.identity.viewer;
        match self.ctx.fanout.claim(room, coupon, viewer, &code).await {
            Ok(()) => {
                let ack = ServerFrame::Ack {
                    id,
                    seq: None,
                    merged: false,
                    claim: Some(Claimed {
                        coupon: coupon.as_str(),
                        code: &code,
                    }),
                    opened: None,
                };
                self.out.push(ack.encode());
                self.count(room, "claims");
            }
            Err(e) => self.fanout_error(id, &e),
        }
    }

    /// A host's or moderator's moderation action in a room it joined.
    async fn moderate(&mut self, id: u64, room: &RoomId, m: &Moderation) {
        if self.identity.role == Role::Viewer {
            let msg = "only a host or moderator may moderate";
            return self.error(Some(id), ErrorCode::Forbidden, msg, None);
        }
        if !self.may_act(id, room) {
            return;
        }
        let by = self.identity.user.clone();
        match self.ctx.fanout.moderate(room, m, &by).await {
            Ok(p) => {
                let ack = ServerFrame::Ack {
                    id,
                    seq: Some(p.seq),
                    merged: false,
                    claim: None,
                    opened: None,
                };
                self.out.push(ack.encode());
            }
            Err(e) => self.fanout_error(id, &e),
        }
    }

    /// A host opens a keyword game, quiz, lottery or coupon in a room it joined, with
    /// the API's body for it.
    async fn open_game(
        &mut self,
        id: u64,
        room: &RoomId,
        what: Opening,
        body: serde_json::Map<String, serde_json::Value>,
    ) {
        use crate::opening::{self, OpenError};
        if self.identity.role != Role::Host {
            let msg = "only the room's host opens games and coupons";
            return self.error(Some(id), ErrorCode::Forbidden, msg, None);
        }
        if !self.may_act(id, room) || !self.tap(id, "openings") {
            return;
        }
        match opening::open(&*self.ctx.fanout, room, what, opening::Body::Fields(body)).await {
            Ok(o) => {
                let ack = ServerFrame::Ack {
                    id,
                    seq: Some(o.published.seq),
                    merged: false,
                    claim: None,
                    opened: Some(Opened {
                        what: what.as_str(),
                        id: o.id.as_str(),
                        audience_online: o.audience_online,
                    }),
                };
                self.out.push(ack.encode());
            }
            Err(OpenError::Invalid(m)) => self.error(Some(id), ErrorCode::BadRequest, &m, None),
            Err(OpenError::Store(e)) => self.fanout_error(id, &e),
        }
    }

    /// Takes a tap on an interaction (a claim, an answer, an entry) from the votes'
    /// budget; queues `rate_limited` when it is spent.
    fn tap(&mut self, id: u64, what: &str) -> bool {
        match self.buckets.votes.take(Instant::now()) {
            Ok(()) => true,
            Err(wait) => {
                let msg = format!("{} {what}/s", self.ctx.settings.rates.votes.per_s);
                self.error(Some(id), ErrorCode::RateLimited, &msg, Some(wait));
                false
            }
        }
    }

    /// Answers a quiz; the answer is told only when the quiz closes.
    async fn answer(&mut self, id: u64, room: &RoomId, quiz: &InteractionId, option: u32) {
        if !self.may_act(id, room) || !self.tap(id, "answers") {
            return;
        }
        let user = self.identity.user.clone();
        match self.ctx.fanout.answer(room, quiz, &user, option).await {
            Ok(()) => {
                self.ack(id);
                self.count(room, "answers");
            }
            Err(e) => self.fanout_error(id, &e),
        }
    }

    /// Enters a lottery entered by command.
    async fn enter(&mut self, id: u64, room: &RoomId, lottery: &InteractionId) {
        if !self.may_act(id, room) || !self.tap(id, "entries") {
            return;
        }
        let viewer = self.identity.viewer.clone();
        let tags: Vec<&str> = viewer.tags().collect();
        let user = self.identity.user.clone();
        match self.ctx.fanout.enter(room, lottery, &user, &tags).await {
            Ok(()) => {
                self.ack(id);
                self.count(room, "entries");
            }
            Err(e) => self.fanout_error(id, &e),
        }
    }

    /// A co-host move; a host's names the user it is about.
    async fn cohost(
        &mut self,
        id: u64,
        room: &RoomId,
        action: CohostAction,
        user: Option<String>,
        seat: Option<u32>,
    ) {
        use danmaku_fanout::seats::{Action, Actor};
        if !self.may_act(id, room) || !self.tap(id, "co-host moves") {
            return;
        }
        if action.is_host_move() && self.identity.role != Role::Host {
            let msg = "only the room's host accepts, rejects, invites or kicks co-hosts";
            return self.error(Some(id), ErrorCode::Forbidden, msg, None);
        }
        let user = user.unwrap_or_default();
        let action = match action {
            CohostAction::Request => Action::Request,
            CohostAction::Cancel => Action::Cancel,
            CohostAction::AcceptInvite => Action::AcceptInvite,
            CohostAction::Decline => Action::Decline,
            CohostAction::Leave => Action::Leave,
            CohostAction::Accept => Action::Accept { user, seat },
            CohostAction::Reject => Action::Reject { user },
            CohostAction::Invite => Action::Invite { user, seat },
            CohostAction::Kick => Action::Kick { user },
        };
        let identity = self.identity.clone();
        let actor = Actor {
            user: &identity.user,
            name: &identity.name,
        };
        match self.ctx.fanout.cohost(room, actor, &action).await {
            Ok(()) => self.ack(id),
            Err(e) => self.fanout_error(id, &e),
        }
    }

    /// Checks that this viewer may write into `room`; queues the error when not.
    fn may_act(&mut self, id: u64, room: &RoomId) -> bool {
        if self.identity.read_only {
            self.error(
                Some(id),
                ErrorCode::Forbidden,
                "anonymous viewers are read-only",
                None,
            );
            return false;
        }
        if self.room_index(room).is_none() {
            self.error(Some(id), ErrorCode::NotJoined, "join the room first", None);
            return false;
        }
        true
    }

    /// Counts an interaction into the room's retention data.
    fn count(&self, room: &RoomId, kind: &'static str) {
        self.ctx.recorder.interaction(self.key, room, kind);
    }

    /// Queues the `ack` of a command that sequenced nothing.
    fn ack(&mut self, id: u64) {
        let ack = ServerFrame::Ack {
            id,
            seq: None,
            merged: false,
            claim: None,
            opened: None,
        };
        self.out.push(ack.encode());
    }

    fn fanout_error(&mut self, id: u64, e: &FanoutError) {
        self.error(Some(id), e.code(), &e.to_string(), e.retry_after_ms());
    }

    fn room_index(&self, room: &RoomId) -> Option<usize> {
        self.rooms.iter().position(|r| r.room == *room)
    }
}

/// A claim's code: 16 hex digits, unique per claim and not guessable from the others
/// (each from a freshly seeded hasher over the time and a process-wide counter).
fn claim_code() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    h.write_u64(danmaku_fanout::now_ms());
    format!("{:016x}", h.finish())
}
