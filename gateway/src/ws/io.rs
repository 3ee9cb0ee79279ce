//! A viewer's socket, shared by its connection task and the room hub.
//!
//! Every byte written to a viewer goes through its [`Outlet`], under one lock and in
//! whole WebSocket frames, so the connection task (replies, catch-up, batches) and the
//! hub (direct writes of quiet rooms' events) never interleave inside a frame. What the
//! kernel does not take at once waits in `pending`; the connection task flushes it when
//! the socket is writable.
//!
//! # Direct writes
//! The outlet holds each joined room's [`Cursor`], the one record of the viewer's
//! position, used by both writers. An event of a room that is *direct* (the connection
//! task handed it over when nothing was queued) and that the cursor says to write at
//! once is written by the delivering task itself with one non-blocking `writev`: no
//! task wake-up, no per-viewer framing. Anything else — a gap, a hot room that should
//! be coalesced, a socket that is backed up, a partial write — clears `direct`, and
//! the connection task, which has the whole machinery (history catch-up, `reset`,
//! batching, the write timeout), steps the same cursor from there.
//!
//! # Backpressure
//! The connection task's writes wait while `pending` holds [`MAX_PENDING`] bytes or
//! more (so it holds at most that plus one write), and its write timeout closes a
//! viewer that stops reading. Direct writes never add to a backlog: with anything
//! pending they decline, and the event is queued in the (bounded) mailbox instead.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use danmaku_fanout::position::{Cursor, Step};
use danmaku_fanout::{Delivery, Heat, RoomKey, Sink};
use danmaku_protocol::audience;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Bytes waiting for the socket before the connection task's writes wait.
pub(super) const MAX_PENDING: usize = 1024 * 1024;

/// Frames up to this size (header included) are written from one stack buffer.
const SMALL_FRAME: usize = 512;

/// A room is hot when this many of its events reached the viewer within one linger.
const HOT_EVENTS: usize = 3;

/// The write side of one viewer's socket.
pub(crate) struct Outlet {
    stream: Arc<TcpStream>,
    state: Mutex<State>,
    /// Woken when a direct write left bytes pending: the connection task flushes them.
    kick: Notify,
    /// Rooms whose recent event rate is above this get coalesced by the connection task
    /// (while the gateway is under write pressure).
    linger: Duration,
    /// Set while coalescing pays (the gateway's rooms ask for many writes).
    pressure: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    pending: VecDeque<Bytes>,
    pending_bytes: usize,
    rooms: Vec<Slot>,
    /// Arrivals of the last [`HOT_EVENTS`] sequenced events.
    heat: Heat<HOT_EVENTS>,
    /// Set when the connection is closing or the socket failed: nothing more is
    /// written directly.
    sealed: bool,
    /// What was written and not yet counted in the metrics (plain integers: they are
    /// changed under the lock every write already takes).
    written: Written,
}

/// What an outlet wrote since its metrics were last taken.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    /// Events written directly (one frame each).
    pub(crate) direct: u64,
    /// Bytes the socket took, from either writer.
    pub(crate) bytes: u64,
}

/// A joined room as the outlet sees it.
struct Slot {
    key: RoomKey,
    /// The viewer's position in the room. While it is direct, only the hub moves it;
    /// otherwise only the connection task.
    cursor: Cursor,
    /// Written by the connection task only, never handed over (an adaptive viewer's
    /// room: each of its events is a decision of the task).
    pinned: bool,
}

impl Outlet {
    pub(crate) fn new(stream: Arc<TcpStream>, linger: Duration, pressure: Arc<AtomicBool>) -> Self {
        Self {
            stream,
            state: Mutex::new(State::default()),
            kick: Notify::new(),
            linger,
            pressure,
        }
    }

    /// Whether this viewer's own stream is hot enough, and the gateway busy enough,
    /// that its events are better coalesced than written one by one.
    pub(crate) fn coalesces(&self) -> bool {
        self.pressure.load(Ordering::Relaxed) && self.is_hot()
    }

    /// Queues bytes to go out ahead of the first frame, in the same write: the 101
    /// response of a handshake answered without hyper.
    pub(crate) fn preface(&self, bytes: Bytes) {
        self.state.lock().push(bytes);
    }

    /// Writes whole frames now, or queues what the socket does not take.
    pub(crate) fn write(&self, frames: &[u8]) -> io::Result<()> {
        let mut s = self.state.lock();
        if s.pending.is_empty() {
            let n = s.attempt(self.stream.try_write(frames))?;
            if n < frames.len() {
                s.push(Bytes::copy_from_slice(&frames[n..]));
            }
            return Ok(());
        }
        s.push(Bytes::copy_from_slice(frames));
        Ok(())
    }

