//! The body of an API request: declared as JSON, no larger than `--max-body-bytes`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use danmaku_protocol::ErrorCode;

use super::error::ApiError;
use crate::state::AppState;

/// A request body read whole, after two checks that need none of it: the
/// `Content-Type` is JSON (or absent), and a declared `Content-Length` is within the
/// limit, so an oversized body is refused with 413 before a byte of it is read. A body
/// without a declared length is read up to the limit and refused there.
pub struct JsonBody(pub Bytes);

impl FromRequest<Arc<AppState>> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        check_content_type(req.headers())?;
        let limit = state.config.max_body_bytes;
        if let Some(declared) = declared_length(req.headers())?
            && declared > limit
        {
            return Err(too_large(limit));
        }
        match Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(Self(bytes)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large(limit)),
            Err(e) => Err(ApiError::new(ErrorCode::BadRequest, e.body_text())),
        }
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::TooLarge,
        format!("request body too large: at most {limit} bytes"),
    )
}

/// `application/json`, with parameters (`; charset=utf-8`) or without; no header at all
/// is taken as JSON too.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("(not text)");
    let essence = text.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type(text))
    }
}

fn declared_length(headers: &HeaderMap) -> Result<Option<usize>, ApiError> {
    let Some(value) = headers.get(header::CONTENT_LENGTH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|n| Some(usize::try_from(n).unwrap_or(usize::MAX)))
        .ok_or_else(|| ApiError::new(ErrorCode::BadRequest, "malformed Content-Length"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(name: header::HeaderName, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn json_in_any_spelling_or_no_type_at_all() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
        ] {
            assert!(
                check_content_type(&with(header::CONTENT_TYPE, ok)).is_ok(),
                "{ok}"
            );
        }
        assert!(check_content_type(&HeaderMap::new()).is_ok());
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonx",
            "",
        ] {
            assert!(
                check_content_type(&with(header::CONTENT_TYPE, bad)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn declared_lengths() {
        assert_eq!(declared_length(&HeaderMap::new()).ok(), Some(None));
        assert_eq!(
            declared_length(&with(header::CONTENT_LENGTH, "10485760")).ok(),
            Some(Some(10_485_760))
        );
        assert!(declared_length(&with(header::CONTENT_LENGTH, "ten")).is_err());
    }
}
