//! The gateway's HTTP API as the coordinator uses it: room state, and opening and
//! closing the `interact` scenario's polls. Always the first `--url`'s gateway.

use std::collections::BTreeMap;

use anyhow::Context;
use danmaku_protocol::RoomId;
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};

use crate::endpoint::Endpoint;
use crate::http::Http;
use crate::plan::Plan;

/// `GET /v1/rooms/{room}`, the fields used.
#[derive(Deserialize)]
struct RoomInfo {
    seq: u64,
    #[serde(default)]
    likes: u64,
}

/// The answer to creating a poll.
#[derive(Deserialize)]
struct PollCreated {
    poll: String,
}

/// The `seq` of a publish's answer (`{"room","epoch","seq"}`).
pub fn seq_of(body: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct Sequenced {
        seq: u64,
    }
    serde_json::from_slice::<Sequenced>(body)
        .ok()
        .map(|s| s.seq)
}

/// An API error's body: `{"error":{"code","message"}}`.
#[derive(Deserialize)]
struct ApiErrorBody {
    error: ApiErrorDetail,
}

#[derive(Deserialize)]
struct ApiErrorDetail {
    code: String,
    message: String,
}

/// One request to the first gateway's API, its 200 answer decoded as `T`.
pub(crate) async fn api<T: DeserializeOwned>(
    plan: &Plan,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<T> {
    api_at(plan, &plan.http[0], method, path, body).await
}

/// One request to the API at `base`, its 200 answer decoded as `T`.
pub(crate) async fn api_at<T: DeserializeOwned>(
    plan: &Plan,
    base: &Endpoint,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<T> {
    let mut http = Http::new(base);
    let (status, bytes) = http
        .request(method, path, &plan.cli.common.api_key, body.as_bytes())
        .await
        .with_context(|| format!("{method} {}{path}", base.base))?;
    if status != 200 {
        let why = serde_json::from_slice::<ApiErrorBody>(&bytes).map_or_else(
            |_| String::from_utf8_lossy(&bytes).into_owned(),
            |b| format!("{}: {}", b.error.code, b.error.message),
        );
        anyhow::bail!("{method} {path}: HTTP {status} ({why})");
    }
    serde_json::from_slice(&bytes).with_context(|| format!("{method} {path}: unexpected answer"))
}

/// Each room's final seq, and the like total of all rooms.
///
/// # Errors
/// When the API cannot be reached or refuses a request.
pub async fn room_state(plan: &Plan) -> anyhow::Result<(BTreeMap<String, u64>, u64)> {
    let mut finals = BTreeMap::new();
    let mut likes = 0;
    for room in &plan.rooms {
        let info: RoomInfo = api(plan, "GET", &format!("/v1/rooms/{room}"), "").await?;
        finals.insert(room.to_string(), info.seq);
        likes += info.likes;
    }
    Ok((finals, likes))
}

/// What every gateway's `/metrics` counted of the events viewers were told they
/// skipped, by `<reason>/<priority>` (summed over the gateways; a gateway that cannot be
/// read is left out). The load test tells the reason of each marker itself; only the
/// gateway knows the priority of an event it did not send.
pub async fn gateway_skips(plan: &Plan) -> BTreeMap<String, u64> {
    let mut skips = BTreeMap::new();
    for base in &plan.http {
        let mut http = Http::new(base);
        let Ok((200, body)) = http.request("GET", "/metrics", "", b"").await else {
            continue;
        };
        for (key, n) in parse_skips(&String::from_utf8_lossy(&body)) {
            *skips.entry(key).or_default() += n;
        }
    }
    skips
}

/// `danmaku_skipped_total{reason="r",priority="p"} n` lines as (`r/p`, n), zeros left out.
fn parse_skips(metrics: &str) -> Vec<(String, u64)> {
    let label = |l: &str, name: &str| {
        let start = l.find(&format!("{name}=\""))? + name.len() + 2;
        Some(l[start..].split('"').next()?.to_owned())
    };
    metrics
        .lines()
        .filter(|l| l.starts_with("danmaku_skipped_total{"))
        .filter_map(|l| {
            let n: u64 = l.rsplit(' ').next()?.parse().ok()?;
            let key = format!("{}/{}", label(l, "reason")?, label(l, "priority")?);
            (n > 0).then_some((key, n))
        })
        .collect()
}

/// Opens a poll in each room; returns (room, poll id) pairs.
///
/// # Errors
/// When the API cannot be reached or refuses a request.
pub async fn open_polls(plan: &Plan) -> anyhow::Result<Vec<(RoomId, String)>> {
    let body = r#"{"question":"Which colour?","options":["red","green","blue"],"duration_s":3600}"#;
    let mut polls = Vec::new();
    for room in &plan.rooms {
        let created: PollCreated =
            api(plan, "POST", &format!("/v1/rooms/{room}/polls"), body).await?;
        polls.push((room.clone(), created.poll));
    }
    Ok(polls)
}

/// Closes the polls, so their final tallies are sequenced before the final seqs are read.
pub async fn close_polls(plan: &Plan, polls: &[(RoomId, String)]) {
    for (room, poll) in polls {
        if let Err(e) = api::<IgnoredAny>(
            plan,
            "POST",
            &format!("/v1/rooms/{room}/polls/{poll}/close"),
            "",
        )
        .await
        {
            eprintln!("closing poll {poll} of {room}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_are_read_by_reason_and_priority() {
        let text = "# HELP danmaku_skipped_total x\ndanmaku_skipped_total{reason=\"sampled\",priority=\"low\"} 7\ndanmaku_skipped_total{reason=\"targeted\",priority=\"high\"} 0\ndanmaku_skipped_total{reason=\"targeted\",priority=\"normal\"} 2\ndanmaku_resets_total 3\n";
        assert_eq!(
            parse_skips(text),
            vec![
                ("sampled/low".to_owned(), 7),
                ("targeted/normal".to_owned(), 2)
            ]
        );
    }
}