    /// Writes what is pending; ready when nothing is.
    pub(crate) fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            {
                let mut s = self.state.lock();
                while !s.pending.is_empty() {
                    let slices: Vec<IoSlice<'_>> =
                        s.pending.iter().take(64).map(|b| IoSlice::new(b)).collect();
                    match self.stream.try_write_vectored(&slices) {
                        Ok(0) => {
                            s.sealed = true;
                            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                        }
                        Ok(n) => s.consume(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            s.sealed = true;
                            return Poll::Ready(Err(e));
                        }
                    }
                }
                if s.pending.is_empty() {
                    return Poll::Ready(Ok(()));
                }
            }
            ready!(self.stream.poll_write_ready(cx))?;
        }
    }

    pub(super) fn pending_bytes(&self) -> usize {
        self.state.lock().pending_bytes
    }

    /// Waits until a direct write left bytes pending.
    pub(crate) async fn kicked(&self) {
        self.kick.notified().await;
    }

    /// Tracks a joined room at `cursor`, not yet handed over.
    /// A `pinned` room is never handed over to direct writes.
    pub(crate) fn track(&self, key: RoomKey, cursor: Cursor, pinned: bool) {
        let mut s = self.state.lock();
        s.rooms.retain(|r| r.key != key);
        // One slot more, not four: most viewers watch one room, and a vector's first
        // growth would hold four slots per connection.
        s.rooms.reserve_exact(1);
        s.rooms.push(Slot {
            key,
            cursor,
            pinned,
        });
    }

    /// Forgets a room the viewer left.
    /// Keeps a room with the connection task (`pinned`) or lets it be handed over again.
    pub(crate) fn pin(&self, key: RoomKey, pinned: bool) {
        let mut s = self.state.lock();
        if let Some(slot) = s.rooms.iter_mut().find(|r| r.key == key) {
            slot.pinned = pinned;
        }
    }

    pub(crate) fn untrack(&self, key: RoomKey) {
        self.state.lock().rooms.retain(|r| r.key != key);
    }

    /// Runs `f` on a room's cursor, under the outlet's lock; None when the room is not
    /// tracked. The connection task moves a cursor only while it is not direct.
    pub(crate) fn cursor<T>(&self, key: RoomKey, f: impl FnOnce(&mut Cursor) -> T) -> Option<T> {
        let mut s = self.state.lock();
        s.rooms
            .iter_mut()
            .find(|r| r.key == key)
            .map(|r| f(&mut r.cursor))
    }

    /// Hands every room over to direct writes, unless the socket is backed up or
    /// closing. The caller holds the mailbox idle (nothing queued), so no event of a
    /// room is in flight.
    pub(crate) fn hand_over(&self) {
        let mut s = self.state.lock();
        if s.sealed || !s.pending.is_empty() {
            return;
        }
        for r in s.rooms.iter_mut().filter(|r| !r.pinned) {
            r.cursor.set_direct(true);
        }
    }

    /// Whether every joined room that may be is written directly.
    pub(crate) fn all_direct(&self) -> bool {
        self.state
            .lock()
            .rooms
            .iter()
            .all(|r| r.pinned || r.cursor.is_direct())
    }

    /// Stops direct writes for good (closing).
    pub(crate) fn seal(&self) {
        let mut s = self.state.lock();
        s.sealed = true;
        for r in &mut s.rooms {
            r.cursor.set_direct(false);
        }
    }

    /// Whether events reach this viewer faster than one per linger on average over
    /// the last few: then they are worth coalescing.
    pub(crate) fn is_hot(&self) -> bool {
        let s = self.state.lock();
        s.heat.within(self.linger, Instant::now())
    }

    /// What was written since the last call.
    pub(crate) fn take_written(&self) -> Written {
        std::mem::take(&mut self.state.lock().written)
    }
}

impl State {
    fn push(&mut self, bytes: Bytes) {
        self.pending_bytes += bytes.len();
        self.pending.push_back(bytes);
    }

