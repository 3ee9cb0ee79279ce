//! A worker runs a share of the viewers: in this process, or in a child process when
//! `--procs` is above one (so one run can hold more sockets than one process may).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::time::Instant;

use crate::cli::Scenario;
use crate::passive::{Handback, Readers};
use crate::plan::Plan;
use crate::stats::{Track, WorkerReport, add_buckets, histogram, to_buckets};
use crate::viewer::{self, Joined, Pending, Seen, Ws};
use crate::wsclient::Frame;

/// Coordinator → worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToWorker {
    /// Start the measured phase.
    Go,
    /// Stop once each viewer has its room's final seq (or after a grace period).
    Stop(BTreeMap<String, u64>),
}

/// Worker → coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromWorker {
    /// Live counters.
    Progress(Progress),
    /// Every viewer has joined or failed.
    Ready,
    /// The final measurements.
    Report(Box<WorkerReport>),
}

/// Live counters of a worker.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Joined connections.
    pub established: u64,
    /// Failed connections.
    pub failed: u64,
    /// Events delivered.
    pub delivered: u64,
    /// End-to-end p99 so far, µs.
    pub p99_us: u64,
}

#[derive(Debug, Clone)]
pub(crate) enum Phase {
    Wait,
    Go,
    Stop(Arc<BTreeMap<String, u64>>),
}

struct Agg {
    connect: Histogram<u64>,
    first_render: Histogram<u64>,
    latency: Histogram<u64>,
    series: Vec<Histogram<u64>>,
    report: WorkerReport,
}

/// The run's phase, broadcast to every viewer of the worker.
pub(crate) struct PhaseCell {
    generation: AtomicU64,
    phase: Mutex<Phase>,
    notify: Notify,
}

impl PhaseCell {
    /// Changes whenever the phase does.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn get(&self) -> Phase {
        self.phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, p: Phase) {
        *self
            .phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = p;
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }
}

pub(crate) struct Shared {
    pub(crate) plan: Arc<Plan>,
    pub(crate) phase: Arc<PhaseCell>,
    established: AtomicU64,
    failed: AtomicU64,
    delivered: AtomicU64,
    go_at_us: AtomicU64,
    /// This process's CPU seconds (as f64 bits) when the measured phase began.
    cpu_at_go: AtomicU64,
    settled: Notify,
    agg: Mutex<Agg>,
}

impl Shared {
    fn agg(&self) -> std::sync::MutexGuard<'_, Agg> {
        self.agg
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a viewer that joined: its connect time and its time to first render.
    pub(crate) fn opened(&self, connected: Duration, rendered: Duration) {
        {
            let mut agg = self.agg();
            let _ = agg.connect.record((connected.as_micros() as u64).max(1));
            let _ = agg
                .first_render
                .record((rendered.as_micros() as u64).max(1));
        }
        self.established.fetch_add(1, Ordering::Release);
        self.settled.notify_one();
    }

    pub(crate) fn fail(&self, cause: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        *self.agg().report.failures.entry(cause).or_default() += 1;
        self.settled.notify_one();
    }

    /// Merges (received at µs, latency µs) samples into the histograms, each into the
    /// second of the run it was received in.
    fn record_latencies(&self, samples: &mut Vec<(u64, u64)>) {
        if samples.is_empty() {
            return;
        }
        let go = self.go_at_us.load(Ordering::Relaxed);
        let mut agg = self.agg();
        for &(at, lat) in samples.iter() {
            let sec = ((at.saturating_sub(go) / 1_000_000) as usize).min(3_600);
            while agg.series.len() <= sec {
                agg.series.push(histogram());
            }
            let v = lat.max(1);
            let _ = agg.latency.record(v);
            let _ = agg.series[sec].record(v);
        }
        samples.clear();
    }
}

