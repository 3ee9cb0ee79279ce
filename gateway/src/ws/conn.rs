//! The connection task: one per viewer, owning all of its state.
//!
//! The loop waits on four things: a client frame, deliveries from the mailbox, the
//! heartbeat, and drain. Each is handled by one method; everything that became ready is
//! written with one flush. Each delivery is stepped on the room's [`Cursor`] (kept in
//! the outlet, shared with direct writes): a duplicate is dropped, a gap is filled from
//! history before going on, and a gap that history no longer covers, or a new epoch,
//! becomes a `reset`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use danmaku_fanout::position::{Behind, Cursor, Step};
use danmaku_fanout::{
    Control, Delivery, FanoutError, Mailbox, MailboxReceiver, RoomKey, RoomView, mailbox_with_sink,
};
use danmaku_protocol::audience::{Targeted, Viewer, is_targeted};
use danmaku_protocol::server::encode_reset;
use danmaku_protocol::{
    CloseCode, ErrorCode, EventFrame, Priority, RoomId, ServerFrame, Since, SkipReason, Snapshot,
};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use super::Held;
use super::adaptive::Adaptive;
use super::backlog::{Backlog, Registered};
use super::io::{ConnIo, Outlet};
use super::outbound::Outbound;
use super::skips::Skips;
use crate::auth::Identity;
use crate::limits::TokenBucket;
use crate::state::ConnContext;

/// How a connection ends.
pub(super) enum Exit {
    /// The peer went away (closed, reset, or an I/O error).
    Gone,
    /// We close with this code.
    Close(CloseCode),
}

/// A room this connection has joined. Its position is the [`Cursor`] the outlet
/// keeps under `key`.
pub(super) struct JoinedRoom {
    pub(super) room: RoomId,
    pub(super) key: RoomKey,
    /// For a viewer that joined with `"mode":"adaptive"`: its budget.
    /// Boxed: few viewers are adaptive, and every joined room holds the field.
    pub(super) adaptive: Option<Box<Adaptive>>,
    /// What the viewer was not sent and not told yet.
    pub(super) skips: Skips,
    /// Whether the outlet was told to leave this room to the task (adaptive, or
    /// markers waiting for the next event).
    pub(super) pinned: bool,
    /// Until when (Unix ms) the user is muted here: its likes are refused (comments and
    /// votes are refused by the store itself). 0: not muted.
    pub(super) muted_until: u64,
    /// Who the viewer is in this room, as targeting matches it (its token's user and
    /// tags, and its variant of the room's experiment).
    pub(super) viewer: Arc<Viewer>,
}

pub(super) struct Buckets {
    pub(super) comments: TokenBucket,
    pub(super) likes: TokenBucket,
    pub(super) votes: TokenBucket,
}

pub(super) struct Conn {
    pub(super) ctx: Arc<ConnContext>,
    pub(super) key: u64,
    pub(super) identity: Identity,
    socket: WebSocketStream<ConnIo>,
    pub(super) outlet: Arc<Outlet>,
    pub(super) mailbox: Mailbox,
    pub(super) rooms: Vec<JoinedRoom>,
    pub(super) buckets: Buckets,
    pub(super) out: Outbound,
    frames: Vec<Bytes>,
    /// What this connection holds for writing, as `/metrics` sums it.
    backlog: Arc<Backlog>,
    /// Keeps `backlog` in the registry while the connection lives.
    _registered: Registered,
    _held: Held,
    last_seen: Instant,
    /// When deliveries were last written, for the hot-room linger.
    last_write: Option<Instant>,
    /// The upgrade request's time, until the first `joined` (its first render).
    pub(super) requested: Option<Instant>,
}

/// What a connection starts from: everything its task needs once, at the start.
///
/// Handed to the task boxed and consumed by [`Conn::open`]: a task's future keeps the
/// arguments it was created with for as long as it lives, so these are one pointer
/// there, not the hundreds of bytes of a stream, a config and an identity held twice.
pub(super) struct Opening {
    pub(super) ctx: Arc<ConnContext>,
    pub(super) stream: TcpStream,
    /// Bytes the client sent behind its handshake.
    pub(super) read_ahead: Vec<u8>,
    /// The 101 response, when hyper did not send it: it goes out with `hello`.
    pub(super) preface: Option<Bytes>,
    pub(super) config: WebSocketConfig,
    pub(super) identity: Identity,
    /// Released when the connection ends.
    pub(super) held: Held,
    /// When the upgrade request came (its first `joined` is its first render).
    pub(super) requested: Instant,
}

