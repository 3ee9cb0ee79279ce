//! Checks before a run starts, so that wrong credentials fail at once with a clear
//! message, not after the run as a wall of 401s: the API key (one `GET` of a room
//! the run does not use, on every gateway, for scenarios that use the API) and the
//! viewer token (one WebSocket connect to every gateway, closed again).

use std::fmt;
use std::time::Duration;

use crate::endpoint::Endpoint;
use crate::http::Http;
use crate::plan::Plan;
use crate::viewer;

/// How long the probe connection may take to close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Why a run cannot start.
#[derive(Debug)]
pub enum CredentialError {
    /// The HTTP API answered 401 or 403 to the API key.
    ApiKey {
        /// The gateway's HTTP base URL.
        base: String,
        /// Its status.
        status: u16,
    },
    /// The HTTP API could not be reached.
    Unreachable {
        /// The gateway's HTTP base URL.
        base: String,
        /// What went wrong, with the address.
        cause: anyhow::Error,
    },
    /// The gateway refused the viewer token (or, without `--jwt-secret`, wants one).
    Token {
        /// The gateway's WebSocket URL, without the token.
        url: String,
        /// Whether the load test signed a token.
        signed: bool,
    },
    /// A viewer could not connect.
    Connect {
        /// The gateway's WebSocket URL.
        url: String,
        /// The failure's cause, with the address.
        cause: String,
    },
}

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ApiKey { base, status } => write!(
                f,
                "the gateway at {base} refused the API key (HTTP {status}): give one of its \
                 --api-keys with --api-key or DANMAKU_API_KEY"
            ),
            Self::Unreachable { base, cause } => {
                write!(
                    f,
                    "cannot reach the gateway's HTTP API at {base}: {cause:#}"
                )
            }
            Self::Token { url, signed: true } => write!(
                f,
                "the gateway at {url} refused the viewer token (HTTP 401): --jwt-secret (or \
                 DANMAKU_JWT_SECRET) must be the gateway's --jwt-secret"
            ),
            Self::Token { url, signed: false } => write!(
                f,
                "the gateway at {url} wants viewer tokens (HTTP 401): give its secret with \
                 --jwt-secret or DANMAKU_JWT_SECRET"
            ),
            Self::Connect { url, cause } => {
                write!(f, "cannot open a viewer at {url}: {cause}")?;
                if crate::tls::is_untrusted_cause(cause) {
                    f.write_str(crate::tls::UNTRUSTED_HINT)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for CredentialError {}

/// Checks the API key (when the scenario uses the API) and the viewer token against
/// every gateway.
///
/// # Errors
/// The first check that failed.
pub async fn check(plan: &Plan) -> Result<(), CredentialError> {
    if plan.scenario().uses_api() {
        for base in &plan.http {
            check_api_key(plan, base).await?;
        }
    }
    for g in 0..plan.addrs.len() {
        check_viewer(plan, g).await?;
    }
    Ok(())
}

async fn check_api_key(plan: &Plan, endpoint: &Endpoint) -> Result<(), CredentialError> {
    let base = &endpoint.base;
    let unreachable = |cause| CredentialError::Unreachable {
        base: base.to_owned(),
        cause,
    };
    let mut http = Http::new(endpoint);
    // A room of this run's prefix that no viewer joins.
    let path = format!("/v1/rooms/{}-probe", plan.prefix);
    let key = &plan.cli.common.api_key;
    match http.request("GET", &path, key, b"").await {
        Ok((status @ (401 | 403), _)) => Err(CredentialError::ApiKey {
            base: base.to_owned(),
            status,
        }),
        // Anything else is not about the key; the run reports it if it matters.
        Ok(_) => Ok(()),
        Err(cause) => Err(unreachable(cause)),
    }
}

/// One viewer connect to gateway `g`, as viewer 0 would make it, closed again.
async fn check_viewer(plan: &Plan, g: usize) -> Result<(), CredentialError> {
    // Viewer 0's `g`th connection goes to gateway `g`.
    let dial = plan.dial(0, g);
    let url = plan.cli.common.urls[g].clone();
    match viewer::open(&dial).await {
        Ok(ws) => {
            // Waits for the gateway to close, so the probe no longer counts against
            // its connection limits when the run starts.
            let _ = ws.close(CLOSE_WAIT).await;
            Ok(())
        }
        Err(cause) if cause == "http_401" => Err(CredentialError::Token {
            url,
            signed: plan.cli.common.jwt_secret.is_some(),
        }),
        Err(cause) if cause.starts_with("connect_") => Err(CredentialError::Connect { url, cause }),
        // Refusals that are not about credentials (a full gateway: 503, 429) are
        // the run's to count.
        Err(_) => Ok(()),
    }
}
