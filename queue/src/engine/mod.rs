//! The engine: every operation on a deployment's queues, each one atomic script or one read.
//! This module holds the handle and its connection; `push`, `lease`, `control`, `inspect` and
//! `maintenance` group the operations by who calls them (the breaker, rate limits, event
//! streams and heartbeats have modules of their own at the crate root).

use std::{
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use redis::Value;

use crate::{
    EngineConfig, QueueError, Result,
    connection::{RedisClient, RedisConn, RedisTopology},
    job::valid_name,
    keys::Keys,
    scripts::Scripts,
};

mod call;
mod control;
mod inspect;
mod lease;
mod maintenance;
mod push;
mod queue_controls;

pub(crate) use call::Call;
pub use control::{CancelOutcome, DeadFilter, DeadGroup, DeadOpOutcome};
pub use inspect::QueueStats;
pub use lease::{FetchRequest, Fetched, RenewStatus};
pub use queue_controls::{MAX_RATE_WINDOW, QueueLimits};

/// A handle on one deployment's queues. Cheap to clone; all clones share one connection
/// that reconnects by itself after a Redis restart (and, on a cluster, follows its topology).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    client: RedisClient,
    conn: RedisConn,
    keys: Keys,
    config: EngineConfig,
    scripts: Scripts,
    metrics: EngineMetrics,
}

/// Counters of one engine handle (shared by its clones), for the process's metrics endpoint.
#[derive(Debug, Default)]
pub struct EngineMetrics {
    /// Push calls refused because an event stream was at its cap (a consumer group is behind).
    pub stream_full_refusals: AtomicU64,
    /// Jobs pushed (not counting duplicates).
    pub jobs_pushed: AtomicU64,
    /// Pushes answered with an existing job (idempotency key or known id).
    pub duplicate_pushes: AtomicU64,
}

impl Engine {
    /// Connects and loads the scripts. Fails if Redis does not answer. The URL names one node
    /// (`redis://`) or a cluster (`redis+cluster://host:port,…`; see [`RedisTopology`]).
    pub async fn connect(redis_url: &str, config: EngineConfig) -> Result<Self> {
        if !valid_name(&config.prefix) {
            return Err(QueueError::InvalidJob(
                "prefix must be 1-64 characters of [A-Za-z0-9_.-]".into(),
            ));
        }
        config.durability.validate()?;
        let client = RedisClient::open(&RedisTopology::parse(redis_url)?, config.response_timeout)?;
        let conn = client.connect(config.response_timeout).await?;
        let engine = Self {
            inner: Arc::new(Inner {
                client,
                conn,
                keys: Keys::new(&config.prefix),
                config,
                scripts: Scripts::new(),
                metrics: EngineMetrics::default(),
            }),
        };
        engine.load_scripts().await?;
        Ok(engine)
    }

    /// A connection of its own, for blocking waits that must not stall the shared one.
    pub(crate) async fn dedicated_connection(&self, timeout: Duration) -> Result<RedisConn> {
        self.inner.client.connect(timeout).await
    }

    /// Loads the scripts (on a cluster, into every node: `SCRIPT LOAD` goes to all of them).
    async fn load_scripts(&self) -> Result<()> {
        let mut conn = self.conn();
        for script in self.inner.scripts.all() {
            script.load_async(&mut conn).await?;
        }
        Ok(())
    }

    /// True when the engine runs on a Redis Cluster.
    pub fn on_cluster(&self) -> bool {
        self.inner.client.is_cluster()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    pub fn metrics(&self) -> &EngineMetrics {
        &self.inner.metrics
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    pub(crate) fn scripts(&self) -> &Scripts {
        &self.inner.scripts
    }

    pub(crate) fn conn(&self) -> RedisConn {
        self.inner.conn.clone()
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("prefix", &self.inner.keys.prefix)
            .finish()
    }
}

fn protocol(script: &'static str, detail: &str) -> QueueError {
    QueueError::Protocol {
        script,
        detail: detail.to_owned(),
    }
}

pub(crate) fn value_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

pub(crate) fn value_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}
