//! One simulated viewer of the `retention` scenario: it plays its [`Script`] over real
//! WebSocket connections and records each visit as it saw it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use danmaku_protocol::{Command, FrameType, RoomId, ServerLine};
use tokio::time::Instant;

use super::record::{EPSILON_MS, Visit};
use super::script::{Script, VisitPlan};
use crate::actions::Act;
use crate::plan::Plan;
use crate::viewer::{Dial, STEP_TIMEOUT, Ws, join_command};
use crate::wsclient::Frame;

/// What every viewer shares.
pub struct Ctx {
    /// The run's plan.
    pub plan: Arc<Plan>,
    /// The room.
    pub room: RoomId,
    /// The variants' names.
    pub variants: Vec<String>,
    /// The analytics clock's scale.
    pub scale: u64,
    /// Simulated second 0 of the run, in real time.
    pub t0: Instant,
}

impl Ctx {
    /// The real instant of simulated second `s` of the run.
    fn at(&self, s: f64) -> Instant {
        self.t0 + Duration::from_secs_f64(s.max(0.0) / self.scale as f64)
    }

    /// The analytics clock now, simulated ms.
    fn now(&self) -> u64 {
        crate::now_us().saturating_mul(self.scale) / 1000
    }

    /// `now` widened by [`EPSILON_MS`] real, below or above.
    fn below(&self) -> u64 {
        self.now().saturating_sub(EPSILON_MS * self.scale)
    }

    fn above(&self) -> u64 {
        self.now() + EPSILON_MS * self.scale
    }
}

/// What one viewer did: its visits, and commands refused by code.
#[derive(Debug, Default)]
pub struct Played {
    /// Its visits, complete or not.
    pub visits: Vec<Visit>,
    /// Refused commands by error code.
    pub refused: BTreeMap<String, u64>,
    /// Why it could not finish, if it could not.
    pub failure: Option<String>,
}

/// A joined connection.
struct Conn {
    ws: Ws,
    epoch: String,
    seq: u64,
    next_id: u64,
    /// Commands waiting for their answer: whether each is a comment.
    pending: HashMap<u64, bool>,
}

/// What a `joined` reply said.
struct Reply {
    epoch: String,
    seq: u64,
    recovered: bool,
    variant: Option<String>,
}

/// Plays `script`; never panics, tells a failure in [`Played::failure`].
pub async fn play(ctx: Arc<Ctx>, script: Script) -> Played {
    let mut played = Played::default();
    let mut attempt = 0;
    for plan in &script.visits {
        let mut visit = Visit {
            user: script.index,
            variant: script.variant,
            ..Visit::default()
        };
        let r = play_visit(&ctx, &script, plan, &mut attempt, &mut visit, &mut played).await;
        if let Err(e) = r {
            played.failure = Some(format!("viewer lt-{}: {e}", script.index));
            if visit.connections > 0 {
                // Begun and cut short: it ended (its socket closed) by now.
                visit.end = (visit.start.0, ctx.above());
                played.visits.push(visit);
            }
            break;
        }
        played.visits.push(visit);
    }
    played
}

