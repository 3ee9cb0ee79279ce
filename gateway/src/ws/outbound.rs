//! Frames waiting to be written on one connection, and how they become WebSocket frames.
//!
//! Everything that is ready is written together: messages are joined with `\n` into
//! one text frame (up to `max_batch` messages or [`MAX_FRAME`] bytes), and all frames
//! are flushed once. A lone message is written as is, without a copy.

use bytes::{Bytes, BytesMut};

/// Largest batched frame we build.
const MAX_FRAME: usize = 64 * 1024;

/// Messages queued for one write.
///
/// # Backpressure
/// Filled only by the connection task between two writes; bounded by one mailbox
/// batch plus one history catch-up (the store's history length).
#[derive(Debug, Default)]
pub(crate) struct Outbound {
    pending: Vec<Bytes>,
}

impl Outbound {
    pub(crate) fn push(&mut self, message: Bytes) {
        self.pending.push(message);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Takes the queued messages as frames; returns (frames, messages).
    pub(crate) fn take_frames(&mut self, max_batch: usize, frames: &mut Vec<Bytes>) -> usize {
        let messages = self.pending.len();
        let mut i = 0;
        while i < self.pending.len() {
            let mut j = i + 1;
            let mut size = self.pending[i].len();
            while j < self.pending.len()
                && j - i < max_batch
                && size + 1 + self.pending[j].len() <= MAX_FRAME
            {
                size += 1 + self.pending[j].len();
                j += 1;
            }
            if j == i + 1 {
                frames.push(self.pending[i].clone());
            } else {
                let mut buf = BytesMut::with_capacity(size);
                for (k, m) in self.pending[i..j].iter().enumerate() {
                    if k > 0 {
                        buf.extend_from_slice(b"\n");
                    }
                    buf.extend_from_slice(m);
                }
                frames.push(buf.freeze());
            }
            i = j;
        }
        // An idle viewer keeps no buffer between writes.
        self.pending = Vec::new();
        messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_by_count_and_size() {
        let mut o = Outbound::default();
        for i in 0..5 {
            o.push(Bytes::from(format!("{{\"n\":{i}}}")));
        }
        let mut frames = Vec::new();
        assert_eq!(o.take_frames(2, &mut frames), 5);
        assert_eq!(
            frames,
            vec![
                Bytes::from_static(b"{\"n\":0}\n{\"n\":1}"),
                Bytes::from_static(b"{\"n\":2}\n{\"n\":3}"),
                Bytes::from_static(b"{\"n\":4}"),
            ]
        );
        assert!(o.is_empty());

        let big = Bytes::from(vec![b'x'; MAX_FRAME - 10]);
        o.push(big.clone());
        o.push(Bytes::from_static(b"0123456789"));
        frames.clear();
        o.take_frames(64, &mut frames);
        assert_eq!(
            frames.len(),
            2,
            "the second message does not fit in the first frame"
        );
        assert_eq!(
            frames[0].as_ptr(),
            big.as_ptr(),
            "a lone message is not copied"
        );
    }
}
