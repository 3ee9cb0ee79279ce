//! `danmaku-gateway`: flags → config → telemetry → bind → serve until SIGTERM/Ctrl-C
//! (or, with `--healthcheck`, ask a running gateway whether it is ready).

use danmaku_gateway::app::App;
use danmaku_gateway::cli::{Args, DEFAULT_LOG, DEFAULT_LOG_FORMAT, Mode};
use danmaku_gateway::telemetry::{self, LogFormat};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (args, mode) = Args::load()?;
    if mode == Mode::Healthcheck {
        healthcheck(&args).await;
    }
    let filter = args.log.as_deref().unwrap_or(DEFAULT_LOG);
    let format: LogFormat = args
        .log_format
        .as_deref()
        .unwrap_or(DEFAULT_LOG_FORMAT)
        .parse()
        .map_err(anyhow::Error::msg)?;
    telemetry::init(filter, format).map_err(anyhow::Error::msg)?;
    let (config, dev) = args.into_config()?;
    let app = App::bind(config.clone()).await?;
    let addr = app.local_addr()?;
    print_banner(&dev.banner(addr, &config)?);
    app.run(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// `--healthcheck`: exits 0 when the gateway at `--listen` is ready, else 1 with why.
async fn healthcheck(args: &Args) -> ! {
    let result = match args.listen_addr() {
        Ok(listen) => {
            danmaku_gateway::healthcheck::check(danmaku_gateway::healthcheck::target(listen)).await
        }
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(body) => {
            println!("ready: {body}");
            std::process::exit(0)
        }
        Err(why) => {
            eprintln!("not ready: {why}");
            std::process::exit(1)
        }
    }
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
