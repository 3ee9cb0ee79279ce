//! `danmaku-gateway`: flags → config → telemetry → bind → serve until SIGTERM/Ctrl-C.

use anyhow::Context;
use danmaku_gateway::app::App;
use danmaku_gateway::cli::{Args, DEFAULT_LOG};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::load()?;
    let filter = args.log.clone().unwrap_or_else(|| DEFAULT_LOG.into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&filter).context("--log")?)
        .with_writer(std::io::stderr)
        .init();
    let (config, dev) = args.into_config()?;
    let app = App::bind(config.clone()).await?;
    let addr = app.local_addr()?;
    print_banner(&dev.banner(addr, &config)?);
    app.run(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Prints the banner in one write: a reader that stops after the first line does not
/// catch the gateway mid-banner, and nobody reading stdout is no reason to stop serving.
fn print_banner(banner: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(banner.as_bytes())
        .and_then(|()| stdout.flush())
    {
        tracing::warn!(error = %e, "could not print the start-up banner");
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
