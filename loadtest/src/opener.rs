//! Opening a passive viewer on a reader thread: the TCP connect, the WebSocket
//! upgrade and `join`, as steps of a state machine taken when the kernel reports the
//! socket ready. Nothing here blocks; each step has its own deadline.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use danmaku_protocol::RoomId;
use mio::net::TcpStream;

use crate::plan::Plan;
use crate::viewer::{
    Dial, Joined, STEP_TIMEOUT, connect_cause, connect_timeout, io_cause, join_command,
    scan_joined, target,
};
use crate::wsclient::{Frames, Parsed};

/// Where a viewer being opened is.
#[derive(Clone, Copy)]
enum Stage {
    /// The TCP connect is in progress.
    Connecting,
    /// The upgrade request is out; waiting for the 101.
    Upgrading,
    /// `join` is out; waiting for `joined`.
    Joining,
}

/// What a step of opening came to.
pub enum Opened {
    /// Waiting for the socket.
    Pending,
    /// The viewer joined.
    Joined(Joined),
    /// The viewer could not be opened: the cause to count.
    Failed(String),
}

/// A viewer being opened: connect, upgrade, `join`, as the kernel reports progress.
pub struct Opener {
    /// The viewer's index in the plan.
    pub index: usize,
    /// Its room.
    pub room: RoomId,
    /// The socket (registered with the reader's poll by the caller).
    pub stream: TcpStream,
    /// The read buffer; it goes on to read the viewer's frames.
    pub frames: Frames,
    /// The gateway's address, named in connect failures.
    addr: SocketAddr,
    request: String,
    stage: Stage,
    /// When the connect started, for connect time and time to first render.
    pub started: std::time::Instant,
    /// Connect time (TCP + upgrade), once upgraded.
    pub connected: Duration,
    /// When the current step runs out of time.
    pub deadline: Instant,
    /// The `max_rate` of an adaptive join.
    adaptive: Option<u32>,
}

impl Opener {
    /// Starts the TCP connect of viewer `index`.
    ///
    /// # Errors
    /// The cause to count when the socket cannot be made or the connect fails at once.
    pub fn start(plan: &Plan, index: usize) -> Result<Self, String> {
        let dial = plan.dial(index, 0);
        let started = std::time::Instant::now();
        let (host, path) = target(&dial.url)?;
        let (request, frames) = Frames::upgrade(host, path, dial.seed);
        let stream = connect(&dial)?;
        Ok(Self {
            index,
            room: plan.rooms[plan.viewer_room[index]].clone(),
            stream,
            frames,
            addr: dial.addr,
            request,
            stage: Stage::Connecting,
            started,
            connected: Duration::ZERO,
            deadline: Instant::now() + STEP_TIMEOUT,
            adaptive: plan.adaptive(index),
        })
    }

    /// Takes every step the socket allows now.
    pub fn advance(&mut self) -> Opened {
        loop {
            let step = match self.stage {
                Stage::Connecting => self.connecting(),
                Stage::Upgrading => self.upgrading(),
                Stage::Joining => self.joining(),
            };
            match step {
                Some(opened) => return opened,
                None => continue,
            }
        }
    }

    /// `None`: connected, and the upgrade request is out.
    fn connecting(&mut self) -> Option<Opened> {
        if let Ok(Some(e)) | Err(e) = self.stream.take_error() {
            return Some(Opened::Failed(connect_cause(&e, self.addr)));
        }
        match self.stream.peer_addr() {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Some(Opened::Pending),
            Err(e) => return Some(Opened::Failed(connect_cause(&e, self.addr))),
            Ok(_) => {}
        }
        let _ = self.stream.set_nodelay(true);
        // A few hundred bytes into an empty socket: taken whole.
        match (&self.stream).write(self.request.as_bytes()) {
            Ok(n) if n == self.request.len() => {}
            _ => return Some(Opened::Failed("handshake_write".into())),
        }
        self.next_stage(Stage::Upgrading);
        None
    }

