//! Where a gateway is, read from its URL once at the start: the socket address, the
//! HTTP API's base, and TLS when the URL is `wss://` or `https://`.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{Context, bail};

use crate::tls::{Tls, TlsTarget};

/// A gateway's address as the load test dials it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The HTTP API's base (`http://host:port` or `https://host:port`), as messages
    /// name it.
    pub base: String,
    /// The resolved socket address.
    pub addr: SocketAddr,
    /// TLS with its server name, for `wss://` and `https://`.
    pub tls: Option<TlsTarget>,
}

impl Endpoint {
    /// The endpoint of a `ws://`, `wss://`, `http://` or `https://` URL: a WebSocket
    /// URL's HTTP API is on the same host and port, over TLS for `wss://`.
    ///
    /// # Errors
    /// Another scheme, a host that does not resolve, or one that is no TLS server name.
    pub fn parse(url: &str, tls: &Tls) -> anyhow::Result<Self> {
        let secure = match url.split_once("://") {
            Some(("ws" | "http", _)) => false,
            Some(("wss" | "https", _)) => true,
            _ => bail!("{url}: only ws://, wss://, http:// and https:// URLs"),
        };
        let hostport = host_port(url).unwrap_or_default();
        let addr = hostport
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .with_context(|| format!("{url}: cannot resolve {hostport}"))?;
        let tls = if secure {
            Some(tls.target(host(hostport)).with_context(|| url.to_owned())?)
        } else {
            None
        };
        let scheme = if secure { "https" } else { "http" };
        Ok(Self {
            base: format!("{scheme}://{hostport}"),
            addr,
            tls,
        })
    }
}

/// The `host:port` of a URL: what is between `://` and the path or query.
pub fn host_port(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    rest.split(['/', '?']).next()
}

/// The host of `host:port` (an IPv6 address keeps its brackets).
fn host(hostport: &str) -> &str {
    match hostport.rfind(':') {
        Some(i) if !hostport[i..].contains(']') => &hostport[..i],
        _ => hostport,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_urls_get_tls_and_an_https_base() {
        let tls = Tls::new(&[]).expect("public roots");
        let ws = Endpoint::parse("ws://127.0.0.1:8080/ws", &tls).expect("ws");
        assert_eq!(ws.base, "http://127.0.0.1:8080");
        assert!(ws.tls.is_none());
        let wss = Endpoint::parse("wss://127.0.0.1:8443/ws?x=1", &tls).expect("wss");
        assert_eq!(wss.base, "https://127.0.0.1:8443");
        assert_eq!(wss.addr.port(), 8443);
        assert!(wss.tls.is_some());
        let v6 = Endpoint::parse("wss://[::1]:8443/ws", &tls).expect("v6");
        assert!(v6.addr.is_ipv6() && v6.tls.is_some());
        let e = Endpoint::parse("ftp://127.0.0.1:21/", &tls).expect_err("scheme");
        assert!(e.to_string().contains("only ws://"), "{e}");
    }

    #[test]
    fn hosts_lose_their_port_only() {
        assert_eq!(host("gw.example:443"), "gw.example");
        assert_eq!(host("[::1]:443"), "[::1]");
        assert_eq!(host("[::1]"), "[::1]");
    }
}
