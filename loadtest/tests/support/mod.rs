//! Test support: gateway processes (and a Redis server for several of them), stopped
//! when dropped; a TLS-terminating proxy in front of a gateway (`tls`).
#![allow(dead_code, clippy::unwrap_used)]

pub mod tls;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The gateways' `--jwt-secret`.
pub const SECRET: &str = "loadtest-secret-0123456789";
/// The gateways' API key.
pub const KEY: &str = "loadtest-key";

/// A gateway process, killed when dropped.
pub struct Gateway {
    pub child: Child,
    pub url: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The gateway binary, built next to this package's binary by `cargo test --workspace`.
fn gateway_bin() -> PathBuf {
    let bin =
        PathBuf::from(env!("CARGO_BIN_EXE_danmaku-loadtest")).with_file_name("danmaku-gateway");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test --workspace` or `cargo build -p danmaku-gateway`",
        bin.display()
    );
    bin
}

/// Starts a gateway on a free port with the test credentials and `extra` flags.
pub fn gateway(extra: &[&str]) -> Gateway {
    let mut child = Command::new(gateway_bin())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--jwt-secret",
            SECRET,
            "--api-keys",
            KEY,
            "--log",
            "warn",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.split_whitespace().last().unwrap().to_owned();
    Gateway {
        child,
        url: format!("ws://{addr}/ws"),
    }
}

/// A directory of one run's own for its output files (tests run in parallel),
/// removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new, empty one.
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "danmaku-lt-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `redis-server` on a unix socket of its own, without persistence; stopped (and its
/// directory removed) when dropped.
pub struct Redis {
    child: Child,
    dir: TempDir,
}

impl Redis {
    /// Starts one and waits for its socket.
    pub fn start() -> Self {
        let dir = TempDir::new();
        let socket = dir.path().join("redis.sock");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is needed: run scripts/test.sh, which installs it");
        let up = Instant::now();
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                up.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, dir }
    }

    /// The gateways' `--redis-url`.
    pub fn url(&self) -> String {
        format!(
            "redis+unix://{}",
            self.dir.path().join("redis.sock").display()
        )
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // Its directory goes after it, with the field.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
