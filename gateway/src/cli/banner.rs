//! What start-up prints: where the gateway listens and, in dev mode, this run's
//! credentials as a line to paste into a shell, with the commands that use them.

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::DevMode;
use crate::auth::{Claims, sign_hs256};
use crate::config::Config;

/// How long the printed dev token is valid.
const DEV_TOKEN_TTL_S: u64 = 24 * 3600;

impl DevMode {
    /// The start-up banner. Its first line ends with the address (tests and scripts
    /// read it there); in dev mode it continues with `export TOKEN=… KEY=…` (values
    /// that need no quoting) and a ready command for each.
    ///
    /// # Errors
    /// When the dev token cannot be signed.
    pub fn banner(
        &self,
        addr: SocketAddr,
        config: &Config,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let mut out = format!(
            "danmaku-gateway {} listening on {addr}\n",
            config.gateway_id
        );
        let mut exports = Vec::new();
        let mut dev_token = None;
        if let Some(secret) = &self.jwt_secret {
            let claims = Claims {
                sub: "dev-user".into(),
                exp: danmaku_fanout::now_ms() / 1000 + DEV_TOKEN_TTL_S,
                name: Some("Dev".into()),
                role: None,
                rooms: None,
                ..Claims::default()
            };
            let token = sign_hs256(secret.as_bytes(), &claims)?;
            exports.push(format!("TOKEN={token}"));
            dev_token = Some(token);
        }
        if let Some(key) = &self.api_key {
            exports.push(format!("KEY={key}"));
        }
        // Writing to a String cannot fail.
        if !exports.is_empty() {
            let missing = match (&self.jwt_secret, &self.api_key) {
                (Some(_), Some(_)) => "neither --jwt-secret nor --api-keys",
                (Some(_), None) => "no --jwt-secret",
                _ => "no --api-keys",
            };
            let _ = write!(
                out,
                "dev mode, {missing} given: this run's credentials, to paste into a shell:\n\n\
                 export {}\n\n",
                exports.join(" ")
            );
        }
        if self.jwt_secret.is_some() {
            let _ = writeln!(
                out,
                "  viewer:    python3 -m websockets \"ws://{addr}/ws?token=$TOKEN\""
            );
        }
        if config.auth.anonymous {
            let _ = writeln!(
                out,
                "  anonymous: python3 -m websockets ws://{addr}/ws   (read-only)"
            );
        }
        if self.api_key.is_some() {
            let _ = writeln!(
                out,
                "  publish:   curl -H \"Authorization: Bearer $KEY\" -H 'Content-Type: application/json' -d '{{\"kind\":\"comment\",\"data\":{{\"text\":\"hi\"}}}}' http://{addr}/v1/rooms/demo/events"
            );
        }
        if let Some(token) = &dev_token {
            let _ = writeln!(
                out,
                "  demo room: http://{addr}{}?room=demo&token={token}",
                crate::demo::PATH
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }

    #[test]
    fn dev_mode_prints_one_export_line_with_both() {
        let dev = DevMode {
            jwt_secret: Some("s".repeat(32)),
            api_key: Some("dev-k".into()),
        };
        let mut config = Config::default();
        config.auth.anonymous = true;
        let banner = dev.banner(addr(), &config).expect("banner");
        let first = banner.lines().next().unwrap_or_default();
        assert_eq!(first, "danmaku-gateway g1 listening on 127.0.0.1:8080");
        let export: Vec<_> = banner
            .lines()
            .filter(|l| l.starts_with("export "))
            .collect();
        assert_eq!(export.len(), 1, "{banner}");
        assert!(export[0].starts_with("export TOKEN=ey") && export[0].ends_with(" KEY=dev-k"));
        assert!(banner.contains("python3 -m websockets \"ws://127.0.0.1:8080/ws?token=$TOKEN\""));
        assert!(banner.contains("Bearer $KEY"));
        let token = export[0]
            .trim_start_matches("export TOKEN=")
            .trim_end_matches(" KEY=dev-k");
        assert!(
            banner.contains(&format!(
                "  demo room: http://127.0.0.1:8080/demo?room=demo&token={token}\n"
            )),
            "{banner}"
        );
    }

    #[test]
    fn with_credentials_only_the_address() {
        let banner = DevMode::default()
            .banner(addr(), &Config::default())
            .expect("banner");
        assert_eq!(banner, "danmaku-gateway g1 listening on 127.0.0.1:8080\n");
        let dev = DevMode {
            jwt_secret: None,
            api_key: Some("dev-k".into()),
        };
        let banner = dev.banner(addr(), &Config::default()).expect("banner");
        assert!(banner.contains("\nexport KEY=dev-k\n"), "{banner}");
        assert!(!banner.contains("TOKEN"), "{banner}");
    }
}
