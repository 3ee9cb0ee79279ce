//! Wiring: builds the gateway from a [`Config`] and runs it until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ConnectInfo;
use danmaku_fanout::memory::MemoryFanout;
use danmaku_fanout::redis::RedisFanout;
use danmaku_fanout::{Fanout, Hub};
use danmaku_protocol::ServerFrame;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::auth::Auth;
use crate::config::Config;
use crate::likes::LikeAggregator;
use crate::limits::{ApiQuota, ConnLimiter};
use crate::metrics::Metrics;
use crate::state::{AppState, ConnContext};

/// A bound, ready-to-run gateway.
pub struct App {
    state: Arc<AppState>,
    listener: TcpListener,
}

impl App {
    /// Builds the gateway and binds its port.
    ///
    /// # Errors
    /// When the port cannot be bound or a key cannot be read.
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        let listener =
            listen(config.listen).with_context(|| format!("binding {}", config.listen))?;
        let hub = Arc::new(
            Hub::with_lanes(LANE_SIZE, config.ws.write_linger)
                .with_hot_writes(config.ws.coalesce_writes_per_s),
        );
        let fanout: Arc<dyn Fanout> = match &config.redis {
            Some(redis) => Arc::new(
                RedisFanout::connect(redis.clone(), hub)
                    .await
                    .with_context(|| format!("connecting to Redis at {}", redis.urls.join(",")))?,
            ),
            None => Arc::new(MemoryFanout::new(config.memory.clone(), hub)),
        };
        let (metrics, likes) = (
            Arc::new(Metrics::default()),
            Arc::new(LikeAggregator::default()),
        );
        let shutdown = CancellationToken::new();
        let conn = ConnContext::new(
            &config,
            fanout.clone(),
            metrics.clone(),
            likes.clone(),
            shutdown.clone(),
        );
        let exporter = crate::metrics::Exporter::new(
            &metrics,
            crate::metrics::Live {
                fanout: fanout.clone(),
                backlogs: conn.backlogs.clone(),
                shutdown: shutdown.clone(),
            },
        );
        let state = AppState {
            auth: Auth::new(&config.auth)?,
            fanout,
            exporter,
            metrics,
            likes,
            limiter: ConnLimiter::new(config.ws.max_conns_per_ip, config.ws.max_connections),
            api_quota: ApiQuota::new(config.auth.api_keys.len(), config.api_rate),
            shutdown,
            tracker: TaskTracker::new(),
            conn: Arc::new(conn),
            config,
        };
        Ok(Self {
            state: Arc::new(state),
            listener,
        })
    }

    /// The bound address.
    ///
    /// # Errors
    /// When the socket has no local address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `signal` completes, then drains: every WebSocket client gets
    /// `reconnect` and, after `drain_after`, close 1012; in-flight HTTP requests finish;
    /// pending likes are published.
    ///
    /// # Errors
    /// Never after start-up; accept errors are logged and retried.
    pub async fn run(self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        let state = self.state;
        let background = spawn_background(&state);
        let router = router(state.clone());
        let http_conns = TaskTracker::new();
        tokio::pin!(signal);
        loop {
            tokio::select! {
                () = &mut signal => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, addr)) => {
                        http_conns.spawn(serve_connection(state.clone(), router.clone(), stream, addr));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        tracing::info!("draining");
        state.shutdown.cancel();
        state.tracker.close();
        let grace = tokio::time::sleep(state.config.ws.drain_after + Duration::from_secs(10));
        tokio::pin!(grace);
        let viewers_gone = async {
            state.tracker.wait().await;
            let _ = background.await;
            // The viewers' leaves, counted as they went.
            state.conn.recorder.flush(state.fanout.as_ref()).await;
        };
        tokio::pin!(viewers_gone);
        // While viewers drain the port still answers: `/readyz` says 503 `draining` (so
        // a balancer takes this gateway out), upgrades are refused with 503, and the
        // API keeps working. It closes once every viewer is gone.
        let timed_out = loop {
            tokio::select! {
                () = &mut viewers_gone => break false,
                () = &mut grace => break true,
                accepted = self.listener.accept() => {
                    if let Ok((stream, addr)) = accepted {
                        http_conns.spawn(serve_connection(state.clone(), router.clone(), stream, addr));
                    }
                }
            }
        };
        drop(self.listener);
        http_conns.close();
        let closed = tokio::time::timeout(Duration::from_secs(2), http_conns.wait()).await;
        if timed_out || closed.is_err() {
            tracing::warn!("drain timed out; exiting");
        }
        Ok(())
    }
}

