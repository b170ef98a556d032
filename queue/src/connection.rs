//! Where the engine's Redis is: one node (`redis://host:port`) or a Redis Cluster
//! (`redis+cluster://host:port[,host:port…]`, or several `redis://` seeds separated by commas),
//! chosen by the URL. Both give a connection that reconnects by itself; the cluster one also
//! follows `MOVED`/`ASK` redirections, resharding and failovers.

use std::time::Duration;

use redis::{
    Client, Cmd, Pipeline, RedisFuture, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
    cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr},
};

use crate::{QueueError, Result};

/// How the engine reaches Redis, parsed from a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTopology {
    /// One node (a primary, possibly with replicas that `WAIT` counts).
    Node(String),
    /// A Redis Cluster, found from these seed nodes (`redis://host:port` each).
    Cluster(Vec<String>),
}

impl RedisTopology {
    /// `redis://…` is one node; `redis+cluster://a:1,b:2` or `redis://a:1,redis://b:2` a cluster.
    pub fn parse(url: &str) -> Result<Self> {
        let url = url.trim();
        let bad = |why: &str| QueueError::InvalidJob(format!("redis url {url:?}: {why}"));
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let (auth, hosts) = match rest.rsplit_once('@') {
                Some((auth, hosts)) => (format!("{auth}@"), hosts),
                None => (String::new(), rest),
            };
            let seeds: Vec<String> = hosts
                .trim_end_matches('/')
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(|h| format!("redis://{auth}{h}"))
                .collect();
            if seeds.is_empty() {
                return Err(bad("a cluster URL names at least one host:port"));
            }
            return Ok(Self::Cluster(seeds));
        }
        if url.contains(',') {
            let seeds: Vec<String> = url
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if let Some(odd) = seeds.iter().find(|s| !s.starts_with("redis://")) {
                return Err(bad(&format!(
                    "each seed of a list is a redis:// URL, not {odd:?}"
                )));
            }
            return Ok(Self::Cluster(seeds));
        }
        if url.starts_with("redis://") || url.starts_with("unix://") {
            return Ok(Self::Node(url.to_owned()));
        }
        Err(bad(
            "expected redis://host:port, redis+cluster://host:port[,host:port…] or a comma-separated list of redis:// seeds",
        ))
    }
}

/// A client that makes connections of either kind.
#[derive(Clone)]
pub(crate) enum RedisClient {
    Node(Client),
    Cluster(Box<ClusterClient>),
}

impl RedisClient {
    pub fn open(topology: &RedisTopology, response_timeout: Duration) -> Result<Self> {
        Ok(match topology {
            RedisTopology::Node(url) => Self::Node(Client::open(url.as_str())?),
            RedisTopology::Cluster(seeds) => Self::Cluster(Box::new(
                ClusterClientBuilder::new(seeds.clone())
                    .response_timeout(response_timeout)
                    .connection_timeout(response_timeout)
                    // A failover takes the cluster a few node timeouts; keep asking meanwhile.
                    .retries(8)
                    .min_retry_wait(50)
                    .max_retry_wait(1_000)
                    .build()?,
            )),
        })
    }

    /// A connection whose commands fail after `timeout` without an answer.
    pub async fn connect(&self, timeout: Duration) -> Result<RedisConn> {
        Ok(match self {
            Self::Node(client) => RedisConn::Node(
                client
                    .get_connection_manager_with_config(node_manager_config(timeout))
                    .await?,
            ),
            Self::Cluster(client) => {
                let config = redis::cluster::ClusterConfig::new()
                    .set_response_timeout(timeout)
                    .set_connection_timeout(timeout);
                RedisConn::Cluster(client.get_async_connection_with_config(config).await?)
            }
        })
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

fn node_manager_config(response_timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_response_timeout(Some(response_timeout))
        .set_connection_timeout(Some(response_timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500))
}

/// A connection to one node or to a cluster; cheap to clone (clones share the connection).
#[derive(Clone)]
pub(crate) enum RedisConn {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Node(_) => "RedisConn::Node",
            Self::Cluster(_) => "RedisConn::Cluster",
        })
    }
}

impl RedisConn {
    /// Sends `pipe` to the primary that holds `key`'s slot, in one round trip: a `WAIT` at its
    /// end then counts the replicas of exactly the writes before it.
    pub async fn pipeline_at(
        &mut self,
        key: &str,
        pipe: &Pipeline,
    ) -> redis::RedisResult<Vec<Value>> {
        match self {
            Self::Node(conn) => pipe.query_async(conn).await,
            Self::Cluster(conn) => {
                let route =
                    SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master));
                conn.route_pipeline(pipe.clone(), 0, pipe.len(), route)
                    .await
            }
        }
    }

    /// Sends `cmd` to the primary that holds `key`'s slot (a command without keys, such as
    /// `INFO` or `SCAN`, that must reach the node holding a deployment's data).
    pub async fn command_at(&mut self, key: &str, cmd: &Cmd) -> redis::RedisResult<Value> {
        match self {
            Self::Node(conn) => cmd.query_async(conn).await,
            Self::Cluster(conn) => {
                let route =
                    SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master));
                conn.route_command(cmd.clone(), RoutingInfo::SingleNode(route))
                    .await
            }
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RedisTopology;

    #[test]
    fn urls_name_a_node_or_a_cluster() {
        assert_eq!(
            RedisTopology::parse("redis://127.0.0.1:6379/2").ok(),
            Some(RedisTopology::Node("redis://127.0.0.1:6379/2".into()))
        );
        assert_eq!(
            RedisTopology::parse("redis+cluster://10.0.0.1:7000, 10.0.0.2:7000/").ok(),
            Some(RedisTopology::Cluster(vec![
                "redis://10.0.0.1:7000".into(),
                "redis://10.0.0.2:7000".into()
            ]))
        );
        assert_eq!(
            RedisTopology::parse("redis+cluster://app:secret@h:7000").ok(),
            Some(RedisTopology::Cluster(vec![
                "redis://app:secret@h:7000".into()
            ]))
        );
        assert_eq!(
            RedisTopology::parse("redis://a:1,redis://b:2").ok(),
            Some(RedisTopology::Cluster(vec![
                "redis://a:1".into(),
                "redis://b:2".into()
            ]))
        );
        for bad in ["", "http://x", "redis+cluster://", "redis://a:1,b:2"] {
            assert!(RedisTopology::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
