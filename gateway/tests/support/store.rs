//! The Redis topologies the multi-gateway tests run on — one server, two client-side
//! shards, a 3-master Cluster — and [`on_every_store!`], which runs one scenario on each.

use std::sync::Arc;

use danmaku_fanout::redis::RedisConfig;
use danmaku_fanout::testing::{TestCluster, TestRedis};

use super::Gateway;

/// The Redis topologies every test runs on.
pub enum Store {
    /// One standalone server.
    Single(TestRedis),
    /// Two standalone servers, rooms sharded by the client.
    Shards(TestRedis, TestRedis),
    /// A 3-master Redis Cluster.
    Cluster(TestCluster),
}

impl Store {
    pub fn single() -> Self {
        Self::Single(TestRedis::start())
    }

    pub fn shards() -> Self {
        Self::Shards(TestRedis::start(), TestRedis::start())
    }

    pub fn cluster() -> Self {
        Self::Cluster(TestCluster::start())
    }

    /// The topology's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Single(_) => "single Redis",
            Self::Shards(..) => "two sharded Redis",
            Self::Cluster(_) => "Redis Cluster",
        }
    }

    pub fn config(&self) -> RedisConfig {
        let (urls, cluster) = match self {
            Self::Single(r) => (vec![r.url()], false),
            Self::Shards(a, b) => (vec![a.url(), b.url()], false),
            Self::Cluster(c) => (c.urls(), true),
        };
        RedisConfig {
            urls,
            cluster,
            ..RedisConfig::default()
        }
    }

    /// Three gateway processes on this store.
    pub fn gateways(&self) -> Vec<Arc<Gateway>> {
        self.gateways_with(&[])
    }

    /// Three gateway processes on this store, with `extra` flags.
    pub fn gateways_with(&self, extra: &[&str]) -> Vec<Arc<Gateway>> {
        self.gateways_n(3, extra)
    }

    /// `n` gateway processes on this store (ids `g1`, `g2`, …), with `extra` flags.
    pub fn gateways_n(&self, n: usize, extra: &[&str]) -> Vec<Arc<Gateway>> {
        (1..=n)
            .map(|i| self.gateway_env(&format!("g{i}"), extra, &[]))
            .collect()
    }

    /// One gateway process `id` on this store, with `extra` flags and `env`.
    pub fn gateway_env(&self, id: &str, extra: &[&str], env: &[(&str, &str)]) -> Arc<Gateway> {
        let config = self.config();
        let flag = if config.cluster {
            "--redis-cluster"
        } else {
            "--redis-url"
        };
        let urls = config.urls.join(",");
        let mut args = vec![flag, &urls, "--gateway-id", id];
        args.extend_from_slice(extra);
        Arc::new(Gateway::start_env(&args, env))
    }

    /// Runs a command on the server that holds `key` (a room's key).
    pub fn cli_room(&self, key: &str, args: &[&str]) -> String {
        match self {
            Self::Single(r) => r.cli(args),
            Self::Shards(a, b) => {
                let holder = if a.cli(&["EXISTS", key]).trim() == "1" {
                    a
                } else {
                    b
                };
                holder.cli(args)
            }
            Self::Cluster(c) => c.cli_any(args),
        }
    }

    /// Stops every server (their data is gone).
    pub fn stop(&mut self) {
        match self {
            Self::Single(r) => r.stop(),
            Self::Shards(a, b) => {
                a.stop();
                b.stop();
            }
            Self::Cluster(c) => c.stop(),
        }
    }

    /// Starts every server again, empty.
    pub fn start_again(&mut self) {
        match self {
            Self::Single(r) => r.restart(),
            Self::Shards(a, b) => {
                a.restart();
                b.restart();
            }
            Self::Cluster(c) => c.restart(),
        }
    }

    /// Kills every pub/sub connection on every server; returns how many.
    pub fn kill_pubsub(&self) -> u64 {
        let kill = ["CLIENT", "KILL", "TYPE", "pubsub"];
        let outputs = match self {
            Self::Single(r) => vec![r.cli(&kill)],
            Self::Shards(a, b) => vec![a.cli(&kill), b.cli(&kill)],
            Self::Cluster(c) => (0..3).map(|n| c.cli(n, &kill)).collect(),
        };
        outputs
            .iter()
            .map(|o| o.trim().parse::<u64>().unwrap_or(0))
            .sum()
    }
}

/// Runs `$scenario(store)` on each topology, as three tests (`single_redis`,
/// `two_sharded_redis`, `redis_cluster`) in a module `$name`.
#[macro_export]
macro_rules! on_every_store {
    ($name:ident, $scenario:ident) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn single_redis() {
                $scenario($crate::support::store::Store::single()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn two_sharded_redis() {
                $scenario($crate::support::store::Store::shards()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis_cluster() {
                $scenario($crate::support::store::Store::cluster()).await;
            }
        }
    };
}
