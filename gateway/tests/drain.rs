//! SIGTERM: every client is told to reconnect, then closed with 1012; meanwhile
//! `/readyz` answers 503; the process finishes what it acknowledged and exits 0.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use support::{Gateway, Viewer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_reconnect_then_1012_and_exits_zero() {
    let mut gw = Gateway::start(&["--drain-ms", "1500", "--likes-window-ms", "60000"]);
    let mut viewers = Vec::new();
    for i in 0..20 {
        let mut v = Viewer::connect(&gw, &format!("v{i}")).await;
        v.join("r").await;
        viewers.push(v);
    }
    // A like acknowledged before the signal must still be published (the window is
    // a minute, so only the drain's final flush can publish it).
    let id = viewers[0]
        .send(json!({"type": "like", "room": "r", "count": 3}))
        .await;
    assert_eq!(viewers[0].reply(id).await["type"], "ack");
    gw.sigterm();
    let mut checked_ready = false;
    for v in &mut viewers {
        let mut reconnect = None;
        let mut likes = None;
        while reconnect.is_none() || likes.is_none() {
            let m = v.next().await;
            match m["type"].as_str() {
                Some("reconnect") => reconnect = Some(m),
                Some("event") if m["kind"] == "likes" => likes = Some(m),
                _ => {}
            }
        }
        let r = reconnect.unwrap();
        assert_eq!(
            (r["reason"].as_str(), r["after_ms"].as_u64()),
            (Some("draining"), Some(1500))
        );
        if !checked_ready {
            // Draining, before the close: still answering, and telling the balancer.
            let (ready, body) = gw.http("GET", "/readyz", None, None).await;
            assert_eq!((ready, body["status"].as_str()), (503, Some("draining")));
            checked_ready = true;
        }
        assert_eq!(likes.unwrap()["data"]["total"], 3);
        assert_eq!(v.closed().await, 1012);
    }
    let status = tokio::task::spawn_blocking(move || gw.child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