/// Runs one connection to its end.
pub(super) async fn run(opening: Box<Opening>) {
    let (mut conn, inbox) = Conn::open(opening).await;
    conn.ctx.metrics.open_connections.inc();
    conn.ctx.metrics.connections_total.inc();
    let exit = conn.drive(inbox).await;
    conn.outlet.seal();
    conn.finish(exit).await;
    conn.count_direct_writes();
    for r in std::mem::take(&mut conn.rooms) {
        conn.ctx.fanout.hub().unsubscribe(&r.room, conn.key);
        conn.ctx.recorder.left(conn.key, &r.room);
    }
    conn.ctx.metrics.open_connections.dec();
}

impl Conn {
    /// The connection's state, registered, and its mailbox's receiving end.
    async fn open(opening: Box<Opening>) -> (Self, MailboxReceiver) {
        let Opening {
            ctx,
            stream,
            read_ahead,
            preface,
            config,
            identity,
            held,
            requested,
        } = *opening;
        let key = ctx.next_conn();
        let outlet = Arc::new(Outlet::new(
            Arc::new(stream),
            ctx.settings.ws.write_linger,
            ctx.write_pressure.clone(),
        ));
        if let Some(bytes) = preface {
            outlet.preface(bytes);
        }
        let io = ConnIo {
            outlet: outlet.clone(),
        };
        let socket =
            WebSocketStream::from_partially_read(io, read_ahead, Role::Server, Some(config)).await;
        let ws = &ctx.settings.ws;
        let (mailbox, inbox) =
            mailbox_with_sink(ws.outbound_queue, ws.outbound_queue_bytes, outlet.clone());
        let backlog = Arc::new(Backlog::new(mailbox.clone(), outlet.clone()));
        let registered = ctx.backlogs.register(key, backlog.clone());
        let now = Instant::now();
        let rates = ctx.settings.rates;
        let conn = Self {
            backlog,
            _registered: registered,
            _held: held,
            key,
            identity,
            socket,
            outlet,
            mailbox,
            rooms: Vec::new(),
            buckets: Buckets {
                comments: TokenBucket::new(rates.comments, now),
                likes: TokenBucket::new(rates.likes, now),
                votes: TokenBucket::new(rates.votes, now),
            },
            out: Outbound::default(),
            frames: Vec::new(),
            last_seen: now,
            last_write: None,
            requested: Some(requested),
            ctx,
        };
        (conn, inbox)
    }

    async fn drive(&mut self, mut inbox: MailboxReceiver) -> Exit {
        let hello = ServerFrame::Hello {
            conn: &format!("{}-{:06}", self.ctx.settings.gateway_id, self.key),
            gateway: &self.ctx.settings.gateway_id,
            heartbeat_ms: u64::try_from(self.ctx.settings.ws.heartbeat.as_millis())
                .unwrap_or(u64::MAX),
            server_time: danmaku_fanout::now_ms(),
        }
        .encode();
        self.out.push(hello);
        if let Err(exit) = self.flush().await {
            return exit;
        }
        let heartbeat = self.ctx.settings.ws.heartbeat;
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        // Created once: polling a fresh `cancelled()` per loop turn would take the
        // token's shared waiter lock on every delivery of every connection.
        let shutdown = self.ctx.shutdown.clone();
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let moved = self.ctx.mover.token();
        let move_now = moved.cancelled();
        tokio::pin!(move_now);
        let max_batch = self.ctx.settings.ws.max_batch;
        let mut batch: Vec<Delivery> = Vec::new();
        let mut drain_at: Option<tokio::time::Instant> = None;
        loop {
            // Each branch is cancel safe: `recv` and `recv_many` take nothing unless
            // they complete, ticks and cancellation are level-triggered.
            let step = tokio::select! {
                _ = inbox.recv_many(&mut batch, max_batch) => {
                    self.linger(&mut inbox, &mut batch).await;
                    self.on_deliveries(&mut batch, &inbox).await
                }
                // Boxed: a client frame is rare next to deliveries, and its handling
                // is the biggest state of the loop.
                frame = self.socket.next() => Box::pin(self.on_frame(frame)).await,
                () = self.outlet.kicked() => self.drain_outlet().await,
                _ = ping.tick() => self.on_heartbeat().await,
                () = &mut cancelled, if drain_at.is_none() => self.on_drain(&mut drain_at, "draining").await,
                () = &mut move_now, if drain_at.is_none() => self.on_drain(&mut drain_at, "store unavailable").await,
                () = sleep_until(drain_at), if drain_at.is_some() => Err(Exit::Close(CloseCode::ServiceRestart)),
            };
            if let Err(exit) = step {
                return exit;
            }
            self.hand_over_rooms(&inbox);
        }
    }

