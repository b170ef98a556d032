//! Fencing partitions while an operator moves their cluster slots. `MIGRATE` moves a slot's
//! keys one batch at a time; Redis redirects or refuses (`ASK`, `TRYAGAIN`) a call only by the
//! keys it declares, and the engine's scripts read keys they find at run time (a job's hash
//! after popping its id). So while a slot is split between two nodes a script could see half
//! its data and act on it. A fenced partition's scripts refuse to run (`FENCED`): callers wait
//! for it ([`crate::EngineConfig::fence_wait`]), fetches pass over it, nothing is lost.

use std::ops::RangeInclusive;

use redis::AsyncCommands;

use super::Engine;
use crate::{QueueError, Result, keys::Partition};

impl Engine {
    /// The partitions whose hash tag lies in `slots`: what moving those slots would split.
    pub fn partitions_in_slots(&self, slots: RangeInclusive<u16>) -> Vec<u16> {
        self.partition_slots()
            .into_iter()
            .enumerate()
            .filter(|(_, slot)| slots.contains(slot))
            .map(|(p, _)| p as u16)
            .collect()
    }

    /// Fences `partitions`: from the moment this returns, no engine script runs on them until
    /// [`Engine::unfence`]. `note` says who fenced and why (`steadfast partitions` shows it).
    /// The fence has no expiry on purpose: one that lapsed halfway through a slot's move would
    /// let scripts run on a split slot.
    pub async fn fence(&self, partitions: &[u16], note: &str) -> Result<()> {
        for &p in partitions {
            let key = self.fence_key(p)?;
            let _: () = self.conn().set(key, note).await?;
        }
        Ok(())
    }

    /// Lifts the fence of `partitions`; work waiting on them goes on.
    pub async fn unfence(&self, partitions: &[u16]) -> Result<()> {
        for &p in partitions {
            let key = self.fence_key(p)?;
            let _: () = self.conn().del(key).await?;
        }
        Ok(())
    }

    /// Each partition's fence note, `None` where it is not fenced; in partition order.
    pub async fn fences(&self) -> Result<Vec<Option<String>>> {
        self.each_partition(|p| async move { Ok(self.conn().get(self.keys().fence(p)).await?) })
            .await
    }

    fn fence_key(&self, p: u16) -> Result<String> {
        if p >= self.partitions() {
            return Err(QueueError::InvalidArgument(format!(
                "partition {p} does not exist: the deployment has {}",
                self.partitions()
            )));
        }
        Ok(self.keys().fence(p as Partition))
    }
}
