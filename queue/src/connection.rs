//! Where the engine's Redis is: one node (`redis://host:port`), a Redis Cluster
//! (`redis+cluster://host:port[,host:port…]`, or several `redis://` seeds separated by commas),
//! or a primary that Redis Sentinel watches (`redis+sentinel://host:port[,…]/service[/db]`),
//! chosen by the URL. Each gives a connection that reconnects by itself; the cluster one
//! follows `MOVED`/`ASK` redirections, resharding and failovers, and the Sentinel one asks the
//! sentinels for the primary again whenever the one it has stops answering or turns replica.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use redis::{
    AsyncConnectionConfig, Client, Cmd, IntoConnectionInfo, Pipeline, RedisError, RedisFuture,
    Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection},
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
    /// The primary of `service`, as these sentinels (`redis://host:port` each) name it; `node`
    /// carries the data nodes' credentials and database (`redis://[auth@]_/db`).
    Sentinel {
        sentinels: Vec<String>,
        service: String,
        node: String,
    },
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
        if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            let (auth, rest) = match rest.rsplit_once('@') {
                Some((auth, rest)) => (format!("{auth}@"), rest),
                None => (String::new(), rest),
            };
            let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
            let mut path = path.split('/').filter(|p| !p.is_empty());
            let service = path
                .next()
                .ok_or_else(|| {
                    bad("a sentinel URL names its service: redis+sentinel://h:26379/mymaster")
                })?
                .to_owned();
            let db = path.next().unwrap_or("0");
            if db.parse::<u32>().is_err() {
                return Err(bad("the database after the service is a number"));
            }
            let sentinels: Vec<String> = hosts
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(|h| format!("redis://{h}"))
                .collect();
            if sentinels.is_empty() {
                return Err(bad("a sentinel URL names at least one host:port"));
            }
            return Ok(Self::Sentinel {
                sentinels,
                service,
                node: format!("redis://{auth}localhost/{db}"),
            });
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
            "expected redis://host:port, redis+cluster://host:port[,host:port…], a comma-separated list of redis:// seeds, or redis+sentinel://host:port[,…]/service",
        ))
    }
}

/// A client that makes connections of either kind.
#[derive(Clone)]
pub(crate) enum RedisClient {
    Node(Client),
    Cluster(Box<ClusterClient>),
    Sentinel(Arc<SentinelTarget>),
}

/// What a Sentinel connection needs to find the primary again.
pub(crate) struct SentinelTarget {
    sentinels: Vec<String>,
    service: String,
    node: redis::sentinel::SentinelNodeConnectionInfo,
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
            RedisTopology::Sentinel {
                sentinels,
                service,
                node,
            } => Self::Sentinel(Arc::new(SentinelTarget {
                sentinels: sentinels.clone(),
                service: service.clone(),
                node: sentinel_node_info(node)?,
            })),
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
            Self::Sentinel(target) => {
                RedisConn::Sentinel(SentinelConn::connect(target.clone(), timeout).await?)
            }
        })
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

/// The credentials and database of a Sentinel set-up's data nodes, from `RedisTopology`'s
/// `node` URL.
pub(crate) fn sentinel_node_info(
    node: &str,
) -> redis::RedisResult<redis::sentinel::SentinelNodeConnectionInfo> {
    let node = node.into_connection_info()?;
    Ok(redis::sentinel::SentinelNodeConnectionInfo::default()
        .set_redis_connection_info(node.redis_settings().clone()))
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
    Sentinel(SentinelConn),
}

/// A connection to the primary the sentinels name. A failure that may mean the primary moved
/// (no answer, a refused connection, `READONLY`) makes the next call ask the sentinels again;
/// the failed call itself answers its error, which callers treat as retryable.
#[derive(Clone)]
pub(crate) struct SentinelConn {
    shared: Arc<SentinelShared>,
}