async fn play_visit(
    ctx: &Ctx,
    script: &Script,
    plan: &VisitPlan,
    attempt: &mut usize,
    visit: &mut Visit,
    played: &mut Played,
) -> Result<(), String> {
    tokio::time::sleep_until(ctx.at(plan.begin)).await;
    let mut acts: VecDeque<(Instant, Act)> = plan
        .acts
        .iter()
        .map(|(t, a)| (ctx.at(plan.begin + t), *a))
        .collect();
    let (mut conn, _, start) = connect(ctx, script, attempt, None).await?;
    visit.start = start;
    visit.connections += 1;
    if let Some((gone, back)) = plan.drop {
        stay(
            &mut conn,
            ctx.at(plan.begin + gone),
            &mut acts,
            ctx,
            visit,
            played,
        )
        .await?;
        settle(&mut conn, visit, played).await?;
        let since = (conn.epoch.clone(), conn.seq);
        // The network goes: the socket closes without a word.
        drop(conn);
        tokio::time::sleep_until(ctx.at(plan.begin + back)).await;
        let (again, reply, _) = connect(ctx, script, attempt, Some(since)).await?;
        conn = again;
        visit.connections += 1;
        visit.resumes += 1;
        visit.recovered += u64::from(reply.recovered);
    }
    let end = ctx.at(plan.begin + plan.dwell);
    stay(&mut conn, end, &mut acts, ctx, visit, played).await?;
    settle(&mut conn, visit, played).await?;
    let lo = ctx.below();
    if plan.by_leave {
        conn.next_id += 1;
        let leave = Command::Leave {
            id: conn.next_id,
            room: ctx.room.clone(),
        };
        send(&mut conn, leave.encode().as_bytes()).await?;
        let id = conn.next_id;
        let left = async {
            loop {
                if read(&mut conn, visit, played).await? == Some(id) {
                    return Ok::<(), String>(());
                }
            }
        };
        tokio::time::timeout(STEP_TIMEOUT, left)
            .await
            .map_err(|_| "no `left` reply".to_string())??;
        visit.end = (lo, ctx.above());
        let _ = conn.ws.close(Duration::from_secs(2)).await;
    } else {
        let _ = conn.ws.close(Duration::from_secs(2)).await;
        visit.end = (lo, ctx.above());
    }
    Ok(())
}

/// Opens connection `attempt` of the viewer (round robin over the gateways) and joins,
/// resuming after `since` when given. Returns the connection, the reply and when the
/// join happened.
async fn connect(
    ctx: &Ctx,
    script: &Script,
    attempt: &mut usize,
    since: Option<(String, u64)>,
) -> Result<(Conn, Reply, (u64, u64)), String> {
    let plan = &ctx.plan;
    let g = plan.gateway(script.index, *attempt);
    let cohort = &ctx.variants[script.variant];
    let user = format!("lt-{}", script.index);
    let secret = plan.cli.common.jwt_secret.as_deref().unwrap_or_default();
    let token = crate::plan::token_in(secret, &user, Some(cohort));
    let sources = &plan.cli.common.source_addrs;
    let dial = Dial {
        url: format!("{}?token={token}", plan.cli.common.urls[g]),
        addr: plan.addrs[g],
        tls: plan.http[g].tls.clone(),
        source: (!sources.is_empty()).then(|| sources[script.index % sources.len()]),
        seed: ((script.index as u64) << 16) | *attempt as u64,
        tungstenite: false,
    };
    *attempt += 1;
    let url = &plan.cli.common.urls[g];
    let ws = crate::viewer::open(&dial)
        .await
        .map_err(|e| format!("connecting to {url}: {e}"))?;
    let mut conn = Conn {
        ws,
        epoch: String::new(),
        seq: 0,
        next_id: 1,
        pending: HashMap::new(),
    };
    let lo = ctx.below();
    let since_ref = since.as_ref().map(|(e, s)| (e.as_str(), *s));
    send(
        &mut conn,
        join_command(&ctx.room, since_ref, None).as_bytes(),
    )
    .await?;
    let reply = tokio::time::timeout(STEP_TIMEOUT, joined(&mut conn))
        .await
        .map_err(|_| format!("no `joined` from {url}"))??;
    let at = (lo, ctx.above());
    if reply.variant.as_deref() != Some(cohort.as_str()) {
        return Err(format!(
            "{url} put cohort {cohort} in variant {:?} (is the room's experiment set?)",
            reply.variant
        ));
    }
    conn.epoch.clone_from(&reply.epoch);
    conn.seq = reply.seq;
    Ok((conn, reply, at))
}

async fn send(conn: &mut Conn, text: &[u8]) -> Result<(), String> {
    conn.ws
        .send_text(text)
        .await
        .map_err(|e| format!("sending: {e}"))
}