    /// `None`: upgraded and `join` is out, or more of the answer was read.
    fn upgrading(&mut self) -> Option<Opened> {
        match self.frames.take_head() {
            Err(cause) => return Some(Opened::Failed(cause)),
            Ok(true) => {
                self.connected = self.started.elapsed();
                let join = self
                    .frames
                    .text_frame(join_command(&self.room, None, self.adaptive).as_bytes());
                match (&self.stream).write(&join) {
                    Ok(n) if n == join.len() => {}
                    _ => return Some(Opened::Failed("send_error".into())),
                }
                self.next_stage(Stage::Joining);
                return None;
            }
            Ok(false) => {}
        }
        let room = match self.frames.head_room() {
            Ok(room) => room,
            Err(cause) => return Some(Opened::Failed(cause)),
        };
        match read_some(&self.stream, room, "handshake_closed", "handshake_read") {
            Ok(Some(n)) => self.frames.filled(n),
            Ok(None) => return Some(Opened::Pending),
            Err(cause) => return Some(Opened::Failed(cause)),
        }
        None
    }

    /// `None`: more was read, to look for `joined` in.
    fn joining(&mut self) -> Option<Opened> {
        loop {
            match self.frames.parse() {
                Ok(Some(Parsed::Text(from, to))) => match scan_joined(self.frames.text(from, to)) {
                    Some(Ok(joined)) => return Some(Opened::Joined(joined)),
                    Some(Err(cause)) => return Some(Opened::Failed(cause)),
                    None => {}
                },
                Ok(Some(Parsed::Close(_))) => {
                    return Some(Opened::Failed("closed_before_joined".into()));
                }
                Err(_) => return Some(Opened::Failed("ws_error".into())),
                Ok(None) => break,
            }
        }
        // The gateway's heartbeat may ping before `joined` is in.
        write_control(&self.stream, &mut self.frames);
        let spare = match self.frames.spare() {
            Ok(s) => s,
            Err(_) => return Some(Opened::Failed("ws_error".into())),
        };
        match read_some(&self.stream, spare, "ws_error", "ws_error") {
            Ok(Some(n)) => self.frames.filled(n),
            Ok(None) => return Some(Opened::Pending),
            Err(cause) => return Some(Opened::Failed(cause)),
        }
        None
    }

    fn next_stage(&mut self, stage: Stage) {
        self.stage = stage;
        self.deadline = Instant::now() + STEP_TIMEOUT;
    }

    /// The cause to count when the current step took too long.
    pub fn timeout_cause(&self) -> String {
        match self.stage {
            Stage::Connecting => connect_timeout(self.addr),
            Stage::Upgrading => "handshake_timeout".into(),
            Stage::Joining => "join_timeout".into(),
        }
    }
}

/// Writes the control replies (pongs) `frames` holds, as far as the socket takes
/// them now; the rest waits for the next call.
pub fn write_control(stream: &TcpStream, frames: &mut Frames) {
    let out = frames.control();
    while !out.is_empty() {
        match (&*stream).write(out) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.drain(..n);
            }
        }
    }
}

/// One non-blocking read into `buf` while opening: the bytes read (0 after an
/// interruption), `None` when there is nothing yet, or the cause to count: `closed` at
/// end of stream, `failed` on an error.
fn read_some(
    stream: &TcpStream,
    buf: &mut [u8],
    closed: &str,
    failed: &str,
) -> Result<Option<usize>, String> {
    match (&*stream).read(buf) {
        Ok(0) => Err(closed.into()),
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Some(0)),
        Err(_) => Err(failed.into()),
    }
}

/// A non-blocking TCP connect to the dial's gateway, from its source address if any.
fn connect(d: &Dial) -> Result<TcpStream, String> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(d.addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(|e| io_cause("socket", &e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| io_cause("socket", &e))?;
    if let Some(src) = d.source {
        socket
            .bind(&SocketAddr::new(src, 0).into())
            .map_err(|e| io_cause("bind", &e))?;
    }
    match socket.connect(&d.addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(connect_cause(&e, d.addr)),
    }
    Ok(TcpStream::from_std(socket.into()))
}
