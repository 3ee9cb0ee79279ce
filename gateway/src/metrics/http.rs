//! HTTP requests by route and status, and their durations by route.
//!
//! The route is the matched route's template (`/v1/rooms/{room}/events`), never the
//! path itself, so a room id never becomes a label; a request no route matched is
//! `other`. The WebSocket upgrade is not counted here (see the connection and
//! handshake metrics).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::Hist;

/// The label of a request no route matched.
pub const OTHER_ROUTE: &str = "other";

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteStatus {
    route: String,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Route {
    route: String,
}

/// The HTTP request metrics.
#[derive(Debug)]
pub struct HttpMetrics {
    requests: Family<RouteStatus, Counter>,
    durations: Family<Route, Hist, fn() -> Hist>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            durations: Family::new_with_constructor(Hist::default),
        }
    }
}

impl HttpMetrics {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "danmaku_http_requests",
            "HTTP requests answered, by route template and status",
            self.requests.clone(),
        );
        r.register(
            "danmaku_http_request_duration_seconds",
            "Time to answer an HTTP request (to its response head), by route template",
            self.durations.clone(),
        );
    }

    fn record(&self, route: &str, status: u16, started: Instant) {
        let route = route.to_owned();
        self.durations
            .get_or_create(&Route {
                route: route.clone(),
            })
            .observe(started.elapsed());
        self.requests
            .get_or_create(&RouteStatus { route, status })
            .inc();
    }
}

/// The middleware that counts every request of the routes it wraps.
pub async fn track(
    State(metrics): State<Arc<HttpMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let route = route.as_ref().map_or(OTHER_ROUTE, MatchedPath::as_str);
    metrics.record(route, response.status().as_u16(), started);
    response
}
