//! Task viewers: one tokio task per viewer, for the scenarios whose viewers also send
//! (`interact`, `resume`), and for passive viewers whose connection ended early
//! (they rejoin with `since` and read on as a task).
//!
//! A [`Viewer`] is also the accounting a reader thread keeps for a passive viewer;
//! it moves to a task with everything it counted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use danmaku_protocol::{Command, PollId, RoomId};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::actions::{Act, Actions};
use crate::cli::Scenario;
use crate::seen::{Pending, Seen};
use crate::shared::{Phase, STOP_GRACE, Shared};
use crate::stats::Track;
use crate::viewer::{self, Joined, Ws};
use crate::wsclient::Frame;

/// The text of the comments of viewers that repeat one (`--repeat-share`).
const REPEATED: &str = "666";

/// Attempts at reconnecting before the viewer counts as failed.
const RECONNECT_ATTEMPTS: usize = 5;

/// One viewer's room, position and accounting.
pub struct Viewer {
    shared: Arc<Shared>,
    index: usize,
    room: RoomId,
    epoch: String,
    seen: Seen,
    /// The room's open poll and its option count, to vote in.
    poll: Option<(PollId, u32)>,
    /// The room's games, to answer, enter and claim.
    games: crate::viewer::Games,
    next_id: u64,
    /// Connections made so far; each reconnect dials the next gateway.
    attempt: usize,
}

/// Opens viewer `i` (holding `permit`, a place under `--in-flight`) and runs it as a
/// task until the run stops.
pub async fn run_task(shared: Arc<Shared>, i: usize, permit: OwnedSemaphorePermit) {
    let plan = shared.plan.clone();
    let room = plan.rooms[plan.viewer_room[i]].clone();
    let t0 = std::time::Instant::now();
    let mut ws = match viewer::open(&plan.dial(i, 0)).await {
        Ok(ws) => ws,
        Err(cause) => return shared.fail(cause),
    };
    let connected = t0.elapsed();
    let joined = match viewer::join(&mut ws, &room, None, plan.adaptive(i)).await {
        Ok(j) => j,
        Err(cause) => return shared.fail(cause),
    };
    drop(permit);
    shared.opened(connected, t0.elapsed());
    let mut v = Viewer::joined(shared, i, room, &joined);
    let mut actions = Actions::new(&plan.cli.scenario, i);
    v.run(ws, &mut actions).await;
    v.finish();
}

impl Viewer {
    /// Viewer `index`, just joined to `room`: it counts seqs from the `joined` reply's.
    pub fn joined(shared: Arc<Shared>, index: usize, room: RoomId, j: &Joined) -> Self {
        let measures = shared.plan.measures(index);
        let gateway = shared.plan.gateway(index, 0);
        let mut v = Self {
            shared,
            index,
            room,
            epoch: j.epoch.clone(),
            seen: Seen {
                track: Track::start(j.seq),
                gateway,
                measures,
                ..Seen::default()
            },
            poll: j.poll.clone(),
            games: j.games.clone(),
            next_id: 2,
            attempt: 0,
        };
        v.absorb(&j.rest);
        v
    }

    fn absorb(&mut self, lines: &[Vec<u8>]) {
        let now = crate::now_us();
        for l in lines {
            self.seen.on_line(l, now);
        }
    }

    /// Whether the viewer has its room's final seq.
    pub fn done(&self, finals: &BTreeMap<String, u64>) -> bool {
        finals
            .get(self.room.as_str())
            .is_none_or(|&f| self.seen.track.next > f)
    }

    /// A viewer whose reader thread lost its connection: it rejoins with `since` and
    /// reads on as a task (unless the run has stopped and the gateway did not ask it
    /// to reconnect), then merges what it counted.
    pub async fn resume(mut self: Box<Self>) {
        let stopped = matches!(self.shared.phase.get(), Phase::Stop(_));
        if (!stopped || self.seen.reconnect_asked)
            && let Some(ws) = self.reconnect().await
        {
            let mut actions = Actions::new(&self.shared.plan.cli.scenario, self.index);
            self.run(ws, &mut actions).await;
        }
        self.finish();
    }

