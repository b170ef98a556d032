//! Worker heartbeats, so the API can list who is working on what.

use std::time::Duration;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::{Engine, Result};

/// One worker process's backend for one queue, as its last heartbeat described it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub queues: Vec<String>,
    pub concurrency: u32,
    pub in_flight: u32,
    pub started_at_ms: u64,
    pub last_beat_ms: u64,
}

/// A worker whose last beat is older than this is not listed (and its entry is dropped).
const FORGET_AFTER: Duration = Duration::from_secs(120);

impl Engine {
    pub async fn beat(&self, info: &WorkerInfo) -> Result<()> {
        let body = serde_json::to_string(info).map_err(crate::QueueError::Encode)?;
        let key = self.keys().worker(&info.id);
        // Two commands, not one pipeline: while partition 0's slot moves between cluster nodes,
        // a pipeline redirected by `ASK` is sent again whole, and could write a key on the
        // target that the source still holds, which stops the move; a single command is
        // redirected on its own.
        let mut conn = self.conn();
        let _: () = conn.set_ex(&key, body, FORGET_AFTER.as_secs()).await?;
        let _: () = conn
            .zadd(self.keys().workers(), &info.id, info.last_beat_ms)
            .await?;
        Ok(())
    }

    pub async fn remove_worker(&self, id: &str) -> Result<()> {
        let mut conn = self.conn();
        let _: () = conn.del(self.keys().worker(id)).await?;
        let _: () = conn.zrem(self.keys().workers(), id).await?;
        Ok(())
    }

    /// Workers that beat recently, most recent first.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>> {
        let mut conn = self.conn();
        let cutoff = crate::now_ms().saturating_sub(FORGET_AFTER.as_millis() as u64);
        let _: () = conn
            .zrembyscore(self.keys().workers(), "-inf", cutoff)
            .await?;
        let ids: Vec<String> = conn.zrevrange(self.keys().workers(), 0, -1).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.keys().worker(id)).collect();
        let bodies: Vec<Option<String>> = conn.mget(keys).await?;
        Ok(bodies
            .into_iter()
            .flatten()
            .filter_map(|b| serde_json::from_str(&b).ok())
            .collect())
    }
}
