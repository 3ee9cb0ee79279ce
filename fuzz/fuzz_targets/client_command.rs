//! A client text frame: split into its JSON objects and each decoded as a command, as
//! the connection task does. Bytes that are not UTF-8 are skipped: tungstenite never
//! hands the gateway such a text frame (and binary frames are refused unread).
//!
//! Holds for every input: decoding never panics.
//! Stable mirror: `client::tests::decode_never_panics` (protocol/src/client/tests.rs).
#![no_main]

use danmaku_protocol::{Limits, decode_command, split_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(frame) = std::str::from_utf8(bytes) else {
        return;
    };
    let limits = Limits::default();
    for line in split_frame(frame) {
        let _ = decode_command(line, &limits);
    }
});
