//! Who is connecting: viewer tokens (JWT) at the WebSocket handshake, API keys for the
//! HTTP API, and the Origin allow-list.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use danmaku_protocol::audience::{self, Viewer};
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
    /// When the token expires, Unix seconds (`exp`); `None` for anonymous viewers. The
    /// connection is closed with 4001 then, and the client reconnects with a fresh one.
    pub expires_at: Option<u64>,
    /// The user id and `tags` claim, as targeting matches them.
    pub viewer: Arc<Viewer>,
    /// The `level` claim (0 when absent).
    pub level: i64,
    /// The `cohort` claim.
    pub cohort: Option<Arc<str>>,
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
#[derive(Debug, Default, Serialize, Deserialize)]
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
    /// Tags targeting matches (at most 32 of `[a-z0-9_.:-]{1,32}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// The viewer's level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<i64>,
    /// The viewer's cohort (an experiment's variant, when it names one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<String>,
}

/// Why a viewer's handshake was refused. The messages are for people: they reach the
/// client in the 401's body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token and anonymous access is off.
    #[error("missing token")]
    Missing,
    /// Longer than any token this gateway issues would be.
    #[error("token too large: at most {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    /// A token, but no key to verify it with (a gateway built without one).
    #[error("tokens are not accepted: no JWT key is configured")]
    NoKey,
    /// Not three base64url parts, or a header or claims that are not JSON.
    #[error("token malformed")]
    Malformed,
    /// The header or the claims are JSON but not what a token holds (`exp` not a
    /// number, an unknown `alg`, …).
    #[error("token malformed: {0}")]
    Fields(String),
    /// A required claim (`sub`, `exp`) is missing.
    #[error("token lacks the `{0}` claim")]
    MissingClaim(String),
    /// The signature does not match the key.
    #[error("token signature is invalid")]
    BadSignature,
    /// Signed with another algorithm than the one configured.
    #[error("token is not signed with {0:?}, the algorithm this gateway accepts")]
    WrongAlgorithm(Algorithm),
    /// `exp` is past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not valid yet (nbf)")]
    NotYetValid,
    /// An `aud`, `iss` or `sub` the gateway does not accept.
    #[error("token's {0} claim is not accepted")]
    Rejected(&'static str),
    /// The `role` claim is not one we know.
    #[error("unknown role `{0}`")]
    Role(String),
    /// The `tags` claim holds more than 32 tags or one that is not `[a-z0-9_.:-]{1,32}`.
    #[error("the tags claim must hold at most 32 tags matching [a-z0-9_.:-]{{1,32}}")]
    Tags,
    /// The `cohort` claim is longer than 64 bytes.
    #[error("the cohort claim must be at most 64 bytes")]
    Cohort,
    /// Anything else the JWT library refused.
    #[error("token refused: {0}")]
    Other(jsonwebtoken::errors::Error),
}

impl AuthError {
    fn from_jwt(e: jsonwebtoken::errors::Error, algorithm: Algorithm) -> Self {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::InvalidToken | K::Base64(_) | K::Utf8(_) => Self::Malformed,
            K::Json(e) => match missing_field(&e.to_string()) {
                Some(claim) => Self::MissingClaim(claim),
                None => Self::Fields(e.to_string()),
            },
            K::InvalidClaimFormat(claim) => Self::Fields(format!("`{claim}` has the wrong type")),
            K::MissingRequiredClaim(claim) => Self::MissingClaim(claim.clone()),
            K::InvalidSignature => Self::BadSignature,
            K::InvalidAlgorithm | K::InvalidAlgorithmName => Self::WrongAlgorithm(algorithm),
            K::ExpiredSignature => Self::Expired,
            K::ImmatureSignature => Self::NotYetValid,
            K::InvalidAudience => Self::Rejected("aud"),
            K::InvalidIssuer => Self::Rejected("iss"),
            K::InvalidSubject => Self::Rejected("sub"),
            _ => Self::Other(e),
        }
    }
}

