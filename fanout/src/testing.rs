//! Test support: a real `redis-server` on a private unix socket, stopped on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A `redis-server` process for tests (no persistence, no TCP port).
pub struct TestRedis {
    child: Child,
    dir: PathBuf,
}

impl TestRedis {
    /// Starts a server and waits until it answers.
    ///
    /// # Panics
    /// When `redis-server` is missing or does not come up (tests only).
    pub fn start() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "danmaku-redis-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let child = Self::spawn(&dir);
        let me = Self { child, dir };
        me.wait_up();
        me
    }

    /// Stops the server (its data is gone: there is no persistence).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(self.dir.join("r.sock"));
    }

    /// Starts the server again, empty, on the same socket.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(&self.dir);
        self.wait_up();
    }

    fn spawn(dir: &std::path::Path) -> Child {
        let socket = dir.join("r.sock");
        Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
                "--unixsocketperm",
                "700",
            ])
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is needed: run scripts/test.sh, which installs it")
    }

    fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.ping() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The URL to connect to.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.dir.join("r.sock").display())
    }

    /// Runs `redis-cli` against the server with `args`; returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-s")
            .arg(self.dir.join("r.sock"))
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn ping(&self) -> bool {
        self.dir.join("r.sock").exists() && self.cli(&["PING"]).trim() == "PONG"
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
