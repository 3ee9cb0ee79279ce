//! Key names, in one place. Every key of a room shares the hash tag `{<prefix>:<room>}`, so one Lua
//! script can touch them all on one Redis Cluster shard. The room script is given only the
//! tag and names the same keys from it (`lua/room.lua`, with the keys only it uses: the
//! idempotency keys `<tag>:i:<key>` and the online counts `<tag>:on`).

use danmaku_protocol::RoomId;

/// The keys and channel of one room.
#[derive(Debug, Clone)]
pub(crate) struct RoomKeys {
    /// Hash: epoch, seq, likes, polls (poll id counter).
    pub(crate) meta: String,
    /// Stream of event records, id `<seq>-0`, bounded by length and age.
    pub(crate) stream: String,
    /// Prefix of poll documents, voter sets and the open/dirty poll sets.
    pub(crate) polls: String,
    /// Pub/sub channel carrying each event's record (see `record.rs`).
    pub(crate) channel: String,
    tag: String,
}

impl RoomKeys {
    pub(crate) fn new(prefix: &str, room: &RoomId) -> Self {
        let tag = format!("{{{prefix}:{room}}}");
        Self {
            meta: format!("{tag}:m"),
            stream: format!("{tag}:s"),
            polls: format!("{tag}:p:"),
            channel: format!("{tag}:c"),
            tag,
        }
    }

    /// The room's hash tag, `{<prefix>:<room>}`: every key of the room starts with it.
    pub(crate) fn tag(&self) -> &str {
        &self.tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_room_hash_tag() {
        let k = RoomKeys::new("dm", &RoomId::new("shop-42").expect("room"));
        for key in [&k.meta, &k.stream, &k.polls, &k.channel] {
            assert!(key.starts_with("{dm:shop-42}:"), "{key}");
        }
    }
}
