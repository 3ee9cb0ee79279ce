//! Connections to one standalone server or to a Redis Cluster, behind one type.

use redis::aio::{ConnectionLike, ConnectionManager};
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
    pub(crate) async fn open(target: &Target) -> redis::RedisResult<Self> {
        Ok(match target {
            Target::Single(client) => Self::Single(ConnectionManager::new(client.clone()).await?),
            Target::Cluster(seeds) => Self::Cluster(
                redis::cluster::ClusterClient::new(seeds.clone())?
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
