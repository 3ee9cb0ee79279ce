//! Passive viewers (they only read: the `connect` and `fanout` scenarios) are opened and
//! read by a few threads, each one epoll loop over its share of the sockets, instead of
//! a tokio task per viewer. Opening a viewer (connect, upgrade, `join`) is then a few
//! steps of a state machine, taken in the order the kernel reports them, and a delivery
//! costs the kernel's read and a parse: no task wake-up, no run queue.
//!
//! Each thread opens at most its share of `--in-flight` viewers at a time; the rest wait
//! in order. A viewer comes back to its task when the run no longer needs it
//! ([`Handback::Done`]), when its connection ends early ([`Handback::Lost`]: the task
//! resumes with `since` and reads on as a task), or when it could not be opened
//! ([`Handback::Failed`], counted by cause).

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use tokio::sync::oneshot;

use crate::opener::{Opened, Opener, write_control};
use crate::shared::{Phase, STOP_GRACE, Shared};
use crate::task::Viewer;
use crate::viewer::io_cause;
use crate::wsclient::{Frames, Parsed, quickack_off};

/// How long a reader sleeps in `epoll_wait` at most: the longest a phase change waits
/// to be noticed.
const TICK: Duration = Duration::from_millis(10);

/// How a viewer comes back from its reader.
pub enum Handback {
    /// The run has stopped and the viewer has what it waited for (or the grace ran out).
    Done(Box<Viewer>),
    /// The connection closed or failed after the join; the socket is gone.
    Lost(Box<Viewer>),
    /// The viewer could not be opened (already counted as a failed connection).
    Failed,
}

struct Open {
    index: usize,
    back: oneshot::Sender<Handback>,
}

/// The reader threads of one worker.
pub struct Readers {
    lanes: Vec<Lane>,
    next: AtomicUsize,
}

/// The way to one reader thread: its queue, and the waker of its `epoll_wait`.
///
/// # Backpressure
/// The queue is a std channel without a capacity of its own, bounded by the plan:
/// each viewer of the worker is sent once, so it holds at most the worker's share of
/// the viewers. The reader moves them to its `waiting` list and opens at most its
/// share of `--in-flight` at a time.
struct Lane {
    queue: mpsc::Sender<Open>,
    waker: mio::Waker,
}

/// The token of a reader's waker (never a slot's).
const WAKE: Token = Token(usize::MAX);

impl Readers {
    /// Starts `threads` reader threads for the viewers of `shared`'s run, opening at
    /// most `in_flight` viewers at a time between them.
    ///
    /// # Errors
    /// When a thread or its epoll instance cannot be created.
    pub fn start(threads: usize, in_flight: usize, shared: &Arc<Shared>) -> io::Result<Self> {
        let threads = threads.max(1);
        let cap = (in_flight / threads).max(1);
        let mut lanes = Vec::with_capacity(threads);
        for i in 0..threads {
            let (queue, rx) = mpsc::channel();
            let poll = Poll::new()?;
            let waker = mio::Waker::new(poll.registry(), WAKE)?;
            let reader = Reader::new(poll, shared.clone(), cap);
            std::thread::Builder::new()
                .name(format!("reader-{i}"))
                .spawn(move || reader.serve(&rx))?;
            lanes.push(Lane { queue, waker });
        }
        Ok(Self {
            lanes,
            next: AtomicUsize::new(0),
        })
    }

    /// Opens viewer `index` on a reader thread and reads it there; resolves when it
    /// comes back. `None` if the reader is gone (the viewer went with it).
    pub async fn open(&self, index: usize) -> Option<Handback> {
        let (back, answer) = oneshot::channel();
        let lane = &self.lanes[self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len()];
        lane.queue.send(Open { index, back }).ok()?;
        // Started now, not at the reader's next tick: a paced ramp opens on schedule.
        let _ = lane.waker.wake();
        answer.await.ok()
    }
}

