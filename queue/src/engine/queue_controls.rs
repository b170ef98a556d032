//! Queue-wide controls: pause, resume and drain. A paused queue keeps taking pushes, and its
//! leases, retries and schedules keep moving; only leasing stops, in the fetch script itself,
//! so no worker takes a job from the moment the pause is written.

use crate::Result;

use super::Engine;

impl Engine {
    /// Stops workers leasing from `queue`; jobs already running finish. Answers whether the
    /// queue was running before (false: it was paused already).
    pub async fn pause(&self, queue: &str) -> Result<bool> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys().queue(queue, "paused"))
            .arg(crate::now_ms())
            .arg("NX")
            .query_async(&mut self.conn())
            .await?;
        Ok(set.is_some())
    }

    /// Lets workers lease from `queue` again and wakes an idle one at once. Answers whether
    /// the queue was paused.
    pub async fn resume(&self, queue: &str) -> Result<bool> {
        let wake = self.keys().queue(queue, "wake");
        let (removed, _, _): (u64, u64, ()) = redis::pipe()
            .atomic()
            .del(self.keys().queue(queue, "paused"))
            .rpush(&wake, "1")
            .ltrim(&wake, 0, 0)
            .query_async(&mut self.conn())
            .await?;
        Ok(removed > 0)
    }

    /// Cancels every job waiting on `queue` (ready, scheduled, retrying), `chunk` per script
    /// call so Redis is never held long; running jobs finish. Each cancelled job gets its
    /// `cancelled` event, so the ledger and subscribers see it. Answers how many were
    /// cancelled. Jobs pushed while it runs may be cancelled too (pause first for a clean
    /// cut), but it ends: it takes at most as many entries as were waiting when it began.
    pub async fn drain(&self, queue: &str, chunk: usize) -> Result<u64> {
        let chunk = chunk.max(1) as u64;
        let (mut total, mut taken_total) = (0, 0);
        let mut limit: Option<u64> = None;
        loop {
            let (cancelled, taken, left): (u64, u64, u64) = self
                .inner
                .scripts
                .drain
                .key(self.keys().job_events())
                .arg(&self.keys().prefix)
                .arg(queue)
                .arg(chunk)
                .invoke_async(&mut self.conn())
                .await?;
            total += cancelled;
            taken_total += taken;
            let limit = *limit.get_or_insert(taken + left);
            if left == 0 || taken == 0 || taken_total >= limit {
                return Ok(total);
            }
        }
    }
}