/// The public port's routes, assembled in one place: the HTTP API, health and
/// metrics, and the WebSocket upgrade.
fn router(state: Arc<AppState>) -> axum::Router {
    // The HTTP routes are counted by route and status; the upgrades, routed after the
    // layer, by the connection and handshake metrics.
    let mut routes = crate::http::routes(&state)
        .merge(crate::demo::routes())
        .merge(crate::dashboard::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.http.clone(),
            crate::metrics::http::track,
        ))
        .route("/ws", axum::routing::get(crate::ws::upgrade));
    if state.config.diagnostic_echo {
        routes = routes.route(
            crate::ws::ECHO_PATH,
            axum::routing::get(crate::ws::echo_upgrade),
        );
    }
    routes.with_state(state)
}

/// Viewers per hub lane: a room's events are written to each lane by its own task, so
/// a big room's writes spread over every core and the publisher never waits for them.
/// 64 direct writes take about half a millisecond.
const LANE_SIZE: usize = 64;

/// Connections the kernel may queue before `accept`. A burst of thousands of viewers
/// (a stream going live) must not overflow the queue: a dropped SYN costs the viewer a
/// one-second retransmit. The kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 16_384;

/// Largest HTTP request head (request line and headers, a token in the URL included);
/// a larger one is answered 431 and the connection closed.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header lines of a request (431 beyond).
pub const MAX_HEADERS: usize = 64;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn serve_connection(
    state: Arc<AppState>,
    router: axum::Router,
    mut stream: TcpStream,
    mut addr: SocketAddr,
) {
    let _ = stream.set_nodelay(true);
    let send_buffer = state.config.ws.send_buffer_bytes;
    if send_buffer != 0 {
        // Best effort, as for nodelay: the kernel's autotuning stays if it refuses.
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(send_buffer);
    }
    let accepted = tokio::time::Instant::now();
    if state.config.ws.proxy_protocol {
        let ws = &state.config.ws;
        if !ws.trusted_proxies.trusts(addr.ip()) {
            tracing::debug!(peer = %addr, "closed: not a trusted proxy (--proxy-protocol)");
            state.metrics.handshake_refused("proxy");
            return;
        }
        match crate::proxy::read_proxy_header(&mut stream, addr, ws.handshake_timeout).await {
            Ok(client) => addr = client,
            Err(e) => {
                tracing::debug!(peer = %addr, error = %e, "closed: no PROXY header");
                state.metrics.handshake_refused("proxy");
                return;
            }
        }
    }
    // A viewer's upgrade is answered without hyper when it arrived whole.
    let Some(stream) = crate::ws::fast_upgrade(&state, stream, addr).await else {
        return;
    };
    // Hyper gets what is left of the handshake timeout, not a fresh one: a client that
    // waited before its first byte does not get the timeout twice.
    let head_timeout = state
        .config
        .ws
        .handshake_timeout
        .saturating_sub(accepted.elapsed());
    if head_timeout.is_zero() {
        return;
    }
    let service = router.map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(addr));
        req
    });
    let service = hyper_util::service::TowerToHyperService::new(service);
    // Accepted while draining: one request, then the connection closes.
    let draining = state.shutdown.is_cancelled();
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(!draining)
        .header_read_timeout(head_timeout)
        .max_header_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    if draining {
        let _ = conn.await;
        return;
    }
    tokio::select! {
        _ = conn.as_mut() => {}
        () = state.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// The periodic work: like windows, presence, poll tallies and room expiry.
fn spawn_background(state: &Arc<AppState>) -> tokio::task::JoinHandle<()> {
    // Presence runs on its own: with a store, counting thousands of rooms must not
    // delay the likes window or the poll tallies.
    let presence = tokio::spawn(every(
        state.clone(),
        state.config.presence_interval,
        |s| async move {
            announce_presence(&s).await;
        },
    ));
    let likes = tokio::spawn(every(
        state.clone(),
        state.config.likes_window,
        |s| async move {
            s.likes.flush(&s.fanout).await;
        },
    ));
    let polls = tokio::spawn(every(
        state.clone(),
        state.config.poll_interval,
        |s| async move {
            s.fanout.tick().await;
        },
    ));
    let analytics = tokio::spawn(every(
        state.clone(),
        crate::analytics::FLUSH_EVERY,
        |s| async move {
            s.conn.recorder.flush(s.fanout.as_ref()).await;
        },
    ));
    let store = tokio::spawn(watch_store(state.clone()));
    let pressure = tokio::spawn(watch_write_pressure(state.clone()));
    let state = state.clone();
    tokio::spawn(async move {
        let _ = tokio::join!(presence, likes, polls, analytics, store, pressure);
        // Finish what is in flight: likes already acknowledged to clients.
        state.likes.flush(&state.fanout).await;
    })
}

/// Sends this gateway's viewers elsewhere when its store has been unreachable for
/// `store_lost_after` (once per outage): other gateways may still reach it, and a
/// viewer here would get no events. Checked every second; nothing to do without Redis.
async fn watch_store(state: Arc<AppState>) {
    let Some(after) = state.config.redis.as_ref().map(|r| r.store_lost_after) else {
        return;
    };
    let mut unready_since: Option<tokio::time::Instant> = None;
    let mut moved = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1).min(after));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = state.shutdown.cancelled() => return,
        }
        if state.fanout.ready() {
            unready_since = None;
            moved = false;
            continue;
        }
        let since = *unready_since.get_or_insert_with(tokio::time::Instant::now);
        if !moved && since.elapsed() >= after {
            tracing::warn!(
                after_ms = after.as_millis() as u64,
                "store unreachable: telling viewers to move to another gateway"
            );
            state.conn.mover.move_all();
            moved = true;
        }
    }
}