/// A joined viewer being read.
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
        write_control(&self.stream, &mut self.frames);
        if finals.is_some_and(|f| self.viewer.done(f)) {
            Step::Done
        } else {
            Step::Reading
        }
    }
}

enum Slot {
    Opening {
        opener: Box<Opener>,
        back: oneshot::Sender<Handback>,
    },
    Reading(Entry),
}

struct Reader {
    poll: Poll,
    shared: Arc<Shared>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    live: usize,
    /// Viewers opening now, and the most at a time.
    opening: usize,
    cap: usize,
    waiting: VecDeque<Open>,
}

impl Reader {
    fn new(poll: Poll, shared: Arc<Shared>, cap: usize) -> Self {
        Self {
            poll,
            shared,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            opening: 0,
            cap,
            waiting: VecDeque::new(),
        }
    }

    fn serve(mut self, rx: &mpsc::Receiver<Open>) {
        let mut events = Events::with_capacity(1024);
        let mut generation = 0;
        let mut stop: Option<(Arc<BTreeMap<String, u64>>, Instant)> = None;
        let mut open = true;
        let mut next_check = Instant::now();
        loop {
            while open {
                match rx.try_recv() {
                    Ok(o) => self.waiting.push_back(o),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => open = false,
                }
            }
            if !open && self.live == 0 && self.waiting.is_empty() {
                return;
            }
            let g = self.shared.phase.generation();
            if g != generation {
                generation = g;
                if let Phase::Stop(finals) = self.shared.phase.get() {
                    self.finish_where(|e| e.viewer.done(&finals));
                    stop = Some((finals, Instant::now() + STOP_GRACE));
                }
            }
            if stop.is_none() {
                self.start_waiting();
            } else {
                // The run is over: nothing more is opened.
                self.refuse_waiting("stopped");
            }
            let now = Instant::now();
            if stop.as_ref().is_some_and(|s| now >= s.1) {
                self.finish_where(|_| true);
                self.fail_where(|_| Some("stopped".into()));
            }
            if self.opening > 0 && now >= next_check {
                next_check = now + Duration::from_millis(100);
                // Fails the viewers whose current opening step ran out of time.
                self.fail_where(|o| (now >= o.deadline).then(|| o.timeout_cause()));
            }
            if let Err(e) = self.poll.poll(&mut events, Some(TICK))
                && e.kind() != io::ErrorKind::Interrupted
            {
                // The epoll instance failed: give every viewer back.
                self.lose_all();
                return;
            }
            let finals = stop.as_ref().map(|s| &*s.0);
            for ev in &events {
                if ev.token() != WAKE {
                    self.on_event(ev.token().0, finals);
                }
            }
        }
    }

    fn on_event(&mut self, i: usize, finals: Option<&BTreeMap<String, u64>>) {
        match self.slots.get_mut(i).and_then(Option::as_mut) {
            Some(Slot::Reading(entry)) => match entry.pump(finals) {
                Step::Reading => {}
                Step::Done => self.release(i, Handback::Done),
                Step::Lost => self.release(i, Handback::Lost),
            },
            Some(Slot::Opening { opener, .. }) => match opener.advance() {
                Opened::Pending => {}
                Opened::Failed(cause) => self.fail(i, cause),
                Opened::Joined(joined) => self.joined(i, &joined, finals),
            },
            None => {}
        }
    }

    /// Starts waiting viewers while fewer than `cap` are opening.
    fn start_waiting(&mut self) {
        while self.opening < self.cap {
            let Some(o) = self.waiting.pop_front() else {
                return;
            };
            match Opener::start(&self.shared.plan, o.index) {
                Ok(mut opener) => {
                    let i = self.free.pop().unwrap_or(self.slots.len());
                    let registered = self.poll.registry().register(
                        &mut opener.stream,
                        Token(i),
                        Interest::READABLE | Interest::WRITABLE,
                    );
                    if i == self.slots.len() {
                        self.slots.push(None);
                    }
                    self.slots[i] = Some(Slot::Opening {
                        opener: Box::new(opener),
                        back: o.back,
                    });
                    self.live += 1;
                    self.opening += 1;
                    if let Err(e) = registered {
                        self.fail(i, io_cause("register", &e));
                    }
                }
                Err(cause) => {
                    self.shared.fail(cause);
                    let _ = o.back.send(Handback::Failed);
                }
            }
        }
    }