    /// Hands every room to direct writes when nothing is queued.
    fn hand_over_rooms(&self, inbox: &MailboxReceiver) {
        if self.outlet.all_direct() {
            return;
        }
        let outlet = &self.outlet;
        inbox.when_idle(|| outlet.hand_over());
    }

    /// Adds what the outlet wrote since the last call to the metrics: direct writes
    /// (one frame, one message each) and every byte taken by the socket.
    pub(super) fn count_direct_writes(&self) {
        let written = self.outlet.take_written();
        let m = &self.ctx.metrics;
        m.frames_out.inc_by(written.direct);
        m.messages_out.inc_by(written.direct);
        m.bytes_out.inc_by(written.bytes);
    }

    async fn on_frame(&mut self, frame: Option<Result<Message, WsError>>) -> Result<(), Exit> {
        let message = match frame {
            None => return Err(Exit::Gone),
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(classify_read_error(e)),
        };
        self.last_seen = Instant::now();
        match message {
            Message::Text(text) => {
                for line in danmaku_protocol::split_frame(text.as_str()) {
                    // Boxed: a command's states (a join's store calls, a comment's
                    // publish) would otherwise be part of every idle viewer's task.
                    Box::pin(self.on_command(line)).await;
                }
            }
            Message::Binary(_) => self.error(
                None,
                ErrorCode::BadRequest,
                "binary frames are not supported; send JSON text",
                None,
            ),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            Message::Close(_) => return Err(Exit::Gone),
        }
        self.flush().await
    }

