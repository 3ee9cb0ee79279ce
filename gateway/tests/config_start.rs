//! The real binary's configuration: precedence of flag, environment and file, and a
//! refusal at start that says why.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn gateway() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_danmaku-gateway"));
    // Nothing from the caller's environment.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("DANMAKU_") {
            cmd.env_remove(key);
        }
    }
    cmd.args(["--listen", "127.0.0.1:0", "--log", "warn"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// The id in the first banner line, `danmaku-gateway <id> listening on <addr>`.
fn started_as(mut cmd: Command) -> String {
    let mut child = cmd.spawn().expect("spawn");
    let mut line = String::new();
    let read = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
    let _ = child.kill();
    let _ = child.wait();
    read.expect("banner");
    line.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no banner: {line:?}"))
        .to_owned()
}

struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("danmaku-{name}-{}.toml", std::process::id()));
        std::fs::write(&path, text).expect("write");
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn flag_beats_environment_beats_file() {
    let file = TempFile::new("precedence", "gateway_id = \"from-file\"\n");
    let mut cmd = gateway();
    cmd.arg("--config").arg(&file.0);
    assert_eq!(started_as(cmd), "from-file");
    let mut cmd = gateway();
    cmd.env("DANMAKU_CONFIG", &file.0)
        .env("DANMAKU_GATEWAY_ID", "from-env");
    assert_eq!(started_as(cmd), "from-env");
    let mut cmd = gateway();
    cmd.env("DANMAKU_CONFIG", &file.0)
        .env("DANMAKU_GATEWAY_ID", "from-env")
        .args(["--gateway-id", "from-flag"]);
    assert_eq!(started_as(cmd), "from-flag");
}

#[test]
fn a_refused_setting_stops_the_start_with_its_reason() {
    let mut cmd = gateway();
    cmd.env("DANMAKU_HEARTBEAT_MS", "50");
    let out = cmd.output().expect("run");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing was served");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--heartbeat-ms is 50; it must be between 100 and 86400000"),
        "{stderr}"
    );
}
