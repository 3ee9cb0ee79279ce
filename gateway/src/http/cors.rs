//! Optional CORS for the HTTP API (`--cors-origins`): a preflight from a listed origin
//! is granted, and every answer to a listed origin says so. Without the setting no
//! origin is granted anything, and preflights are refused with 403.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Methods a page may call (every method of the API).
const METHODS: &str = "GET, POST, PUT, DELETE";
/// Request headers a page may send: the API key and the body's type (idempotency keys
/// travel in the body).
const HEADERS: &str = "authorization, content-type";
/// How long a browser may keep a preflight's grant, in seconds.
const MAX_AGE: &str = "600";
/// Answer headers a page may read besides the simple ones.
const EXPOSED: &str = "retry-after";

/// The origins of `--cors-origins`, exactly as browsers send them.
#[derive(Clone, Debug)]
pub(crate) struct Cors {
    origins: Arc<[String]>,
}

impl Cors {
    pub(crate) fn new(origins: &[String]) -> Self {
        Self {
            origins: origins.into(),
        }
    }

    /// Whether any origin is listed.
    pub(crate) fn enabled(&self) -> bool {
        !self.origins.is_empty()
    }

    /// The request's `Origin`, if it is listed.
    pub(crate) fn granted(&self, request: &HeaderMap) -> Option<HeaderValue> {
        let origin = request.get(header::ORIGIN)?;
        let text = origin.to_str().ok()?;
        self.origins
            .iter()
            .any(|o| o == text)
            .then(|| origin.clone())
    }

    /// Marks an answer: `Vary: Origin` whenever CORS is on (a cache must not give one
    /// origin's answer to another), and the grant for a listed origin.
    pub(crate) fn mark(&self, granted: Option<HeaderValue>, response: &mut Response) {
        if !self.enabled() {
            return;
        }
        let headers = response.headers_mut();
        headers.append(header::VARY, HeaderValue::from_static("origin"));
        if let Some(origin) = granted {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED),
            );
        }
    }
}

/// The 204 to a preflight from a listed origin (the origin itself is added by
/// [`Cors::mark`], as on every answer to it).
pub(crate) fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_METHODS, METHODS),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, HEADERS),
            (header::ACCESS_CONTROL_MAX_AGE, MAX_AGE),
        ],
    )
        .into_response()
}
