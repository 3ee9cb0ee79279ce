//! A minimal keep-alive HTTP/1.1 client for the gateway's API (JSON, Content-Length),
//! over plain TCP or TLS (`https://`).

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::endpoint::Endpoint;
use crate::tls::Stream;

/// One persistent connection to a gateway.
pub struct Http {
    endpoint: Endpoint,
    conn: Option<BufReader<Stream>>,
    buf: Vec<u8>,
}

impl Http {
    /// A client for the API at `endpoint`; connects on first use.
    pub fn new(endpoint: &Endpoint) -> Self {
        Self {
            endpoint: endpoint.clone(),
            conn: None,
            buf: Vec::with_capacity(1024),
        }
    }

    /// A new connection, TLS for an `https://` endpoint.
    async fn connect(&self) -> anyhow::Result<Stream> {
        let addr = self.endpoint.addr;
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)?;
        match &self.endpoint.tls {
            None => Ok(Stream::Plain(tcp)),
            Some(tls) => tls.handshake(tcp).await.map_err(|e| {
                let hint = crate::tls::hint(&e);
                anyhow::Error::new(e).context(format!("TLS handshake with {addr}{hint}"))
            }),
        }
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
            self.conn = Some(BufReader::new(self.connect().await?));
        }
        let conn = self.conn.as_mut().context("connection")?;
        // What a balancer in front routes by.
        let host = crate::endpoint::host_port(&self.endpoint.base).unwrap_or("gw");
        self.buf.clear();
        self.buf.extend_from_slice(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        self.buf.extend_from_slice(body);
        conn.get_mut().write_all(&self.buf).await?;
        conn.get_mut().flush().await?;
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
