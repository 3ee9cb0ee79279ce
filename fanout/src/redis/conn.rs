//! Connections to one standalone server or to a Redis Cluster, behind one type.
//!
//! Every command and pipeline of a command connection is counted here, in one place:
//! its latency, or the error or timeout it ended in ([`StoreStats`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use crate::stats::StoreStats;

/// Where a shard's data lives.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// One standalone server.
    Single(redis::Client),
    /// A Redis Cluster, reached through these seed URLs.
    Cluster(Vec<String>),
}

/// A command connection (multiplexed; reconnects by itself), counting its calls.
#[derive(Clone)]
pub(crate) struct Conn {
    link: Link,
    stats: Arc<StoreStats>,
}

#[derive(Clone)]
enum Link {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Opens a connection whose calls answer within about `timeout`: a response
    /// takes at most that, and while Redis is unreachable a call fails after one
    /// short reconnect attempt instead of retrying for seconds.
    pub(crate) async fn open(
        target: &Target,
        timeout: Duration,
        stats: Arc<StoreStats>,
    ) -> redis::RedisResult<Self> {
        let link = match target {
            Target::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(timeout))
                    .set_connection_timeout(Some(timeout / 2))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(200));
                Link::Single(ConnectionManager::new_with_config(client.clone(), config).await?)
            }
            Target::Cluster(seeds) => Link::Cluster(
                redis::cluster::ClusterClientBuilder::new(seeds.clone())
                    .response_timeout(timeout)
                    .connection_timeout(timeout / 2)
                    .retries(1)
                    .build()?
                    .get_async_connection()
                    .await?,
            ),
        };
        Ok(Self { link, stats })
    }
}

/// Waits for a call and counts how it ended. A call dropped before its end (the
/// caller's own timeout) is counted by that caller.
async fn counted<T>(stats: &StoreStats, call: RedisFuture<'_, T>) -> RedisResult<T> {
    let started = Instant::now();
    let result = call.await;
    match &result {
        Err(e) if e.is_timeout() => StoreStats::inc(&stats.timeouts),
        // The room script's refusals are answers, not failures of the store.
        Err(e) if !e.code().is_some_and(|c| c.starts_with("DM_")) => {
            StoreStats::inc(&stats.errors);
        }
        _ => stats.latency.observe(started.elapsed()),
    }
    result
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let call = match &mut self.link {
            Link::Single(c) => c.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
        };
        Box::pin(counted(&self.stats, call))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let call = match &mut self.link {
            Link::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        };
        Box::pin(counted(&self.stats, call))
    }

    fn get_db(&self) -> i64 {
        match &self.link {
            Link::Single(c) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
        }
    }
}