    /// Viewer-level coalescing, for events that reach this task (a hot *room* is
    /// batched by the hub already): when 3 events reached this viewer within one
    /// `write_linger` and it was written to less than that ago, wait out the rest of
    /// the linger and take everything that arrived meanwhile — e.g. a viewer of
    /// several busy rooms, none hot on its own — so it costs one write per linger instead
    /// of one per event. A quiet room is written at once.
    async fn linger(&mut self, inbox: &mut MailboxReceiver, batch: &mut Vec<Delivery>) {
        let linger = self.ctx.settings.ws.write_linger;
        let Some(last) = self.last_write else { return };
        if linger.is_zero() || last.elapsed() >= linger || !self.outlet.coalesces() {
            return;
        }
        // The linger ends early when the mailbox is half full: coalescing must never
        // make a reading viewer overflow.
        let deadline = tokio::time::Instant::from_std(last + linger);
        let half = inbox.capacity() / 2;
        while batch.len() + inbox.len() < half.max(1) {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                () = inbox.wake() => {}
            }
        }
        inbox.try_recv_many(batch, self.ctx.settings.ws.outbound_queue);
    }

    async fn on_deliveries(
        &mut self,
        batch: &mut Vec<Delivery>,
        inbox: &MailboxReceiver,
    ) -> Result<(), Exit> {
        for d in batch.drain(..) {
            let Some(idx) = self.rooms.iter().position(|r| r.key == d.room) else {
                continue; // left the room since
            };
            if d.seq == 0 {
                self.out.push(d.frame);
                continue;
            }
            self.deliver(idx, &d).await?;
        }
        if batch.capacity() > 16 {
            // Idle viewers hold no batch buffer; hot ones reallocate once per wake-up.
            *batch = Vec::new();
        }
        for key in inbox.take_overflowed() {
            if let Some(idx) = self.rooms.iter().position(|r| r.key == key) {
                Box::pin(self.catch_up(idx, None)).await?;
            }
        }
        for (key, control) in inbox.take_controls() {
            self.on_control(key, control);
        }
        self.flush().await
    }

    /// Moderation about this connection's user in a room: a ban takes the room away
    /// (`kicked`), a mute refuses its likes until it ends.
    fn on_control(&mut self, key: RoomKey, control: Control) {
        let Some(idx) = self.rooms.iter().position(|r| r.key == key) else {
            return;
        };
        match control {
            Control::Kick => {
                let r = self.rooms.swap_remove(idx);
                self.ctx.fanout.hub().unsubscribe(&r.room, self.key);
                self.outlet.untrack(r.key);
                self.ctx.recorder.left(self.key, &r.room);
                let kicked = ServerFrame::Kicked {
                    room: r.room.as_str(),
                    reason: "banned",
                };
                self.out.push(kicked.encode());
            }
            Control::Mute(until) => self.rooms[idx].muted_until = until,
            Control::Unmute => self.rooms[idx].muted_until = 0,
        }
    }

    /// Steps one delivery of room `idx` on its cursor and does what it says.
    async fn deliver(&mut self, idx: usize, d: &Delivery) -> Result<(), Exit> {
        let key = self.rooms[idx].key;
        // A direct room is written by the outlet, in order; nothing of it is queued.
        let step = |c: &mut Cursor| (!c.is_direct()).then(|| c.step(d.first, d.seq));
        let Some(mut step) = self.outlet.cursor(key, step).flatten() else {
            return Ok(());
        };
        if let Step::Gap { to, .. } = step {
            // Boxed, like the reset below: the rare paths stay out of the task's size.
            Box::pin(self.catch_up(idx, Some(to))).await?;
            step = self
                .outlet
                .cursor(key, |c| c.step(d.first, d.seq))
                .unwrap_or(Step::Duplicate);
        }
        let room = &self.rooms[idx];
        let decided = room.adaptive.is_some() || !room.skips.is_empty() || is_targeted(&d.frame);
        match step {
            Step::Write { skip } if decided => {
                // Each event is its own decision: a batch is taken apart.
                if skip == 0 && d.first == d.seq {
                    self.emit(idx, d.seq, d.frame.clone());
                } else {
                    for (i, line) in split_lines(&d.frame).enumerate().skip(skip) {
                        self.emit(idx, d.first.saturating_add(i as u64), line);
                    }
                }
            }
            Step::Write { skip: 0 } => self.out.push(d.frame.clone()),
            Step::Write { skip } => {
                // A batch partly written already: its lines are events first..=seq.
                for line in split_lines(&d.frame).skip(skip) {
                    self.out.push(line);
                }
            }
            Step::Duplicate => return Ok(()),
            // Reset, or a gap history could not fill: continuity restarts, told.
            Step::Reset | Step::Gap { .. } => return Box::pin(self.reset(idx)).await,
        }
        self.outlet.cursor(key, |c| c.wrote(d.seq));
        Ok(())
    }

    /// Queues event `seq` of room `idx` (encoded as `event`, behind its audience tag when
    /// targeted): as it is, or — when it is for others, or beyond an adaptive viewer's
    /// budget — skipped, which is told before the next event the viewer is sent.
    pub(super) fn emit(&mut self, idx: usize, seq: u64, event: Bytes) {
        let m = &self.ctx.metrics;
        let room = &mut self.rooms[idx];
        let event = match Targeted::split(&event) {
            None => event,
            Some(t) if t.includes(&room.viewer) => {
                m.targeted_delivered.inc();
                t.event
            }
            Some(t) => {
                m.skipped(true, Priority::of_frame(&t.event));
                for marker in room.skips.add(&room.room, seq, t.skip_reason()) {
                    self.out.push(marker);
                }
                return self.pin(idx);
            }
        };
        if let Some(a) = &mut room.adaptive {
            // The backlog is read (two locks) only for an adaptive room's decision.
            if let Err(priority) = a.admit(&event, self.backlog.held(), Instant::now()) {
                m.skipped(false, priority);
                for marker in room.skips.add(&room.room, seq, SkipReason::Sampled) {
                    self.out.push(marker);
                }
                return;
            }
        }
        let bytes = room.skips.before(&room.room, event);
        self.out.push(bytes);
        self.pin(idx);
    }

    /// Keeps room `idx` with the task while it is adaptive or markers wait (a direct
    /// write would leave them untold), and hands it back once they are told.
    fn pin(&mut self, idx: usize) {
        let room = &mut self.rooms[idx];
        let pinned = room.adaptive.is_some() || !room.skips.is_empty();
        if pinned != room.pinned {
            room.pinned = pinned;
            self.outlet.pin(room.key, pinned);
        }
    }

    /// Fills a room's gap from history, up to `upto` or the room's head; sends `reset`
    /// when history no longer covers the gap or the epoch changed.
    async fn catch_up(&mut self, idx: usize, upto: Option<u64>) -> Result<(), Exit> {
        let (room, key) = (self.rooms[idx].room.clone(), self.rooms[idx].key);
        loop {
            let target = upto.unwrap_or(u64::MAX);
            let missing = |c: &mut Cursor| {
                // The outlet still owns a direct room: it writes in order.
                (!c.is_direct()).then(|| (c.last(), c.missing(target)))
            };
            let Some((last, n)) = self.outlet.cursor(key, missing).flatten() else {
                return Ok(());
            };
            if n == 0 {
                return Ok(());
            }
            let limit = usize::try_from(n).unwrap_or(usize::MAX).min(1_000);
            match self.ctx.fanout.history(&room, last, limit).await {
                Ok(h) => {
                    let filled = h.events.len();
                    let same_epoch = self
                        .outlet
                        .cursor(key, |c| c.behind(&h.epoch, h.head) != Behind::NewEpoch)
                        .unwrap_or(false);
                    if !same_epoch {
                        return self.reset(idx).await;
                    }
                    if filled == 0 {
                        return Ok(());
                    }
                    for (i, ev) in h.events.into_iter().enumerate() {
                        self.emit(idx, last.saturating_add(1 + i as u64), ev);
                    }
                    self.outlet.cursor(key, |c| c.filled(filled));
                }
                Err(FanoutError::Gone { .. } | FanoutError::Ahead { .. }) => {
                    return self.reset(idx).await;
                }
                Err(e) => {
                    tracing::warn!(%room, error = %e, "catch-up failed");
                    return Err(Exit::Close(CloseCode::InternalError));
                }
            }
        }
    }

    /// Tells the viewer that continuity of a room restarts now, with a fresh snapshot.
    async fn reset(&mut self, idx: usize) -> Result<(), Exit> {
        let (room, key) = (self.rooms[idx].room.clone(), self.rooms[idx].key);
        let (view, online) =
            view_and_online(&self.ctx, &room, None, self.ctx.settings.ws.snapshot_recent)
                .await
                .map_err(|_| Exit::Close(CloseCode::InternalError))?;
        let (epoch, seq) = (view.epoch.clone(), view.seq);
        let viewer = self.rooms[idx].viewer.clone();
        let snapshot = snapshot(&self.ctx, &room, view, online, &viewer);
        self.out.push(encode_reset(&room, &epoch, seq, &snapshot));
        self.outlet.cursor(key, |c| c.reset(epoch, seq));
        self.rooms[idx].skips.forget();
        self.pin(idx);
        self.ctx.metrics.resets.inc();
        Ok(())
    }

    async fn on_heartbeat(&mut self) -> Result<(), Exit> {
        let limit = self.ctx.settings.ws.heartbeat.mul_f64(2.5);
        if self.last_seen.elapsed() > limit {
            return Err(Exit::Close(CloseCode::IdleTimeout));
        }
        // Checked on this timer, so a token is honoured until the first heartbeat
        // after its `exp` (at most one heartbeat longer) at no cost per connection.
        if self
            .identity
            .expires_at
            .is_some_and(|exp| danmaku_fanout::now_ms() / 1000 >= exp)
        {
            return Err(Exit::Close(CloseCode::TokenExpired));
        }
        self.count_direct_writes();
        self.write(Message::Ping(Bytes::new())).await
    }

    /// Tells the client to reconnect (to another gateway) for `reason`, and schedules
    /// the 1012 close.
    async fn on_drain(
        &mut self,
        drain_at: &mut Option<tokio::time::Instant>,
        reason: &str,
    ) -> Result<(), Exit> {
        let after = self.ctx.settings.ws.drain_after;
        let after_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        self.out
            .push(ServerFrame::Reconnect { reason, after_ms }.encode());
        *drain_at = Some(tokio::time::Instant::now() + after);
        self.flush().await
    }

    /// Queues an `error` reply.
    pub(super) fn error(
        &mut self,
        id: Option<u64>,
        code: ErrorCode,
        message: &str,
        retry_after_ms: Option<u64>,
    ) {
        self.ctx.metrics.command_error(code);
        self.out.push(
            ServerFrame::Error {
                id,
                code,
                message,
                retry_after_ms,
            }
            .encode(),
        );
    }

    /// Writes everything queued: batched frames, one flush.
    async fn flush(&mut self) -> Result<(), Exit> {
        if self.out.is_empty() {
            return Ok(());
        }
        let max_batch = self.ctx.settings.ws.max_batch;
        let messages = self.out.take_frames(max_batch, &mut self.frames);
        let frames = self.frames.len();
        self.backlog
            .set_in_task(self.frames.iter().map(Bytes::len).sum());
        let timeout = self.ctx.settings.ws.write_timeout;
        let socket = &mut self.socket;
        let pending = &mut self.frames;
        let write = async {
            for frame in pending.drain(..) {
                // Frames are built from JSON text; a failure here would be our bug.
                let text = Utf8Bytes::try_from(frame)
                    .map_err(|_| Exit::Close(CloseCode::InternalError))?;
                socket
                    .feed(Message::Text(text))
                    .await
                    .map_err(|_| Exit::Gone)?;
            }
            socket.flush().await.map_err(|_| Exit::Gone)
        };
        let result = tokio::time::timeout(timeout, write).await;
        self.backlog.set_in_task(0);
        self.last_write = Some(Instant::now());
        self.frames = Vec::new();
        let m = &self.ctx.metrics;
        m.frames_out.inc_by(frames as u64);
        m.messages_out.inc_by(messages as u64);
        result.map_err(|_| Exit::Close(CloseCode::SlowConsumer))?
    }

    /// Writes out what a partial direct write left pending, within the write timeout.
    async fn drain_outlet(&mut self) -> Result<(), Exit> {
        within(self.ctx.settings.ws.write_timeout, self.socket.flush()).await
    }

    async fn write(&mut self, message: Message) -> Result<(), Exit> {
        within(
            self.ctx.settings.ws.write_timeout,
            self.socket.send(message),
        )
        .await
    }

    /// Sends the close frame (when we close) and waits briefly for the peer's.
    async fn finish(&mut self, exit: Exit) {
        let Exit::Close(code) = exit else { return };
        self.ctx.metrics.closed(code);
        close_with(
            &mut self.socket,
            code.code(),
            Utf8Bytes::from_static(code.reason()),
        )
        .await;
    }
}

