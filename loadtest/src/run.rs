//! The coordinator: starts the workers, publishes, watches the gateways, and merges
//! the measurements into a [`Summary`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::api::{close_polls, gateway_skips, open_polls, room_state};
use crate::cli::Scenario;
use crate::control::{FromWorker, Progress, ToWorker};
use crate::plan::Plan;
use crate::progress::{Counters, ProgressLine};
use crate::publish::{PublishStats, publish, scheduled};
use crate::report::{GatewayStats, Outcome, Summary};
use crate::stats::{WorkerReport, cpu_seconds, rss_bytes};
use crate::workers::Workers;

/// Samples the watched gateways' RSS every 250 ms.
fn watch_gateways(pids: &[u32]) -> Vec<(u32, u64, Arc<AtomicU64>)> {
    pids.iter()
        .map(|&pid| {
            let start = rss_bytes(pid).unwrap_or(0);
            let peak = Arc::new(AtomicU64::new(start));
            let p = peak.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                loop {
                    tick.tick().await;
                    match rss_bytes(pid) {
                        Some(r) => {
                            p.fetch_max(r, Ordering::Relaxed);
                        }
                        None => break,
                    }
                }
            });
            (pid, start, peak)
        })
        .collect()
}

/// Runs the scenario end to end.
///
/// # Errors
/// When the credentials are refused, workers cannot be started or the gateway's API
/// cannot be reached.
pub async fn run(plan: Arc<Plan>) -> anyhow::Result<Summary> {
    let started_at_us = crate::now_us();
    let mut line = ProgressLine::new(plan.cli.common.quiet);
    let target = plan.scenario().shape().0 as u64;
    let mut counters = Counters {
        target,
        ..Counters::default()
    };
    // Counts nothing: only the measured phase publishes.
    let idle = AtomicU64::new(0);
    line.phase("checking credentials", &counters);
    crate::preflight::check(&plan).await?;
    let watched = watch_gateways(&plan.cli.common.gateway_pids);
    let cpu_at_start = gateway_cpu(&watched);
    let polls = match plan.scenario() {
        Scenario::Interact { no_vote: false, .. } => {
            line.phase("opening polls", &counters);
            open_polls(&plan).await?
        }
        _ => Vec::new(),
    };
    let games = crate::games::open(&plan).await?;
    let started = Instant::now();
    let mut workers = Workers::start(&plan).await?;
    counters.workers = Some(workers.totals());
    line.phase("connecting", &counters);
    let ready = |m| matches!(m, FromWorker::Ready).then_some(());
    workers
        .wait_all(ready, show(&mut line, &mut counters, &idle))
        .await;
    let ramp_s = started.elapsed().as_secs_f64();
    // CPU is counted over the measured phase; for `connect` the connections are the load.
    let connect = matches!(plan.scenario(), Scenario::Connect { .. });
    let cpu_start = if connect {
        cpu_at_start
    } else {
        gateway_cpu(&watched)
    };
    let self_cpu_at_go = if connect {
        0.0
    } else {
        cpu_seconds("self").unwrap_or(0.0)
    };
    let go = Instant::now();
    workers.broadcast(ToWorker::Go).await;
    let publish = measured_phase(&plan, &mut workers, &mut line, &mut counters).await;
    let measured_s = go.elapsed().as_secs_f64();
    counters.published = None;
    let mut held = None;
    if matches!(plan.scenario(), Scenario::Interact { .. }) {
        line.phase("closing polls and games", &counters);
        // Acks in flight land, and the likes window flushes, before totals are read.
        // The viewers act for `duration_s` from when each is told to go (the publishers
        // may finish a little earlier); their last acks land, and the likes window
        // flushes, before anything is closed.
        let acting = plan.scenario().load().map_or(0.0, |l| l.duration_s);
        let settled = go + Duration::from_secs_f64(acting) + Duration::from_millis(1_500);
        let settle = async {
            tokio::time::sleep_until(settled.max(Instant::now() + Duration::from_millis(1_500)))
                .await;
            close_polls(&plan, &polls).await;
            crate::games::close(&plan, &games).await
        };
        held = Some(
            workers
                .during(settle, show(&mut line, &mut counters, &idle))
                .await,
        );
    }
    let (finals, likes_total) = if plan.scenario().load().is_some() {
        line.phase("reading room state", &counters);
        room_state(&plan).await?
    } else {
        (BTreeMap::new(), 0)
    };
    let skips_by_priority = if plan.scenario().load().is_some() {
        gateway_skips(&plan).await
    } else {
        BTreeMap::new()
    };
    workers.broadcast(ToWorker::Stop(finals.clone())).await;
    line.phase("reading the last events", &counters);
    let report = |m| match m {
        FromWorker::Report(r) => Some(r),
        _ => None,
    };
    let reports = workers
        .wait_all(report, show(&mut line, &mut counters, &idle))
        .await;
    line.finish();
    let mut merged = WorkerReport::default();
    for r in &reports {
        merged.merge(r);
    }
    let gateways = gateway_stats(&watched, cpu_start);
    if plan.cli.common.procs > 1 {
        // Worker processes reported their own CPU; add the coordinator's. (A single
        // in-process worker already reported this whole process.) Both count from the
        // measured phase, as the gateways' CPU does.
        merged.cpu_s += (cpu_seconds("self").unwrap_or(0.0) - self_cpu_at_go).max(0.0);
    }
    let outcome = Outcome {
        report: merged,
        publish,
        finals,
        likes_total,
        skips_by_priority,
        gateways,
        ramp_s,
        measured_s,
        started_at_us,
        games: held,
    };
    Ok(Summary::build(&plan, outcome))
}