/// Runs the viewers of worker `index` until told to stop; reports once.
pub async fn run(
    plan: Arc<Plan>,
    index: usize,
    mut rx: mpsc::Receiver<ToWorker>,
    tx: mpsc::Sender<FromWorker>,
) {
    let agg = Agg {
        connect: histogram(),
        first_render: histogram(),
        latency: histogram(),
        series: Vec::new(),
        report: WorkerReport::default(),
    };
    let shared = Arc::new(Shared {
        plan: plan.clone(),
        phase: Arc::new(PhaseCell {
            generation: AtomicU64::new(0),
            phase: Mutex::new(Phase::Wait),
            notify: Notify::new(),
        }),
        established: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        go_at_us: AtomicU64::new(0),
        cpu_at_go: AtomicU64::new(0),
        settled: Notify::new(),
        agg: Mutex::new(agg),
    });
    let progress = tokio::spawn(report_progress(shared.clone(), tx.clone()));

    let procs = plan.cli.common.procs.max(1);
    let mine: Vec<usize> = plan.viewers_of(index).collect();
    let gate = Arc::new(Semaphore::new((plan.cli.common.in_flight / procs).max(1)));
    let rate = plan.cli.common.ramp_rate / procs as f64;
    let start = Instant::now();
    let readers = if passive(plan.scenario()) {
        let in_flight = (plan.cli.common.in_flight / procs).max(1);
        match Readers::start(plan.cli.common.threads, in_flight, &shared) {
            Ok(r) => Some(Arc::new(r)),
            Err(e) => {
                eprintln!("no reader threads ({e}); viewers run as tasks");
                None
            }
        }
    } else {
        None
    };
    let mut viewers = Vec::with_capacity(mine.len());
    for (k, &i) in mine.iter().enumerate() {
        if rate > 0.0 {
            tokio::time::sleep_until(start + Duration::from_secs_f64(k as f64 / rate)).await;
        }
        if let Some(readers) = &readers {
            // The readers hold the in-flight bound themselves.
            let (readers, shared) = (readers.clone(), shared.clone());
            viewers.push(tokio::spawn(passive_viewer(readers, shared, i)));
            continue;
        }
        let Ok(permit) = gate.clone().acquire_owned().await else {
            break;
        };
        viewers.push(tokio::spawn(viewer_main(shared.clone(), i, permit)));
    }
    let total = mine.len() as u64;
    while shared.established.load(Ordering::Acquire) + shared.failed.load(Ordering::Acquire) < total
    {
        let notified = shared.settled.notified();
        if shared.established.load(Ordering::Acquire) + shared.failed.load(Ordering::Acquire)
            >= total
        {
            break;
        }
        notified.await;
    }
    let _ = tx.send(FromWorker::Ready).await;
    while let Some(msg) = rx.recv().await {
        match msg {
            ToWorker::Go => {
                shared.go_at_us.store(crate::now_us(), Ordering::Relaxed);
                if !matches!(plan.scenario(), Scenario::Connect { .. }) {
                    // Deliveries are counted from here, and so is their CPU: the
                    // connections' set-up is the `connect` scenario's load, not theirs.
                    let cpu = crate::stats::cpu_seconds("self").unwrap_or(0.0);
                    shared.cpu_at_go.store(cpu.to_bits(), Ordering::Relaxed);
                }
                shared.phase.set(Phase::Go);
            }
            ToWorker::Stop(finals) => {
                shared.phase.set(Phase::Stop(Arc::new(finals)));
                break;
            }
        }
    }
    drop(readers);
    for v in viewers {
        let _ = v.await;
    }
    progress.abort();
    let report = {
        let mut agg = shared.agg();
        let mut r = std::mem::take(&mut agg.report);
        r.established = shared.established.load(Ordering::Relaxed);
        r.connect_us = to_buckets(&agg.connect);
        r.first_render_us = to_buckets(&agg.first_render);
        r.latency_us = to_buckets(&agg.latency);
        r.latency_series = agg.series.iter().map(to_buckets).collect();
        let at_go = f64::from_bits(shared.cpu_at_go.load(Ordering::Relaxed));
        r.cpu_s = (crate::stats::cpu_seconds("self").unwrap_or(0.0) - at_go).max(0.0);
        r
    };
    let _ = tx.send(FromWorker::Report(Box::new(report))).await;
}

async fn report_progress(shared: Arc<Shared>, tx: mpsc::Sender<FromWorker>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let p99_us = shared.agg().latency.value_at_quantile(0.99);
        let p = Progress {
            established: shared.established.load(Ordering::Relaxed),
            failed: shared.failed.load(Ordering::Relaxed),
            delivered: shared.delivered.load(Ordering::Relaxed),
            p99_us,
        };
        if tx.send(FromWorker::Progress(p)).await.is_err() {
            return;
        }
    }
}

/// What a viewer does besides reading, by scenario.
struct Actions {
    comment_every: Option<f64>,
    like_every: Option<f64>,
    vote: bool,
    drop: Option<(f64, f64)>,
    rng: u64,
}

