//! The first bytes of a connection, read by the gateway's fast upgrade path
//! (`FastRequest::parse`, gateway/src/ws/mod.rs). The first byte picks whether the
//! diagnostic echo is routed; the rest is what the client sent.
//!
//! Holds for every input: parsing never panics; a head that is read lies within the
//! bytes, reads the same without what follows it, and cut by one byte is left to
//! hyper (an incomplete head is never served).
//! Stable mirrors: `ws::tests::any_bytes_are_parsed_or_left_to_hyper` and
//! `ws::tests::a_request_is_found_whatever_its_headers`.
#![no_main]

use danmaku_gateway::fuzzing::upgrade_head_len;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&flag, bytes)) = input.split_first() else {
        return;
    };
    let echo = flag & 1 == 1;
    let Some(len) = upgrade_head_len(bytes, echo) else {
        return;
    };
    assert!(
        0 < len && len <= bytes.len(),
        "head of {len} in {} bytes",
        bytes.len()
    );
    assert_eq!(
        upgrade_head_len(&bytes[..len], echo),
        Some(len),
        "the head alone"
    );
    assert_eq!(
        upgrade_head_len(&bytes[..len - 1], echo),
        None,
        "a cut head"
    );
});