    fn consume(&mut self, mut n: usize) {
        self.pending_bytes -= n;
        self.written.bytes += n as u64;
        while n > 0 {
            let Some(front) = self.pending.front_mut() else {
                return;
            };
            if n >= front.len() {
                n -= front.len();
                self.pending.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
        if self.pending.is_empty() && self.pending.capacity() > 0 {
            // An idle viewer keeps no queue: its first one (the 101 response, `hello`)
            // would otherwise hold four slots for the connection's life.
            self.pending = VecDeque::new();
        }
    }

    /// The outcome of one non-blocking write: bytes taken, 0 when the socket is full;
    /// any other error seals the outlet.
    fn attempt(&mut self, written: io::Result<usize>) -> io::Result<usize> {
        match written {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => {
                self.sealed = true;
                Err(e)
            }
            Ok(n) => {
                self.written.bytes += n as u64;
                Ok(n)
            }
        }
    }

    /// Records a direct write of `seq` (0: unsequenced) for the room at `i`.
    fn advance(&mut self, i: usize, seq: u64) {
        if seq != 0 {
            self.rooms[i].cursor.wrote(seq);
        }
        self.written.direct += 1;
    }

    fn hold(&mut self, key: RoomKey) {
        if let Some(slot) = self.rooms.iter_mut().find(|r| r.key == key) {
            slot.cursor.set_direct(false);
        }
    }
}

impl Sink for Outlet {
    fn offer(&self, d: &Delivery, queue_empty: bool) -> bool {
        let mut s = self.state.lock();
        let now = Instant::now();
        if d.seq != 0 {
            // Every event counts towards the heat, whoever ends up writing it.
            s.heat.arrive(now);
        }
        let Some(i) = s.rooms.iter().position(|r| r.key == d.room) else {
            return false;
        };
        if !s.rooms[i].cursor.is_direct() {
            return false;
        }
        if d.seq == 0 {
            // Presence is unsequenced: written now if nothing else is waiting.
            return queue_empty
                && !s.sealed
                && s.pending.is_empty()
                && self.write_now(&mut s, d, i);
        }
        match s.rooms[i].cursor.step(d.first, d.seq) {
            Step::Duplicate => return true, // already written (a resubscription's copy)
            Step::Write { skip: 0 }
                if queue_empty
                    && !s.sealed
                    && s.pending.is_empty()
                    && !(self.pressure.load(Ordering::Relaxed)
                        && s.heat.within(self.linger, now))
                    && !audience::is_targeted(&d.frame) => {}
            // A gap, a partly written batch, a reset, a hot room, a backed-up socket, a
            // targeted event (whose audience the task checks): the connection task
            // takes it from here.
            _ => {
                s.hold(d.room);
                return false;
            }
        }
        self.write_now(&mut s, d, i)
    }

    fn hold(&self, room: RoomKey) {
        self.state.lock().hold(room);
    }
}

impl Outlet {
    /// Writes one delivery of the direct room at `i`; false (and the room held)
    /// when the socket does not take it.
    fn write_now(&self, s: &mut State, d: &Delivery, i: usize) -> bool {
        let header = text_header(d.frame.len());
        let total = header.len + d.frame.len();
        // A small frame is copied behind its header: one plain write() costs the
        // kernel less than a two-part writev().
        let mut small = [0u8; SMALL_FRAME];
        let written = if total <= SMALL_FRAME {
            small[..header.len].copy_from_slice(header.bytes());
            small[header.len..total].copy_from_slice(&d.frame);
            self.stream.try_write(&small[..total])
        } else {
            let bufs = [IoSlice::new(header.bytes()), IoSlice::new(&d.frame)];
            self.stream.try_write_vectored(&bufs)
        };
        // An error seals the outlet; the connection task sees it on its next read or
        // write. Nothing taken (or an error) hands the room back.
        let n = s.attempt(written).unwrap_or(0);
        if n == 0 {
            s.hold(d.room);
            return false;
        }
        if n < total {
            // The frame is on its way; its rest must follow before anything else.
            let mut rest = Vec::with_capacity(total);
            rest.extend_from_slice(header.bytes());
            rest.extend_from_slice(&d.frame);
            s.push(Bytes::from(rest).slice(n..));
            s.hold(d.room);
            self.kick.notify_one();
        }
        s.advance(i, d.seq);
        true
    }
}

/// The header of an unmasked, final text frame of `len` bytes.
struct Header {
    buf: [u8; 10],
    len: usize,
}

impl Header {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn text_header(len: usize) -> Header {
    let mut buf = [0u8; 10];
    buf[0] = 0x81;
    let n = if len < 126 {
        buf[1] = len as u8;
        2
    } else if let Ok(len) = u16::try_from(len) {
        buf[1] = 126;
        buf[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        buf[1] = 127;
        buf[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    Header { buf, len: n }
}

/// What tungstenite reads from and writes to: the socket's read side, and the outlet.
pub(super) struct ConnIo {
    pub(super) outlet: Arc<Outlet>,
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let stream = &self.outlet.stream;
        loop {
            ready!(stream.poll_read_ready(cx))?;
            match stream.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // Backpressure: past the bound, nothing is taken until the socket drains
        // (tungstenite keeps the frames; the write timeout ends a viewer that never
        // reads). Otherwise every byte is taken, so each call is whole frames.
        if self.outlet.pending_bytes() + buf.len() > MAX_PENDING {
            ready!(self.outlet.poll_drain(cx))?;
        }
        Poll::Ready(self.outlet.write(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.outlet.poll_drain(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.outlet.poll_drain(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_by_length() {
        assert_eq!(text_header(5).bytes(), &[0x81, 5]);
        assert_eq!(text_header(125).bytes(), &[0x81, 125]);
        assert_eq!(text_header(126).bytes(), &[0x81, 126, 0, 126]);
        assert_eq!(text_header(65_535).bytes(), &[0x81, 126, 0xff, 0xff]);
        assert_eq!(
            text_header(65_536).bytes(),
            &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
    }

    /// A connected loopback pair: (the viewer's end, the gateway's end).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (client, server)
    }

    #[tokio::test]
    async fn a_short_read_still_wakes_for_the_next_bytes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = pair().await;
        let mut io = ConnIo {
            outlet: Arc::new(Outlet::new(
                Arc::new(server),
                Duration::ZERO,
                Arc::default(),
            )),
        };
        let mut buf = [0u8; 64];
        for round in 0..50u8 {
            // Each read empties the socket; the next bytes must still wake it.
            client.write_all(&[round; 3]).await.expect("write");
            let n = tokio::time::timeout(Duration::from_secs(5), io.read(&mut buf))
                .await
                .expect("woken for the next bytes")
                .expect("read");
            assert_eq!(&buf[..n], &[round; 3]);
        }
    }

    #[tokio::test]
    async fn a_partial_direct_write_is_finished_first() {
        use tokio::io::AsyncReadExt;
        let (mut client, server) = pair().await;
        server.writable().await.expect("writable");
        let outlet = Arc::new(Outlet::new(
            Arc::new(server),
            Duration::ZERO,
            Arc::default(),
        ));
        outlet.track(1, Cursor::new(Arc::from("e"), 0), false);
        outlet.hand_over();
        assert_eq!(outlet.cursor(1, |c| c.is_direct()), Some(true));
        // The viewer reads nothing: direct writes fill the socket until one is
        // partial (its rest is pending) or not taken at all (the room is held).
        let frame = Bytes::from(vec![b'x'; 16 * 1024]);
        let mut written = 0u64;
        loop {
            let seq = written + 1;
            let d = Delivery {
                room: 1,
                seq,
                first: seq,
                frame: frame.clone(),
            };
            if !outlet.offer(&d, true) {
                break;
            }
            written = seq;
            if outlet.pending_bytes() > 0 {
                tokio::time::timeout(Duration::from_secs(5), outlet.kicked())
                    .await
                    .expect("a partial write kicks the connection task");
                break;
            }
            assert!(written < 100_000, "the socket never filled");
        }
        assert_eq!(
            outlet.cursor(1, |c| (c.is_direct(), c.last())),
            Some((false, written)),
            "the room is held at its last write"
        );
        outlet.hand_over();
        assert_eq!(
            outlet.cursor(1, |c| c.is_direct()),
            Some(false),
            "not handed over while bytes are pending"
        );
        // A reply written now must follow the pending rest, not cut into it.
        outlet.write(b"\x81\x02ok").expect("write");
        let expected = written * (4 + 16 * 1024) + 4;
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; expected as usize];
            client.read_exact(&mut buf).await.expect("read");
            buf
        });
        std::future::poll_fn(|cx| outlet.poll_drain(cx))
            .await
            .expect("drain");
        let buf = reader.await.expect("reader");
        // Frame by frame: every header where it belongs, the reply last.
        let mut at = 0;
        for _ in 0..written {
            assert_eq!(&buf[at..at + 4], &[0x81, 126, 0x40, 0x00]);
            at += 4 + 16 * 1024;
        }
        assert_eq!(&buf[at..], b"\x81\x02ok");
    }

    #[test]
    fn consume_spans_chunks() {
        let mut s = State::default();
        s.push(Bytes::from_static(b"abc"));
        s.push(Bytes::from_static(b"defg"));
        s.consume(4);
        assert_eq!(s.pending_bytes, 3);
        assert_eq!(s.pending.front().map(|b| &b[..]), Some(&b"efg"[..]));
    }
}
