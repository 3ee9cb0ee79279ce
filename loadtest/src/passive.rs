//! Passive viewers (they only read events: the `fanout` scenario) are read by a few
//! threads, each with one epoll loop over its share of the sockets, instead of a
//! tokio task per viewer. A delivery then costs the kernel's read and the parse: no
//! task wake-up, no run queue, no waker per socket.
//!
//! A viewer is handed over once it has joined, and handed back when the run no longer
//! needs it ([`Handback::Done`]) or when its connection ends early
//! ([`Handback::Lost`]: its task reconnects with `since` and reads on as a task).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use tokio::sync::oneshot;

use crate::viewer::Ws;
use crate::worker::{Phase, PhaseCell, Viewer};
use crate::wsclient::{Frames, Parsed, quickack_off};

/// How long a reader sleeps in `epoll_wait` at most: the longest a newly handed-over
/// viewer or a phase change waits to be noticed.
const TICK: Duration = Duration::from_millis(10);

/// After the stop, how long a viewer may still wait for its room's final seq.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How a viewer comes back from its reader.
pub enum Handback {
    /// The run has stopped and the viewer has what it waited for (or the grace ran out).
    Done(Box<Viewer>),
    /// The connection closed or failed; the socket is gone.
    Lost(Box<Viewer>),
}

struct Adopted {
    viewer: Box<Viewer>,
    stream: std::net::TcpStream,
    frames: Frames,
    back: oneshot::Sender<Handback>,
}

/// The reader threads of one worker.
pub struct Readers {
    lanes: Vec<mpsc::Sender<Adopted>>,
    next: AtomicUsize,
}

impl Readers {
    /// Starts `threads` reader threads that follow the run's `phase`.
    ///
    /// # Errors
    /// When a thread or its epoll instance cannot be created.
    pub fn start(threads: usize, phase: &Arc<PhaseCell>) -> io::Result<Self> {
        let mut lanes = Vec::with_capacity(threads);
        for i in 0..threads.max(1) {
            let (tx, rx) = mpsc::channel();
            let poll = Poll::new()?;
            let phase = phase.clone();
            std::thread::Builder::new()
                .name(format!("reader-{i}"))
                .spawn(move || Reader::new(poll, phase).serve(&rx))?;
            lanes.push(tx);
        }
        Ok(Self {
            lanes,
            next: AtomicUsize::new(0),
        })
    }

    /// Hands `viewer` and its connection to a reader; resolves when it comes back.
    /// `None` if the reader is gone (the viewer went with it).
    pub async fn read(&self, viewer: Box<Viewer>, ws: Ws) -> Option<Handback> {
        let (stream, frames) = match ws.into_parts() {
            Ok(parts) => parts,
            Err(_) => return Some(Handback::Lost(viewer)),
        };
        let (back, answer) = oneshot::channel();
        let lane = self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len();
        let adopted = Adopted {
            viewer,
            stream,
            frames,
            back,
        };
        self.lanes[lane].send(adopted).ok()?;
        answer.await.ok()
    }
}

struct Entry {
    viewer: Box<Viewer>,
    stream: TcpStream,
    frames: Frames,
    back: oneshot::Sender<Handback>,
}

enum Step {
    Reading,
    Done,
    Lost,
}

impl Entry {
    /// Reads until the socket has no more, accounting every frame.
    fn pump(&mut self, finals: Option<&BTreeMap<String, u64>>) -> Step {
        loop {
            let spare = match self.frames.spare() {
                Ok(s) => s,
                Err(_) => return Step::Lost,
            };
            let want = spare.len();
            quickack_off(&socket2::SockRef::from(&self.stream));
            let n = match (&self.stream).read(spare) {
                Ok(0) => return Step::Lost,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Reading,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Step::Lost,
            };
            self.frames.filled(n);
            match self.consume(finals) {
                Step::Reading if n == want => {}
                // A short read emptied the socket; the next arrival is a new edge.
                step => return step,
            }
        }
    }

