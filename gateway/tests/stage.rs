//! The room's stage (the pinned product, its countdown) over real gateways: one with
//! the memory store, three on every Redis topology. Set, replaced and cleared through
//! the HTTP API, each a high `stage` event in the room's order; a viewer who joins at
//! any point finds the current stage in its snapshot, on whichever gateway it joins.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use serde_json::{Value, json};
use support::store::Store;
use support::{API_KEY, Gateway, Viewer};

async fn put_stage(gw: &Gateway, room: &str, body: &Value) -> (u16, Value) {
    gw.http(
        "PUT",
        &format!("/v1/rooms/{room}/stage"),
        Some(API_KEY),
        Some(body),
    )
    .await
}

/// Joins `room` on `gw` and returns the snapshot's stage (`Null` when there is none).
async fn stage_on_join(gw: &Gateway, room: &str) -> Value {
    let mut late = Viewer::connect(gw, "late").await;
    let joined = late.join(room).await;
    joined["snapshot"]
        .get("stage")
        .cloned()
        .unwrap_or(Value::Null)
}

async fn set_replace_clear(gws: &[Arc<Gateway>]) {
    let room = "stage-show";
    let mut watcher = Viewer::connect(&gws[0], "watcher").await;
    assert_eq!(watcher.join(room).await["snapshot"].get("stage"), None);

    let ends_at = danmaku_fanout::now_ms() + 60_000;
    // Sent as text: the product is passed on as it was written, the label escaped.
    let first = format!(
        r#"{{"product":{{"sku":"A-1","price":19.90}},"ends_at":{ends_at},"label":"flash \"sale\""}}"#
    );
    let (status, text) = gws[0]
        .http_raw(
            "PUT",
            &format!("/v1/rooms/{room}/stage"),
            Some(API_KEY),
            Some(&first),
        )
        .await;
    let set: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status, 200, "{set}");
    let e = watcher.next_event().await;
    assert_eq!(
        (e["kind"].as_str(), e["priority"].as_str()),
        (Some("stage"), Some("high")),
        "{e}"
    );
    assert_eq!(e["seq"], set["seq"]);
    assert_eq!(e["data"]["product"]["sku"], "A-1");
    assert_eq!(e["data"]["ends_at"], ends_at);
    assert_eq!(e["data"]["label"], "flash \"sale\"");
    assert!(e["data"]["since"].as_u64().is_some(), "{e}");
    // A late joiner on every gateway sees the stage as the event told it.
    for gw in gws {
        assert_eq!(stage_on_join(gw, room).await, e["data"], "late joiner");
    }

    // Replaced through another gateway: the next seq, and joiners see the new one.
    let second = json!({"product": {"sku": "B-2"}});
    let (status, replaced) = put_stage(gws.last().unwrap(), room, &second).await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["seq"].as_u64(), set["seq"].as_u64().map(|s| s + 1));
    let e = watcher.next_event().await;
    assert_eq!(e["data"]["product"], json!({"sku": "B-2"}), "{e}");
    assert!(
        e["data"].get("ends_at").is_none() && e["data"].get("label").is_none(),
        "{e}"
    );
    assert_eq!(stage_on_join(&gws[0], room).await["product"]["sku"], "B-2");

    // Cleared: a `stage` event with null data, and no stage in the snapshot.
    let path = format!("/v1/rooms/{room}/stage");
    let (status, cleared) = gws[0].http("DELETE", &path, Some(API_KEY), None).await;
    assert_eq!(status, 200, "{cleared}");
    let e = watcher.next_event().await;
    assert_eq!(
        (e["kind"].as_str(), &e["data"]),
        (Some("stage"), &Value::Null),
        "{e}"
    );
    assert_eq!(e["seq"], cleared["seq"]);
    for gw in gws {
        assert_eq!(
            stage_on_join(gw, room).await,
            Value::Null,
            "after the clear"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stage_is_set_replaced_and_cleared_and_late_joiners_see_it() {
    set_replace_clear(&[Arc::new(Gateway::start(&[]))]).await;
}

async fn stage_on_redis(store: Store) {
    set_replace_clear(&store.gateways()).await;
}

on_every_store!(the_stage_on_three_gateways, stage_on_redis);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_stages_are_refused_with_the_reason_and_the_kind_is_reserved() {
    let gw = Gateway::start(&[]);
    let cases = [
        (json!({"label": "x"}), 400, "`product` is required"),
        (json!({"product": null}), 400, "`product` is required"),
        (
            json!({"product": {}, "ends_at": 1}),
            400,
            "not in the future",
        ),
        (
            json!({"product": {}, "label": ""}),
            400,
            "`label` must have",
        ),
        (
            json!({"product": {}, "label": "x".repeat(65)}),
            400,
            "`label` must have",
        ),
        (json!({"product": "y".repeat(9_000)}), 413, "at most 8192"),
    ];
    for (body, status, why) in cases {
        let (got, answer) = put_stage(&gw, "r", &body).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(why),
            "{answer}"
        );
    }
    let (status, answer) = gw
        .http(
            "PUT",
            "/v1/rooms/r/stage",
            None,
            Some(&json!({"product": {}})),
        )
        .await;
    assert_eq!(status, 401, "{answer}");
    // A backend cannot publish a `stage` event of its own: it would pass for the room's.
    let (status, answer) = gw
        .http(
            "POST",
            "/v1/rooms/r/events",
            Some(API_KEY),
            Some(&json!({"kind": "stage", "data": {}})),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    // Nothing was sequenced by any of these.
    let (_, info) = gw.http("GET", "/v1/rooms/r", Some(API_KEY), None).await;
    assert_eq!(info["seq"], 0, "{info}");
}
