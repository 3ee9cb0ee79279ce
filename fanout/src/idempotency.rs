//! What an idempotency key remembers besides its seq: a fingerprint of the event it
//! was first used for, so a retry is told apart from a different event under the same
//! key (which is refused with [`crate::FanoutError::KeyReused`]).

use danmaku_protocol::EventKind;

/// The fingerprint of an event: FNV-1a (64 bit) over its kind, a NUL and its data, as
/// 16 hex digits. Fixed by this definition (not by a library's hasher), so every
/// gateway version and both stores agree on it; a retry must send byte-identical
/// `kind` and `data`.
pub fn fingerprint(kind: &EventKind, data: &str) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for &b in kind
        .as_str()
        .as_bytes()
        .iter()
        .chain(&[0u8])
        .chain(data.as_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_fixed_and_tell_events_apart() {
        let card = EventKind::new("card").expect("kind");
        // FNV-1a of "card\0{}", computed independently.
        assert_eq!(fingerprint(&card, "{}"), fnv_reference(b"card\0{}"));
        assert_eq!(fingerprint(&card, "{}"), fingerprint(&card, "{}"));
        assert_ne!(fingerprint(&card, "{}"), fingerprint(&card, "{ }"));
        assert_ne!(
            fingerprint(&card, "{}"),
            fingerprint(&EventKind::comment(), "{}")
        );
        assert_eq!(fingerprint(&card, "1").len(), 16);
    }

    fn fnv_reference(bytes: &[u8]) -> String {
        let mut h: u64 = 14_695_981_039_346_656_037;
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(1_099_511_628_211);
        }
        format!("{h:016x}")
    }
}
