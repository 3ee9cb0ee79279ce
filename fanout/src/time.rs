use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock Unix milliseconds (event timestamps, poll deadlines).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