    /// Reads until the run stops. The loop creates no future per turn: the phase
    /// notification and the one timer are pinned once and re-armed only when needed,
    /// so a delivery costs a read, a parse and a few counters.
    async fn run(&mut self, mut ws: Ws, actions: &mut Actions) {
        let shared = self.shared.clone();
        let cell = &shared.phase;
        let notified = cell.changed();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let mut seen_generation = 0;
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        let timer = tokio::time::sleep_until(far);
        tokio::pin!(timer);
        let mut stop: Option<(Arc<BTreeMap<String, u64>>, Instant)> = None;
        let (mut next_action, mut drop_at, mut actions_until) = (far, far, far);
        loop {
            let generation = cell.generation();
            if generation != seen_generation {
                seen_generation = generation;
                match cell.get() {
                    Phase::Go => {
                        let secs = shared
                            .plan
                            .cli
                            .scenario
                            .load()
                            .map_or(0.0, |l| l.duration_s);
                        let now = Instant::now();
                        // From when the phase began, not from when this task saw it
                        // (thousands of tasks on a busy thread see it late): every
                        // viewer stops acting at the same time, before the coordinator
                        // closes the room's games.
                        let late = Duration::from_micros(
                            crate::now_us().saturating_sub(shared.go_at_us()),
                        );
                        actions_until = now + Duration::from_secs_f64(secs).saturating_sub(late);
                        next_action = actions
                            .first_wait(self.poll.is_some())
                            .map_or(far, |w| now + w);
                        if let Some((_, every)) = actions.drop {
                            drop_at =
                                now + Duration::from_secs_f64(every * (0.5 + actions.uniform()));
                        }
                    }
                    Phase::Stop(finals) => {
                        if self.done(&finals) {
                            return;
                        }
                        stop = Some((finals, Instant::now() + STOP_GRACE));
                        (next_action, drop_at) = (far, far);
                    }
                    Phase::Wait => {}
                }
            }
            let wake = stop
                .as_ref()
                .map_or(far, |s| s.1)
                .min(next_action)
                .min(drop_at);
            if timer.deadline() != wake {
                timer.as_mut().reset(wake);
            }
            // Biased: frames first, and no random number per turn.
            let reconnect = tokio::select! {
                biased;
                frame = ws.next_frame() => match frame {
                    Ok(Frame::Text(t)) => {
                        self.on_frame(t);
                        if stop.as_ref().is_some_and(|s| self.done(&s.0)) {
                            return;
                        }
                        false
                    }
                    Ok(Frame::Close(_)) | Err(_) => true,
                },
                () = &mut notified => {
                    notified.set(cell.changed());
                    notified.as_mut().enable();
                    false
                }
                () = &mut timer, if wake != far => {
                    let now = Instant::now();
                    if stop.as_ref().is_some_and(|s| now >= s.1) {
                        return;
                    }
                    let mut reconnect = false;
                    if now >= actions_until {
                        next_action = far;
                    } else if now >= next_action {
                        next_action = self.act(&mut ws, actions).await.map_or(far, |w| Instant::now() + w);
                        if next_action > actions_until { next_action = far; }
                    }
                    if now >= drop_at
                        && let Some((fraction, every)) = actions.drop {
                            drop_at = now + Duration::from_secs_f64(every);
                            if drop_at > actions_until { drop_at = far; }
                            reconnect = actions.uniform() < fraction;
                        }
                    reconnect
                }
            };
            if reconnect {
                if stop.is_some() && !self.seen.reconnect_asked {
                    return;
                }
                drop(ws);
                match self.reconnect().await {
                    Some(new) => ws = new,
                    None => return,
                }
            }
        }
    }

    /// Accounts for one server frame.
    pub fn on_frame(&mut self, frame: &[u8]) {
        self.seen.frames += 1;
        let before = self.seen.delivered;
        let now = crate::now_us();
        for line in frame.split(|&b| b == b'\n') {
            self.seen.on_line(line, now);
        }
        self.shared.delivered(self.seen.delivered - before);
        if self.seen.latencies.len() >= 256 {
            self.shared
                .record_latencies(&mut self.seen.latencies, self.seen.gateway);
        }
    }

