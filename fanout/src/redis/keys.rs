//! Key names, in one place. Every key of a room shares the hash tag `{<prefix>:<room>}`, so one Lua
//! script can touch them all on one Redis Cluster shard.

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
    /// Hash of each gateway's online count, `<count>:<expires ms>`.
    pub(crate) online: String,
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
            online: format!("{tag}:on"),
            channel: format!("{tag}:c"),
            tag,
        }
    }

    /// The key remembering an idempotency key's seq.
    pub(crate) fn idempotency(&self, key: &str) -> String {
        format!("{}:i:{key}", self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_room_hash_tag() {
        let k = RoomKeys::new("dm", &RoomId::new("shop-42").expect("room"));
        for key in [
            &k.meta,
            &k.stream,
            &k.polls,
            &k.channel,
            &k.online,
            &k.idempotency("x"),
        ] {
            assert!(key.starts_with("{dm:shop-42}:"), "{key}");
        }
    }
}
