//! Who is connecting: viewer tokens (JWT) at the WebSocket handshake, API keys for the
//! HTTP API, and the Origin allow-list.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{AuthConfig, JwtKey};

/// A viewer's role, from the token's `role` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads, comments, likes, votes.
    Viewer,
    /// A viewer who may also retract comments.
    Moderator,
    /// The streamer.
    Host,
}

/// The identity a connection acts as.
#[derive(Debug, Clone)]
pub struct Identity {
    /// User id (`sub`, or `anon-…`).
    pub user: Arc<str>,
    /// Display name (`name`, or the user id).
    pub name: Arc<str>,
    /// Role.
    pub role: Role,
    /// Rooms the token allows; `None` allows any.
    pub rooms: Option<Vec<String>>,
    /// Anonymous viewers may join and read only.
    pub read_only: bool,
}

impl Identity {
    /// Whether this identity may join `room`.
    pub fn may_join(&self, room: &str) -> bool {
        self.rooms
            .as_ref()
            .is_none_or(|r| r.iter().any(|x| x == room))
    }
}

/// The claims of a viewer token.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `viewer` (default), `moderator` or `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Allow-list of room ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
}

/// Why a handshake or API call was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No token and anonymous access is off.
    #[error("missing token")]
    Missing,
    /// The token is malformed, wrongly signed, expired or uses another algorithm.
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// The `role` claim is not one we know.
    #[error("unknown role `{0}`")]
    Role(String),
}

/// Error building the verifier from configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid JWT key: {0}")]
pub struct KeyError(#[from] jsonwebtoken::errors::Error);

/// Verifies credentials.
pub struct Auth {
    verifier: Option<(DecodingKey, Validation)>,
    anonymous: bool,
    api_keys: Vec<String>,
    origins: Vec<String>,
    next_anon: AtomicU64,
}

impl Auth {
    /// Builds the verifier.
    ///
    /// # Errors
    /// When a PEM key cannot be parsed.
    pub fn new(config: &AuthConfig) -> Result<Self, KeyError> {
        let verifier = match &config.jwt {
            JwtKey::None => None,
            JwtKey::Hs256(s) => Some((DecodingKey::from_secret(s), Algorithm::HS256)),
            JwtKey::Rs256(pem) => Some((DecodingKey::from_rsa_pem(pem)?, Algorithm::RS256)),
            JwtKey::Es256(pem) => Some((DecodingKey::from_ec_pem(pem)?, Algorithm::ES256)),
        };
        let verifier = verifier.map(|(key, alg)| {
            // One algorithm only: no `none`, no switching between HMAC and public keys.
            let mut v = Validation::new(alg);
            v.set_required_spec_claims(&["exp", "sub"]);
            v.leeway = 5;
            (key, v)
        });
        Ok(Self {
            verifier,
            anonymous: config.anonymous,
            api_keys: config.api_keys.clone(),
            origins: config.allowed_origins.clone(),
            next_anon: AtomicU64::new(1),
        })
    }

    /// The identity for a handshake carrying `token` (or none).
    ///
    /// # Errors
    /// [`AuthError`] when the token is missing (and anonymous access is off) or invalid.
    pub fn viewer(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            if !self.anonymous {
                return Err(AuthError::Missing);
            }
            let n = self.next_anon.fetch_add(1, Ordering::Relaxed);
            let user: Arc<str> = Arc::from(format!("anon-{n}"));
            return Ok(Identity {
                name: user.clone(),
                user,
                role: Role::Viewer,
                rooms: None,
                read_only: true,
            });
        };
        let (key, validation) = self.verifier.as_ref().ok_or(AuthError::Missing)?;
        let claims = jsonwebtoken::decode::<Claims>(token, key, validation)?.claims;
        let role = match claims.role.as_deref() {
            None | Some("viewer") => Role::Viewer,
            Some("moderator") => Role::Moderator,
            Some("host") => Role::Host,
            Some(other) => return Err(AuthError::Role(other.to_owned())),
        };
        let user: Arc<str> = Arc::from(claims.sub);
        Ok(Identity {
            name: claims.name.map_or_else(|| user.clone(), Arc::from),
            user,
            role,
            rooms: claims.rooms,
            read_only: false,
        })
    }

    /// Whether an `Authorization` header value carries a configured API key.
    pub fn api_key_ok(&self, authorization: Option<&str>) -> bool {
        let Some(key) = authorization.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        self.api_keys.iter().fold(false, |ok, k| {
            ok | constant_time_eq(k.as_bytes(), key.as_bytes())
        })
    }

    /// Whether an upgrade from `origin` is allowed.
    pub fn origin_ok(&self, origin: Option<&str>) -> bool {
        self.origins.is_empty() || origin.is_some_and(|o| self.origins.iter().any(|a| a == o))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Signs an HS256 token (for the dev token printed at start-up and for tests).
///
/// # Errors
/// When signing fails.
pub fn sign_hs256(secret: &[u8], claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(anonymous: bool) -> Auth {
        Auth::new(&AuthConfig {
            jwt: JwtKey::Hs256(b"secret".to_vec()),
            anonymous,
            api_keys: vec!["k1".into()],
            allowed_origins: vec![],
        })
        .expect("auth")
    }

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "u1".into(),
            exp,
            name: Some("Ann".into()),
            role: None,
            rooms: None,
        }
    }

    fn far() -> u64 {
        danmaku_fanout::now_ms() / 1000 + 3600
    }

    #[test]
    fn valid_token_gives_identity() {
        let t = sign_hs256(b"secret", &claims(far())).expect("sign");
        let id = auth(false).viewer(Some(&t)).expect("valid");
        assert_eq!((&*id.user, &*id.name, id.read_only), ("u1", "Ann", false));
    }

    #[test]
    fn bad_tokens_are_refused() {
        let a = auth(false);
        let forged = sign_hs256(b"other", &claims(far())).expect("sign");
        assert!(a.viewer(Some(&forged)).is_err());
        let expired = sign_hs256(b"secret", &claims(1_000)).expect("sign");
        assert!(a.viewer(Some(&expired)).is_err());
        // alg:none: header {"alg":"none","typ":"JWT"}, same claims, empty signature.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1MSIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert!(a.viewer(Some(none)).is_err());
        assert!(a.viewer(Some("garbage")).is_err());
        assert!(a.viewer(None).is_err());
    }

    #[test]
    fn anonymous_viewers_are_read_only() {
        let id = auth(true).viewer(None).expect("anon");
        assert!(id.read_only);
        assert!(id.user.starts_with("anon-"));
    }

    #[test]
    fn api_keys() {
        let a = auth(false);
        assert!(a.api_key_ok(Some("Bearer k1")));
        assert!(!a.api_key_ok(Some("Bearer k2")));
        assert!(!a.api_key_ok(Some("k1")));
        assert!(!a.api_key_ok(None));
    }
}