    /// Viewer at `i` joined: counted, then read.
    fn joined(
        &mut self,
        i: usize,
        joined: &crate::viewer::Joined,
        finals: Option<&BTreeMap<String, u64>>,
    ) {
        let Some(Slot::Opening { opener, back }) = self.slots.get_mut(i).and_then(Option::take)
        else {
            return;
        };
        self.opening -= 1;
        self.shared
            .opened(opener.connected, opener.started.elapsed());
        let Opener {
            index,
            room,
            mut stream,
            frames,
            ..
        } = *opener;
        let viewer = Box::new(Viewer::joined(self.shared.clone(), index, room, joined));
        let _ = self
            .poll
            .registry()
            .reregister(&mut stream, Token(i), Interest::READABLE);
        let mut entry = Entry {
            viewer,
            stream,
            frames,
            back,
        };
        let step = entry.consume(finals);
        self.slots[i] = Some(Slot::Reading(entry));
        match step {
            Step::Reading => {}
            Step::Done => self.release(i, Handback::Done),
            Step::Lost => self.release(i, Handback::Lost),
        }
    }

    /// Viewer at `i` could not be opened: counted by `cause`.
    fn fail(&mut self, i: usize, cause: String) {
        if let Some(Slot::Opening { mut opener, back }) =
            self.slots.get_mut(i).and_then(Option::take)
        {
            let _ = self.poll.registry().deregister(&mut opener.stream);
            self.free.push(i);
            self.live -= 1;
            self.opening -= 1;
            self.shared.fail(cause);
            let _ = back.send(Handback::Failed);
        }
    }

    /// Fails each viewer being opened for which `cause` gives one.
    fn fail_where(&mut self, cause: impl Fn(&Opener) -> Option<String>) {
        for i in 0..self.slots.len() {
            if let Some(Slot::Opening { opener, .. }) = &self.slots[i]
                && let Some(cause) = cause(opener)
            {
                self.fail(i, cause);
            }
        }
    }

    /// Fails the viewers still waiting to be opened, counted under `cause`.
    fn refuse_waiting(&mut self, cause: &str) {
        for o in self.waiting.drain(..) {
            self.shared.fail(cause.into());
            let _ = o.back.send(Handback::Failed);
        }
    }

    /// Hands the viewer read at `i` back to its task.
    fn release(&mut self, i: usize, how: fn(Box<Viewer>) -> Handback) {
        if !matches!(self.slots.get(i), Some(Some(Slot::Reading(_)))) {
            return;
        }
        if let Some(Slot::Reading(mut e)) = self.slots[i].take() {
            let _ = self.poll.registry().deregister(&mut e.stream);
            self.free.push(i);
            self.live -= 1;
            let _ = e.back.send(how(e.viewer));
        }
    }

    fn finish_where(&mut self, pred: impl Fn(&Entry) -> bool) {
        for i in 0..self.slots.len() {
            if let Some(Slot::Reading(e)) = &self.slots[i]
                && pred(e)
            {
                self.release(i, Handback::Done);
            }
        }
    }

    fn lose_all(&mut self) {
        for i in 0..self.slots.len() {
            if let Some(Slot::Reading(_)) = &self.slots[i] {
                self.release(i, Handback::Lost);
            }
        }
        self.fail_where(|_| Some("reader_failed".into()));
        self.refuse_waiting("reader_failed");
    }
}
