//! What every request handler and connection task shares: the one shared state of
//! the gateway, built by `app.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use danmaku_fanout::Fanout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::config::Config;
use crate::likes::LikeAggregator;
use crate::limits::ConnLimiter;
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
    pub metrics: Metrics,
    /// Likes pending publication.
    pub likes: LikeAggregator,
    /// Connection limits.
    pub limiter: Arc<ConnLimiter>,
    /// Cancelled when the gateway starts draining.
    pub shutdown: CancellationToken,
    /// Tracks connection tasks so shutdown can wait for them.
    pub tracker: TaskTracker,
    pub(crate) next_conn: AtomicU64,
}

impl AppState {
    /// A new connection key.
    pub fn next_conn(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed) + 1
    }
}
