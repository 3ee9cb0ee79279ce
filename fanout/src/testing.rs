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

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT): it then runs what it was sent.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let ok = Command::new("kill")
            .args([which, &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {which} redis-server");
    }

    /// Saves the data as it is now (`SAVE`) and keeps that snapshot aside, for
    /// [`TestRedis::restart_from`].
    ///
    /// # Panics
    /// When the save fails (tests only).
    pub fn snapshot(&self) -> PathBuf {
        assert_eq!(self.cli(&["SAVE"]).trim(), "OK", "SAVE");
        static N: AtomicU64 = AtomicU64::new(0);
        let kept = self.dir.join(format!(
            "snapshot-{}.rdb",
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::copy(self.dir.join("dump.rdb"), &kept).expect("copy dump.rdb");
        kept
    }

    /// Kills the server and starts it again from an older `snapshot`, on the same
    /// socket: every write after the snapshot is lost, as after a restart from a stale
    /// RDB file or a failover to a replica that lagged.
    ///
    /// # Panics
    /// When the snapshot cannot be put back (tests only).
    pub fn restart_from(&mut self, snapshot: &std::path::Path) {
        self.stop();
        std::fs::copy(snapshot, self.dir.join("dump.rdb")).expect("restore dump.rdb");
        self.child = Self::spawn(&self.dir);
        self.wait_up();
    }

    /// Starts the server again, empty, on the same socket.
    pub fn restart(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(self.dir.join("dump.rdb"));
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

/// A free TCP port in 20,000–31,999: below the kernel's ephemeral range (32,768 and
/// up by default), so that none of the many outgoing connections of a busy test run can
/// take it between this check and the node's own bind — a node that lost its port
/// would never answer. Each call tries the next port of a per-process sequence.
fn free_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start = u64::from(std::process::id()).wrapping_mul(7_919);
    loop {
        let n = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
        let port = 20_000 + (n % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A TCP proxy in front of a [`TestRedis`] that can silently stall the pub/sub
/// connections open at that moment: they stay open, but nothing more is forwarded
/// either way — what a broken middlebox or a half-dead network path does. Command
/// connections, and pub/sub connections opened later, keep working. A connection
/// counts as pub/sub once it sent a `SUBSCRIBE`.
pub struct StallProxy {
    addr: std::net::SocketAddr,
    conns: std::sync::Arc<std::sync::Mutex<Vec<ProxiedConn>>>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    severed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// One proxied connection's flags, and its client socket (to sever it).
#[derive(Clone)]
struct ProxiedConn {
    pubsub: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
    client: std::sync::Arc<std::net::TcpStream>,
}

impl StallProxy {
    /// Listens on 127.0.0.1 (an ephemeral port) and forwards to `redis`.
    ///
    /// # Panics
    /// When the listener cannot be made (tests only).
    pub fn start(redis: &TestRedis) -> Self {
        use std::sync::atomic::AtomicBool;
        use std::sync::{Arc, Mutex};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let socket = redis.dir.join("r.sock");
        let conns: Arc<Mutex<Vec<ProxiedConn>>> = Arc::default();
        let done = Arc::new(AtomicBool::new(false));
        let severed = Arc::new(AtomicBool::new(false));
        let (all, d, cut) = (conns.clone(), done.clone(), severed.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if d.load(Ordering::Relaxed) {
                    return;
                }
                if cut.load(Ordering::Relaxed) {
                    continue; // dropped: the connection is refused at once
                }
                let (Ok(client), Ok(server)) =
                    (client, std::os::unix::net::UnixStream::connect(&socket))
                else {
                    continue;
                };
                let (Ok(c2), Ok(s2), Ok(c3)) =
                    (client.try_clone(), server.try_clone(), client.try_clone())
                else {
                    continue;
                };
                let conn = ProxiedConn {
                    pubsub: Arc::default(),
                    stalled: Arc::default(),
                    client: Arc::new(c3),
                };
                all.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(conn.clone());
                let back = conn.clone();
                std::thread::spawn(move || forward(client, server, &conn, true));
                std::thread::spawn(move || forward(s2, c2, &back, false));
            }
        });
        Self {
            addr,
            conns,
            done,
            severed,
        }
    }

    /// Cuts every connection through the proxy and refuses new ones: the gateway
    /// behind it has lost Redis, while others reach it directly.
    pub fn sever(&self) {
        self.severed.store(true, Ordering::Relaxed);
        let conns = self
            .conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for c in conns.iter() {
            let _ = c.client.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Accepts connections again after [`StallProxy::sever`].
    pub fn mend(&self) {
        self.severed.store(false, Ordering::Relaxed);
    }

    /// The URL to give the gateway.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Stops forwarding on every pub/sub connection open now (they stay open).
    /// Returns how many were stalled.
    pub fn stall_pubsub(&self) -> usize {
        let conns = self
            .conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut n = 0;
        for c in conns.iter().filter(|c| c.pubsub.load(Ordering::Relaxed)) {
            c.stalled.store(true, Ordering::Relaxed);
            n += 1;
        }
        n
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

/// Copies `from` to `to`; from the client side (`upstream`), marks the connection as
/// pub/sub when a `SUBSCRIBE` goes by. A stalled connection's bytes are held, and its
/// sockets kept open, for as long as the test runs.
fn forward(
    mut from: impl std::io::Read,
    mut to: impl std::io::Write,
    conn: &ProxiedConn,
    upstream: bool,
) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // The command as a whole RESP argument (`SUBSCRIBE`, `SSUBSCRIBE`), not the
        // word inside a script's text.
        if upstream
            && buf[..n]
                .windows(11)
                .any(|w| w.eq_ignore_ascii_case(b"SUBSCRIBE\r\n"))
        {
            conn.pubsub.store(true, Ordering::Relaxed);
        }
        if conn.stalled.load(Ordering::Relaxed) {
            // Hold the bytes and the sockets; this thread ends with the test process.
            loop {
                std::thread::park();
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}