/// A room's view (for a join with `since`, or a reset) and its online count of every
/// gateway, asked for together: with Redis they are two round trips, sent at once.
/// The count falls back to this gateway's when the store cannot tell it.
pub(super) async fn view_and_online(
    ctx: &ConnContext,
    room: &RoomId,
    since: Option<&Since>,
    recent: usize,
) -> Result<(RoomView, u64), FanoutError> {
    let (view, online) = tokio::join!(
        ctx.fanout.view(room, since, recent),
        ctx.fanout.online(room)
    );
    let online = online.unwrap_or_else(|_| ctx.fanout.hub().online(room));
    Ok((view?, online))
}

/// A room's snapshot from its view, as `viewer` sees it (targeted events for others
/// are `skipped` markers), with the online count of every gateway; the settings are
/// the room's own or, when it has none, this gateway's defaults.
pub(super) fn snapshot(
    ctx: &ConnContext,
    room: &RoomId,
    view: RoomView,
    online: u64,
    viewer: &Viewer,
) -> Snapshot {
    Snapshot {
        recent: recent_for(room, view.recent, viewer),
        likes: view.likes,
        online,
        polls: view.polls,
        stage: view.stage,
        coupons: visible(view.coupons, viewer),
        keywords: view.keywords,
        quizzes: view.quizzes,
        lotteries: view.lotteries,
        seats: view.seats,
        settings: Some(
            view.settings
                .unwrap_or_else(|| ctx.settings.rooms_json.clone()),
        ),
    }
}

