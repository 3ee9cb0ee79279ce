//! A minimal keep-alive HTTP/1.1 client for the gateway's API (JSON, Content-Length).

use std::net::SocketAddr;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One persistent connection to a gateway.
pub struct Http {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    buf: Vec<u8>,
}

impl Http {
    /// A client for `base` (`http://host:port`); connects on first use.
    ///
    /// # Errors
    /// On an unusable base URL.
    pub fn new(base: &str) -> anyhow::Result<Self> {
        use std::net::ToSocketAddrs;
        let hostport = base.strip_prefix("http://").context("http:// base")?;
        let addr = hostport.to_socket_addrs()?.next().context("resolve")?;
        Ok(Self {
            addr,
            conn: None,
            buf: Vec::with_capacity(1024),
        })
    }

    /// Sends one request; returns the status and body. Reconnects once on a stale
    /// connection.
    ///
    /// # Errors
    /// On I/O errors or a malformed response.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        key: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        match self.try_request(method, path, key, body).await {
            Ok(r) => Ok(r),
            Err(_) => {
                self.conn = None;
                self.try_request(method, path, key, body).await
            }
        }
    }

    async fn try_request(
        &mut self,
        method: &str,
        path: &str,
        key: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        if self.conn.is_none() {
            let s = TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connecting to {}", self.addr))?;
            s.set_nodelay(true)?;
            self.conn = Some(BufReader::new(s));
        }
        let conn = self.conn.as_mut().context("connection")?;
        self.buf.clear();
        self.buf.extend_from_slice(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        self.buf.extend_from_slice(body);
        conn.get_mut().write_all(&self.buf).await?;
        let mut line = String::new();
        conn.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("status line")?;
        let mut len = None;
        let mut close = false;
        loop {
            line.clear();
            if conn.read_line(&mut line).await? == 0 {
                bail!("connection closed in headers");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().ok();
            } else if lower.starts_with("connection:") && lower.contains("close") {
                close = true;
            }
        }
        let mut out = vec![0; len.context("no content-length")?];
        conn.read_exact(&mut out).await?;
        if close {
            self.conn = None;
        }
        Ok((status, out))
    }
}
