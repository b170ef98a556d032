//! Upkeep: finished jobs cleaned up, streams trimmed, app events published, tear-down.

use std::time::Duration;

use redis::AsyncCommands;

use crate::{QueueError, Result};

use super::{Call, Engine, call::fenced};
use crate::keys::Partition;

impl Engine {
    /// Forgets finished jobs past retention (one bounded chunk); returns how many.
    pub async fn cleanup_finished(&self, queue: &str) -> Result<u64> {
        let cfg = &self.inner.config;
        // Each partition keeps its share of `completed_max`.
        let kept = cfg.completed_max.div_ceil(u64::from(self.partitions()));
        let removed = self
            .each_partition(|p| async move {
                // Upkeep passes over a fenced partition rather than hold up the others'.
                match self
                    .run_once::<u64>(
                        self.call_in(&self.inner.scripts.cleanup, p)
                            .arg(queue)
                            .arg(cfg.completed_retention.as_millis() as u64)
                            .arg(kept)
                            .arg(cfg.cleanup_chunk),
                    )
                    .await
                {
                    Err(e) if fenced(&e) => Ok(0),
                    other => Ok(other?),
                }
            })
            .await?;
        Ok(removed.into_iter().sum())
    }

    /// Trims the job-event stream behind its slowest consumer group; returns entries removed.
    pub async fn trim_job_events(&self) -> Result<u64> {
        let trimmed = self
            .each_partition(|p| self.trim_stream(self.keys().job_events(p), p))
            .await?;
        Ok(trimmed.into_iter().sum())
    }

    /// Trims the application-event stream the same way.
    pub async fn trim_app_events(&self) -> Result<u64> {
        self.trim_stream(self.keys().app_events(), 0).await
    }

    pub(crate) async fn trim_stream(&self, stream: String, p: Partition) -> Result<u64> {
        let cfg = &self.inner.config;
        match self
            .run_once(
                Call::new(&self.inner.scripts.trim)
                    .key(stream)
                    .key(self.keys().fence(p))
                    .arg(self.keys().home(p))
                    .arg(cfg.resume_window.as_millis() as u64)
                    .arg(cfg.stream_cap),
            )
            .await
        {
            Err(e) if fenced(&e) => Ok(0),
            other => Ok(other?),
        }
    }

    /// Appends an application event (field, value pairs) under the stream cap; returns its id.
    pub async fn publish_app_event(&self, fields: &[(&str, &str)]) -> Result<String> {
        let mut inv = Call::new(&self.inner.scripts.publish);
        inv.key(self.keys().app_events())
            .key(self.keys().fence(0))
            .arg(&self.keys().prefix)
            .arg(self.inner.config.stream_cap);
        for (name, value) in fields {
            inv.arg(*name).arg(*value);
        }
        match self.write(&inv).await {
            Ok(id) => Ok(id),
            Err(e) if e.redis_code() == Some("STREAM_FULL") => Err(QueueError::StreamFull {
                cap: self.inner.config.stream_cap,
                retry_after: Duration::from_secs(1),
            }),
            Err(e) => Err(e),
        }
    }

    /// Deletes every key of this deployment's prefix. For tests and tear-down only.
    pub async fn destroy_all_data(&self) -> Result<u64> {
        // Each partition's keys share its hash tag, so on a cluster they all sit on the one
        // primary that holds its slot, and a scan of that node finds them all. Partition 0's
        // home holds the deployment-wide keys too.
        let removed = self.each_partition(|p| self.destroy_partition(p)).await?;
        Ok(removed.into_iter().sum())
    }

    async fn destroy_partition(&self, p: Partition) -> Result<u64> {
        let home = self.keys().job_events(p);
        let mut conn = self.conn();
        let pattern = format!(
            "{}:*",
            self.keys().home(p).replace('{', "\\{").replace('}', "\\}")
        );
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let reply = conn
                .command_at(
                    &home,
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000),
                )
                .await?;
            let (next, keys): (u64, Vec<String>) =
                redis::FromRedisValue::from_redis_value(reply).map_err(redis::RedisError::from)?;
            if !keys.is_empty() {
                removed += keys.len() as u64;
                let _: () = conn.unlink(keys).await?;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }
}
