//! The engine: every operation on a deployment's queues, each one atomic script or one read.
//! This module holds the handle and its connection; `push`, `lease`, `control`, `inspect` and
//! `maintenance` group the operations by who calls them (the breaker, rate limits, event
//! streams and heartbeats have modules of their own at the crate root).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize},
    },
    time::Duration,
};

use redis::Value;

use crate::{
    EngineConfig, QueueError, Result,
    connection::{RedisClient, RedisConn, RedisTopology},
    job::valid_name,
    keys::{Keys, MAX_PARTITIONS, Partition},
    scripts::Scripts,
};

mod call;
mod control;
mod fence;
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
    /// Where the next fetch starts its round of the partitions, so none is favoured.
    fetch_turn: AtomicUsize,
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
        if config.partitions == 0 || config.partitions > MAX_PARTITIONS {
            return Err(QueueError::InvalidArgument(format!(
                "partitions must be 1 to {MAX_PARTITIONS}, not {}",
                config.partitions
            )));
        }
        let client = RedisClient::open(&RedisTopology::parse(redis_url)?, config.response_timeout)?;
        let mut conn = client.connect(config.response_timeout).await?;
        let (homes, had) = partition_homes(&mut conn, &config.prefix, config.partitions).await?;
        let engine = Self {
            inner: Arc::new(Inner {
                client,
                conn,
                keys: Keys::with_homes(&config.prefix, homes),
                config,
                scripts: Scripts::new(),
                metrics: EngineMetrics::default(),
                fetch_turn: AtomicUsize::new(0),
            }),
        };
        engine.load_scripts().await?;
        if had < engine.partitions() {
            engine.carry_controls_to_new_partitions().await?;
        }
        Ok(engine)
    }

    /// After the deployment grew: the queues' pauses and limits, set before on the partitions
    /// it had, hold on the new ones too (the limits shared out afresh).
    async fn carry_controls_to_new_partitions(&self) -> Result<()> {
        for queue in self.queues().await? {
            let paused: bool = redis::AsyncCommands::exists(
                &mut self.conn(),
                self.keys().queue(0, &queue, "paused"),
            )
            .await?;
            if paused {
                self.pause(&queue).await?;
            }
            let limits = self.queue_limits(&queue).await?;
            if !limits.is_empty()
                && let Err(e) = self.set_queue_limits(&queue, &limits).await
            {
                tracing::warn!(
                    %queue, error = %e,
                    "the queue's limits could not be shared out over the new partitions; set them again"
                );
            }
        }
        Ok(())
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

    /// How many partitions the deployment's jobs are split into.
    pub fn partitions(&self) -> u16 {
        self.inner.keys.partitions()
    }

    /// Each partition's hash tag, braces included (`{prefix}` first): every key of partition
    /// `p` starts with the `p`-th. For operators placing slots, and for tests that look at keys.
    pub fn partition_tags(&self) -> Vec<String> {
        self.keys()
            .all()
            .map(|p| self.keys().home(p).to_owned())
            .collect()
    }

    /// The Redis Cluster slot of each partition's keys, in partition order.
    pub fn partition_slots(&self) -> Vec<u16> {
        self.partition_tags()
            .iter()
            .map(|tag| {
                crate::keys::slot_of(tag.trim_start_matches('{').trim_end_matches('}').as_bytes())
            })
            .collect()
    }

    /// Runs `op` on every partition at once; answers in partition order.
    pub(crate) async fn each_partition<T, F, Fut>(&self, op: F) -> Result<Vec<T>>
    where
        F: Fn(Partition) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        futures::future::try_join_all(self.keys().all().map(op)).await
    }

    /// The partition holding each job, `None` for a job no partition holds. A job is looked
    /// for first where its id routes, where every job the engine named lives; only a job named
    /// by its submitter and routed by a key may live elsewhere, and is looked for there next.
    pub(crate) async fn locate(&self, ids: &[String]) -> Result<Vec<Option<Partition>>> {
        let keys = self.keys();
        let mut found: Vec<Option<Partition>> = vec![None; ids.len()];
        if keys.partitions() == 1 {
            // One partition: its scripts answer "missing" themselves.
            return Ok(vec![Some(0); ids.len()]);
        }
        let guesses: Vec<Partition> = ids.iter().map(|id| keys.partition_of(id)).collect();
        for round in 0..keys.partitions() {
            let mut by_partition: std::collections::BTreeMap<Partition, Vec<usize>> =
                Default::default();
            for (i, guess) in guesses.iter().enumerate() {
                if found[i].is_none() {
                    let p = (guess + round) % keys.partitions();
                    by_partition.entry(p).or_default().push(i);
                }
            }
            if by_partition.is_empty() {
                break;
            }
            let checks = by_partition.iter().map(|(p, at)| {
                let mut pipe = redis::pipe();
                for &i in at {
                    pipe.exists(keys.job(*p, &ids[i]));
                }
                let mut conn = self.conn();
                async move { pipe.query_async::<Vec<bool>>(&mut conn).await }
            });
            let replies = futures::future::try_join_all(checks).await?;
            for ((p, at), exists) in by_partition.iter().zip(replies) {
                for (&i, here) in at.iter().zip(exists) {
                    if here {
                        found[i] = Some(*p);
                    }
                }
            }
        }
        Ok(found)
    }
}

