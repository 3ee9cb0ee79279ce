//! The run state a worker's viewers share: the run's phase, live counters, and the
//! measurements they merge into when they finish.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use crate::control::Progress;
use crate::plan::Plan;
use crate::seen::Seen;
use crate::stats::{WorkerReport, histogram, keep_latest_poll, to_buckets};

/// After the stop, how long a viewer may still wait for its room's final seq.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Where the run is.
#[derive(Debug, Clone)]
pub enum Phase {
    /// Viewers are joining.
    Wait,
    /// The measured phase.
    Go,
    /// Publishing is over: each room's final seq, for viewers to read up to.
    Stop(Arc<BTreeMap<String, u64>>),
}

/// The run's phase, broadcast to every viewer of the worker.
pub struct PhaseCell {
    /// Changes whenever the phase does, so readers poll one atomic per turn.
    generation: AtomicU64,
    phase: Mutex<Phase>,
    notify: Notify,
}

impl PhaseCell {
    fn new() -> Self {
        Self {
            generation: AtomicU64::new(0),
            phase: Mutex::new(Phase::Wait),
            notify: Notify::new(),
        }
    }

    /// Changes whenever the phase does.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current phase.
    pub fn get(&self) -> Phase {
        self.phase
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Resolves at the next phase change (after [`Notified::enable`], even if the
    /// change comes before the first poll).
    pub fn changed(&self) -> Notified<'_> {
        self.notify.notified()
    }

    fn set(&self, p: Phase) {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner) = p;
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }
}

/// The histograms and counts merged from finished viewers.
struct Agg {
    connect: Histogram<u64>,
    first_render: Histogram<u64>,
    reconnect: Histogram<u64>,
    latency: Histogram<u64>,
    /// Latency by the second of the run it was received in.
    series: Vec<Histogram<u64>>,
    /// Latency by the viewer's gateway.
    by_gateway: Vec<Histogram<u64>>,
    report: WorkerReport,
}

/// What a worker's viewers share.
pub struct Shared {
    /// The run's plan.
    pub plan: Arc<Plan>,
    /// The run's phase.
    pub phase: PhaseCell,
    established: AtomicU64,
    failed: AtomicU64,
    delivered: AtomicU64,
    go_at_us: AtomicU64,
    /// This process's CPU seconds (as f64 bits) when the measured phase began.
    cpu_at_go: AtomicU64,
    /// Notified whenever a viewer joined or failed.
    settled: Notify,
    agg: Mutex<Agg>,
}

impl Shared {
    /// Fresh state for a run of `plan`.
    pub fn new(plan: Arc<Plan>) -> Arc<Self> {
        Arc::new(Self {
            plan,
            phase: PhaseCell::new(),
            established: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            go_at_us: AtomicU64::new(0),
            cpu_at_go: AtomicU64::new(0),
            settled: Notify::new(),
            agg: Mutex::new(Agg {
                connect: histogram(),
                first_render: histogram(),
                reconnect: histogram(),
                latency: histogram(),
                series: Vec::new(),
                by_gateway: Vec::new(),
                report: WorkerReport::default(),
            }),
        })
    }

    fn agg(&self) -> MutexGuard<'_, Agg> {
        self.agg.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a viewer that joined: its connect time and its time to first render.
    pub fn opened(&self, connected: Duration, rendered: Duration) {
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

    /// Records a viewer that could not be opened (or reconnected), by cause.
    pub fn fail(&self, cause: String) {
        self.failed.fetch_add(1, Ordering::Release);
        *self.agg().report.failures.entry(cause).or_default() += 1;
        self.settled.notify_one();
    }

    /// Waits until `total` viewers have joined or failed.
    pub async fn settled(&self, total: u64) {
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let done =
                self.established.load(Ordering::Acquire) + self.failed.load(Ordering::Acquire);
            if done >= total {
                return;
            }
            notified.await;
        }
    }

    /// Starts the measured phase; CPU counts from here unless `count_setup` (the
    /// `connect` scenario, whose load is the connections' set-up).
    pub fn go(&self, count_setup: bool) {
        self.go_at_us.store(crate::now_us(), Ordering::Relaxed);
        if !count_setup {
            let cpu = crate::stats::cpu_seconds("self").unwrap_or(0.0);
            self.cpu_at_go.store(cpu.to_bits(), Ordering::Relaxed);
        }
        self.phase.set(Phase::Go);
    }

    /// When the measured phase began, Unix µs (0 before).
    pub fn go_at_us(&self) -> u64 {
        self.go_at_us.load(Ordering::Relaxed)
    }

