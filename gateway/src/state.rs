//! What every request handler and connection task shares: the one shared state of
//! the gateway, built by `app.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use danmaku_fanout::Fanout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use danmaku_protocol::Limits;
use danmaku_protocol::settings::RoomSettings;

use crate::auth::Auth;
use crate::config::{Config, Rates, WsConfig};
use crate::likes::LikeAggregator;
use crate::limits::{ApiQuota, ConnLimiter};
use crate::metrics::Metrics;

/// What every request handler and connection task shares.
pub struct AppState {
    /// The configuration.
    pub config: Config,
    /// Credential checks.
    pub auth: Auth,
    /// The store and its hub.
    pub fanout: Arc<dyn Fanout>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// What `/metrics` encodes: every metric's name and help, the values read at
    /// scrape time.
    pub exporter: crate::metrics::Exporter,
    /// Likes pending publication.
    pub likes: Arc<LikeAggregator>,
    /// Connection limits.
    pub limiter: Arc<ConnLimiter>,
    /// The HTTP API's quota per key.
    pub api_quota: ApiQuota,
    /// Cancelled when the gateway starts draining.
    pub shutdown: CancellationToken,
    /// Tracks connection tasks so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// What each connection task is given.
    pub conn: Arc<ConnContext>,
}

/// What a connection task is given: its own settings and the handles it uses, not
/// the whole state.
pub struct ConnContext {
    /// The settings of viewer connections.
    pub settings: ConnSettings,
    /// The store and its hub.
    pub fanout: Arc<dyn Fanout>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Likes pending publication.
    pub likes: Arc<LikeAggregator>,
    /// Cancelled when the gateway starts draining.
    pub shutdown: CancellationToken,
    /// Tells every connection open now to move to another gateway.
    pub mover: Mover,
    /// What every open connection holds for writing.
    pub backlogs: Arc<crate::ws::Backlogs>,
    /// Set while this gateway's rooms ask for at least `coalesce_writes_per_s` writes:
    /// only then is a viewer's own stream coalesced (see [`crate::ws`]).
    pub write_pressure: Arc<AtomicBool>,
    /// Retention data of this gateway's viewers.
    pub recorder: Arc<crate::analytics::Recorder>,
    next_conn: AtomicU64,
    /// Added to the clock the seen record counts days by (`DANMAKU_CLOCK_OFFSET_MS`, for
    /// tests that join on several days; 0 otherwise).
    clock_offset_ms: i64,
}

/// Sends every connection open at the moment to another gateway (`reconnect`, then
/// 1012), without draining the gateway: used when this gateway has lost its store while
/// others may still reach it.
#[derive(Debug, Default)]
pub struct Mover {
    current: std::sync::Mutex<CancellationToken>,
}

impl Mover {
    /// The token a connection watches: cancelled by the next [`Mover::move_all`].
    pub fn token(&self) -> CancellationToken {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Tells every connection that took a token so far to move; later ones stay.
    pub fn move_all(&self) {
        let old = std::mem::take(
            &mut *self
                .current
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        old.cancel();
    }
}

/// The settings a connection task reads.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    /// This gateway's id (in `hello` and connection ids).
    pub gateway_id: String,
    /// Connection handling.
    pub ws: WsConfig,
    /// What clients may send.
    pub limits: Limits,
    /// Per-connection command rates.
    pub rates: Rates,
    /// The settings of rooms that have none of their own.
    pub rooms: Arc<RoomSettings>,
    /// The same, encoded: the `snapshot.settings` of such rooms.
    pub rooms_json: bytes::Bytes,
}

impl ConnContext {
    /// Today, in UTC days since the Unix epoch, by this gateway's clock.
    pub fn today(&self) -> u64 {
        let now = i64::try_from(danmaku_fanout::now_ms()).unwrap_or(i64::MAX);
        u64::try_from(now.saturating_add(self.clock_offset_ms) / 86_400_000).unwrap_or(0)
    }

    /// The context of connections of a gateway configured by `config`.
    pub fn new(
        config: &Config,
        fanout: Arc<dyn Fanout>,
        metrics: Arc<Metrics>,
        likes: Arc<LikeAggregator>,
        shutdown: CancellationToken,
    ) -> Self {
        // Checked when the configuration was (`Config::validate`).
        let rooms = Arc::new(config.rooms.settings().unwrap_or_default());
        let recorder = Arc::new(crate::analytics::Recorder::new(
            &config.gateway_id,
            config.analytics,
            config.analytics_time_scale,
            config.memory.history_age,
            metrics.clone(),
        ));
        Self {
            settings: ConnSettings {
                gateway_id: config.gateway_id.clone(),
                ws: config.ws.clone(),
                limits: config.limits.clone(),
                rates: config.rates,
                rooms: rooms.clone(),
                rooms_json: bytes::Bytes::from(rooms.encode()),
            },
            fanout,
            metrics,
            likes,
            shutdown,
            mover: Mover::default(),
            backlogs: Arc::default(),
            write_pressure: Arc::new(AtomicBool::new(config.ws.coalesce_writes_per_s == 0)),
            recorder,
            next_conn: AtomicU64::new(0),
            clock_offset_ms: std::env::var("DANMAKU_CLOCK_OFFSET_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        }
    }

    /// A new connection key.
    pub fn next_conn(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed) + 1
    }
}