impl Actions {
    fn new(scenario: &Scenario, i: usize) -> Self {
        let every = |rate: f64| (rate > 0.0).then(|| 1.0 / rate);
        let mut a = Self {
            comment_every: None,
            like_every: None,
            vote: false,
            drop: None,
            rng: (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        };
        match scenario {
            Scenario::Interact {
                comment_rate,
                like_rate,
                no_vote,
                ..
            } => {
                a.comment_every = every(*comment_rate);
                a.like_every = every(*like_rate);
                a.vote = !*no_vote;
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

    fn uniform(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An exponential wait with the given mean (Poisson arrivals).
    fn wait(&mut self, mean_s: f64) -> Duration {
        Duration::from_secs_f64(-mean_s * (1.0 - self.uniform()).ln())
    }
}

pub(crate) struct Viewer {
    shared: Arc<Shared>,
    index: usize,
    room: String,
    epoch: String,
    seen: Seen,
    poll: Option<(String, u32)>,
    next_id: u64,
    attempt: usize,
}

/// Whether the scenario's viewers only read (so reader threads open and read them).
fn passive(scenario: &Scenario) -> bool {
    matches!(scenario, Scenario::Connect { .. } | Scenario::Fanout(_))
}

/// A viewer opened and read by a reader thread; back here when its connection ended
/// early, to resume with `since` and read on as a task.
async fn passive_viewer(readers: Arc<Readers>, shared: Arc<Shared>, i: usize) {
    match readers.open(i).await {
        Some(Handback::Done(mut v)) => v.finish(),
        Some(Handback::Lost(mut v)) => {
            let stopped = matches!(v.shared.phase.get(), Phase::Stop(_));
            if (!stopped || v.seen.reconnect_asked)
                && let Some(ws) = v.reconnect().await
            {
                let mut actions = Actions::new(&shared.plan.cli.scenario, i);
                v.run(ws, &mut actions).await;
            }
            v.finish();
        }
        Some(Handback::Failed) => {}
        // Only if a reader thread panicked: its viewers went with it.
        None => shared.fail("reader_gone".into()),
    }
}

async fn viewer_main(shared: Arc<Shared>, i: usize, permit: tokio::sync::OwnedSemaphorePermit) {
    let plan = shared.plan.clone();
    let room = plan.rooms[plan.viewer_room[i]].clone();
    let t0 = std::time::Instant::now();
    let mut ws = match viewer::open(&plan.dial(i, 0)).await {
        Ok(ws) => ws,
        Err(cause) => return shared.fail(cause),
    };
    let connected = t0.elapsed();
    let joined = match viewer::join(&mut ws, &room, None).await {
        Ok(j) => j,
        Err(cause) => return shared.fail(cause),
    };
    drop(permit);
    shared.opened(connected, t0.elapsed());
    let mut v = Viewer::joined(shared.clone(), i, room, &joined);
    let mut actions = Actions::new(&plan.cli.scenario, i);
    v.run(ws, &mut actions).await;
    v.finish();
}

impl Viewer {
    /// Viewer `index`, just joined to `room`: it counts seqs from the `joined` reply's.
    pub(crate) fn joined(shared: Arc<Shared>, index: usize, room: String, j: &Joined) -> Self {
        let mut v = Self {
            shared,
            index,
            room,
            epoch: j.epoch.clone(),
            seen: Seen {
                track: Track::start(j.seq),
                ..Seen::default()
            },
            poll: j.poll.clone(),
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

    pub(crate) fn done(&self, finals: &BTreeMap<String, u64>) -> bool {
        finals
            .get(&self.room)
            .is_none_or(|&f| self.seen.track.next > f)
    }

    /// Reads until the run stops. The loop creates no future per turn: the phase
    /// notification and the one timer are pinned once and re-armed only when needed,
    /// so a delivery costs a read, a parse and a few counters.
    async fn run(&mut self, mut ws: Ws, actions: &mut Actions) {
        let cell = self.shared.phase.clone();
        let notified = cell.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let mut seen_generation = 0;
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        let timer = tokio::time::sleep_until(far);
        tokio::pin!(timer);
        let mut stop: Option<(Arc<BTreeMap<String, u64>>, Instant)> = None;
        let (mut next_action, mut drop_at, mut actions_until) = (far, far, far);
        loop {
            let generation = cell.generation.load(Ordering::Acquire);
            if generation != seen_generation {
                seen_generation = generation;
                match cell.get() {
                    Phase::Go => {
                        let secs = self
                            .shared
                            .plan
                            .cli
                            .scenario
                            .load()
                            .map_or(0.0, |l| l.duration_s);
                        actions_until = Instant::now() + Duration::from_secs_f64(secs);
                        next_action = self.first_action(actions);
                        if let Some((_, every)) = actions.drop {
                            drop_at = Instant::now()
                                + Duration::from_secs_f64(every * (0.5 + actions.uniform()));
                        }
                    }
                    Phase::Stop(finals) => {
                        if self.done(&finals) {
                            return;
                        }
                        stop = Some((finals, Instant::now() + Duration::from_secs(10)));
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
                    notified.set(cell.notify.notified());
                    notified.as_mut().enable();
                    false
                }
                () = &mut timer, if wake != far => {
                    let now = Instant::now();
                    if stop.as_ref().is_some_and(|s| now >= s.1) {
                        return;
                    }
                    let mut reconnect = false;
                    if now >= next_action {
                        next_action = self.act(&mut ws, actions).await;
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

    pub(crate) fn on_frame(&mut self, frame: &[u8]) {
        self.seen.frames += 1;
        let before = self.seen.delivered;
        let now = crate::now_us();
        for line in frame.split(|&b| b == b'\n') {
            self.seen.on_line(line, now);
        }
        self.shared
            .delivered
            .fetch_add(self.seen.delivered - before, Ordering::Relaxed);
        if self.seen.latencies.len() >= 256 {
            self.shared.record_latencies(&mut self.seen.latencies);
        }
    }

    fn first_action(&mut self, a: &mut Actions) -> Instant {
        let mut t = Instant::now() + Duration::from_secs(86_400 * 365);
        if a.vote && self.poll.is_some() {
            t = Instant::now() + a.wait(0.5);
        }
        if let Some(e) = a.comment_every {
            t = t.min(Instant::now() + a.wait(e));
        }
        if let Some(e) = a.like_every {
            t = t.min(Instant::now() + a.wait(e));
        }
        t
    }

    /// Sends the interact scenario's next command; returns when to act again.
    async fn act(&mut self, ws: &mut Ws, a: &mut Actions) -> Instant {
        let id = self.next_id;
        self.next_id += 1;
        let (cmd, pending) = if a.vote && self.poll.is_some() {
            a.vote = false;
            let (poll, options) = self.poll.clone().unwrap_or_default();
            let option = (self.index as u32) % options.max(1);
            (
                serde_json::json!({"type":"vote","id":id,"room":self.room,"poll":poll,"option":option}),
                Pending::Vote(option),
            )
        } else {
            let comment_share = match (a.comment_every, a.like_every) {
                (Some(c), Some(l)) => (1.0 / c) / (1.0 / c + 1.0 / l),
                (Some(_), None) => 1.0,
                _ => 0.0,
            };
            if a.uniform() < comment_share {
                (
                    serde_json::json!({"type":"comment","id":id,"room":self.room,"text":format!("lt comment {id}")}),
                    Pending::Comment,
                )
            } else {
                let n = 1 + (a.uniform() * 5.0) as u64;
                (
                    serde_json::json!({"type":"like","id":id,"room":self.room,"count":n}),
                    Pending::Like(n),
                )
            }
        };
        self.seen.pending.insert(id, pending);
        self.shared.agg().report.commands += 1;
        let _ = ws.send_text(cmd.to_string().as_bytes()).await;
        let mean = match (a.comment_every, a.like_every) {
            (Some(c), Some(l)) => 1.0 / (1.0 / c + 1.0 / l),
            (Some(c), None) => c,
            (None, Some(l)) => l,
            (None, None) => 86_400.0 * 365.0,
        };
        Instant::now() + a.wait(mean)
    }

    /// Reconnects (to the next gateway) and resumes with `since`.
    pub(crate) async fn reconnect(&mut self) -> Option<Ws> {
        self.attempt += 1;
        self.seen.reconnect_asked = false;
        let plan = self.shared.plan.clone();
        let since = self.seen.track.next.saturating_sub(1);
        for _ in 0..5 {
            let dial = plan.dial(self.index, self.attempt);
            let mut ws = match viewer::open(&dial).await {
                Ok(ws) => ws,
                Err(_) => {
                    self.attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let Ok(j) = viewer::join(&mut ws, &self.room, Some((&self.epoch, since))).await else {
                self.attempt += 1;
                continue;
            };
            let mut agg = self.shared.agg();
            agg.report.reconnects += 1;
            if j.recovered {
                agg.report.recovered += 1;
            } else {
                self.seen.resets += 1;
                self.seen.track.restart(j.seq);
            }
            drop(agg);
            self.epoch = j.epoch.clone();
            self.absorb(&j.rest);
            return Some(ws);
        }
        self.shared.fail("reconnect_failed".into());
        None
    }

    fn finish(&mut self) {
        self.shared.record_latencies(&mut self.seen.latencies);
        let mut agg = self.shared.agg();
        let r = &mut agg.report;
        r.rooms
            .entry(self.room.clone())
            .or_default()
            .add(&self.seen.track);
        r.delivered += self.seen.delivered;
        r.frames += self.seen.frames;
        r.resets += self.seen.resets;
        r.acks += self.seen.acks;
        r.likes_acked += self.seen.likes_acked;
        for (code, n) in &self.seen.errors {
            *r.errors.entry(code.clone()).or_default() += n;
        }
        let votes = r.votes_acked.entry(self.room.clone()).or_default();
        for (o, n) in &self.seen.votes_acked {
            *votes.entry(*o).or_default() += n;
        }
        if let Some(seen) = &self.seen.last_poll {
            crate::stats::keep_latest_poll(&mut r.polls_seen, &self.room, seen);
        }
    }
}

/// Merges histogram buckets (for the coordinator).
pub fn merge_hist(b: &crate::stats::Buckets) -> Histogram<u64> {
    let mut h = histogram();
    add_buckets(&mut h, b);
    h
}
