//! The gateway's HTTP API as the coordinator uses it: room state, and opening and
//! closing the `interact` scenario's polls. Always the first `--url`'s gateway.

use std::collections::BTreeMap;

use crate::http::Http;
use crate::plan::Plan;

async fn api(
    plan: &Plan,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<serde_json::Value> {
    let mut http = Http::new(&plan.http[0])?;
    let (status, bytes) = http
        .request(method, path, &plan.cli.common.api_key, body.as_bytes())
        .await?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    anyhow::ensure!(status == 200, "{method} {path}: HTTP {status} {v}");
    Ok(v)
}

/// Each room's final seq, and the like total of all rooms.
///
/// # Errors
/// When the API cannot be reached or refuses a request.
pub async fn room_state(plan: &Plan) -> anyhow::Result<(BTreeMap<String, u64>, u64)> {
    let mut finals = BTreeMap::new();
    let mut likes = 0;
    for room in &plan.rooms {
        let v = api(plan, "GET", &format!("/v1/rooms/{room}"), "").await?;
        finals.insert(room.clone(), v["seq"].as_u64().unwrap_or(0));
        likes += v["likes"].as_u64().unwrap_or(0);
    }
    Ok((finals, likes))
}

/// Opens a poll in each room; returns (room, poll id) pairs.
///
/// # Errors
/// When the API cannot be reached or refuses a request.
pub async fn open_polls(plan: &Plan) -> anyhow::Result<Vec<(String, String)>> {
    let body = r#"{"question":"Which colour?","options":["red","green","blue"],"duration_s":3600}"#;
    let mut polls = Vec::new();
    for room in &plan.rooms {
        let v = api(plan, "POST", &format!("/v1/rooms/{room}/polls"), body).await?;
        polls.push((
            room.clone(),
            v["poll"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    Ok(polls)
}

/// Closes the polls, so their final tallies are sequenced before the final seqs are read.
pub async fn close_polls(plan: &Plan, polls: &[(String, String)]) {
    for (room, poll) in polls {
        if let Err(e) = api(
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
