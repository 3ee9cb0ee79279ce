//! The coordinator: starts the workers, publishes, watches the gateways, and merges
//! the measurements into a [`Summary`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::api::{close_polls, open_polls, room_state};
use crate::cli::Scenario;
use crate::control::{FromWorker, ToWorker};
use crate::plan::Plan;
use crate::publish::publish;
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
    let quiet = plan.cli.common.quiet;
    crate::preflight::check(&plan).await?;
    let watched = watch_gateways(&plan.cli.common.gateway_pids);
    let cpu_at_start: Vec<f64> = watched
        .iter()
        .map(|w| cpu_seconds(&w.0.to_string()).unwrap_or(0.0))
        .collect();
    let polls = match plan.scenario() {
        Scenario::Interact { no_vote: false, .. } => open_polls(&plan).await?,
        _ => Vec::new(),
    };
    let started = Instant::now();
    let mut workers = Workers::start(&plan).await?;
    workers
        .wait_all(quiet, |m| matches!(m, FromWorker::Ready).then_some(()))
        .await;
    let ramp_s = started.elapsed().as_secs_f64();
    // CPU is counted over the measured phase; for `connect` the connections are the load.
    let cpu_start: Vec<f64> = match plan.scenario() {
        Scenario::Connect { .. } => cpu_at_start,
        _ => watched
            .iter()
            .map(|w| cpu_seconds(&w.0.to_string()).unwrap_or(0.0))
            .collect(),
    };
    let self_cpu_at_go = match plan.scenario() {
        Scenario::Connect { .. } => 0.0,
        _ => cpu_seconds("self").unwrap_or(0.0),
    };
    let go = Instant::now();
    workers.broadcast(ToWorker::Go).await;
    let publish = match (plan.scenario(), plan.scenario().load()) {
        (Scenario::Connect { hold_s, .. }, _) => {
            tokio::time::sleep(Duration::from_secs_f64(*hold_s)).await;
            None
        }
        (_, Some(load)) => Some(publish(&plan, load).await),
        _ => None,
    };
    let measured_s = go.elapsed().as_secs_f64();
    if matches!(plan.scenario(), Scenario::Interact { .. }) {
        // Acks in flight land, and the likes window flushes, before totals are read.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        close_polls(&plan, &polls).await;
    }
    let (finals, likes_total) = if plan.scenario().load().is_some() {
        room_state(&plan).await?
    } else {
        (BTreeMap::new(), 0)
    };
    workers.broadcast(ToWorker::Stop(finals.clone())).await;
    let reports = workers
        .wait_all(quiet, |m| {
            if let FromWorker::Report(r) = m {
                Some(r)
            } else {
                None
            }
        })
        .await;
    if !quiet {
        eprintln!();
    }
    let mut merged = WorkerReport::default();
    for r in &reports {
        merged.merge(r);
    }
    let gateways = watched
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
        .collect();
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
        gateways,
        ramp_s,
        measured_s,
    };
    Ok(Summary::build(&plan, outcome))
}
