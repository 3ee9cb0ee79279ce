//! A lean WebSocket client for many viewers: one reusable buffer per connection, frames
//! parsed in place, no allocation or zeroing per frame. It speaks just what the load
//! test needs: the client handshake, masked text frames out, unfragmented server
//! frames in, pong replies to pings. With `--client tungstenite` a viewer's connection
//! is a plain tokio-tungstenite client instead, behind the same [`Client`]. Either
//! runs over a [`Stream`], plain or TLS (`wss://`).

use std::io;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::tls::Stream;

/// Initial buffer; grows (up to [`MAX_FRAME`]) only for larger frames.
const INITIAL: usize = 4 * 1024;
/// Largest server frame accepted.
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// One connection: the load test's own client, or a plain tokio-tungstenite one.
pub struct Client {
    inner: Inner,
}

enum Inner {
    Own {
        stream: Stream,
        frames: Frames,
    },
    /// An ordinary client, as a typical app's; `last` holds the text frame last read.
    Tungstenite {
        ws: Box<WebSocketStream<Stream>>,
        last: Utf8Bytes,
    },
}

/// A connection's read buffer and frame parser, apart from its socket: the same
/// parsing serves a tokio task ([`Client`]) and the passive readers' epoll loops.
pub struct Frames {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Control replies (pong) not written yet.
    out: Vec<u8>,
    rng: u64,
}

/// A frame from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A text frame's payload.
    Text(&'a [u8]),
    /// A close frame with its code.
    Close(Option<u16>),
}

/// A parsed frame, by position in the buffer (so parsing borrows nothing).
#[derive(Debug, Clone, Copy)]
pub enum Parsed {
    /// A text frame's payload, `from..to` in the buffer.
    Text(usize, usize),
    /// A close frame with its code.
    Close(Option<u16>),
}

