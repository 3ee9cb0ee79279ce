//! The coordinator's side of its workers: one in this process, or `--procs` child
//! processes of this same binary speaking the coordinator protocol
//! ([`crate::control`]) as JSON lines on their stdin and stdout.

use std::sync::Arc;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::control::{FromWorker, Progress, ToWorker, to_line};
use crate::plan::Plan;
use crate::worker;

/// Messages to one worker in flight at most (Go and Stop: a few are plenty).
const TO_WORKER: usize = 16;
/// Messages from the workers in flight at most; a worker's progress task waits
/// when it is full.
const FROM_WORKERS: usize = 1024;
/// Messages from a worker process's worker to its stdout in flight at most.
const TO_STDOUT: usize = 64;

/// The running workers.
pub struct Workers {
    to: Vec<mpsc::Sender<ToWorker>>,
    from: mpsc::Receiver<(usize, FromWorker)>,
    /// Each worker's latest counters.
    progress: Vec<Progress>,
    /// `Ready` or `Report` messages that came in during other work.
    early: Vec<(usize, FromWorker)>,
}

impl Workers {
    /// Starts the run's workers.
    ///
    /// # Errors
    /// When a worker process cannot be started.
    pub async fn start(plan: &Arc<Plan>) -> anyhow::Result<Self> {
        let procs = plan.cli.common.procs.max(1);
        let (from_tx, from) = mpsc::channel(FROM_WORKERS);
        let mut to = Vec::new();
        for w in 0..procs {
            let (tx, rx) = mpsc::channel(TO_WORKER);
            to.push(tx);
            if procs == 1 {
                let (wtx, mut wrx) = mpsc::channel(TO_WORKER);
                tokio::spawn(worker::run(plan.clone(), w, rx, wtx));
                let from_tx = from_tx.clone();
                tokio::spawn(async move {
                    while let Some(m) = wrx.recv().await {
                        if from_tx.send((w, m)).await.is_err() {
                            break;
                        }
                    }
                });
            } else {
                spawn_child(w, plan.prefix.clone(), rx, from_tx.clone())?;
            }
        }
        Ok(Self {
            to,
            from,
            progress: vec![Progress::default(); procs],
            early: Vec::new(),
        })
    }

    /// Sends `m` to every worker.
    pub async fn broadcast(&self, m: ToWorker) {
        for t in &self.to {
            let _ = t.send(m.clone()).await;
        }
    }

    /// Waits for every worker's `Ready`, or its `Report` for the final phase (as
    /// `pick` chooses), calling `each` with the totals on every progress report.
    pub async fn wait_all<T>(
        &mut self,
        mut pick: impl FnMut(FromWorker) -> Option<T>,
        mut each: impl FnMut(Progress),
    ) -> Vec<T> {
        let mut got: Vec<T> = std::mem::take(&mut self.early)
            .into_iter()
            .filter_map(|(_, m)| pick(m))
            .collect();
        while got.len() < self.to.len() {
            let Some((w, m)) = self.from.recv().await else {
                break;
            };
            if let FromWorker::Progress(p) = m {
                self.progress[w] = p;
                each(self.totals());
            } else if let Some(t) = pick(m) {
                got.push(t);
            }
        }
        got
    }

    /// Runs `work` to its end, meanwhile taking the workers' messages in and calling
    /// `each` with the totals on every progress report.
    pub async fn during<F: Future>(
        &mut self,
        work: F,
        mut each: impl FnMut(Progress),
    ) -> F::Output {
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return out,
                m = self.from.recv() => match m {
                    Some((w, FromWorker::Progress(p))) => {
                        self.progress[w] = p;
                        each(self.totals());
                    }
                    // At most one `Ready` and one `Report` per worker: kept for
                    // `wait_all`.
                    Some(other) => self.early.push(other),
                    // Every worker is gone; the work goes on alone.
                    None => return work.await,
                },
            }
        }
    }

    /// The workers' counters summed (the p99 is the highest worker's).
    pub fn totals(&self) -> Progress {
        Progress {
            established: self.progress.iter().map(|p| p.established).sum(),
            failed: self.progress.iter().map(|p| p.failed).sum(),
            delivered: self.progress.iter().map(|p| p.delivered).sum(),
            p99_us: self.progress.iter().map(|p| p.p99_us).max().unwrap_or(0),
        }
    }
}

/// Starts worker process `w`: the coordinator's own flags, minus those a worker gets
/// its own value of.
fn spawn_child(
    w: usize,
    prefix: String,
    mut rx: mpsc::Receiver<ToWorker>,
    from: mpsc::Sender<(usize, FromWorker)>,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding own executable")?;
    let mut args = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quiet" => {}
            "--json" | "--html" | "--room-prefix" | "--worker-index" => {
                it.next();
            }
            _ if a.starts_with("--json=")
                || a.starts_with("--html=")
                || a.starts_with("--room-prefix=") => {}
            _ => args.push(a),
        }
    }
    let mut child = tokio::process::Command::new(exe)
        .args(&args)
        .args([
            "--worker-index",
            &w.to_string(),
            "--quiet",
            "--room-prefix",
            &prefix,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawning a worker process")?;
    let mut stdin = child.stdin.take().context("worker stdin")?;
    let stdout = child.stdout.take().context("worker stdout")?;
    tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if stdin.write_all(&to_line(&m)).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if let Ok(m) = serde_json::from_str::<FromWorker>(&l)
                && from.send((w, m)).await.is_err()
            {
                break;
            }
        }
        let _ = child.wait().await;
    });
    Ok(())
}

/// Runs this process as worker `index`: messages as JSON lines on stdin/stdout.
pub async fn child(plan: Arc<Plan>, index: usize) {
    let (to_tx, to_rx) = mpsc::channel(TO_WORKER);
    let (from_tx, mut from_rx) = mpsc::channel(TO_STDOUT);
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if let Ok(m) = serde_json::from_str::<ToWorker>(&l) {
                let _ = to_tx.send(m).await;
            }
        }
    });
    let work = tokio::spawn(worker::run(plan, index, to_rx, from_tx));
    let mut out = tokio::io::stdout();
    while let Some(m) = from_rx.recv().await {
        let done = matches!(m, FromWorker::Report(_));
        let _ = out.write_all(&to_line(&m)).await;
        let _ = out.flush().await;
        if done {
            break;
        }
    }
    let _ = work.await;
}
