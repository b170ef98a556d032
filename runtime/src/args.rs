//! The pool settings as flags and environment variables, shared by the `workers` binary and by
//! `api --with-workers`, so both read the same names.

use std::{collections::HashMap, time::Duration};

use queue::BreakerPolicy;
use workflows::jobs::notify::{DestinationPolicy, Notifier, NotifierBuildError, NotifyConfig};

use crate::{PoolConfig, QUEUES};

#[derive(Debug, Clone, clap::Args)]
pub struct PoolArgs {
    /// Comma-separated queues to run (default: all).
    #[arg(long, env = "WORKER_QUEUES", value_delimiter = ',')]
    pub queues: Vec<String>,
    /// Jobs run at once per queue.
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 16)]
    pub concurrency: usize,
    /// Per-queue overrides of --concurrency, e.g. `notify=64,ingest=8`.
    #[arg(long, env = "WORKER_QUEUE_CONCURRENCY", value_delimiter = ',', value_parser = queue_width)]
    pub queue_concurrency: Vec<(String, usize)>,
    /// Lease (visibility timeout) in milliseconds for every kind, instead of each kind's own.
    #[arg(long, env = "WORKER_LEASE_MS")]
    pub lease_ms: Option<u64>,
    /// Seconds in-flight jobs get after SIGTERM.
    #[arg(long, env = "WORKER_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
    /// A name for this process among the workers (default: host and pid).
    #[arg(long, env = "WORKER_ID")]
    pub worker_id: Option<String>,
    /// Webhook request timeout, in milliseconds.
    #[arg(long, env = "WEBHOOK_TIMEOUT_MS", default_value_t = 10_000)]
    pub webhook_timeout_ms: u64,
    /// Networks webhooks may reach besides public addresses (CIDR ranges or addresses,
    /// comma-separated): loopback, private, link-local and metadata addresses are refused
    /// unless named here.
    #[arg(long, env = "WEBHOOK_ALLOW_NETWORKS", value_delimiter = ',', value_parser = parse_network)]
    pub webhook_allow_networks: Vec<ipnet::IpNet>,
    /// POSTs of one delivery answered 429 that snooze (no attempt spent); later 429s spend
    /// attempts, so a receiver that always answers 429 cannot keep a job alive for ever.
    #[arg(long, env = "WEBHOOK_SNOOZE_LIMIT", default_value_t = workflows::jobs::notify::DEFAULT_SNOOZE_LIMIT)]
    pub webhook_snooze_limit: u32,
    /// Consecutive failures that open a destination's circuit breaker.
    #[arg(long, env = "BREAKER_FAILURES", default_value_t = 5)]
    pub breaker_failures: u32,
    /// Milliseconds an open breaker waits before letting a probe through.
    #[arg(long, env = "BREAKER_COOL_DOWN_MS", default_value_t = 30_000)]
    pub breaker_cool_down_ms: u64,
    /// How much longer a high-priority job counts as having waited than a normal one (and a
    /// normal than a low), in seconds: a lower level waits at most about this long per level
    /// behind a steady stream of higher ones. Every fetching process of a deployment should
    /// use the same value.
    #[arg(long, env = "PRIORITY_AGING_SECS", default_value_t = 60)]
    pub priority_aging_secs: u64,
    /// What a push or an outcome has survived when it is acknowledged: `local` (the primary
    /// applied it) or `replicated[:N[:TIMEOUT_MS]]` (N replicas hold it too, by `WAIT`; default
    /// 1 replica, 1000 ms). Every process of a deployment should use the same.
    #[arg(long, env = "REDIS_DURABILITY", default_value = "local")]
    pub redis_durability: queue::Durability,
    /// How many partitions the deployment's jobs are split into, each under a hash tag of its
    /// own, so on a Redis Cluster they spread over the shards (1: everything in one slot, the
    /// layout of earlier versions). Every process of a deployment must use the same.
    #[arg(
        long,
        env = "REDIS_PARTITIONS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=i64::from(queue::MAX_PARTITIONS))
    )]
    pub redis_partitions: u16,
    /// Milliseconds between looks for due schedules (0: this process makes no scheduled jobs).
    #[arg(long, env = "SCHEDULES_EVERY_MS", default_value_t = 500)]
    pub schedules_every_ms: u64,
    /// Seconds between checks of silence rules.
    #[arg(long, env = "SILENCE_CHECK_SECS", default_value_t = 30)]
    pub silence_check_secs: u64,
    /// Days finished jobs, their attempts and finished runs are kept in SQL (0: forever).
    #[arg(long, env = "RETAIN_LEDGER_DAYS", default_value_t = 30)]
    pub retain_ledger_days: u64,
    /// Days readings are kept (0: forever); readings not yet evaluated are always kept.
    #[arg(long, env = "RETAIN_READINGS_DAYS", default_value_t = 90)]
    pub retain_readings_days: u64,
    /// Do not write the job ledger from this process (another process does).
    #[arg(long, env = "NO_LEDGER")]
    pub no_ledger: bool,
    /// Ledger recorders this process runs (they share the work; 0 is the same as --no-ledger).
    #[arg(long, env = "LEDGER_RECORDERS", default_value_t = 1)]
    pub ledger_recorders: usize,
    /// First retry delay in milliseconds for every kind, instead of each kind's own (the cap
    /// is --backoff-cap-ms); attempts stay each kind's.
    #[arg(long, env = "WORKER_BACKOFF_BASE_MS")]
    pub backoff_base_ms: Option<u64>,
    /// Longest retry delay in milliseconds when --backoff-base-ms is set.
    #[arg(long, env = "WORKER_BACKOFF_CAP_MS", default_value_t = 60_000)]
    pub backoff_cap_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolArgsError {
    #[error("unknown queue {0:?}; this build runs {QUEUES:?}")]
    UnknownQueue(String),
    #[error(transparent)]
    Notifier(#[from] NotifierBuildError),
}

fn queue_width(raw: &str) -> Result<(String, usize), String> {
    let (queue, width) = raw
        .split_once('=')
        .ok_or_else(|| format!("expected queue=width, got {raw:?}"))?;
    let width = width
        .parse()
        .map_err(|e| format!("width of {queue}: {e}"))?;
    Ok((queue.to_owned(), width))
}

/// `10.0.0.0/8` or a single address (`10.1.2.3`).
pub fn parse_network(raw: &str) -> Result<ipnet::IpNet, String> {
    let raw = raw.trim();
    raw.parse::<ipnet::IpNet>()
        .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{raw:?} is neither an address nor a CIDR range"))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into())
}

impl PoolArgs {
    /// The engine settings these flags carry (the fetch's priority aging, the durability).
    pub fn apply_to_engine(&self, engine: &mut queue::EngineConfig) {
        engine.priority_aging = Duration::from_secs(self.priority_aging_secs);
        engine.durability = self.redis_durability;
        engine.partitions = self.redis_partitions;
    }

    /// The pools these flags describe; `metrics` turns on queue-depth sampling.
    pub fn pool_config(&self, metrics: bool) -> Result<PoolConfig, PoolArgsError> {
        if let Some(unknown) = self
            .queues
            .iter()
            .chain(self.queue_concurrency.iter().map(|(q, _)| q))
            .find(|q| workflows::jobs::kind_named(q).is_none())
        {
            return Err(PoolArgsError::UnknownQueue(unknown.clone()));
        }
        let worker_id = self
            .worker_id
            .clone()
            .unwrap_or_else(|| format!("{}-{}", host_name(), std::process::id()));
        let mut pools = PoolConfig::all_queues(worker_id);
        if !self.queues.is_empty() {
            pools.queues = self.queues.clone();
        }
        pools.concurrency = self.concurrency;
        pools.queue_concurrency = self
            .queue_concurrency
            .iter()
            .cloned()
            .collect::<HashMap<_, _>>();
        pools.lease = self.lease_ms.map(Duration::from_millis);
        pools.shutdown_grace = Duration::from_secs(self.shutdown_grace_secs);
        pools.silence_every = Duration::from_secs(self.silence_check_secs.max(1));
        pools.scheduler =
            (self.schedules_every_ms > 0).then(|| workflows::schedules::SchedulerConfig {
                every: Duration::from_millis(self.schedules_every_ms),
                ..Default::default()
            });
        let recorders = if self.no_ledger {
            0
        } else {
            self.ledger_recorders
        };
        pools.ledger_recorders = recorders;
        pools.backoff = self.backoff_base_ms.map(|base| {
            let base = Duration::from_millis(base);
            (base, Duration::from_millis(self.backoff_cap_ms).max(base))
        });
        let days = |d: u64| (d > 0).then(|| Duration::from_secs(d * 86_400));
        pools.retention = (recorders > 0).then(|| {
            let retain = workflows::retention::RetentionConfig {
                ledger: days(self.retain_ledger_days),
                readings: days(self.retain_readings_days),
                ..Default::default()
            };
            (retain, Duration::from_secs(600))
        });
        pools.sample_depth_every = metrics.then_some(Duration::from_secs(5));
        Ok(pools)
    }

    /// The webhook client with these flags' timeout and breaker policy.
    pub fn notifier(&self) -> Result<Notifier, PoolArgsError> {
        Ok(Notifier::new(NotifyConfig {
            timeout: Duration::from_millis(self.webhook_timeout_ms),
            breaker: BreakerPolicy {
                failure_threshold: self.breaker_failures,
                cool_down: Duration::from_millis(self.breaker_cool_down_ms),
                ..BreakerPolicy::default()
            },
            destinations: DestinationPolicy::allowing(self.webhook_allow_networks.iter().copied()),
            snooze_limit: self.webhook_snooze_limit.max(1),
        })?)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::PoolArgs;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        pools: PoolArgs,
    }

    #[test]
    fn the_priority_aging_flag_reaches_the_engine() {
        let flags = Flags::try_parse_from(["t", "--priority-aging-secs", "7"]).expect("flags");
        let mut engine = queue::EngineConfig::default();
        flags.pools.apply_to_engine(&mut engine);
        assert_eq!(engine.priority_aging, std::time::Duration::from_secs(7));
        let flags = Flags::try_parse_from(["t"]).expect("defaults");
        flags.pools.apply_to_engine(&mut engine);
        assert_eq!(engine.priority_aging, std::time::Duration::from_secs(60));
    }

    #[test]
    fn the_durability_flag_reaches_the_engine_and_refuses_nonsense() {
        let flags =
            Flags::try_parse_from(["t", "--redis-durability", "replicated:2:300"]).expect("flags");
        let mut engine = queue::EngineConfig::default();
        flags.pools.apply_to_engine(&mut engine);
        assert_eq!(
            engine.durability,
            queue::Durability::Replicated {
                replicas: 2,
                timeout: std::time::Duration::from_millis(300)
            }
        );
        let defaults = Flags::try_parse_from(["t"]).expect("defaults");
        defaults.pools.apply_to_engine(&mut engine);
        assert_eq!(engine.durability, queue::Durability::Local);
        for bad in ["replicated:0", "eventual", "replicated:1:0"] {
            let refused = Flags::try_parse_from(["t", "--redis-durability", bad]);
            assert!(refused.is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_partition_count_reaches_the_engine_and_refuses_nonsense() {
        let flags = Flags::try_parse_from(["t", "--redis-partitions", "6"]).expect("flags");
        let mut engine = queue::EngineConfig::default();
        flags.pools.apply_to_engine(&mut engine);
        assert_eq!(engine.partitions, 6);
        let defaults = Flags::try_parse_from(["t"]).expect("defaults");
        defaults.pools.apply_to_engine(&mut engine);
        // The suite also runs with REDIS_PARTITIONS set, which the flag reads.
        let from_env = std::env::var("REDIS_PARTITIONS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        assert_eq!(engine.partitions, from_env);
        for bad in ["0", "-1", "1025", "many"] {
            let refused = Flags::try_parse_from(["t", "--redis-partitions", bad]);
            assert!(refused.is_err(), "{bad} accepted");
        }
    }
}
