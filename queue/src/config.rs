use std::time::Duration;

/// Settings of one deployment's engine. Every process of a deployment uses the same prefix.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Key prefix, carried as a `{prefix}` hash tag. Tests use one of their own.
    pub prefix: String,
    /// How long a time-scoped idempotency key holds.
    pub idempotency_ttl: Duration,
    /// Hard cap of each event stream: at the cap, pushes are refused with a retryable error.
    pub stream_cap: u64,
    /// Entries younger than this are kept for subscriptions that resume from a cursor.
    pub resume_window: Duration,
    /// Finished jobs' data is kept this long ...
    pub completed_retention: Duration,
    /// ... and at most this many per queue.
    pub completed_max: u64,
    /// Jobs pushed per round trip.
    pub push_chunk: usize,
    /// Due scheduled jobs promoted per fetch call.
    pub promote_chunk: usize,
    /// Expired leases reaped per fetch call.
    pub reap_chunk: usize,
    /// Jobs removed per clean-up call.
    pub cleanup_chunk: usize,
    /// A command that gets no answer in this time fails (Redis down, network cut).
    pub response_timeout: Duration,
    /// How much longer a high-priority job counts as having waited than a normal one (and a
    /// normal one than a low one): fetch leases the head that has waited longest by that
    /// count, so a lower level is never starved: it waits at most this long per level behind
    /// a steady stream of higher ones.
    pub priority_aging: Duration,
    /// What a write has survived when the engine acknowledges it.
    pub durability: Durability,
    /// How many partitions the deployment's jobs are split into (1 to
    /// [`crate::MAX_PARTITIONS`]). Each has a hash tag of its own, so on a Redis Cluster the
    /// partitions, and with them every queue, spread over the shards. A job goes to the
    /// partition of its limit key, else of its idempotency key, else of its id, so a key's jobs
    /// always share one. 1 (the default) is the single-slot layout of earlier versions; every
    /// process of a deployment must use the same count.
    pub partitions: u16,
    /// How long a call waits for a fenced partition (one whose cluster slot an operator is
    /// moving, `steadfast fence`) before it fails with the retryable `FENCED` error. A fetch
    /// does not wait: it passes over a fenced partition to the others.
    pub fence_wait: Duration,
}

/// What an acknowledged push or outcome has survived. One setting (`REDIS_DURABILITY`):
/// `local`, or `replicated[:N[:TIMEOUT_MS]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledged once the primary applied it (and, with `appendfsync always`, fsynced it).
    /// A primary that dies before its replicas copied the write loses it on failover.
    Local,
    /// Acknowledged only once `replicas` replicas also hold it (`WAIT` in the same round trip
    /// as the write); refused as retryable when they do not answer within `timeout`. A
    /// failover to any of those replicas keeps every acknowledged write.
    Replicated { replicas: u32, timeout: Duration },
}

impl Durability {
    pub const DEFAULT_REPLICA_TIMEOUT: Duration = Duration::from_millis(1000);

    pub(crate) fn validate(&self) -> crate::Result<()> {
        match self {
            Self::Local => Ok(()),
            Self::Replicated { replicas, timeout } => {
                if *replicas == 0 || *replicas > 16 {
                    return Err(crate::QueueError::InvalidArgument(format!(
                        "durability: replicated needs 1 to 16 replicas, not {replicas}"
                    )));
                }
                if timeout.is_zero() {
                    return Err(crate::QueueError::InvalidArgument(
                        "durability: a replica timeout of 0 would wait forever".into(),
                    ));
                }
                Ok(())
            }
        }
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local => f.write_str("local"),
            Self::Replicated { replicas, timeout } => {
                write!(f, "replicated:{replicas}:{}", timeout.as_millis())
            }
        }
    }
}

impl std::str::FromStr for Durability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.trim().split(':');
        let bad = || format!("{s:?}: expected local or replicated[:N[:TIMEOUT_MS]]");
        let durability = match parts.next() {
            Some("local") => Self::Local,
            Some("replicated") => {
                let replicas = match parts.next() {
                    Some(n) => n.parse().map_err(|_| bad())?,
                    None => 1,
                };
                let timeout = match parts.next() {
                    Some(ms) => Duration::from_millis(ms.parse().map_err(|_| bad())?),
                    None => Self::DEFAULT_REPLICA_TIMEOUT,
                };
                Self::Replicated { replicas, timeout }
            }
            _ => return Err(bad()),
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        durability.validate().map_err(|e| e.to_string())?;
        Ok(durability)
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            prefix: "steadfast".into(),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            stream_cap: 5_000_000,
            resume_window: Duration::from_secs(600),
            completed_retention: Duration::from_secs(3600),
            completed_max: 100_000,
            push_chunk: 1000,
            promote_chunk: 1000,
            reap_chunk: 500,
            cleanup_chunk: 1000,
            response_timeout: Duration::from_secs(5),
            priority_aging: Duration::from_secs(60),
            durability: Durability::Local,
            partitions: 1,
            fence_wait: Duration::from_secs(60),
        }
    }
}

impl EngineConfig {
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Durability;

    #[test]
    fn durability_reads_its_one_setting() {
        assert_eq!("local".parse::<Durability>(), Ok(Durability::Local));
        assert_eq!(
            "replicated".parse::<Durability>(),
            Ok(Durability::Replicated {
                replicas: 1,
                timeout: Durability::DEFAULT_REPLICA_TIMEOUT
            })
        );
        assert_eq!(
            "replicated:2:250".parse::<Durability>(),
            Ok(Durability::Replicated {
                replicas: 2,
                timeout: Duration::from_millis(250)
            })
        );
        for bad in [
            "",
            "remote",
            "replicated:0",
            "replicated:-1",
            "replicated:1:0",
            "local:1",
        ] {
            assert!(bad.parse::<Durability>().is_err(), "{bad:?} accepted");
        }
        let round = Durability::Replicated {
            replicas: 2,
            timeout: std::time::Duration::from_millis(250),
        };
        assert_eq!(round.to_string().parse::<Durability>(), Ok(round));
    }
}
