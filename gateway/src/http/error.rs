//! API errors: an HTTP status with a JSON body `{"error":{"code","message"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use danmaku_fanout::FanoutError;
use danmaku_protocol::ErrorCode;

use crate::auth::ApiKeyError;

/// An error answer of the HTTP API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error with one of the protocol's codes and its usual status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: code.as_str(),
            message: message.into(),
        }
    }

    /// 401: the API key is missing or wrong.
    pub fn unauthorized(why: ApiKeyError) -> Self {
        Self::new(ErrorCode::Unauthorized, why.to_string())
    }

    /// 404: no such route.
    pub fn not_found() -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: "no such endpoint".into(),
        }
    }

    /// 405: the path exists, the method does not (the `Allow` header lists those that do).
    pub fn method_not_allowed(method: &axum::http::Method, path: &str) -> Self {
        Self {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "method_not_allowed",
            message: format!("{method} is not allowed on {path}; the Allow header lists what is"),
        }
    }

    /// 403 to a CORS preflight: the API is not for browsers.
    pub fn cross_origin() -> Self {
        Self::new(
            ErrorCode::Forbidden,
            "cross-origin requests are not allowed: the HTTP API is for backend services \
             (its API key must not reach a browser); browsers connect to /ws",
        )
    }

    /// 410: the requested history is older than the room keeps.
    pub fn gone(message: String) -> Self {
        Self {
            status: StatusCode::GONE,
            code: "gone",
            message,
        }
    }
}

impl From<FanoutError> for ApiError {
    fn from(e: FanoutError) -> Self {
        if matches!(e, FanoutError::Gone { .. }) {
            return Self::gone(e.to_string());
        }
        Self::new(e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, message = %self.message, "API error");
        }
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}
