//! API errors: an HTTP status with a JSON body `{"error":{"code","message"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use danmaku_fanout::FanoutError;
use danmaku_protocol::ErrorCode;

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
    pub fn unauthorized() -> Self {
        Self::new(
            ErrorCode::Unauthorized,
            "missing or invalid API key (Authorization: Bearer <key>)",
        )
    }

    /// 404: no such route.
    pub fn not_found() -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: "no such endpoint".into(),
        }
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