fn err(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl Client {
    /// Performs the client handshake for `path_and_query` on `host` over `stream`.
    ///
    /// # Errors
    /// `http_<status>` when the server refuses the upgrade, or an I/O cause.
    pub async fn handshake(
        mut stream: Stream,
        host: &str,
        path_and_query: &str,
        seed: u64,
    ) -> Result<Self, String> {
        let (req, mut frames) = Frames::upgrade(host, path_and_query, seed);
        // Flushed: over TLS the request may still be in the session.
        async {
            stream.write_all(req.as_bytes()).await?;
            stream.flush().await
        }
        .await
        .map_err(|_| "handshake_write".to_string())?;
        loop {
            if frames.take_head()? {
                let inner = Inner::Own { stream, frames };
                return Ok(Self { inner });
            }
            let n = stream
                .read(frames.head_room()?)
                .await
                .map_err(|_| "handshake_read".to_string())?;
            if n == 0 {
                return Err("handshake_closed".into());
            }
            frames.filled(n);
        }
    }

    /// Opens `url` over `stream` with tokio-tungstenite, its defaults unchanged.
    ///
    /// # Errors
    /// `http_<status>` when the server refuses the upgrade, or the client's cause.
    pub async fn handshake_tungstenite(stream: Stream, url: &str) -> Result<Self, String> {
        use tokio_tungstenite::tungstenite::Error;
        match tokio_tungstenite::client_async(url, stream).await {
            Ok((ws, _)) => Ok(Self {
                inner: Inner::Tungstenite {
                    ws: Box::new(ws),
                    last: Utf8Bytes::default(),
                },
            }),
            Err(Error::Http(r)) => Err(format!("http_{}", r.status().as_u16())),
            Err(e) => Err(format!("handshake_{}", tungstenite_cause(&e))),
        }
    }

    /// Sends one masked text frame.
    ///
    /// # Errors
    /// On I/O errors.
    pub async fn send_text(&mut self, payload: &[u8]) -> io::Result<()> {
        match &mut self.inner {
            Inner::Own { stream, frames } => {
                let frame = frames.text_frame(payload);
                if !frames.out.is_empty() {
                    let pending = std::mem::take(&mut frames.out);
                    stream.write_all(&pending).await?;
                }
                stream.write_all(&frame).await?;
                // A no-op on plain TCP; over TLS what the socket did not take yet.
                stream.flush().await
            }
            Inner::Tungstenite { ws, .. } => {
                let text = String::from_utf8_lossy(payload).into_owned();
                ws.send(Message::text(text)).await.map_err(io::Error::other)
            }
        }
    }

    /// The next text or close frame; answers pings on the way.
    ///
    /// # Cancel safety
    /// Cancel safe: bytes read are kept in the connection's buffer, and control
    /// replies are written without waiting (tokio-tungstenite's stream is cancel safe
    /// too, and answers pings itself).
    ///
    /// # Errors
    /// On I/O errors, EOF, or a frame this client does not speak.
    pub async fn next_frame(&mut self) -> io::Result<Frame<'_>> {
        match &mut self.inner {
            Inner::Own { stream, frames } => loop {
                let parsed = frames.parse()?;
                stream.write_now(&mut frames.out);
                if let Some(p) = parsed {
                    return Ok(frames.frame(p));
                }
                quickack_off(&socket2::SockRef::from(stream.tcp()));
                let n = stream.read(frames.spare()?).await?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                frames.filled(n);
            },
            Inner::Tungstenite { ws, last } => loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        *last = t;
                        return Ok(Frame::Text(last.as_bytes()));
                    }
                    Some(Ok(Message::Close(c))) => {
                        return Ok(Frame::Close(c.map(|c| u16::from(c.code))));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(io::Error::other(e)),
                    None => return Err(io::ErrorKind::UnexpectedEof.into()),
                }
            },
        }
    }

    /// Sends a close frame (1000, normal) and waits, at most `wait`, for the server
    /// to close the connection, so that it has let the connection go on return.
    ///
    /// # Errors
    /// When the close frame cannot be written.
    pub async fn close(self, wait: std::time::Duration) -> io::Result<()> {
        match self.inner {
            Inner::Own {
                mut stream,
                mut frames,
            } => {
                let mut frame = Vec::with_capacity(8);
                frames.encode(0x8, &1000u16.to_be_bytes(), &mut frame);
                stream.write_all(&frame).await?;
                stream.flush().await?;
                let mut sink = [0u8; 512];
                let eof = async {
                    // Whatever the server still sends (its close frame) until it closes.
                    while let Ok(n) = stream.read(&mut sink).await {
                        if n == 0 {
                            return;
                        }
                    }
                };
                let _ = tokio::time::timeout(wait, eof).await;
            }
            Inner::Tungstenite { mut ws, .. } => {
                ws.send(Message::Close(None))
                    .await
                    .map_err(io::Error::other)?;
                let eof = async { while let Some(Ok(_)) = ws.next().await {} };
                let _ = tokio::time::timeout(wait, eof).await;
            }
        }
        Ok(())
    }
}

/// A short label for a failed tokio-tungstenite handshake.
fn tungstenite_cause(e: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::Io(io) => format!("{:?}", io.kind()).to_lowercase(),
        Error::Protocol(_) => "protocol".into(),
        Error::Url(_) => "bad_url".into(),
        _ => "failed".into(),
    }
}

/// Keeps a socket in delayed-ACK mode before a read: Linux otherwise ACKs every small
/// push as soon as it is read, which costs a segment per event each way.
pub fn quickack_off(socket: &socket2::SockRef<'_>) {
    let _ = socket.set_tcp_quickack(false);
}

