//! The coordinator: starts the workers, publishes, watches the gateways, and merges
//! the measurements into a [`Summary`].

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cli::Scenario;
use crate::http::Http;
use crate::plan::Plan;
use crate::report::{GatewayStats, PublishStats, Summary};
use crate::stats::{WorkerReport, cpu_seconds, histogram, rss_bytes};
use crate::worker::{self, FromWorker, Progress, ToWorker};

struct Workers {
    to: Vec<mpsc::Sender<ToWorker>>,
    from: mpsc::Receiver<(usize, FromWorker)>,
    progress: Vec<Progress>,
}

impl Workers {
    async fn start(plan: &Arc<Plan>) -> anyhow::Result<Self> {
        let procs = plan.cli.common.procs.max(1);
        let (from_tx, from) = mpsc::channel(1024);
        let mut to = Vec::new();
        for w in 0..procs {
            let (tx, rx) = mpsc::channel(16);
            to.push(tx);
            if procs == 1 {
                let (wtx, mut wrx) = mpsc::channel(16);
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
        })
    }

    async fn broadcast(&self, m: ToWorker) {
        for t in &self.to {
            let _ = t.send(m.clone()).await;
        }
    }

    /// Waits for every worker's `Ready`, or its `Report` for the final phase.
    async fn wait_all<T>(
        &mut self,
        quiet: bool,
        mut pick: impl FnMut(FromWorker) -> Option<T>,
    ) -> Vec<T> {
        let mut got = Vec::new();
        let mut last_print = Instant::now();
        while got.len() < self.to.len() {
            let Some((w, m)) = self.from.recv().await else {
                break;
            };
            if let FromWorker::Progress(p) = m {
                self.progress[w] = p;
                if !quiet && last_print.elapsed() >= Duration::from_millis(900) {
                    last_print = Instant::now();
                    self.print_progress();
                }
            } else if let Some(t) = pick(m) {
                got.push(t);
            }
        }
        got
    }

    fn print_progress(&self) {
        static LAST: AtomicU64 = AtomicU64::new(0);
        let est: u64 = self.progress.iter().map(|p| p.established).sum();
        let failed: u64 = self.progress.iter().map(|p| p.failed).sum();
        let delivered: u64 = self.progress.iter().map(|p| p.delivered).sum();
        let p99 = self.progress.iter().map(|p| p.p99_us).max().unwrap_or(0);
        let rate = delivered.saturating_sub(LAST.swap(delivered, Ordering::Relaxed));
        eprint!(
            "\rconnections {est} (failed {failed}) | deliveries {delivered} (~{rate}/s) | p99 so far {:.1} ms   ",
            p99 as f64 / 1000.0
        );
        let _ = std::io::stderr().flush();
    }
}

