//! Entry points for the fuzz targets (`fuzz/`, outside the workspace), behind the
//! `fuzzing` feature. Not an API: each calls a crate-private reader as the store does.

use bytes::Bytes;
use danmaku_protocol::RoomId;

use crate::redis::record::Record;

/// The event frame a Redis record becomes in `room`, as the subscriber makes it; `None`
/// when the record is unreadable or does not encode.
pub fn record_frame(bytes: &[u8], room: &RoomId) -> Option<Bytes> {
    Record::parse(bytes).and_then(|r| r.encode(room)).ok()
}