/// The hash tags of the deployment's partitions as it recorded them (extended, and recorded,
/// when `wanted` is more), and how many it had before. A deployment of one partition that
/// never grew records nothing: its one home is `{prefix}`, as in every earlier version.
async fn partition_homes(
    conn: &mut RedisConn,
    prefix: &str,
    wanted: u16,
) -> Result<(Vec<String>, u16)> {
    const REGISTER: &str = r"
        local have = redis.call('LLEN', KEYS[1])
        if have > #ARGV then return redis.error_reply('PARTITIONS_SHRINK ' .. have) end
        if have == 0 and #ARGV == 1 then return {'1', ARGV[1]} end
        for i = have + 1, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
        local out = redis.call('LRANGE', KEYS[1], 0, -1)
        table.insert(out, 1, tostring(math.max(have, 1)))
        return out
    ";
    // Most connects find the tags recorded as wanted: a read, no write (so a process on a
    // read-only replica or with read-only rights still starts).
    let recorded: Vec<String> =
        redis::AsyncCommands::lrange(conn, Keys::partition_registry(prefix), 0, -1).await?;
    if recorded.len() == usize::from(wanted) {
        return Ok((recorded, wanted));
    }
    let reply: redis::RedisResult<Vec<String>> = redis::Script::new(REGISTER)
        .key(Keys::partition_registry(prefix))
        .arg(crate::keys::home_tags(prefix, wanted))
        .invoke_async(conn)
        .await;
    let mut reply = match reply {
        Ok(reply) => reply,
        Err(e) if e.code() == Some("PARTITIONS_SHRINK") => {
            let had = e.detail().unwrap_or("more").trim().to_owned();
            return Err(QueueError::InvalidArgument(format!(
                "this deployment has {had} partitions; {wanted} would leave the jobs of the others unserved (a deployment can grow, not shrink: set REDIS_PARTITIONS to {had})"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    if reply.len() < 2 {
        return Err(protocol("partitions", "no tags"));
    }
    let had = reply.remove(0).parse().unwrap_or(1);
    Ok((reply, had))
}

/// A lease token carries its job's partition (`p:token`) where there is more than one, so an
/// outcome goes straight to the partition that leased it. Tokens are opaque to callers.
pub(crate) fn tag_token(partitions: u16, p: Partition, token: String) -> String {
    if partitions == 1 {
        token
    } else {
        format!("{p}:{token}")
    }
}

/// The partition a token names and the script's token. A token naming no partition of the
/// deployment names `Partition::MAX`, which no call reaches: its outcome is refused as stale.
pub(crate) fn split_token(token: &str) -> (Partition, &str) {
    match token.split_once(':') {
        Some((p, raw)) => (p.parse().unwrap_or(Partition::MAX), raw),
        None => (0, token),
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