fn spawn_child(
    w: usize,
    prefix: String,
    mut rx: mpsc::Receiver<ToWorker>,
    from: mpsc::Sender<(usize, FromWorker)>,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding own executable")?;
    // The coordinator's own flags, minus those a worker gets its own value of.
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
            let mut line = serde_json::to_vec(&m).unwrap_or_default();
            line.push(b'\n');
            if stdin.write_all(&line).await.is_err() {
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

/// Runs a worker in a child process: messages as JSON lines on stdin/stdout.
pub async fn child(plan: Arc<Plan>, index: usize) {
    let (to_tx, to_rx) = mpsc::channel(16);
    let (from_tx, mut from_rx) = mpsc::channel(64);
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
        let mut line = serde_json::to_vec(&m).unwrap_or_default();
        line.push(b'\n');
        let _ = out.write_all(&line).await;
        let _ = out.flush().await;
        if done {
            break;
        }
    }
    let _ = work.await;
}

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
/// When workers cannot be started or the gateway's API cannot be reached.
pub async fn run(plan: Arc<Plan>) -> anyhow::Result<Summary> {
    let quiet = plan.cli.common.quiet;
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
        (_, Some(load)) => Some(
            publish(
                &plan,
                load.rate,
                load.size,
                load.duration_s,
                load.publishers,
            )
            .await,
        ),
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
    Ok(Summary::build(
        &plan,
        merged,
        publish,
        finals,
        likes_total,
        gateways,
        ramp_s,
        measured_s,
    ))
}

/// The order in which rooms take turns publishing: every room once per cycle, but
/// not by rank. Rooms are ranked by size (Zipf), and independent rooms do not
/// publish their events in the same millisecond; a stride of about n/φ, coprime to
/// n, spreads neighbouring ranks across the cycle.
fn publish_order(n: usize) -> Vec<usize> {
    if n < 3 {
        return (0..n).collect();
    }
    let mut stride = ((n as f64) / 1.618_034).round() as usize;
    while gcd(stride, n) != 1 {
        stride += 1;
    }
    // Room r takes its turn at r·stride mod n.
    let mut order = vec![0; n];
    for r in 0..n {
        order[r * stride % n] = r;
    }
    order
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

async fn publish(
    plan: &Plan,
    rate: f64,
    size: usize,
    duration_s: f64,
    publishers: usize,
) -> PublishStats {
    let total = (rate * duration_s).round() as u64;
    let p = if publishers > 0 {
        publishers
    } else {
        ((rate / 50.0).ceil() as usize).clamp(2, 64)
    } as u64;
    let pad = "x".repeat(size.saturating_sub(32));
    let order = Arc::new(publish_order(plan.rooms.len()));
    let t0 = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::new();
    for j in 0..p {
        let http_base = plan.http[j as usize % plan.http.len()].clone();
        let rooms = plan.rooms.clone();
        let order = order.clone();
        let key = plan.cli.common.api_key.clone();
        let pad = pad.clone();
        tasks.push(tokio::spawn(async move {
            let mut stats = PublishStats::default();
            let mut lag = histogram();
            let Ok(mut http) = Http::new(&http_base) else {
                return (stats, lag);
            };
            let mut k = j;
            while k < total {
                let at = t0 + Duration::from_secs_f64(k as f64 / rate);
                tokio::time::sleep_until(at).await;
                let late = Instant::now().saturating_duration_since(at);
                let _ = lag.record((late.as_micros() as u64).max(1));
                let room = &rooms[order[k as usize % order.len()]];
                let body = format!(
                    "{{\"kind\":\"lt\",\"data\":{{\"t\":{},\"pad\":\"{pad}\"}}}}",
                    crate::now_us()
                );
                match http
                    .request(
                        "POST",
                        &format!("/v1/rooms/{room}/events"),
                        &key,
                        body.as_bytes(),
                    )
                    .await
                {
                    Ok((200, _)) => {
                        stats.published += 1;
                        if late <= Duration::from_millis(100) {
                            stats.on_time += 1;
                        }
                    }
                    Ok((status, _)) => *stats.errors.entry(status.to_string()).or_default() += 1,
                    Err(_) => *stats.errors.entry("io".into()).or_default() += 1,
                }
                k += p;
            }
            (stats, lag)
        }));
    }
    let mut all = PublishStats {
        scheduled: total,
        ..PublishStats::default()
    };
    let mut lag: Histogram<u64> = histogram();
    for t in tasks {
        if let Ok((s, l)) = t.await {
            all.published += s.published;
            all.on_time += s.on_time;
            for (k, v) in s.errors {
                *all.errors.entry(k).or_default() += v;
            }
            let _ = lag.add(&l);
        }
    }
    all.lag_p99_ms = lag.value_at_quantile(0.99) as f64 / 1000.0;
    all
}

async fn api(
    plan: &Plan,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<serde_json::Value> {
    let mut http = Http::new(&plan.http[0])?;
    let (status, bytes) = http
        .request(method, path, &plan.cli.common.api_key, body.as_bytes())
        .await?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    anyhow::ensure!(status == 200, "{method} {path}: HTTP {status} {v}");
    Ok(v)
}

async fn room_state(plan: &Plan) -> anyhow::Result<(BTreeMap<String, u64>, u64)> {
    let mut finals = BTreeMap::new();
    let mut likes = 0;
    for room in &plan.rooms {
        let v = api(plan, "GET", &format!("/v1/rooms/{room}"), "").await?;
        finals.insert(room.clone(), v["seq"].as_u64().unwrap_or(0));
        likes += v["likes"].as_u64().unwrap_or(0);
    }
    Ok((finals, likes))
}

async fn open_polls(plan: &Plan) -> anyhow::Result<Vec<(String, String)>> {
    let body = r#"{"question":"Which colour?","options":["red","green","blue"],"duration_s":3600}"#;
    let mut polls = Vec::new();
    for room in &plan.rooms {
        let v = api(plan, "POST", &format!("/v1/rooms/{room}/polls"), body).await?;
        polls.push((
            room.clone(),
            v["poll"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    Ok(polls)
}

/// Closes the polls, so their final tallies are sequenced before the final seqs are read.
async fn close_polls(plan: &Plan, polls: &[(String, String)]) {
    for (room, poll) in polls {
        if let Err(e) = api(
            plan,
            "POST",
            &format!("/v1/rooms/{room}/polls/{poll}/close"),
            "",
        )
        .await
        {
            eprintln!("closing poll {poll} of {room}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_order_is_a_spread_permutation() {
        for n in [1, 2, 3, 10, 100, 1_000] {
            let order = publish_order(n);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "n = {n}");
        }
        // The 10 biggest of 1,000 rooms are at least 40 turns apart.
        let order = publish_order(1_000);
        let mut at: Vec<usize> = (0..10)
            .map(|r| order.iter().position(|&x| x == r).unwrap_or(0))
            .collect();
        at.sort_unstable();
        assert!(at.windows(2).all(|w| w[1] - w[0] >= 40), "{at:?}");
    }
}