impl Frames {
    /// The upgrade request for `path_and_query` on `host`, and the buffer to read its
    /// answer into (its masks seeded from `seed`).
    pub fn upgrade(host: &str, path_and_query: &str, seed: u64) -> (String, Self) {
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        // 16 random bytes in base64: 21 characters, a 22nd that carries only the last
        // two bits (its low four are zero), and the padding.
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut key: String = (0..21)
            .map(|_| ALPHABET[(next(&mut rng) % 64) as usize] as char)
            .collect();
        key.push(ALPHABET[((next(&mut rng) % 4) * 16) as usize] as char);
        let req = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: danmaku.v1\r\n\r\n"
        );
        (req, Self::new(INITIAL, rng))
    }

    /// Whether the upgrade's answer is in: true once a complete `101` head was taken
    /// (what follows it stays buffered), false while it is incomplete.
    ///
    /// # Errors
    /// `http_<status>` for any other answer.
    pub fn take_head(&mut self) -> Result<bool, String> {
        let Some(i) = self.buf[..self.end]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
        else {
            return Ok(false);
        };
        let status = std::str::from_utf8(&self.buf[..(i + 4).min(64)])
            .ok()
            .and_then(|h| h.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(0);
        if status != 101 {
            return Err(format!("http_{status}"));
        }
        self.start = i + 4;
        Ok(true)
    }

    /// Room to read the upgrade's answer into.
    ///
    /// # Errors
    /// `handshake_too_long` when the buffer is full without a complete head.
    pub fn head_room(&mut self) -> Result<&mut [u8], String> {
        if self.end == self.buf.len() {
            return Err("handshake_too_long".into());
        }
        Ok(&mut self.buf[self.end..])
    }

    /// One masked text frame carrying `payload`.
    pub fn text_frame(&mut self, payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        self.encode(0x1, payload, &mut frame);
        frame
    }

    fn new(capacity: usize, rng: u64) -> Self {
        Self {
            buf: vec![0; capacity],
            start: 0,
            end: 0,
            out: Vec::new(),
            rng,
        }
    }

    /// The next complete text or close frame in the buffer, if any. Pings on the way
    /// are answered into [`Frames::control`]; other frames are skipped.
    ///
    /// # Errors
    /// A frame this client does not speak.
    pub fn parse(&mut self) -> io::Result<Option<Parsed>> {
        while let Some((header, len, opcode, fin)) = self.parse_header()? {
            if self.end - self.start < header + len {
                return Ok(None);
            }
            let (from, to) = (self.start + header, self.start + header + len);
            self.start = to;
            if !fin {
                return Err(err("fragmented frames are not supported"));
            }
            match opcode {
                0x1 => return Ok(Some(Parsed::Text(from, to))),
                0x8 => {
                    let code = (len >= 2)
                        .then(|| u16::from_be_bytes([self.buf[from], self.buf[from + 1]]));
                    return Ok(Some(Parsed::Close(code)));
                }
                0x9 => {
                    let payload = self.buf[from..to].to_vec();
                    let mut pong = Vec::with_capacity(payload.len() + 14);
                    self.encode(0xA, &payload, &mut pong);
                    self.out.extend_from_slice(&pong);
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// The frame `p` points at.
    pub fn frame(&self, p: Parsed) -> Frame<'_> {
        match p {
            Parsed::Text(from, to) => Frame::Text(self.text(from, to)),
            Parsed::Close(code) => Frame::Close(code),
        }
    }

    /// The payload of a [`Parsed::Text`].
    pub fn text(&self, from: usize, to: usize) -> &[u8] {
        &self.buf[from..to]
    }

    /// Control replies waiting to be written; the caller drains what it wrote.
    pub fn control(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Room to read into: the buffer is compacted, and grown for a frame larger than it.
    ///
    /// # Errors
    /// A frame over [`MAX_FRAME`].
    pub fn spare(&mut self) -> io::Result<&mut [u8]> {
        if let Some((header, len, ..)) = self.parse_header()?
            && header + len > self.buf.len()
        {
            if header + len > MAX_FRAME {
                return Err(err("frame too large"));
            }
            self.compact();
            self.buf.resize((header + len).next_power_of_two(), 0);
        }
        if self.end == self.buf.len() {
            self.compact();
        }
        Ok(&mut self.buf[self.end..])
    }

    /// Accounts for `n` bytes read into [`Frames::spare`].
    pub fn filled(&mut self, n: usize) {
        self.end += n;
    }

    fn encode(&mut self, opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
        out.push(0x80 | opcode);
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= 0xffff {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = (next(&mut self.rng) as u32).to_be_bytes();
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    }

    /// (header length, payload length, opcode, fin) of the frame at `start`, if its
    /// header is complete.
    fn parse_header(&self) -> io::Result<Option<(usize, usize, u8, bool)>> {
        let b = &self.buf[self.start..self.end];
        if b.len() < 2 {
            return Ok(None);
        }
        if b[1] & 0x80 != 0 {
            return Err(err("masked frame from server"));
        }
        let (header, len) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (4, u16::from_be_bytes([b[2], b[3]]) as usize),
            127 if b.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&b[2..10]);
                (
                    10,
                    usize::try_from(u64::from_be_bytes(n)).map_err(|_| err("frame too large"))?,
                )
            }
            126 | 127 => return Ok(None),
            n => (2, n as usize),
        };
        Ok(Some((header, len, b[0] & 0x0f, b[0] & 0x80 != 0)))
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let grown = (self.buf.len() * 2).min(MAX_FRAME);
            self.buf.resize(grown, 0);
        }
    }
}

fn next(rng: &mut u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    *rng
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpStream;

    #[test]
    fn upgrade_keys_are_16_bytes_in_canonical_base64() {
        for seed in 0..200 {
            let (req, _) = Frames::upgrade("h", "/ws", seed);
            let key = req
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .expect("a key");
            assert_eq!(key.len(), 24, "{key}");
            assert!(key.ends_with("=="), "{key}");
            assert!("AQgw".contains(&key[21..22]), "{key}: unused bits set");
        }
    }

    /// A connected pair: the client side wrapped, the server side raw.
    async fn pair() -> (Client, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let c = Client {
            inner: Inner::Own {
                stream: Stream::Plain(client.expect("connect")),
                frames: Frames::new(16, 7),
            },
        };
        (c, server.expect("accept").0)
    }

    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n if n <= 0xffff => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    #[tokio::test]
    async fn close_sends_a_normal_close_and_waits_for_the_servers_end() {
        let (c, mut server) = pair().await;
        let server = tokio::spawn(async move {
            let mut frame = [0u8; 8];
            server.read_exact(&mut frame).await.expect("close frame");
            frame
        });
        c.close(std::time::Duration::from_secs(10))
            .await
            .expect("sent");
        let frame = server.await.expect("server");
        assert_eq!(frame[0], 0x88, "a final close frame");
        assert_eq!(frame[1], 0x80 | 2, "masked, 2 bytes");
        let code = [frame[6] ^ frame[2], frame[7] ^ frame[3]];
        assert_eq!(u16::from_be_bytes(code), 1000);
    }

    #[tokio::test]
    async fn parses_all_lengths_across_reads_and_answers_pings() {
        let (mut c, mut server) = pair().await;
        let big = vec![b'x'; 70_000];
        let mid = vec![b'y'; 300];
        let mut wire = server_frame(0x9, b"hi");
        wire.extend(server_frame(0x1, b"small"));
        wire.extend(server_frame(0x1, &mid));
        wire.extend(server_frame(0x1, &big));
        wire.extend(server_frame(0x8, &1012u16.to_be_bytes()));
        let writer = tokio::spawn(async move {
            // Dribble the bytes so frames straddle reads.
            for chunk in wire.chunks(7_000) {
                server.write_all(chunk).await.expect("write");
            }
            let mut pong = [0u8; 8];
            server.read_exact(&mut pong).await.expect("pong");
            pong
        });
        assert_eq!(c.next_frame().await.expect("frame"), Frame::Text(b"small"));
        assert_eq!(c.next_frame().await.expect("frame"), Frame::Text(&mid[..]));
        assert_eq!(c.next_frame().await.expect("frame"), Frame::Text(&big[..]));
        assert_eq!(
            c.next_frame().await.expect("frame"),
            Frame::Close(Some(1012))
        );
        let pong = writer.await.expect("server");
        assert_eq!(pong[0], 0x8A, "a final pong frame");
        assert_eq!(pong[1], 0x80 | 2, "masked, 2 bytes");
        let unmasked: Vec<u8> = pong[6..8]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ pong[2 + i])
            .collect();
        assert_eq!(unmasked, b"hi");
    }
}
