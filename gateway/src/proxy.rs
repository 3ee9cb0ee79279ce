//! The client's address behind proxies: only proxies listed in `--trusted-proxies`
//! may tell it, by `X-Forwarded-For` or by the PROXY protocol (`--proxy-protocol`).
//! The per-IP connection limit and the logs use the address found here.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::http::header::HeaderValue;
use ipnet::IpNet;
use ppp::{HeaderResult, PartialResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Most networks `--trusted-proxies` may list.
pub const MAX_TRUSTED: usize = 256;
/// Most `X-Forwarded-For` hops looked at, from the right; a longer chain is cut there
/// (the request head's own limit bounds it anyway).
pub const MAX_HOPS: usize = 32;
/// Longest PROXY header read: version 1 is at most 107 bytes; version 2 headers with
/// TLVs longer than this are refused (the protocol's recommended buffer).
pub const MAX_PROXY_HEADER: usize = 536;
/// Longest version 1 header, its CRLF included.
const V1_MAX: usize = 107;

/// The networks whose proxies are believed about the client's address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

/// A `--trusted-proxies` entry that is neither an address nor a network.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// Not an address or a CIDR network.
    #[error("`{0}` is not an IP address or a CIDR network (10.0.0.0/8, 2001:db8::/32)")]
    Entry(String),
    /// More than [`MAX_TRUSTED`] entries.
    #[error("at most {MAX_TRUSTED} networks")]
    TooMany,
}