/// The states (coupons) among `states` that `viewer` may see: untargeted ones, and
/// targeted ones whose audience holds it, without their tag.
fn visible(states: Vec<Bytes>, viewer: &Viewer) -> Vec<Bytes> {
    if !states.iter().any(|s| is_targeted(s)) {
        return states;
    }
    let shown = states
        .into_iter()
        .filter_map(|s| match Targeted::split(&s) {
            None => Some(s),
            Some(t) => t.includes(viewer).then_some(t.event),
        });
    shown.collect()
}

/// A room's recent events as `viewer` may see them: a targeted event outside its
/// audience becomes a `skipped` marker (consecutive ones joined), in place.
fn recent_for(room: &RoomId, recent: Vec<Bytes>, viewer: &Viewer) -> Vec<Bytes> {
    if !recent.iter().any(|e| is_targeted(e)) {
        return recent;
    }
    let (mut out, mut skips) = (Vec::with_capacity(recent.len()), Skips::default());
    for event in recent {
        match Targeted::split(&event) {
            None => {
                out.extend(skips.take(room));
                out.push(event);
            }
            Some(t) if t.includes(viewer) => {
                out.extend(skips.take(room));
                out.push(t.event);
            }
            Some(t) => {
                if let Some(seq) = EventFrame::seq_of(&t.event) {
                    out.extend(skips.add(room, seq, t.skip_reason()));
                }
            }
        }
    }
    out.extend(skips.take(room));
    out
}

