use std::time::Duration;

/// Everything the engine can report. Redis outages surface as [`QueueError::Redis`];
/// callers decide whether to retry, and [`QueueError::is_retryable`] says when that is wise.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(
        "the job-event stream is at its cap ({cap} entries): a consumer group is behind; retry after {retry_after:?}"
    )]
    StreamFull { cap: u64, retry_after: Duration },
    #[error("invalid job: {0}")]
    InvalidJob(String),
    #[error("payload could not be encoded: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("unexpected reply from redis script {script}: {detail}")]
    Protocol {
        script: &'static str,
        detail: String,
    },
    #[error("event cursor {0} is older than the oldest event the stream still holds")]
    CursorExpired(String),
    #[error("redis configuration refused: {0}")]
    UnsafeRedis(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The primary applied the write but fewer replicas than required confirmed it in time:
    /// not acknowledged. Retrying is safe (pushes are idempotent by id, outcomes by token).
    #[error("written on the primary but confirmed by {acknowledged} of {wanted} replicas in time")]
    NotReplicated { wanted: u32, acknowledged: u32 },
}

impl QueueError {
    /// The error code Redis answered with (`NOSCRIPT`, `OOM`, or a script's own), if it did.
    pub fn redis_code(&self) -> Option<&str> {
        match self {
            QueueError::Redis(e) => e.code(),
            _ => None,
        }
    }

    /// True for failures that may go away by themselves: a Redis outage, a replica that was
    /// a primary until a failover (`READONLY`), a cluster slot that moved (`MOVED`, `ASK`,
    /// `TRYAGAIN`, `CLUSTERDOWN`), a Redis out of memory (`OOM`), a partition fenced for longer
    /// than the engine waits (`FENCED`), a full stream, a write that replicas did not confirm
    /// in time.
    pub fn is_retryable(&self) -> bool {
        match self {
            QueueError::Redis(e) => {
                e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout()
                    || matches!(
                        e.kind(),
                        redis::ErrorKind::Server(
                            redis::ServerErrorKind::BusyLoading
                                | redis::ServerErrorKind::TryAgain
                                // A slot that moved (failover, resharding) while the cluster
                                // client's map was stale: the next call goes to its new home.
                                | redis::ServerErrorKind::Moved
                                | redis::ServerErrorKind::Ask
                                | redis::ServerErrorKind::MasterDown
                                | redis::ServerErrorKind::ReadOnly
                                | redis::ServerErrorKind::ClusterDown
                        )
                    )
                    || matches!(e.code(), Some("OOM" | "READONLY" | "LOADING" | "FENCED"))
            }
            QueueError::StreamFull { .. } | QueueError::NotReplicated { .. } => true,
            _ => false,
        }
    }

    /// Why Redis cannot take writes now, in words for an operator or a client, when that is
    /// the failure: `READONLY` after a failover, `OOM` at `maxmemory`.
    pub fn unavailable_reason(&self) -> Option<&'static str> {
        let QueueError::Redis(e) = self else {
            return None;
        };
        if matches!(
            e.kind(),
            redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        ) || e.code() == Some("READONLY")
        {
            Some("Redis is read-only (a failover is under way or the URL names a replica)")
        } else if e.code() == Some("OOM") {
            Some("Redis is out of memory (maxmemory reached with noeviction)")
        } else if e.code() == Some("FENCED") {
            Some("a partition's cluster slot is being moved (steadfast fence); retry shortly")
        } else {
            None
        }
    }
}

pub type Result<T, E = QueueError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::QueueError;

    fn server(kind: redis::ServerErrorKind) -> QueueError {
        QueueError::Redis(redis::RedisError::from((
            redis::ErrorKind::Server(kind),
            "from the server",
        )))
    }

    #[test]
    fn a_slot_that_moved_or_a_failover_is_retryable_and_a_refusal_is_not() {
        for kind in [
            redis::ServerErrorKind::Moved,
            redis::ServerErrorKind::Ask,
            redis::ServerErrorKind::TryAgain,
            redis::ServerErrorKind::ClusterDown,
            redis::ServerErrorKind::ReadOnly,
        ] {
            assert!(server(kind).is_retryable(), "{kind:?}");
        }
        assert!(
            QueueError::NotReplicated {
                wanted: 1,
                acknowledged: 0
            }
            .is_retryable()
        );
        for kind in [
            redis::ServerErrorKind::CrossSlot,
            redis::ServerErrorKind::NoPerm,
        ] {
            assert!(!server(kind).is_retryable(), "{kind:?}");
        }
    }
}