impl TrustedProxies {
    /// The networks of `entries`: CIDR networks or single addresses.
    ///
    /// # Errors
    /// The first entry that is neither, or more than [`MAX_TRUSTED`].
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, ParseError> {
        if entries.len() > MAX_TRUSTED {
            return Err(ParseError::TooMany);
        }
        let nets = entries
            .iter()
            .map(|e| {
                let e = e.as_ref().trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| ParseError::Entry(e.to_owned()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { nets })
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// The networks, as `--trusted-proxies` takes them.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// Whether `ip` is in a trusted network.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client of a request that came from `peer` with these `X-Forwarded-For`
    /// header lines: `peer` itself unless it is trusted; otherwise, walking the hops
    /// from the right (the nearest proxy's entry last), the first that is not trusted.
    /// An entry that is not an address stops the walk at the hop that passed it on,
    /// and a chain of trusted hops only gives its leftmost.
    pub fn client<'a>(
        &self,
        peer: IpAddr,
        forwarded: impl DoubleEndedIterator<Item = &'a HeaderValue>,
    ) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        let hops = forwarded
            .rev()
            .flat_map(|line| line.as_bytes().rsplit(|&b| b == b','))
            .take(MAX_HOPS);
        for hop in hops {
            let Some(ip) = hop_address(hop) else {
                return client;
            };
            client = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, or an address with a port
/// (`192.0.2.1:443`, `[2001:db8::1]:443`), with spaces around.
fn hop_address(hop: &[u8]) -> Option<IpAddr> {
    let hop = std::str::from_utf8(hop).ok()?.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// Why a connection's PROXY header was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The connection closed, failed or sent nothing in time.
    #[error("no PROXY header: {0}")]
    Io(#[from] std::io::Error),
    /// Nothing in time.
    #[error("no PROXY header within the handshake timeout")]
    Timeout,
    /// Not a PROXY header, or a malformed one.
    #[error("not a PROXY protocol header: {0}")]
    Invalid(String),
    /// Longer than [`MAX_PROXY_HEADER`].
    #[error("PROXY header longer than {MAX_PROXY_HEADER} bytes")]
    TooLong,
}

/// Takes the PROXY protocol header (version 1 or 2) off the front of `stream`, leaving
/// what follows it in the socket, and returns the client's address: the header's
/// source, or `peer` for a `LOCAL` or `UNKNOWN` header (a proxy's own health check).
///
/// # Errors
/// Nothing within `timeout`, a malformed header or one longer than
/// [`MAX_PROXY_HEADER`].
pub async fn read_proxy_header(
    stream: &mut TcpStream,
    peer: SocketAddr,
    timeout: Duration,
) -> Result<SocketAddr, ProxyHeaderError> {
    tokio::time::timeout(timeout, take_header(stream, peer))
        .await
        .map_err(|_| ProxyHeaderError::Timeout)?
}

async fn take_header(
    stream: &mut TcpStream,
    peer: SocketAddr,
) -> Result<SocketAddr, ProxyHeaderError> {
    // Bytes of the header already taken off the socket. While the header is
    // incomplete every byte seen belongs to it, so taking them is safe; once it is
    // complete, exactly the rest of it is taken.
    let mut taken: Vec<u8> = Vec::with_capacity(MAX_PROXY_HEADER);
    let mut seen = [0u8; MAX_PROXY_HEADER];
    loop {
        let n = stream
            .peek(&mut seen[..MAX_PROXY_HEADER - taken.len()])
            .await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        let at = taken.len();
        taken.extend_from_slice(&seen[..n]);
        match parse(&taken, peer) {
            Parsed::Complete { len, client } => {
                // `len - at` of the `n` bytes peeked are the header's.
                let rest = len
                    .checked_sub(at)
                    .ok_or_else(|| ProxyHeaderError::Invalid("header ends early".into()))?;
                stream.read_exact(&mut seen[..rest]).await?;
                return Ok(client);
            }
            Parsed::Invalid(why) => return Err(ProxyHeaderError::Invalid(why)),
            Parsed::Incomplete if taken.len() >= MAX_PROXY_HEADER => {
                return Err(ProxyHeaderError::TooLong);
            }
            Parsed::Incomplete => {
                stream.read_exact(&mut seen[..n]).await?;
            }
        }
    }
}

/// What the front of a connection says.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// A whole header of `len` bytes, from `client`.
    Complete { len: usize, client: SocketAddr },
    /// More bytes are needed.
    Incomplete,
    /// Not a PROXY header.
    Invalid(String),
}

fn parse(bytes: &[u8], peer: SocketAddr) -> Parsed {
    let header = HeaderResult::parse(bytes);
    if header.is_incomplete() {
        // A version 1 line ends within 107 bytes; the parser waits for fields that
        // cannot come once it has.
        if bytes.starts_with(b"PROXY") {
            let line = &bytes[..bytes.len().min(V1_MAX)];
            if line.windows(2).any(|w| w == b"\r\n") || bytes.len() >= V1_MAX {
                return Parsed::Invalid("malformed version 1 header".into());
            }
        }
        return Parsed::Incomplete;
    }
    match header {
        HeaderResult::V1(Ok(h)) => {
            let client = match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => SocketAddr::from((a.source_address, a.source_port)),
                ppp::v1::Addresses::Tcp6(a) => SocketAddr::from((a.source_address, a.source_port)),
                ppp::v1::Addresses::Unknown => peer,
            };
            Parsed::Complete {
                len: h.header.len(),
                client,
            }
        }
        HeaderResult::V2(Ok(h)) => {
            let client = match (h.command, h.addresses) {
                (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv4(a)) => {
                    SocketAddr::from((a.source_address, a.source_port))
                }
                (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv6(a)) => {
                    SocketAddr::from((a.source_address, a.source_port))
                }
                _ => peer,
            };
            Parsed::Complete {
                len: h.len(),
                client,
            }
        }
        HeaderResult::V1(Err(e)) => Parsed::Invalid(e.to_string()),
        HeaderResult::V2(Err(e)) => Parsed::Invalid(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(nets).expect("networks")
    }

    fn xff(lines: &[&str]) -> Vec<HeaderValue> {
        lines
            .iter()
            .map(|l| HeaderValue::from_str(l).expect("a header value"))
            .collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn entries_are_networks_or_addresses() {
        let t = trusted(&["10.0.0.0/8", "192.0.2.7", " 2001:db8::/32 ", "10.1.2.3/8"]);
        assert!(t.trusts(ip("10.200.0.1")));
        assert!(t.trusts(ip("192.0.2.7")));
        assert!(!t.trusts(ip("192.0.2.8")));
        assert!(t.trusts(ip("2001:db8::42")));
        assert!(
            t.trusts(ip("::ffff:10.0.0.1")),
            "a v4-mapped address is its v4 one"
        );
        for bad in ["", "10.0.0.0/33", "example.com", "10.0.0.1:80"] {
            assert_eq!(
                TrustedProxies::parse(&[bad]),
                Err(ParseError::Entry(bad.trim().to_owned()))
            );
        }
        let many = vec!["10.0.0.1"; MAX_TRUSTED + 1];
        assert_eq!(TrustedProxies::parse(&many), Err(ParseError::TooMany));
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let t = trusted(&["10.0.0.0/8"]);
        let h = xff(&["198.51.100.9"]);
        assert_eq!(t.client(ip("203.0.113.5"), h.iter()), ip("203.0.113.5"));
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.1"), h.iter()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_first_untrusted_hop_from_the_right_is_the_client() {
        let t = trusted(&["10.0.0.0/8"]);
        // The client forged a first entry; the balancer appended the real one.
        let h = xff(&["1.2.3.4, 198.51.100.9", "10.0.0.2"]);
        assert_eq!(t.client(ip("10.0.0.1"), h.iter()), ip("198.51.100.9"));
        // No header: the proxy itself.
        assert_eq!(t.client(ip("10.0.0.1"), [].iter()), ip("10.0.0.1"));
        // Only trusted hops: the leftmost.
        let h = xff(&["10.9.9.9,10.0.0.2"]);
        assert_eq!(t.client(ip("10.0.0.1"), h.iter()), ip("10.9.9.9"));
        // Ports and spaces, IPv6 in brackets.
        let h = xff(&[" [2001:db8::5]:1234 , 10.0.0.2:80"]);
        assert_eq!(t.client(ip("10.0.0.1"), h.iter()), ip("2001:db8::5"));
        // Garbage stops the walk at the hop that passed it on.
        let h = xff(&["198.51.100.9, unknown, 10.0.0.3"]);
        assert_eq!(t.client(ip("10.0.0.1"), h.iter()), ip("10.0.0.3"));
    }

    proptest! {
        /// Whatever a client puts in front of the balancer's entry, the client is the
        /// address the trusted balancer appended.
        #[test]
        fn forged_prefixes_never_win(forged in proptest::collection::vec("[0-9a-z.:, \\[\\]]{0,20}", 0..5),
                                     real in any::<[u8; 4]>()) {
            let real = IpAddr::from(real);
            prop_assume!(!trusted(&["10.0.0.0/8"]).trusts(real));
            let line = forged.iter().map(String::as_str).chain([real.to_string().as_str()]).collect::<Vec<_>>().join(",");
            let Ok(h) = HeaderValue::from_str(&line) else { return Ok(()); };
            let t = trusted(&["10.0.0.0/8"]);
            prop_assert_eq!(t.client(ip("10.0.0.1"), std::iter::once(&h)), real);
        }

        /// The parser takes any bytes without panicking, and a complete header is never
        /// longer than what it was given.
        #[test]
        fn any_front_parses_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Parsed::Complete { len, .. } = parse(&bytes, "127.0.0.1:1".parse().expect("an address")) {
                prop_assert!(len <= bytes.len());
            }
        }
    }

    #[test]
    fn version_1_and_2_headers() {
        let peer: SocketAddr = "10.0.0.1:5000".parse().expect("an address");
        let header = b"PROXY TCP4 198.51.100.9 10.0.0.1 40000 8080\r\n";
        let v1 = [&header[..], b"GET / HTTP/1.1\r\n"].concat();
        assert_eq!(
            parse(&v1, peer),
            Parsed::Complete {
                len: header.len(),
                client: "198.51.100.9:40000".parse().expect("an address")
            }
        );
        assert_eq!(parse(&v1[..20], peer), Parsed::Incomplete);
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n", peer),
            Parsed::Complete {
                len: 15,
                client: peer
            }
        );
        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"PROXY TCP4 nonsense\r\n",
            b"PROXY TCP4 1.2.3.4\r\n",
            &[b'P', b'R', b'O', b'X', b'Y', b' '].repeat(20),
        ] {
            assert!(matches!(parse(bad, peer), Parsed::Invalid(_)), "{bad:?}");
        }
        let v2 = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (
                "[2001:db8::5]:443"
                    .parse::<SocketAddr>()
                    .expect("an address"),
                "[2001:db8::1]:8080"
                    .parse::<SocketAddr>()
                    .expect("an address"),
            ),
        )
        .build()
        .expect("a header");
        let mut bytes = v2.clone();
        bytes.extend_from_slice(b"GET");
        assert_eq!(
            parse(&bytes, peer),
            Parsed::Complete {
                len: v2.len(),
                client: "[2001:db8::5]:443".parse().expect("an address")
            }
        );
        assert_eq!(parse(&v2[..10], peer), Parsed::Incomplete);
    }
}
