//! `danmaku-gateway`: flags → config → telemetry → bind → serve until SIGTERM/Ctrl-C.

use anyhow::Context;
use danmaku_gateway::app::App;
use danmaku_gateway::auth::{Claims, sign_hs256};
use danmaku_gateway::cli::{Args, DEFAULT_LOG, DevMode};

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
    print_banner(addr, &config, &dev)?;
    app.run(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Prints where to connect; in dev mode, a token and an API key to do it with.
fn print_banner(
    addr: std::net::SocketAddr,
    config: &danmaku_gateway::config::Config,
    dev: &DevMode,
) -> anyhow::Result<()> {
    println!("danmaku-gateway {} listening on {addr}", config.gateway_id);
    if let Some(secret) = &dev.jwt_secret {
        let exp = danmaku_fanout_now_s() + 24 * 3600;
        let claims = Claims {
            sub: "dev-user".into(),
            exp,
            name: Some("Dev".into()),
            role: None,
            rooms: None,
        };
        let token = sign_hs256(secret.as_bytes(), &claims)?;
        println!("dev mode: no --jwt-secret given; a random secret is used for this run");
        println!("  viewer:    websocat 'ws://{addr}/ws?token={token}'");
        println!("  anonymous: websocat 'ws://{addr}/ws' (read-only)");
    }
    if let Some(key) = &dev.api_key {
        println!("dev mode: no --api-keys given; this run's API key is {key}");
        println!(
            "  publish:   curl -H 'Authorization: Bearer {key}' -d '{{\"kind\":\"comment\",\"data\":{{\"text\":\"hi\"}}}}' http://{addr}/v1/rooms/demo/events"
        );
    }
    Ok(())
}

fn danmaku_fanout_now_s() -> u64 {
    danmaku_fanout::now_ms() / 1000
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