/// Reads until the `joined` reply (command id 1).
async fn joined(conn: &mut Conn) -> Result<Reply, String> {
    loop {
        let text = match conn.ws.next_frame().await {
            Ok(Frame::Text(t)) => t,
            Ok(Frame::Close(code)) => return Err(format!("closed before joined ({code:?})")),
            Err(e) => return Err(format!("reading: {e}")),
        };
        for line in text.split(|&b| b == b'\n') {
            let Ok(l) = ServerLine::decode(line) else {
                continue;
            };
            match l.ty {
                FrameType::Joined => {
                    let v: serde_json::Value =
                        serde_json::from_slice(line).map_err(|_| "bad joined".to_string())?;
                    return Ok(Reply {
                        epoch: v["epoch"].as_str().unwrap_or_default().to_owned(),
                        seq: v["seq"].as_u64().unwrap_or(0),
                        recovered: v["recovered"].as_bool().unwrap_or(false),
                        variant: v["variant"].as_str().map(str::to_owned),
                    });
                }
                FrameType::Error if l.id == Some(1) => {
                    return Err(format!(
                        "join refused: {}",
                        l.code.as_deref().unwrap_or("?")
                    ));
                }
                _ => {}
            }
        }
    }
}

/// Reads one frame, counting the answers to commands; returns the id of a `left`.
async fn read(
    conn: &mut Conn,
    visit: &mut Visit,
    played: &mut Played,
) -> Result<Option<u64>, String> {
    let text = match conn.ws.next_frame().await {
        Ok(Frame::Text(t)) => t,
        Ok(Frame::Close(code)) => return Err(format!("closed by the gateway ({code:?})")),
        Err(e) => return Err(format!("reading: {e}")),
    };
    let mut left = None;
    for line in text.split(|&b| b == b'\n') {
        let Ok(l) = ServerLine::decode(line) else {
            continue;
        };
        match l.ty {
            FrameType::Ack | FrameType::Error => {
                let Some(comment) = l.id.and_then(|id| conn.pending.remove(&id)) else {
                    continue;
                };
                if l.ty == FrameType::Error {
                    let code = l.code.as_deref().unwrap_or("error").to_owned();
                    *played.refused.entry(code).or_default() += 1;
                } else if comment {
                    visit.comments += 1;
                } else {
                    visit.likes += 1;
                }
            }
            FrameType::Left => left = l.id,
            FrameType::Event | FrameType::Reset => {
                if let Some(seq) = l.seq {
                    conn.seq = conn.seq.max(seq);
                }
                if l.ty == FrameType::Reset
                    && let Some(epoch) = l.epoch
                {
                    conn.epoch = epoch.into_owned();
                }
            }
            _ => {}
        }
    }
    Ok(left)
}

/// Stays joined until `until`, sending the acts due before it.
async fn stay(
    conn: &mut Conn,
    until: Instant,
    acts: &mut VecDeque<(Instant, Act)>,
    ctx: &Ctx,
    visit: &mut Visit,
    played: &mut Played,
) -> Result<(), String> {
    loop {
        let due = acts.front().map(|a| a.0).filter(|t| *t < until);
        let wake = due.unwrap_or(until);
        tokio::select! {
            r = read(conn, visit, played) => { r?; }
            () = tokio::time::sleep_until(wake) => {
                let Some((_, act)) = acts.pop_front().filter(|_| due.is_some()) else {
                    return Ok(());
                };
                conn.next_id += 1;
                let id = conn.next_id;
                let room = ctx.room.clone();
                let (command, comment) = match act {
                    Act::Like(n) => (Command::Like { id, room, count: u32::try_from(n).unwrap_or(1) }, false),
                    _ => (Command::Comment { id, room, text: format!("hello {} {id}", visit.user) }, true),
                };
                conn.pending.insert(id, comment);
                send(conn, command.encode().as_bytes()).await?;
            }
        }
    }
}

/// Reads until every command sent has its answer (at most [`STEP_TIMEOUT`]).
async fn settle(conn: &mut Conn, visit: &mut Visit, played: &mut Played) -> Result<(), String> {
    let wait = async {
        while !conn.pending.is_empty() {
            read(conn, visit, played).await?;
        }
        Ok::<(), String>(())
    };
    tokio::time::timeout(STEP_TIMEOUT, wait)
        .await
        .map_err(|_| "commands left unanswered".to_string())?
}
