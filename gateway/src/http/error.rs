//! API errors: an HTTP status with a JSON body `{"error":{"code","message"}}`.

use axum::Json;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
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
    /// What a few answers carry besides (boxed: errors are returned by value often).
    extra: Option<Box<Extra>>,
}

/// A header the answer needs (`Retry-After`, `Sec-WebSocket-Version`), and the
/// milliseconds until a retry may succeed, also given in the body.
#[derive(Debug)]
struct Extra {
    header: (HeaderName, HeaderValue),
    retry_after_ms: Option<u64>,
}

impl ApiError {
    /// An error with one of the protocol's codes and its usual status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: code.as_str(),
            message: message.into(),
            extra: None,
        }
    }

    fn other(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            extra: None,
        }
    }

    /// The error's code, as the body gives it.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// 429 with `Retry-After` (whole seconds, rounded up) and `retry_after_ms`.
    pub fn rate_limited(message: impl Into<String>, retry_after_ms: u64) -> Self {
        let secs = retry_after_ms.div_ceil(1000).max(1);
        Self {
            extra: Some(Box::new(Extra {
                header: (header::RETRY_AFTER, HeaderValue::from(secs)),
                retry_after_ms: Some(retry_after_ms),
            })),
            ..Self::new(ErrorCode::RateLimited, message)
        }
    }

    /// 426 to a WebSocket upgrade of another version than 13 (RFC 6455 §4.4).
    pub fn upgrade_required() -> Self {
        Self {
            extra: Some(Box::new(Extra {
                header: (
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                ),
                retry_after_ms: None,
            })),
            ..Self::other(
                StatusCode::UPGRADE_REQUIRED,
                "bad_request",
                "this server speaks WebSocket version 13 only (`Sec-WebSocket-Version: 13`)",
            )
        }
    }

    /// 415: the body is not declared as JSON.
    pub fn unsupported_media_type(got: &str) -> Self {
        Self::other(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("the body must be JSON (`Content-Type: application/json`), not `{got}`"),
        )
    }

    /// 409: an idempotency key reused for another event (`idempotency_key_reused`), or
    /// a retry's key the store may have lost (`idempotency_key_unknown`).
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::other(StatusCode::CONFLICT, code, message)
    }

    /// 401: the API key is missing or wrong.
    pub fn unauthorized(why: ApiKeyError) -> Self {
        Self::new(ErrorCode::Unauthorized, why.to_string())
    }

    /// 404: no such route.
    pub fn not_found() -> Self {
        Self::other(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    }

    /// 405: the path exists, the method does not (the `Allow` header lists those that do).
    pub fn method_not_allowed(method: &axum::http::Method, path: &str) -> Self {
        Self::other(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed on {path}; the Allow header lists what is"),
        )
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
        Self::other(StatusCode::GONE, "gone", message)
    }
}

impl From<FanoutError> for ApiError {
    fn from(e: FanoutError) -> Self {
        match e {
            FanoutError::Gone { .. } => Self::gone(e.to_string()),
            FanoutError::KeyReused { .. } => {
                Self::conflict("idempotency_key_reused", e.to_string())
            }
            FanoutError::KeyUnknown => Self::conflict("idempotency_key_unknown", e.to_string()),
            _ => Self::new(e.code(), e.to_string()),
        }
    }
}

impl From<crate::opening::OpenError> for ApiError {
    fn from(e: crate::opening::OpenError) -> Self {
        match e {
            crate::opening::OpenError::Invalid(m) => Self::new(ErrorCode::BadRequest, m),
            crate::opening::OpenError::Store(e) => e.into(),
        }
    }
}

/// `response` itself, or, when it is an error without a JSON body (axum's rejections
/// answer in plain text, some with none), the same status and headers with the API's
/// error body, its message the text it had.
pub async fn json_error(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let mut answer = ApiError::other(status, code_of(status), message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().append(name, value.clone());
        }
    }
    answer
}

/// The code of an error known only by its status.
fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, message = %self.message, "API error");
        }
        let mut error = serde_json::json!({"code": self.code, "message": self.message});
        if let Some(ms) = self.extra.as_ref().and_then(|e| e.retry_after_ms) {
            error["retry_after_ms"] = ms.into();
        }
        let mut response =
            (self.status, Json(serde_json::json!({ "error": error }))).into_response();
        if let Some(extra) = self.extra {
            let (name, value) = extra.header;
            response.headers_mut().insert(name, value);
        }
        response
    }
}