/// The claim serde found missing, from its message ``missing field `exp` at …``.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split_once('`').map(|(name, _)| name.to_owned())
}

/// Why an HTTP API call's credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    /// No `Authorization` header (or not text).
    #[error("missing API key: send Authorization: Bearer <key>")]
    Missing,
    /// Another scheme than `Bearer`, or no key after it.
    #[error("the Authorization header must be Bearer <key>")]
    NotBearer,
    /// A key that is not configured.
    #[error("unknown API key")]
    Unknown,
}

/// The credentials of an `Authorization: Bearer <token>` header value. The scheme is
/// case-insensitive (RFC 7235 §2.1) and may be followed by several spaces; the token is
/// a single word.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

/// The longest token accepted; a longer one is refused before it is decoded.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Error building the verifier from configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid JWT key: {0}")]
pub struct KeyError(#[from] jsonwebtoken::errors::Error);

/// Verifies credentials.
pub struct Auth {
    verifier: Option<(DecodingKey, Validation, Algorithm)>,
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
            let mut required = vec!["exp", "sub"];
            v.validate_nbf = true;
            if let Some(aud) = &config.audience {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            if let Some(iss) = &config.issuer {
                v.set_issuer(&[iss]);
                required.push("iss");
            }
            v.set_required_spec_claims(&required);
            v.leeway = 5;
            (key, v, alg)
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
                viewer: Arc::new(Viewer::new(user.clone(), Vec::new())),
                level: 0,
                cohort: None,
                user,
                role: Role::Viewer,
                rooms: None,
                read_only: true,
                expires_at: None,
            });
        };
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        let (key, validation, alg) = self.verifier.as_ref().ok_or(AuthError::NoKey)?;
        let claims = jsonwebtoken::decode::<Claims>(token, key, validation)
            .map_err(|e| AuthError::from_jwt(e, *alg))?
            .claims;
        let role = match claims.role.as_deref() {
            None | Some("viewer") => Role::Viewer,
            Some("moderator") => Role::Moderator,
            Some("host") => Role::Host,
            Some(other) => return Err(AuthError::Role(other.to_owned())),
        };
        let mut tags = claims.tags.unwrap_or_default();
        if tags.len() > audience::MAX_TAGS || !tags.iter().all(|t| audience::valid_tag(t)) {
            return Err(AuthError::Tags);
        }
        if role == Role::Host {
            // The room's hosts as an audience (co-host requests): no token nor backend
            // can name this tag, which is not a valid one.
            tags.push(audience::HOSTS.to_owned());
        }
        if role != Role::Viewer {
            // Hosts and moderators: the audience of the room's moderation as it happens.
            tags.push(audience::STAFF.to_owned());
        }
        if claims.cohort.as_ref().is_some_and(|c| c.len() > 64) {
            return Err(AuthError::Cohort);
        }
        let user: Arc<str> = Arc::from(claims.sub);
        Ok(Identity {
            name: claims.name.map_or_else(|| user.clone(), Arc::from),
            viewer: Arc::new(Viewer::new(user.clone(), tags)),
            level: claims.level.unwrap_or(0),
            cohort: claims.cohort.map(Arc::from),
            user,
            role,
            rooms: claims.rooms,
            read_only: false,
            expires_at: Some(claims.exp),
        })
    }

    /// Checks that an `Authorization` header value carries a configured API key, and
    /// says which (its index in the configured list, for its quota).
    ///
    /// # Errors
    /// [`ApiKeyError`] saying what is wrong with it.
    pub fn api_key(&self, authorization: Option<&str>) -> Result<usize, ApiKeyError> {
        let header = authorization.ok_or(ApiKeyError::Missing)?;
        let key = bearer_token(header).ok_or(ApiKeyError::NotBearer)?;
        // Every key is compared, so the time taken does not tell which one nearly matched.
        let known = self
            .api_keys
            .iter()
            .enumerate()
            .fold(None, |found, (i, k)| {
                let same = constant_time_eq(k.as_bytes(), key.as_bytes());
                found.or(same.then_some(i))
            });
        known.ok_or(ApiKeyError::Unknown)
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
            api_keys: vec!["k1".into(), "k2".into()],
            ..AuthConfig::default()
        })
        .expect("auth")
    }

    /// An HS256 token of any claims, signed with `secret`.
    fn forge(claims: &serde_json::Value, secret: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret),
        )
        .expect("sign")
    }

    /// `token` with its header replaced by `header`.
    fn with_header(token: &str, header: &serde_json::Value) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header.to_string());
        let rest = token.split_once('.').map_or("", |(_, rest)| rest);
        format!("{b64}.{rest}")
    }

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "u1".into(),
            exp,
            name: Some("Ann".into()),
            role: None,
            rooms: None,
            ..Claims::default()
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

    fn refusal(a: &Auth, token: &str) -> String {
        match a.viewer(Some(token)) {
            Ok(id) => panic!("{token} let in {id:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_tokens_are_refused_in_words() {
        let a = auth(false);
        let forged = sign_hs256(b"other", &claims(far())).expect("sign");
        assert_eq!(refusal(&a, &forged), "token signature is invalid");
        let expired = sign_hs256(b"secret", &claims(1_000)).expect("sign");
        assert_eq!(refusal(&a, &expired), "token expired");
        // alg:none: header {"alg":"none","typ":"JWT"}, same claims, empty signature.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1MSIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert!(refusal(&a, none).starts_with("token malformed: unknown variant `none`"));
        // alg:HS384 with the right secret: the algorithm is pinned.
        let hs384 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &claims(far()),
            &EncodingKey::from_secret(b"secret"),
        )
        .expect("sign");
        assert_eq!(
            refusal(&a, &hs384),
            "token is not signed with HS256, the algorithm this gateway accepts"
        );
        assert_eq!(refusal(&a, "garbage"), "token malformed");
        assert_eq!(refusal(&a, "a.b.c"), "token malformed");
        assert!(matches!(a.viewer(None), Err(AuthError::Missing)));
    }

    #[test]
    fn alg_none_is_refused_in_any_casing() {
        let a = auth(false);
        let good = forge(&serde_json::json!({"sub": "u1", "exp": far()}), b"secret");
        for alg in ["none", "None", "NONE", "nOnE"] {
            let signed = with_header(&good, &serde_json::json!({"alg": alg, "typ": "JWT"}));
            let unsigned = format!("{}.", &signed[..signed.rfind('.').expect("dot")]);
            for token in [signed, unsigned] {
                let why = refusal(&a, &token);
                assert!(why.starts_with("token malformed"), "{alg}: {why}");
            }
        }
    }

    #[test]
    fn hs256_signed_with_the_rs256_public_key_is_refused() {
        let pem = include_bytes!("../tests/data/rsa-public.pem");
        let a = Auth::new(&AuthConfig {
            jwt: JwtKey::Rs256(pem.to_vec()),
            ..AuthConfig::default()
        })
        .expect("auth");
        // The classic confusion: the public key (known to anyone) as an HMAC secret.
        let token = forge(&serde_json::json!({"sub": "u1", "exp": far()}), pem);
        assert_eq!(
            refusal(&a, &token),
            "token is not signed with RS256, the algorithm this gateway accepts"
        );
    }

    #[test]
    fn time_claims_are_checked() {
        let a = auth(false);
        let now = danmaku_fanout::now_ms() / 1000;
        let exp = now + 3600;
        let no_exp = forge(&serde_json::json!({"sub": "u1"}), b"secret");
        assert_eq!(refusal(&a, &no_exp), "token lacks the `exp` claim");
        let no_sub = forge(&serde_json::json!({"exp": far()}), b"secret");
        assert_eq!(refusal(&a, &no_sub), "token lacks the `sub` claim");
        let later = forge(
            &serde_json::json!({"sub": "u1", "exp": far(), "nbf": now + 60}),
            b"secret",
        );
        assert_eq!(refusal(&a, &later), "token not valid yet (nbf)");
        let started = forge(
            &serde_json::json!({"sub": "u1", "exp": exp, "nbf": now - 60}),
            b"secret",
        );
        let id = a.viewer(Some(&started)).expect("nbf in the past is fine");
        assert_eq!(id.expires_at, Some(exp));
    }

    #[test]
    fn audience_and_issuer_when_configured() {
        let a = Auth::new(&AuthConfig {
            jwt: JwtKey::Hs256(b"secret".to_vec()),
            audience: Some("shop".into()),
            issuer: Some("https://id.example".into()),
            ..AuthConfig::default()
        })
        .expect("auth");
        let token = |aud: Option<&str>, iss: Option<&str>| {
            let mut c = serde_json::json!({"sub": "u1", "exp": far()});
            if let Some(aud) = aud {
                c["aud"] = aud.into();
            }
            if let Some(iss) = iss {
                c["iss"] = iss.into();
            }
            forge(&c, b"secret")
        };
        assert!(
            a.viewer(Some(&token(Some("shop"), Some("https://id.example"))))
                .is_ok()
        );
        assert_eq!(
            refusal(&a, &token(Some("other"), Some("https://id.example"))),
            "token's aud claim is not accepted"
        );
        assert_eq!(
            refusal(&a, &token(Some("shop"), Some("https://evil.example"))),
            "token's iss claim is not accepted"
        );
        assert_eq!(
            refusal(&a, &token(None, Some("https://id.example"))),
            "token lacks the `aud` claim"
        );
        assert_eq!(
            refusal(&a, &token(Some("shop"), None)),
            "token lacks the `iss` claim"
        );
        // Without a configured audience, a token meant for someone else is refused.
        assert_eq!(
            refusal(&auth(false), &token(Some("shop"), None)),
            "token's aud claim is not accepted"
        );
    }

    #[test]
    fn huge_tokens_and_wrong_segment_counts_are_refused() {
        let a = auth(false);
        let huge = format!(
            "{}.{}.{}",
            "a".repeat(32 * 1024),
            "b".repeat(32 * 1024),
            "c"
        );
        assert_eq!(refusal(&a, &huge), "token too large: at most 8192 bytes");
        let good = sign_hs256(b"secret", &claims(far())).expect("sign");
        let parts: Vec<&str> = good.split('.').collect();
        for token in [
            parts[..2].join("."),
            format!("{good}.{}", parts[2]),
            parts[0].to_string(),
            format!("{}..{}", parts[0], parts[2]),
        ] {
            let why = refusal(&a, &token);
            assert!(
                why.starts_with("token malformed") || why == "token signature is invalid",
                "{token}: {why}"
            );
        }
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
        assert_eq!(a.api_key(Some("Bearer k1")), Ok(0));
        assert_eq!(a.api_key(Some("Bearer k2")), Ok(1), "which key it was");
        assert_eq!(
            a.api_key(Some("bearer k1")),
            Ok(0),
            "the scheme is case-insensitive"
        );
        assert_eq!(a.api_key(Some("BEARER  k1")), Ok(0));
        assert_eq!(a.api_key(Some("Bearer k3")), Err(ApiKeyError::Unknown));
        assert_eq!(a.api_key(Some("k1")), Err(ApiKeyError::NotBearer));
        assert_eq!(a.api_key(Some("Basic k1")), Err(ApiKeyError::NotBearer));
        assert_eq!(a.api_key(Some("Bearer ")), Err(ApiKeyError::NotBearer));
        assert_eq!(a.api_key(None), Err(ApiKeyError::Missing));
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bEaReR abc"), Some("abc"));
        assert_eq!(bearer_token("Bearerabc"), None);
        assert_eq!(bearer_token("Bearer a b"), None);
        assert_eq!(bearer_token("Token abc"), None);
    }
}