/// The measured phase: publishing, or holding the connections for `connect`.
async fn measured_phase(
    plan: &Plan,
    workers: &mut Workers,
    line: &mut ProgressLine,
    counters: &mut Counters,
) -> Option<PublishStats> {
    let published = Arc::new(AtomicU64::new(0));
    match (plan.scenario(), plan.scenario().load()) {
        (Scenario::Connect { hold_s, .. }, _) => {
            line.phase("holding", counters);
            let hold = tokio::time::sleep(Duration::from_secs_f64(*hold_s));
            workers.during(hold, show(line, counters, &published)).await;
            None
        }
        (_, Some(load)) => {
            counters.published = Some((0, scheduled(load)));
            line.phase("publishing", counters);
            let work = publish(plan, load, published.clone());
            Some(workers.during(work, show(line, counters, &published)).await)
        }
        _ => None,
    }
}

/// Shows the workers' counters (and the events published so far) on the line.
fn show<'a>(
    line: &'a mut ProgressLine,
    counters: &'a mut Counters,
    published: &'a AtomicU64,
) -> impl FnMut(Progress) + 'a {
    move |p| {
        counters.workers = Some(p);
        if let Some((_, of)) = counters.published {
            counters.published = Some((published.load(Ordering::Relaxed), of));
        }
        line.tick(counters);
    }
}

/// The watched gateways' CPU seconds now.
fn gateway_cpu(watched: &[(u32, u64, Arc<AtomicU64>)]) -> Vec<f64> {
    watched
        .iter()
        .map(|w| cpu_seconds(&w.0.to_string()).unwrap_or(0.0))
        .collect()
}

/// The watched gateways' figures, CPU counted from `cpu_start`.
fn gateway_stats(watched: &[(u32, u64, Arc<AtomicU64>)], cpu_start: Vec<f64>) -> Vec<GatewayStats> {
    watched
        .iter()
        .zip(cpu_start)
        .map(|((pid, start, peak), cpu0)| GatewayStats {
            pid: *pid,
            rss_start_bytes: *start,
            rss_peak_bytes: peak
                .load(Ordering::Relaxed)
                .max(rss_bytes(*pid).unwrap_or(0)),
            cpu_s: cpu_seconds(&pid.to_string()).unwrap_or(cpu0) - cpu0,
        })
        .collect()
}
