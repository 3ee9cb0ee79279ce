//! Connections to one standalone server or to a Redis Cluster, behind one type.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// Where a shard's data lives.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// One standalone server.
    Single(redis::Client),
    /// A Redis Cluster, reached through these seed URLs.
    Cluster(Vec<String>),
}

/// A command connection (multiplexed; reconnects by itself).
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Opens a connection whose calls answer within about `timeout`: a response
    /// takes at most that, and while Redis is unreachable a call fails after one
    /// short reconnect attempt instead of retrying for seconds.
    pub(crate) async fn open(target: &Target, timeout: Duration) -> redis::RedisResult<Self> {
        Ok(match target {
            Target::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(timeout))
                    .set_connection_timeout(Some(timeout / 2))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(200));
                Self::Single(ConnectionManager::new_with_config(client.clone(), config).await?)
            }
            Target::Cluster(seeds) => Self::Cluster(
                redis::cluster::ClusterClientBuilder::new(seeds.clone())
                    .response_timeout(timeout)
                    .connection_timeout(timeout / 2)
                    .retries(1)
                    .build()?
                    .get_async_connection()
                    .await?,
            ),
        })
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}
