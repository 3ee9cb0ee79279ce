//! Cross-language check: the Python example client (examples/python/danmaku_client.py,
//! using the `websockets` package) runs its `check` scenario — fresh join, 20 events in
//! order, disconnect, resume with `since`, exactly the 15 missed events, then live —
//! against a real gateway.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::Gateway;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/python/danmaku_client.py"
);
const TIMEOUT: Duration = Duration::from_secs(60);

/// Outcome of a subprocess: exit status (None if killed on timeout), stdout, stderr.
struct Outcome {
    status: Option<std::process::ExitStatus>,
    stdout: String,
    stderr: String,
}

/// Runs `program args…` to completion, killing it after `timeout`.
fn run_with_timeout(program: &str, args: &[String], timeout: Duration) -> Outcome {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Outcome {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

#[tokio::test]
async fn python_client_checks_order_and_resume() {
    let probe = Command::new("python3")
        .args(["-c", "import websockets"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "python3 cannot import `websockets` ({}); run scripts/test.sh, which installs it",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("python3 not found ({e}); run scripts/test.sh, which installs it"),
    }

    let gw = Gateway::start(&[]);
    let args: Vec<String> = vec![
        SCRIPT.into(),
        "check".into(),
        "--ws-url".into(),
        gw.ws_url(),
        "--http-url".into(),
        format!("http://{}", gw.addr),
        "--token".into(),
        support::token("py-user"),
        "--api-key".into(),
        support::API_KEY.into(),
        "--room".into(),
        "py-room".into(),
    ];
    let out = tokio::task::spawn_blocking(move || run_with_timeout("python3", &args, TIMEOUT))
        .await
        .expect("runner");
    let report = format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        out.stdout, out.stderr
    );
    match out.status {
        None => panic!("python client did not finish within {TIMEOUT:?}\n{report}"),
        Some(status) => assert!(
            status.success(),
            "python client check failed ({status})\n{report}"
        ),
    }
    drop(gw);
}