    /// Accounts for the frames already in the buffer and answers pings.
    fn consume(&mut self, finals: Option<&BTreeMap<String, u64>>) -> Step {
        loop {
            match self.frames.parse() {
                Ok(Some(Parsed::Text(from, to))) => {
                    self.viewer.on_frame(self.frames.text(from, to));
                }
                Ok(Some(Parsed::Close(_))) | Err(_) => return Step::Lost,
                Ok(None) => break,
            }
        }
        let out = self.frames.control();
        while !out.is_empty() {
            match (&self.stream).write(out) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.drain(..n);
                }
            }
        }
        if finals.is_some_and(|f| self.viewer.done(f)) {
            Step::Done
        } else {
            Step::Reading
        }
    }
}

struct Reader {
    poll: Poll,
    phase: Arc<PhaseCell>,
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    live: usize,
}

impl Reader {
    fn new(poll: Poll, phase: Arc<PhaseCell>) -> Self {
        Self {
            poll,
            phase,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }

    fn serve(mut self, rx: &mpsc::Receiver<Adopted>) {
        let mut events = Events::with_capacity(1024);
        let mut generation = 0;
        let mut stop: Option<(Arc<BTreeMap<String, u64>>, Instant)> = None;
        loop {
            loop {
                match rx.try_recv() {
                    Ok(a) => self.adopt(a, stop.as_ref().map(|s| &*s.0)),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        if self.live == 0 {
                            return;
                        }
                        break;
                    }
                }
            }
            let g = self.phase.generation();
            if g != generation {
                generation = g;
                if let Phase::Stop(finals) = self.phase.get() {
                    self.finish_where(|e| e.viewer.done(&finals));
                    stop = Some((finals, Instant::now() + STOP_GRACE));
                }
            }
            if stop.as_ref().is_some_and(|s| Instant::now() >= s.1) {
                self.finish_where(|_| true);
            }
            if let Err(e) = self.poll.poll(&mut events, Some(TICK))
                && e.kind() != io::ErrorKind::Interrupted
            {
                // The epoll instance failed: give every viewer back to reconnect.
                self.lose_all();
                return;
            }
            let finals = stop.as_ref().map(|s| &*s.0);
            for ev in &events {
                let i = ev.token().0;
                let Some(entry) = self.slots.get_mut(i).and_then(Option::as_mut) else {
                    continue;
                };
                match entry.pump(finals) {
                    Step::Reading => {}
                    Step::Done => self.release(i, Handback::Done),
                    Step::Lost => self.release(i, Handback::Lost),
                }
            }
        }
    }

    fn adopt(&mut self, a: Adopted, finals: Option<&BTreeMap<String, u64>>) {
        let mut entry = Entry {
            viewer: a.viewer,
            stream: TcpStream::from_std(a.stream),
            frames: a.frames,
            back: a.back,
        };
        let i = self.free.pop().unwrap_or(self.slots.len());
        // Frames read with `joined` are accounted before the socket is watched.
        let step = entry.consume(finals);
        let registered =
            self.poll
                .registry()
                .register(&mut entry.stream, Token(i), Interest::READABLE);
        if i == self.slots.len() {
            self.slots.push(None);
        }
        self.slots[i] = Some(entry);
        self.live += 1;
        match (step, registered) {
            (Step::Lost, _) | (_, Err(_)) => self.release(i, Handback::Lost),
            (Step::Done, _) => self.release(i, Handback::Done),
            (Step::Reading, Ok(())) => {}
        }
    }

    fn release(&mut self, i: usize, how: fn(Box<Viewer>) -> Handback) {
        if let Some(mut e) = self.slots.get_mut(i).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut e.stream);
            self.free.push(i);
            self.live -= 1;
            let _ = e.back.send(how(e.viewer));
        }
    }

    fn finish_where(&mut self, pred: impl Fn(&Entry) -> bool) {
        for i in 0..self.slots.len() {
            if self.slots[i].as_ref().is_some_and(&pred) {
                self.release(i, Handback::Done);
            }
        }
    }

    fn lose_all(&mut self) {
        for i in 0..self.slots.len() {
            self.release(i, Handback::Lost);
        }
    }
}
