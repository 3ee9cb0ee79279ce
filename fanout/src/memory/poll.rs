//! Poll state in the memory store.

use std::collections::HashSet;

use bytes::Bytes;
use danmaku_protocol::PollId;
use danmaku_protocol::data::{PollDoc, PollSpec};

use crate::FanoutError;

pub(crate) struct Poll {
    pub(crate) id: PollId,
    spec: PollSpec,
    votes: Vec<u64>,
    pub(crate) ends_at_ms: u64,
    pub(crate) open: bool,
    /// One vote per user. Bounded by the users of the room during the poll's life.
    voters: HashSet<Box<str>>,
    /// Tallies changed since the last published `poll` event.
    pub(crate) dirty: bool,
}

impl Poll {
    pub(crate) fn new(id: PollId, question: String, options: Vec<String>, ends_at_ms: u64) -> Self {
        Self {
            id,
            votes: vec![0; options.len()],
            spec: PollSpec { question, options },
            ends_at_ms,
            open: true,
            voters: HashSet::new(),
            dirty: false,
        }
    }

    pub(crate) fn vote(&mut self, user: &str, option: u32) -> Result<(), FanoutError> {
        if !self.open {
            return Err(FanoutError::PollClosed(self.id.clone()));
        }
        let slot = usize::try_from(option)
            .ok()
            .and_then(|i| self.votes.get_mut(i))
            .ok_or_else(|| FanoutError::BadOption(self.id.clone(), option))?;
        if !self.voters.insert(Box::from(user)) {
            return Err(FanoutError::AlreadyVoted(self.id.clone()));
        }
        *slot += 1;
        self.dirty = true;
        Ok(())
    }

    /// The poll's state as the `data` of a `poll` event.
    pub(crate) fn encode(&self) -> Bytes {
        let doc = PollDoc {
            poll: self.id.as_str(),
            open: self.open,
            spec: &self.spec,
            votes: &self.votes,
            ends_at: self.ends_at_ms,
        };
        Bytes::from(doc.encode())
    }
}
