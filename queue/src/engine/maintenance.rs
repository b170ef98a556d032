//! Upkeep: finished jobs cleaned up, streams trimmed, app events published, tear-down.

use std::time::Duration;

use redis::AsyncCommands;

use crate::{QueueError, Result};

use super::Engine;

impl Engine {
    /// Forgets finished jobs past retention (one bounded chunk); returns how many.
    pub async fn cleanup_finished(&self, queue: &str) -> Result<u64> {
        let cfg = &self.inner.config;
        Ok(self
            .inner
            .scripts
            .cleanup
            .key(self.keys().job_events())
            .arg(&self.keys().prefix)
            .arg(queue)
            .arg(cfg.completed_retention.as_millis() as u64)
            .arg(cfg.completed_max)
            .arg(cfg.cleanup_chunk)
            .invoke_async(&mut self.conn())
            .await?)
    }

    /// Trims the job-event stream behind its slowest consumer group; returns entries removed.
    pub async fn trim_job_events(&self) -> Result<u64> {
        self.trim_stream(self.keys().job_events()).await
    }

    /// Trims the application-event stream the same way.
    pub async fn trim_app_events(&self) -> Result<u64> {
        self.trim_stream(self.keys().app_events()).await
    }

    async fn trim_stream(&self, stream: String) -> Result<u64> {
        let cfg = &self.inner.config;
        Ok(self
            .inner
            .scripts
            .trim
            .key(stream)
            .arg(&self.keys().prefix)
            .arg(cfg.resume_window.as_millis() as u64)
            .arg(cfg.stream_cap)
            .invoke_async(&mut self.conn())
            .await?)
    }

    /// Appends an application event (field, value pairs) under the stream cap; returns its id.
    pub async fn publish_app_event(&self, fields: &[(&str, &str)]) -> Result<String> {
        let mut inv = self.inner.scripts.publish.prepare_invoke();
        inv.key(self.keys().app_events())
            .arg(&self.keys().prefix)
            .arg(self.inner.config.stream_cap);
        for (name, value) in fields {
            inv.arg(*name).arg(*value);
        }
        match inv.invoke_async(&mut self.conn()).await {
            Ok(id) => Ok(id),
            Err(e) if e.code() == Some("STREAM_FULL") => Err(QueueError::StreamFull {
                cap: self.inner.config.stream_cap,
                retry_after: Duration::from_secs(1),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every key of this deployment's prefix. For tests and tear-down only.
    pub async fn destroy_all_data(&self) -> Result<u64> {
        let mut conn = self.conn();
        let pattern = format!(
            "{}:*",
            self.keys().prefix.replace('{', "\\{").replace('}', "\\}")
        );
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
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
