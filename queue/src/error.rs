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
}

impl QueueError {
    /// True for failures that may go away by themselves: a Redis outage or a full stream.
    pub fn is_retryable(&self) -> bool {
        match self {
            QueueError::Redis(e) => {
                e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout()
                    || matches!(
                        e.kind(),
                        redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
                            | redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain)
                            | redis::ErrorKind::Server(redis::ServerErrorKind::MasterDown)
                    )
            }
            QueueError::StreamFull { .. } => true,
            _ => false,
        }
    }
}

pub type Result<T, E = QueueError> = std::result::Result<T, E>;
