//! The protocol's configurable bounds. Defaults are the spec's.

/// Bounds on what a client may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest comment, in Unicode scalar values (default 200).
    pub comment_max_chars: usize,
    /// Largest `like.count` (default 100).
    pub like_max_count: u32,
    /// Rooms one connection may have joined at once (default 10).
    pub max_rooms: usize,
    /// Largest client frame in bytes (default 4 KiB); larger frames close with 1009.
    pub max_frame_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            comment_max_chars: 200,
            like_max_count: 100,
            max_rooms: 10,
            max_frame_bytes: 4096,
        }
    }
}