    /// Ends the measured phase: viewers read up to their room's final seq.
    pub fn stop(&self, finals: BTreeMap<String, u64>) {
        self.phase.set(Phase::Stop(Arc::new(finals)));
    }

    /// Counts `n` events delivered (for the live counters).
    pub fn delivered(&self, n: u64) {
        self.delivered.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one command sent.
    pub fn command_sent(&self) {
        self.agg().report.commands += 1;
    }

    /// Counts one reconnect, and whether the gateway recovered the missed events.
    pub fn reconnected(&self, recovered: bool, took: Duration) {
        let mut agg = self.agg();
        let _ = agg.reconnect.record((took.as_micros() as u64).max(1));
        agg.report.reconnects += 1;
        if recovered {
            agg.report.recovered += 1;
        }
    }

    /// The live counters.
    pub fn progress(&self) -> Progress {
        Progress {
            established: self.established.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            p99_us: self.agg().latency.value_at_quantile(0.99),
        }
    }

    /// Merges (received at µs, latency µs) samples of a viewer of `gateway` into the
    /// histograms, each into the second of the run it was received in, and empties
    /// `samples`.
    pub fn record_latencies(&self, samples: &mut Vec<(u64, u64)>, gateway: usize) {
        if samples.is_empty() {
            return;
        }
        let go = self.go_at_us.load(Ordering::Relaxed);
        let mut agg = self.agg();
        let gateways = self.plan.cli.common.urls.len();
        while agg.by_gateway.len() < gateways {
            agg.by_gateway.push(histogram());
        }
        let agg = &mut *agg;
        let mut by_gateway = agg.by_gateway.get_mut(gateway);
        for &(at, lat) in samples.iter() {
            let sec = ((at.saturating_sub(go) / 1_000_000) as usize).min(3_600);
            while agg.series.len() <= sec {
                agg.series.push(histogram());
            }
            let v = lat.max(1);
            let _ = agg.latency.record(v);
            let _ = agg.series[sec].record(v);
            if let Some(h) = by_gateway.as_mut() {
                let _ = h.record(v);
            }
        }
        samples.clear();
    }

    /// Merges what a finished viewer, `user`, of `room` counted.
    pub fn finish(&self, room: &str, user: &str, seen: &mut Seen) {
        self.record_latencies(&mut seen.latencies, seen.gateway);
        // Events sequenced after the final seqs were read (a merged comment's window
        // ending late) are not in `expected`: left out of the accounting too.
        if let Phase::Stop(finals) = self.phase.get()
            && let Some(&last) = finals.get(room)
        {
            seen.track.cap(last);
        }
        let mut agg = self.agg();
        let r = &mut agg.report;
        r.rooms.entry(room.to_owned()).or_default().add(&seen.track);
        r.delivered += seen.delivered;
        r.frames += seen.frames;
        r.resets += seen.resets;
        r.acks += seen.acks;
        r.merged_acks += seen.merged_acks;
        r.likes_acked += seen.likes_acked;
        for (code, n) in &seen.errors {
            *r.errors.entry(code.clone()).or_default() += n;
        }
        for (code, n) in &seen.refused {
            *r.refused.entry(code.clone()).or_default() += n;
        }
        let votes = r.votes_acked.entry(room.to_owned()).or_default();
        for (o, n) in &seen.votes_acked {
            *votes.entry(*o).or_default() += n;
        }
        if let Some(poll) = &seen.last_poll {
            keep_latest_poll(&mut r.polls_seen, room, poll);
        }
        let per_user = match &self.plan.cli.scenario {
            crate::cli::Scenario::Interact {
                coupon_per_user, ..
            } => u64::from(*coupon_per_user),
            _ => u64::MAX,
        };
        seen.games.viewer_done(per_user, user);
        r.games.merge(&seen.games);
        seen.games = crate::stats::GamesSeen::default();
    }

    /// The worker's report, once every viewer has finished.
    pub fn report(&self) -> WorkerReport {
        let mut agg = self.agg();
        let mut r = std::mem::take(&mut agg.report);
        r.established = self.established.load(Ordering::Relaxed);
        r.connect_us = to_buckets(&agg.connect);
        r.first_render_us = to_buckets(&agg.first_render);
        r.reconnect_us = to_buckets(&agg.reconnect);
        r.latency_us = to_buckets(&agg.latency);
        r.latency_series = agg.series.iter().map(to_buckets).collect();
        r.latency_by_gateway = agg.by_gateway.iter().map(to_buckets).collect();
        let at_go = f64::from_bits(self.cpu_at_go.load(Ordering::Relaxed));
        r.cpu_s = (crate::stats::cpu_seconds("self").unwrap_or(0.0) - at_go).max(0.0);
        r
    }
}