    /// Sends the interact scenario's next command; returns the wait until the next.
    async fn act(&mut self, ws: &mut Ws, a: &mut Actions) -> Option<Duration> {
        let id = self.next_id;
        self.next_id += 1;
        let room = self.room.clone();
        let index = self.index as u32;
        let move_of = match a.next(self.poll.is_some()) {
            Act::Vote => self.poll.clone().map(|(poll, options)| {
                let option = index % options.max(1);
                let vote = Command::Vote {
                    id,
                    room: room.clone(),
                    poll,
                    option,
                };
                (vote, Pending::Vote(option))
            }),
            Act::Answer => self.games.quiz.clone().map(|(quiz, options)| {
                let option = index % options.max(1);
                let answer = Command::Answer {
                    id,
                    room: room.clone(),
                    quiz,
                    option,
                };
                (answer, Pending::Answer(option))
            }),
            Act::Enter => self.games.lottery.clone().map(|lottery| {
                let enter = Command::Enter {
                    id,
                    room: room.clone(),
                    lottery,
                };
                (enter, Pending::Enter)
            }),
            Act::Claim => self.games.coupon.clone().map(|coupon| {
                let claim = Command::Claim {
                    id,
                    room: room.clone(),
                    coupon,
                };
                (claim, Pending::Claim(crate::now_us()))
            }),
            Act::Like(n) => {
                let count = u32::try_from(n).unwrap_or(u32::MAX);
                let like = Command::Like {
                    id,
                    room: room.clone(),
                    count,
                };
                Some((like, Pending::Like(n)))
            }
            Act::Comment => None,
        };
        // A comment, also for a move whose game the room does not have (a vote
        // without a poll, say).
        let (cmd, pending) = move_of.unwrap_or_else(|| {
            let keyword = match &self.shared.plan.cli.scenario {
                Scenario::Interact {
                    keyword: Some(k), ..
                } if a.repeats => Some(k.clone()),
                _ => None,
            };
            match keyword {
                Some(text) => (Command::Comment { id, room, text }, Pending::Keyword),
                None => {
                    let text = if a.repeats {
                        REPEATED.to_owned()
                    } else {
                        format!("lt comment {id}")
                    };
                    (Command::Comment { id, room, text }, Pending::Comment)
                }
            }
        });
        self.seen.pending.insert(id, pending);
        self.shared.command_sent();
        let _ = ws.send_text(cmd.encode().as_bytes()).await;
        a.next_wait()
    }

    /// Reconnects (to the next gateway) and resumes with `since`.
    async fn reconnect(&mut self) -> Option<Ws> {
        let began = std::time::Instant::now();
        self.attempt += 1;
        self.seen.reconnect_asked = false;
        // What was measured on the last gateway counts there.
        self.shared
            .record_latencies(&mut self.seen.latencies, self.seen.gateway);
        let plan = self.shared.plan.clone();
        let since = self.seen.track.next.saturating_sub(1);
        for _ in 0..RECONNECT_ATTEMPTS {
            let dial = plan.dial(self.index, self.attempt);
            let mut ws = match viewer::open(&dial).await {
                Ok(ws) => ws,
                Err(_) => {
                    self.attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let resume = Some((self.epoch.as_str(), since));
            let adaptive = plan.adaptive(self.index);
            let Ok(j) = viewer::join(&mut ws, &self.room, resume, adaptive).await else {
                self.attempt += 1;
                continue;
            };
            self.shared.reconnected(j.recovered, began.elapsed());
            self.seen.gateway = plan.gateway(self.index, self.attempt);
            if !j.recovered {
                self.seen.resets += 1;
                self.seen.track.restart(j.seq);
            }
            self.epoch = j.epoch.clone();
            self.absorb(&j.rest);
            return Some(ws);
        }
        self.shared.fail("reconnect_failed".into());
        None
    }

    /// Merges what the viewer counted into the worker's measurements.
    pub fn finish(&mut self) {
        let user = crate::plan::user(self.index);
        self.shared
            .finish(self.room.as_str(), &user, &mut self.seen);
    }
}
