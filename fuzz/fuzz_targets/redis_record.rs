//! A record as Redis hands it back (`<seq>:<epoch>:<ts>:<kind>:<shape>:<body>`), read
//! and encoded into the event frame as the subscriber does (`Record::parse` then
//! `Record::encode`, fanout/src/redis/record.rs).
//!
//! Holds for every input: reading and encoding never panic; a frame is one line (a
//! line break would split it into two messages); and a frame whose data is JSON — made
//! by Rust for likes (`l`) and polls (`p`), the body itself for `d` — is a JSON event
//! carrying the record's room, epoch, seq, ts and data.
//! Stable mirrors: `any_bytes_are_read_or_refused`, `records_of_any_shape_are_read_or_refused`
//! and `data_records_round_trip` in record.rs's tests.
#![no_main]

use danmaku_fanout::fuzzing::record_frame;
use danmaku_protocol::RoomId;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const ROOM: &str = "shop-42";

fuzz_target!(|bytes: &[u8]| {
    let room = RoomId::new(ROOM).expect("a room id");
    let Some(frame) = record_frame(bytes, &room) else {
        return;
    };
    assert!(
        !frame.iter().any(|b| matches!(b, b'\n' | b'\r')),
        "a frame is one line: {frame:?}"
    );
    let Ok(text) = std::str::from_utf8(bytes) else {
        panic!("a record that encodes is UTF-8: {bytes:?}");
    };
    let fields: Vec<&str> = text.splitn(6, ':').collect();
    let &[seq, epoch, ts, _kind, shape, body] = fields.as_slice() else {
        panic!("a record that encodes has six fields: {text:?}");
    };
    let data = match shape {
        "d" => match serde_json::from_str::<Value>(body) {
            Ok(data) => Some(data),
            Err(_) => return, // the body is sent as it is, JSON or not
        },
        _ => None,
    };
    let event: Value = match serde_json::from_slice(&frame) {
        Ok(event) => event,
        Err(e) => panic!("the frame of {text:?} is not JSON ({e}): {frame:?}"),
    };
    assert_eq!(event["type"], "event");
    assert_eq!(event["room"], ROOM);
    assert_eq!(event["epoch"], epoch);
    assert_eq!(event["seq"].as_u64(), seq.parse().ok(), "seq");
    assert_eq!(event["ts"].as_u64(), ts.parse().ok(), "ts");
    if let Some(data) = data {
        assert_eq!(event["data"], data);
    }
});
