//! A worker runs a share of the viewers: in this process, or in a child process when
//! `--procs` is above one (so one run can hold more sockets than one process may).
//!
//! It opens its viewers (on reader threads for passive scenarios, as tasks
//! otherwise), reports `Ready` once each has joined or failed, starts and stops the
//! measured phase when the coordinator says so, and sends one report at the end.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use crate::cli::{ClientKind, Scenario};
use crate::control::{FromWorker, ToWorker};
use crate::passive::{Handback, Readers};
use crate::plan::Plan;
use crate::shared::Shared;
use crate::task;

/// Runs the viewers of worker `index` until told to stop; reports once.
pub async fn run(
    plan: Arc<Plan>,
    index: usize,
    mut rx: mpsc::Receiver<ToWorker>,
    tx: mpsc::Sender<FromWorker>,
) {
    let shared = Shared::new(plan.clone());
    let progress = tokio::spawn(report_progress(shared.clone(), tx.clone()));
    let procs = plan.cli.common.procs.max(1);
    let in_flight = (plan.cli.common.in_flight / procs).max(1);
    let mine: Vec<usize> = plan.viewers_of(index).collect();
    // Ordinary clients are tasks, whatever the scenario. So are TLS connections: the
    // epoll readers read plain sockets only.
    let own = plan.cli.common.client == ClientKind::Own;
    let readers = if own && !plan.any_tls() && passive(plan.scenario()) {
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
    let gate = Arc::new(Semaphore::new(in_flight));
    let rate = plan.cli.common.ramp_rate / procs as f64;
    let start = Instant::now();
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
        viewers.push(tokio::spawn(task::run_task(shared.clone(), i, permit)));
    }
    shared.settled(mine.len() as u64).await;
    // The counters as they are at `Ready`, so the coordinator's line starts from them.
    let _ = tx.send(FromWorker::Progress(shared.progress())).await;
    let _ = tx.send(FromWorker::Ready).await;
    while let Some(msg) = rx.recv().await {
        match msg {
            // Deliveries are counted from here, and so is their CPU: the connections'
            // set-up is the `connect` scenario's load, not theirs.
            ToWorker::Go => shared.go(matches!(plan.scenario(), Scenario::Connect { .. })),
            ToWorker::Stop(finals) => {
                shared.stop(finals);
                break;
            }
        }
    }
    drop(readers);
    for v in viewers {
        let _ = v.await;
    }
    progress.abort();
    let _ = tx.send(FromWorker::Report(Box::new(shared.report()))).await;
}

/// Sends the live counters every 500 ms.
async fn report_progress(shared: Arc<Shared>, tx: mpsc::Sender<FromWorker>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        if tx
            .send(FromWorker::Progress(shared.progress()))
            .await
            .is_err()
        {
            return;
        }
    }
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
        Some(Handback::Lost(v)) => v.resume().await,
        Some(Handback::Failed) => {}
        // Only if a reader thread panicked: its viewers went with it.
        None => shared.fail("reader_gone".into()),
    }
}