/// A write that must finish within `timeout`: a failed one means the peer is gone, a
/// late one a slow consumer.
async fn within(
    timeout: Duration,
    write: impl Future<Output = Result<(), WsError>>,
) -> Result<(), Exit> {
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Exit::Gone),
        Err(_) => Err(Exit::Close(CloseCode::SlowConsumer)),
    }
}

/// The `\n`-separated lines of a batch frame, without copying.
fn split_lines(frame: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    frame
        .split(|&b| b == b'\n')
        .map(move |line| frame.slice_ref(line))
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sends a close frame with `code` and `reason`, and waits up to a second for the
/// peer's close.
pub(super) async fn close_with<S>(ws: &mut WebSocketStream<S>, code: u16, reason: Utf8Bytes)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code: WsCloseCode::from(code),
        reason,
    };
    let close = async {
        if ws.send(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        while let Some(Ok(m)) = ws.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
}

/// What a read error means: a close code to send, or a peer that is gone.
pub(super) fn classify_read_error(e: WsError) -> Exit {
    use tokio_tungstenite::tungstenite::error::CapacityError;
    match e {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => Exit::Close(CloseCode::TooBig),
        WsError::Utf8(_) => Exit::Close(CloseCode::InvalidPayload),
        WsError::Protocol(_) => Exit::Close(CloseCode::ProtocolError),
        _ => Exit::Gone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_lines_are_views_of_the_frame() {
        let frame = Bytes::from_static(b"{\"seq\":1}\n{\"seq\":2}\n{\"seq\":3}");
        let lines: Vec<Bytes> = split_lines(&frame).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(&lines[2][..], b"{\"seq\":3}");
        assert_eq!(lines[1].as_ptr(), frame[10..].as_ptr());
    }

    /// Every connection's task allocates its whole future for as long as it lives, idle
    /// or not: the states of its rare paths (a comment's publish, a join) must not make
    /// every idle viewer bigger.
    #[tokio::test]
    async fn a_connection_tasks_future_stays_small() {
        let config = crate::config::Config::default();
        let hub = Arc::new(danmaku_fanout::Hub::new());
        let fanout = Arc::new(danmaku_fanout::memory::MemoryFanout::new(
            config.memory.clone(),
            hub,
        ));
        let ctx = Arc::new(ConnContext::new(
            &config,
            fanout,
            Arc::default(),
            Arc::default(),
            tokio_util::sync::CancellationToken::new(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let user: Arc<str> = Arc::from("u");
        let identity = Identity {
            user: user.clone(),
            name: user.clone(),
            role: crate::auth::Role::Viewer,
            rooms: None,
            read_only: false,
            expires_at: None,
            viewer: Arc::new(danmaku_protocol::audience::Viewer::new(user, Vec::new())),
            level: 0,
            cohort: None,
        };
        let held = super::super::Held {
            _tracked: tokio_util::task::TaskTracker::new().token(),
            _permit: crate::limits::ConnLimiter::new(1, 1)
                .acquire(addr.ip())
                .expect("a first connection is admitted"),
        };
        let task = run(Box::new(Opening {
            ctx,
            stream: server,
            read_ahead: Vec::new(),
            preface: None,
            config: WebSocketConfig::default(),
            identity,
            held,
            requested: Instant::now(),
        }));
        let size = std::mem::size_of_val(&task);
        eprintln!("connection task future: {size} bytes");
        assert!(
            size <= 1_536,
            "the connection task's future is {size} bytes"
        );
    }
}
