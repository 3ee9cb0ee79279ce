//! Test support: a real `redis-server` on a private unix socket, stopped on drop.

pub use crate::redis::record::data_record;

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

/// A 3-master Redis Cluster for tests, on free TCP ports, created with
/// `redis-cli --cluster create`; stopped on drop.
pub struct TestCluster {
    nodes: Vec<Child>,
    ports: Vec<u16>,
    /// Cluster bus ports, chosen free too: the default (port + 10,000) may be taken
    /// by any ephemeral connection on a busy test machine.
    bus: Vec<u16>,
    dir: PathBuf,
}

impl TestCluster {
    /// Starts three masters, joins them into a cluster and waits until it serves.
    ///
    /// # Panics
    /// When `redis-server`/`redis-cli` are missing or the cluster does not form.
    pub fn start() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "danmaku-cluster-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let bus: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let nodes = ports
            .iter()
            .zip(&bus)
            .map(|(&p, &b)| spawn_node(&dir, p, b))
            .collect();
        let me = Self {
            nodes,
            ports,
            bus,
            dir,
        };
        me.form();
        me
    }

    /// Seed URLs of the masters.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// Runs `redis-cli` against master `node` (0..3) with `args`.
    pub fn cli(&self, node: usize, args: &[&str]) -> String {
        cli_port(self.ports[node], args)
    }

    /// Runs `redis-cli -c` (following slot redirects) with `args`.
    pub fn cli_any(&self, args: &[&str]) -> String {
        let mut all = vec!["-c"];
        all.extend_from_slice(args);
        cli_port(self.ports[0], &all)
    }

    /// Stops every node (the data is gone: there is no persistence).
    pub fn stop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.kill();
            let _ = n.wait();
        }
    }

    /// Stops every node and starts a new, empty cluster on the same ports (a restart
    /// without persistence).
    pub fn restart(&mut self) {
        self.stop();
        let ports = self.ports.clone();
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::create_dir_all(&self.dir).expect("temp dir");
        self.nodes = ports
            .iter()
            .zip(&self.bus)
            .map(|(&p, &b)| spawn_node(&self.dir, p, b))
            .collect();
        self.form();
    }

    fn form(&self) {
        for &port in &self.ports {
            self.wait(port, |out| out.trim() == "PONG", &["PING"]);
        }
        let addrs: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for &port in &self.ports {
            self.wait(
                port,
                |out| out.contains("cluster_state:ok"),
                &["CLUSTER", "INFO"],
            );
        }
    }

    fn wait(&self, port: u16, ok: impl Fn(&str) -> bool, args: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ok(&cli_port(port, args)) {
            assert!(Instant::now() < deadline, "redis node {port} not ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.kill();
            let _ = n.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn_node(dir: &std::path::Path, port: u16, bus: u16) -> Child {
    let node_dir = dir.join(port.to_string());
    std::fs::create_dir_all(&node_dir).expect("node dir");
    Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            &bus.to_string(),
        ])
        .args([
            "--cluster-node-timeout",
            "5000",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(&node_dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is needed: run scripts/test.sh, which installs it")
}

fn cli_port(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// A free TCP port below 55535 (the cluster bus uses port + 10000).
fn free_port() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        if port > 1024 && port < 55_535 {
            return port;
        }
    }
}
