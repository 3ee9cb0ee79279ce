//! What every connection holds for writing, summed for `/metrics`.
//!
//! A connection's backlog is what waits in its mailbox, what its task took from the
//! mailbox and has not yet handed to the socket, and what the socket has not taken
//! yet (the outlet's pending bytes). Each is bounded (`--outbound-queue-bytes` twice,
//! and the outlet's 1 MiB), so a slow viewer's cost is visible and capped. The sum is
//! made when `/metrics` is read, by walking the open connections; a connection's own
//! task only stores its in-task count in an atomic nobody else writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use danmaku_fanout::Mailbox;
use dashmap::DashMap;

use super::io::Outlet;

/// The backlogs of the open connections (one entry per connection, removed when it
/// ends: bounded by the connection limit).
#[derive(Default)]
pub struct Backlogs {
    conns: DashMap<u64, Arc<Backlog>>,
}

/// Bytes held for writing: in all, and by the connection holding most.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BacklogTotals {
    /// Over every open connection.
    pub bytes: u64,
    /// The largest backlog of one connection.
    pub max_bytes: u64,
}

impl Backlogs {
    /// Sums every open connection's backlog.
    pub fn totals(&self) -> BacklogTotals {
        let mut t = BacklogTotals::default();
        for conn in &self.conns {
            let held = conn.held() as u64;
            t.bytes += held;
            t.max_bytes = t.max_bytes.max(held);
        }
        t
    }

    /// Tracks a new connection until the returned guard is dropped.
    pub(super) fn register(self: &Arc<Self>, key: u64, backlog: Arc<Backlog>) -> Registered {
        self.conns.insert(key, backlog);
        Registered {
            backlogs: self.clone(),
            key,
        }
    }
}

/// Removes its connection's backlog from the registry when dropped.
pub(super) struct Registered {
    backlogs: Arc<Backlogs>,
    key: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.backlogs.conns.remove(&self.key);
    }
}

/// One connection's backlog.
pub(super) struct Backlog {
    mailbox: Mailbox,
    outlet: Arc<Outlet>,
    /// Bytes the connection task is writing: set when a write starts, cleared when it
    /// ended (so bytes the socket took meanwhile count twice: the sum errs high, never
    /// low). Written by that task only.
    in_task: AtomicUsize,
}

impl Backlog {
    pub(super) fn new(mailbox: Mailbox, outlet: Arc<Outlet>) -> Self {
        Self {
            mailbox,
            outlet,
            in_task: AtomicUsize::new(0),
        }
    }

    /// The task now holds `bytes`.
    pub(super) fn set_in_task(&self, bytes: usize) {
        self.in_task.store(bytes, Ordering::Relaxed);
    }

    /// Bytes this connection holds for writing now.
    pub(super) fn held(&self) -> usize {
        self.mailbox.queued_bytes()
            + self.outlet.pending_bytes()
            + self.in_task.load(Ordering::Relaxed)
    }
}
