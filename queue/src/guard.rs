//! Start-up check of the Redis settings the durability promises rest on.

use std::collections::HashMap;

use crate::{Engine, QueueError, Result};

/// What the guard found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisGuardReport {
    pub maxmemory_policy: String,
    pub appendonly: bool,
    pub appendfsync: String,
    /// RDB snapshots configured (`save` not empty).
    pub snapshots: bool,
    pub redis_version: String,
    /// What is unsafe, in plain words; empty when all is well.
    pub problems: Vec<String>,
}

impl RedisGuardReport {
    /// The data-loss window on a Redis crash that these settings give.
    pub fn durability(&self) -> &'static str {
        match (self.appendonly, self.appendfsync.as_str()) {
            (true, "always") => "strict: every acknowledged write is fsynced (no loss on a crash)",
            (true, "everysec") => {
                "everysec: up to about 1 s of acknowledged writes lost on a crash"
            }
            (true, _) => {
                "appendfsync no: the OS decides when to flush (up to ~30 s lost on a crash)"
            }
            (false, _) if self.snapshots => {
                "snapshots only: everything since the last RDB snapshot lost on a crash"
            }
            (false, _) => "none: nothing persisted; a Redis restart loses every job",
        }
    }
}

impl Engine {
    /// Reads `maxmemory-policy` and the persistence settings. Warns (through `tracing`) when
    /// the policy is not `noeviction` or nothing is persisted; with `strict`, refuses instead.
    pub async fn check_redis(&self, strict: bool) -> Result<RedisGuardReport> {
        // Every partition's primary (on one node, the same one each time): each holds jobs the
        // promises cover. Partition 0's settings are reported; every partition's problems are.
        let mut reports = self.each_partition(|p| self.settings_at(p)).await?;
        let mut report = reports.remove(0);
        for (p, other) in reports.into_iter().enumerate() {
            for problem in other.problems {
                let problem = format!("{problem} (the primary of partition {})", p + 1);
                if !report.problems.contains(&problem) {
                    report.problems.push(problem);
                }
            }
        }
        if report.problems.is_empty() {
            tracing::info!(durability = report.durability(), "redis settings checked");
        } else if strict {
            return Err(QueueError::UnsafeRedis(report.problems.join("; ")));
        } else {
            for problem in &report.problems {
                tracing::warn!(
                    durability = report.durability(),
                    "UNSAFE REDIS SETTING: {problem}"
                );
            }
        }
        Ok(report)
    }

    /// The settings of the primary that holds partition `p`, and what is unsafe in them.
    async fn settings_at(&self, p: crate::keys::Partition) -> Result<RedisGuardReport> {
        let home = self.keys().job_events(p);
        let mut conn = self.conn();
        let get = |name: &'static str| {
            let (mut conn, home) = (conn.clone(), home.clone());
            async move {
                let reply = conn
                    .command_at(&home, redis::cmd("CONFIG").arg("GET").arg(name))
                    .await?;
                let pairs: HashMap<String, String> = redis::FromRedisValue::from_redis_value(reply)
                    .map_err(redis::RedisError::from)?;
                Ok::<_, QueueError>(pairs.get(name).cloned().unwrap_or_default())
            }
        };
        let policy = get("maxmemory-policy").await?;
        let appendonly = get("appendonly").await? == "yes";
        let appendfsync = get("appendfsync").await?;
        let save = get("save").await?;
        let info: String = redis::FromRedisValue::from_redis_value(
            conn.command_at(&home, redis::cmd("INFO").arg("server"))
                .await?,
        )
        .map_err(redis::RedisError::from)?;
        let version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("unknown")
            .trim()
            .to_owned();
        let mut problems = Vec::new();
        if policy != "noeviction" {
            problems.push(format!(
                "maxmemory-policy is {policy:?}: Redis may evict queued jobs under memory pressure; set it to noeviction"
            ));
        }
        if !appendonly {
            problems.push(if save.trim().is_empty() {
                "no persistence (appendonly no, save \"\"): a Redis restart loses every accepted job; set appendonly yes".to_owned()
            } else {
                "appendonly no: a Redis crash loses every job accepted since the last RDB snapshot; set appendonly yes".to_owned()
            });
        }
        Ok(RedisGuardReport {
            maxmemory_policy: policy,
            appendonly,
            appendfsync,
            snapshots: !save.trim().is_empty(),
            redis_version: version,
            problems,
        })
    }
}
