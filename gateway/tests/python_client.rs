//! A client in another language (Python, `websockets`) joins, receives in order and
//! resumes with `since` after a reconnect.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;

use support::{API_KEY, Gateway};

#[test]
fn python_client_receives_in_order_and_resumes() {
    let has_websockets = Command::new("python3")
        .args(["-c", "import websockets"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_websockets,
        "python3 with the `websockets` package is needed: run scripts/test.sh, which installs it"
    );
    let gw = Gateway::start(&[]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/python/danmaku_client.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg("check")
        .args(["--ws-url", &gw.ws_url()])
        .args(["--http-url", &format!("http://{}", gw.addr)])
        .args(["--token", &support::token("py-user")])
        .args(["--api-key", API_KEY])
        .args(["--room", "py-room"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("OK: 36 events"), "{stdout}");
}
