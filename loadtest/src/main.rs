//! `danmaku-loadtest`: real WebSocket viewers against one or many gateways, measured
//! end to end. See loadtest/README.md.

mod actions;
mod api;
mod cli;
mod clock;
mod control;
mod endpoint;
mod games;
mod http;
mod incoming;
mod opener;
mod passive;
mod plan;
mod preflight;
mod progress;
mod publish;
mod report;
mod retention;
mod run;
mod seen;
mod shared;
mod stats;
mod task;
mod tls;
mod viewer;
mod worker;
mod workers;
mod wsclient;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

/// Wall-clock Unix microseconds (publish timestamps are compared across processes).
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let threads = cli.common.threads.max(1);
    // A worker process of ordinary clients runs them as a typical app would: on one
    // single-threaded runtime.
    let ordinary =
        cli.common.client == cli::ClientKind::Tungstenite && cli.common.worker_index.is_some();
    let runtime = if ordinary {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let Ok(runtime) = runtime else {
        eprintln!("cannot start the runtime");
        return ExitCode::from(2);
    };
    match runtime.block_on(main_async(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn main_async(cli: cli::Cli) -> anyhow::Result<bool> {
    let worker = cli.common.worker_index;
    let plan = Arc::new(plan::Plan::new(cli)?);
    if let Some(index) = worker {
        workers::child(plan, index).await;
        return Ok(true);
    }
    if matches!(plan.scenario(), cli::Scenario::Retention(_)) {
        return retention::run(plan).await;
    }
    let summary = run::run(plan.clone()).await?;
    print!("{}", summary.table());
    if let Some(path) = &plan.cli.common.json {
        std::fs::write(path, summary.results.to_json())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &plan.cli.common.html {
        std::fs::write(path, summary.html())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(summary.results.pass)
}
