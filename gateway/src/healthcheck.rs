//! `--healthcheck`: asks a running gateway whether it is ready, for a container's
//! `HEALTHCHECK` (the image has no curl). One `GET /readyz` over plain HTTP/1.1.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the whole check may take.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// The address to ask: `listen`, with an unspecified address (0.0.0.0, [::]) replaced
/// by loopback of its family.
pub fn target(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// `Ok` with the answer's body when `/readyz` at `addr` answers 200 within
/// [`TIMEOUT`]; otherwise why not.
///
/// # Errors
/// Connection refused, a timeout, another status, an answer that is not HTTP.
pub async fn check(addr: SocketAddr) -> Result<String, String> {
    tokio::time::timeout(TIMEOUT, ask(addr))
        .await
        .map_err(|_| format!("no answer from {addr} within {} s", TIMEOUT.as_secs()))?
}

async fn ask(addr: SocketAddr) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("writing to {addr}: {e}"))?;
    let mut answer = Vec::new();
    // A ready answer is a few dozen bytes; 64 KiB is plenty for any answer.
    (&mut stream)
        .take(64 * 1024)
        .read_to_end(&mut answer)
        .await
        .map_err(|e| format!("reading from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| format!("{addr} did not answer HTTP"))?;
    let body = body.trim().to_owned();
    if status == "200" {
        Ok(body)
    } else {
        Err(format!("/readyz answered {status}: {body}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_asked_on_loopback() {
        let t = |a: &str| target(a.parse().expect("addr")).to_string();
        assert_eq!(t("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(t("[::]:8080"), "[::1]:8080");
        assert_eq!(t("10.1.2.3:80"), "10.1.2.3:80");
    }
}