/// Keeps `write_pressure` up to date: on once the writes the rooms ask for (events ×
/// local viewers, batched or not) reach `coalesce_writes_per_s` over 100 ms, off again
/// below three quarters of it. Nothing to do when coalescing is unconditional.
async fn watch_write_pressure(state: Arc<AppState>) {
    let threshold = state.config.ws.coalesce_writes_per_s as f64;
    if threshold <= 0.0 {
        return;
    }
    let demand = &state.fanout.hub().stats().demand;
    let (mut last, mut at) = (demand.load(Ordering::Relaxed), tokio::time::Instant::now());
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = state.shutdown.cancelled() => return,
        }
        let (now, then) = (demand.load(Ordering::Relaxed), tokio::time::Instant::now());
        let secs = then.duration_since(at).as_secs_f64().max(1e-3);
        let rate = now.saturating_sub(last) as f64 / secs;
        (last, at) = (now, then);
        let pressure = &state.conn.write_pressure;
        let on = pressure.load(Ordering::Relaxed);
        if (!on && rate >= threshold) || (on && rate < threshold * 0.75) {
            pressure.store(!on, Ordering::Relaxed);
        }
    }
}

/// Runs `work` every `period` until shutdown (a late tick delays the next one).
async fn every<F, Fut>(state: Arc<AppState>, period: Duration, work: F)
where
    F: Fn(Arc<AppState>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => work(state.clone()).await,
            () = state.shutdown.cancelled() => return,
        }
    }
}

/// Announces each local room's online count (all gateways) when it changed.
async fn announce_presence(state: &AppState) {
    let hub = state.fanout.hub();
    // With a store each count is a round trip: ask for 256 rooms at a time.
    let rooms = hub.rooms();
    let mut counted = Vec::with_capacity(rooms.len());
    for chunk in rooms.chunks(256) {
        let counts =
            futures_util::future::join_all(chunk.iter().map(|room| state.fanout.online(room)))
                .await;
        for (room, count) in chunk.iter().zip(counts) {
            let online = count.unwrap_or_else(|_| hub.online(room));
            state.conn.recorder.online(room, online);
            counted.push((room.clone(), online));
            if hub.announce(room, online) {
                let frame = ServerFrame::Presence {
                    room: room.as_str(),
                    online,
                }
                .encode();
                hub.deliver(room, 0, &frame);
            }
        }
    }
    // For the rooms listing of every gateway.
    state.fanout.report_rooms(&counted).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every accepted connection allocates this future for as long as hyper serves it.
    /// A WebSocket connection's own state lives in a task of its own; carried inline,
    /// it made this future 3.9 KB and every idle viewer 2 KB bigger.
    #[tokio::test]
    async fn an_http_connections_future_stays_small() {
        let config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Config::default()
        };
        let app = App::bind(config).await.expect("bind");
        let addr = app.local_addr().expect("addr");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (server, peer) = app.listener.accept().await.expect("accept");
        let router = router(app.state.clone());
        let served = serve_connection(app.state.clone(), router, server, peer);
        let size = std::mem::size_of_val(&served);
        assert!(size <= 2048, "serve_connection's future is {size} bytes");
    }
}