struct SentinelShared {
    target: Arc<SentinelTarget>,
    timeout: Duration,
    /// The connection in use and how many times it was replaced.
    current: RwLock<(u64, MultiplexedConnection)>,
    /// One re-resolution at a time.
    resolving: tokio::sync::Mutex<()>,
}

impl SentinelConn {
    async fn connect(target: Arc<SentinelTarget>, timeout: Duration) -> redis::RedisResult<Self> {
        let conn = Self::open_primary(&target, timeout).await?;
        Ok(Self {
            shared: Arc::new(SentinelShared {
                target,
                timeout,
                current: RwLock::new((0, conn)),
                resolving: tokio::sync::Mutex::new(()),
            }),
        })
    }

    async fn open_primary(
        target: &SentinelTarget,
        timeout: Duration,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let mut sentinel = redis::sentinel::SentinelClient::build(
            target.sentinels.clone(),
            target.service.clone(),
            Some(target.node.clone()),
            redis::sentinel::SentinelServerType::Master,
        )?;
        let primary = tokio::time::timeout(timeout, sentinel.async_get_client())
            .await
            .map_err(|_| RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout));
        primary
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    fn current(&self) -> (u64, MultiplexedConnection) {
        let guard = self
            .shared
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (guard.0, guard.1.clone())
    }

    /// Asks the sentinels for the primary again, unless another call already did since
    /// `generation` was in use.
    async fn reresolve(&self, generation: u64) {
        let _one = self.shared.resolving.lock().await;
        if self.current().0 != generation {
            return;
        }
        match Self::open_primary(&self.shared.target, self.shared.timeout).await {
            Ok(conn) => {
                let mut guard = self
                    .shared
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                *guard = (generation + 1, conn);
                tracing::info!(service = %self.shared.target.service, "redis: connected to the primary the sentinels name");
            }
            Err(e) => {
                tracing::warn!(error = %e, "redis: the sentinels named no reachable primary yet")
            }
        }
    }
}

impl SentinelConn {
    /// Runs `call` on the current primary's connection; a failure that may mean the primary
    /// moved makes the sentinels be asked again before the error is answered.
    async fn on_primary<T, F, Fut>(&self, call: F) -> redis::RedisResult<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let (generation, conn) = self.current();
        let result = call(conn).await;
        if let Err(e) = &result
            && primary_may_have_moved(e)
        {
            self.reresolve(generation).await;
        }
        result
    }
}

/// Failures after which the primary may have moved.
fn primary_may_have_moved(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.code() == Some("READONLY")
        || matches!(
            e.kind(),
            redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        )
}

impl ConnectionLike for SentinelConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(self.on_primary(move |mut conn| async move { conn.req_packed_command(cmd).await }))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(self.on_primary(move |mut conn| async move {
            conn.req_packed_commands(pipeline, offset, count).await
        }))
    }

    fn get_db(&self) -> i64 {
        self.current().1.get_db()
    }
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Node(_) => "RedisConn::Node",
            Self::Cluster(_) => "RedisConn::Cluster",
            Self::Sentinel(_) => "RedisConn::Sentinel",
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
            Self::Sentinel(conn) => pipe.query_async(conn).await,
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
            Self::Sentinel(conn) => cmd.query_async(conn).await,
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
            Self::Sentinel(conn) => conn.req_packed_command(cmd),
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
            Self::Sentinel(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
            Self::Sentinel(conn) => conn.get_db(),
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
        assert_eq!(
            RedisTopology::parse("redis+sentinel://:pw@s1:26379,s2:26379/jobs/2").ok(),
            Some(RedisTopology::Sentinel {
                sentinels: vec!["redis://s1:26379".into(), "redis://s2:26379".into()],
                service: "jobs".into(),
                node: "redis://:pw@localhost/2".into(),
            })
        );
        for bad in [
            "",
            "http://x",
            "redis+cluster://",
            "redis://a:1,b:2",
            "redis+sentinel://s1:26379",
            "redis+sentinel://s1:26379/jobs/x",
        ] {
            assert!(RedisTopology::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
