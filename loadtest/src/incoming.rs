//! What the load test reads out of server frames beyond the protocol's own decode
//! types ([`danmaku_protocol::received`]): the publish time its own `lt` events
//! carry, and a poll event's tallies.

use danmaku_protocol::ServerLine;
use danmaku_protocol::data::PollState;
use serde::Deserialize;

/// The event kind the load test publishes, carrying the publish time.
pub const LT_KIND: &str = "lt";

/// The publish time (Unix µs) of a load-test event.
pub fn published_at(l: &ServerLine<'_>) -> Option<u64> {
    #[derive(Deserialize)]
    struct LtData {
        t: u64,
    }
    if l.kind.as_deref() != Some(LT_KIND) {
        return None;
    }
    serde_json::from_str::<LtData>(l.data?.get())
        .ok()
        .map(|d| d.t)
}

/// The votes per option of a poll event.
pub fn poll_votes(l: &ServerLine<'_>) -> Option<Vec<u64>> {
    if l.kind.as_deref() != Some("poll") {
        return None;
    }
    let poll: PollState = serde_json::from_str(l.data?.get()).ok()?;
    Some(poll.votes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lt_events_carry_their_publish_time_and_others_do_not() {
        let lt = br#"{"data":{"pad":"x","t":99},"ts":1,"kind":"lt","seq":7,"epoch":"e","room":"r","type":"event"}"#;
        let l = ServerLine::decode(lt).expect("decodes");
        assert_eq!(published_at(&l), Some(99));
        let c = ServerLine::decode(br#"{"type":"event","seq":3,"kind":"comment","data":{"t":5}}"#)
            .expect("decodes");
        assert_eq!(published_at(&c), None);
        let s = ServerLine::decode(br#"{"type":"event","seq":4,"kind":"lt","data":"just text"}"#)
            .expect("any data decodes");
        assert_eq!(published_at(&s), None);
    }

    #[test]
    fn poll_events_carry_their_tallies() {
        let e = ServerLine::decode(
            br#"{"type":"event","seq":9,"kind":"poll","data":{"poll":"p","state":"open","question":"q","ends_at":5,"options":[{"text":"a","votes":2},{"votes":0,"text":"b"}]}}"#,
        )
        .expect("decodes");
        assert_eq!(poll_votes(&e), Some(vec![2, 0]));
        assert_eq!(published_at(&e), None);
    }
}
