//! The event streams: job transitions (written only by the engine's scripts) and application
//! events (written by the workflow). Readers either follow a stream from a cursor
//! (subscriptions) or consume it through a consumer group that acknowledges an entry only
//! after the consumer has committed it (the SQL recorder).

use std::{collections::HashMap, time::Duration};

use redis::{
    AsyncCommands, Value,
    streams::{StreamReadOptions, StreamReadReply},
};

use crate::{Engine, JobState, QueueError, Result};

/// Which of the deployment's two streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStream {
    Jobs,
    App,
}

/// One stream entry: its id (the cursor) and its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEntry {
    pub id: String,
    pub fields: HashMap<String, String>,
}

/// How far a consumer group is through its stream: what tells an operator whether the SQL
/// recorder keeps up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupProgress {
    /// Entries no consumer has been given yet (`None` when Redis cannot tell, for example
    /// after entries were deleted from the middle of the stream).
    pub lag: Option<u64>,
    /// Entries given to a consumer and not yet acknowledged.
    pub pending: u64,
    /// The group's consumers by name, sorted.
    pub consumers: Vec<String>,
}

/// One job transition, as the engine's scripts appended it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEvent {
    /// Stream id: the cursor to resume after.
    pub cursor: String,
    pub job_id: String,
    pub queue: String,
    pub kind: String,
    /// `enqueued`, `scheduled`, `promoted`, `started`, `progress`, `succeeded`,
    /// `retry_scheduled`, `lease_expired`, `snoozed`, `died`, `cancelled`, `requeued`,
    /// `released`, `discarded`.
    pub event: String,
    /// The state the job entered.
    pub state: JobState,
    pub attempt: u32,
    /// Unix ms, Redis server time (from the stream id).
    pub at_ms: u64,
    pub error: Option<String>,
    pub fingerprint: Option<String>,
    pub next_run_at_ms: Option<u64>,
    pub worker: Option<String>,
    /// The workflow run the job belongs to.
    pub workflow_id: Option<String>,
    /// A `progress` event's percent (0 to 100) and message.
    pub progress: Option<(u8, String)>,
}

impl JobEvent {
    /// The state each event moves a job into: the lifecycle table in `docs/design.md`.
    pub fn state_entered(event: &str) -> Option<JobState> {
        Some(match event {
            "enqueued" | "promoted" | "requeued" | "released" => JobState::Queued,
            "scheduled" | "snoozed" | "throttled" => JobState::Scheduled,
            "started" | "progress" => JobState::Running,
            "retry_scheduled" | "lease_expired" => JobState::Retrying,
            "succeeded" => JobState::Succeeded,
            "died" | "discarded" => JobState::Dead,
            "cancelled" => JobState::Cancelled,
            _ => return None,
        })
    }

    pub fn from_entry(entry: &StreamEntry) -> Option<Self> {
        let f = &entry.fields;
        let get = |k: &str| f.get(k).cloned();
        Some(Self {
            cursor: entry.id.clone(),
            job_id: get("id")?,
            queue: get("q")?,
            kind: get("k")?,
            event: get("ev")?,
            state: JobEvent::state_entered(f.get("ev")?)?,
            attempt: f.get("a").and_then(|a| a.parse().ok()).unwrap_or(0),
            // The stream id's first part is the server's clock in ms when the event was appended.
            at_ms: entry
                .id
                .split('-')
                .next()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0),
            error: get("err"),
            fingerprint: get("fp"),
            next_run_at_ms: f.get("next").and_then(|t| t.parse().ok()),
            worker: get("w"),
            workflow_id: get("wf"),
            progress: f
                .get("pct")
                .and_then(|p| p.parse::<u8>().ok())
                .map(|p| (p.min(100), get("msg").unwrap_or_default())),
        })
    }
}

impl Engine {
    fn stream_key(&self, stream: EventStream) -> String {
        match stream {
            EventStream::Jobs => self.keys().job_events(),
            EventStream::App => self.keys().app_events(),
        }
    }

    /// The newest entry's id ("0-0" when empty): a list read now reflects events up to here.
    pub async fn stream_position(&self, stream: EventStream) -> Result<String> {
        self.stream_position_of(&self.stream_key(stream)).await
    }

    async fn stream_position_of(&self, key: &str) -> Result<String> {
        let reply: Vec<Value> = redis::cmd("XREVRANGE")
            .arg(key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.conn())
            .await?;
        if let Some(id) = reply.first().and_then(|entry| match entry {
            Value::Array(parts) => parts.first().and_then(crate::engine::value_string),
            _ => None,
        }) {
            return Ok(id);
        }
        // Empty: every entry was trimmed (or none was ever written); the position is the
        // last id the stream generated.
        let info: redis::RedisResult<HashMap<String, Value>> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(key)
            .query_async(&mut self.conn())
            .await;
        Ok(info
            .ok()
            .and_then(|i| {
                i.get("last-generated-id")
                    .and_then(crate::engine::value_string)
            })
            .unwrap_or_else(|| "0-0".into()))
    }

    /// Entries after `cursor` ("0-0" for the start), without waiting. Fails with
    /// [`QueueError::CursorExpired`] when entries after the cursor were already trimmed away,
    /// so the reader knows to reload.
    pub async fn read_stream(
        &self,
        stream: EventStream,
        cursor: &str,
        count: usize,
    ) -> Result<Vec<StreamEntry>> {
        let key = self.stream_key(stream);
        let opts = StreamReadOptions::default().count(count);
        let reply: Option<StreamReadReply> =
            self.conn().xread_options(&[&key], &[cursor], &opts).await?;
        // Checked after the read: a trim between a check and the read would go unseen.
        self.check_cursor(&key, cursor).await?;
        Ok(flatten(reply))
    }

    /// A reader that follows `stream` from `cursor` ("$" for what comes after this call),
    /// with a connection of its own for its blocking reads.
    pub async fn follow(&self, stream: EventStream, cursor: impl Into<String>) -> Result<Follower> {
        let key = self.stream_key(stream);
        let mut cursor = cursor.into();
        if cursor == "$" {
            // Resolved now, so nothing appended between two reads is ever skipped.
            cursor = self.stream_position_of(&key).await?;
        }
        Ok(Follower {
            engine: self.clone(),
            key,
            cursor,
            conn: None,
        })
    }

    async fn check_cursor(&self, key: &str, cursor: &str) -> Result<()> {
        let trimmed_up_to: Option<String> = self
            .conn()
            .hget(format!("{}:trimmed", self.keys().prefix), key)
            .await?;
        match trimmed_up_to {
            Some(mark) if stream_id_lt(cursor, &mark) => {
                Err(QueueError::CursorExpired(cursor.to_owned()))
            }
            _ => Ok(()),
        }
    }

    /// `group`'s progress through `stream`; `None` when the stream or the group does not exist.
    pub async fn group_progress(
        &self,
        stream: EventStream,
        group: &str,
    ) -> Result<Option<GroupProgress>> {
        let key = self.stream_key(stream);
        let groups: redis::RedisResult<Vec<HashMap<String, Value>>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&key)
            .query_async(&mut self.conn())
            .await;
        let groups = match groups {
            Ok(groups) => groups,
            Err(e) if e.to_string().contains("no such key") => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let number = |info: &HashMap<String, Value>, field: &str| match info.get(field) {
            Some(Value::Int(n)) => u64::try_from(*n).ok(),
            _ => None,
        };
        let Some(info) = groups.iter().find(|info| {
            info.get("name")
                .and_then(crate::engine::value_string)
                .as_deref()
                == Some(group)
        }) else {
            return Ok(None);
        };
        let consumers: Vec<HashMap<String, Value>> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&key)
            .arg(group)
            .query_async(&mut self.conn())
            .await?;
        let mut consumers: Vec<String> = consumers
            .iter()
            .filter_map(|c| c.get("name").and_then(crate::engine::value_string))
            .collect();
        consumers.sort_unstable();
        Ok(Some(GroupProgress {
            lag: number(info, "lag"),
            pending: number(info, "pending").unwrap_or(0),
            consumers,
        }))
    }

    /// A consumer in `group` of `stream`. Any number of processes may share a group.
    pub fn consumer(
        &self,
        stream: EventStream,
        group: impl Into<String>,
        consumer: impl Into<String>,
    ) -> Consumer {
        Consumer {
            engine: self.clone(),
            key: self.stream_key(stream),
            group: group.into(),
            consumer: consumer.into(),
            pending_done: false,
            conn: None,
            claim_after: Duration::from_secs(60),
            last_claim: None,
        }
    }
}

/// A consumer-group reader. Entries are redelivered until [`Consumer::ack`] is called for
/// them, so a consumer acknowledges only after it has committed what it read.
#[derive(Debug)]
pub struct Consumer {
    engine: Engine,
    key: String,
    group: String,
    consumer: String,
    /// After a restart, a consumer first re-reads what it was given and never acknowledged.
    pending_done: bool,
    conn: Option<crate::connection::RedisConn>,
    /// Entries another consumer left unacknowledged this long are taken over (it died).
    claim_after: Duration,
    last_claim: Option<std::time::Instant>,
}

/// Follows a stream from a cursor: what a subscription reads.
#[derive(Debug)]
pub struct Follower {
    engine: Engine,
    key: String,
    cursor: String,
    conn: Option<crate::connection::RedisConn>,
}

impl Follower {
    /// The id of the last entry returned (or the starting cursor).
    pub fn cursor(&self) -> &str {
        &self.cursor
    }

    /// The next entries, waiting up to `block` for some to arrive.
    pub async fn next_batch(&mut self, count: usize, block: Duration) -> Result<Vec<StreamEntry>> {
        let conn = blocking_conn(&self.engine, &mut self.conn, block).await?;
        let opts = StreamReadOptions::default()
            .count(count)
            .block(block.as_millis().max(1) as usize);
        let reply: Option<StreamReadReply> = conn
            .xread_options(&[&self.key], &[&self.cursor], &opts)
            .await?;
        // Checked after the read: a trim between a check and the read would go unseen.
        self.engine.check_cursor(&self.key, &self.cursor).await?;
        let entries = flatten(reply);
        if let Some(last) = entries.last() {
            self.cursor = last.id.clone();
        }
        Ok(entries)
    }
}

async fn blocking_conn<'a>(
    engine: &Engine,
    slot: &'a mut Option<crate::connection::RedisConn>,
    block: Duration,
) -> Result<&'a mut crate::connection::RedisConn> {
    if slot.is_none() {
        *slot = Some(
            engine
                .dedicated_connection(block + Duration::from_secs(2))
                .await?,
        );
    }
    slot.as_mut().ok_or(QueueError::Protocol {
        script: "connect",
        detail: "no connection".into(),
    })
}

impl Consumer {
    /// Creates the group if it does not exist, reading from the stream's start.
    pub async fn ensure_group(&self) -> Result<()> {
        let created: redis::RedisResult<()> = self
            .engine
            .conn()
            .xgroup_create_mkstream(&self.key, &self.group, "0")
            .await;
        match created {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Entries other consumers of the group left unacknowledged for this long are taken over
    /// by this one (default 60 s): a consumer that died must not pin the stream.
    pub fn claim_after(mut self, idle: Duration) -> Self {
        self.claim_after = idle;
        self
    }

    /// Up to `count` entries: first those delivered to this consumer before and never
    /// acknowledged, then entries other consumers left idle past `claim_after`, then new ones
    /// (waiting up to `block`).
    pub async fn read(&mut self, count: usize, block: Duration) -> Result<Vec<StreamEntry>> {
        if !self.pending_done {
            let opts = StreamReadOptions::default()
                .group(&self.group, &self.consumer)
                .count(count);
            let reply: Option<StreamReadReply> = self
                .engine
                .conn()
                .xread_options(&[&self.key], &["0"], &opts)
                .await?;
            let entries = flatten(reply);
            if !entries.is_empty() {
                return Ok(entries);
            }
            self.pending_done = true;
        }
        // Look for abandoned entries at most twice per claim period.
        if self
            .last_claim
            .is_none_or(|t| t.elapsed() >= self.claim_after / 2)
        {
            self.last_claim = Some(std::time::Instant::now());
            let claimed = self.claim_idle(count).await?;
            if !claimed.is_empty() {
                self.last_claim = None;
                return Ok(claimed);
            }
        }
        let opts = StreamReadOptions::default()
            .group(&self.group, &self.consumer)
            .count(count)
            .block(block.as_millis().max(1) as usize);
        let conn = blocking_conn(&self.engine, &mut self.conn, block).await?;
        let reply: Option<StreamReadReply> =
            conn.xread_options(&[&self.key], &[">"], &opts).await?;
        Ok(flatten(reply))
    }

    async fn claim_idle(&self, count: usize) -> Result<Vec<StreamEntry>> {
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(&self.key)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(self.claim_after.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.engine.conn())
            .await?;
        // Reply: [next cursor, [[id, [field, value, ...]], ...], [ids deleted meanwhile]].
        let Value::Array(parts) = reply else {
            return Ok(Vec::new());
        };
        let Some(Value::Array(entries)) = parts.get(1) else {
            return Ok(Vec::new());
        };
        Ok(entries
            .iter()
            .filter_map(|entry| {
                let Value::Array(pair) = entry else {
                    return None;
                };
                let id = pair.first().and_then(crate::engine::value_string)?;
                let Some(Value::Array(kv)) = pair.get(1) else {
                    return None;
                };
                let fields = kv
                    .chunks(2)
                    .filter_map(|c| {
                        Some((
                            crate::engine::value_string(c.first()?)?,
                            crate::engine::value_string(c.get(1)?)?,
                        ))
                    })
                    .collect();
                Some(StreamEntry { id, fields })
            })
            .collect())
    }

    /// The next read starts again with what this consumer was given and has not acknowledged.
    /// Call it after failing to commit a batch (or when a read's reply was lost): otherwise
    /// those entries wait for `claim_after` before anyone reads them again.
    pub fn reread_pending(&mut self) {
        self.pending_done = false;
    }

    /// Acknowledges committed entries, which lets the stream be trimmed past them.
    pub async fn ack(&self, ids: &[String]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(self.engine.conn().xack(&self.key, &self.group, ids).await?)
    }
}

fn flatten(reply: Option<StreamReadReply>) -> Vec<StreamEntry> {
    reply
        .into_iter()
        .flat_map(|r| r.keys)
        .flat_map(|k| k.ids)
        .map(|entry| StreamEntry {
            fields: entry
                .map
                .iter()
                .filter_map(|(k, v)| crate::engine::value_string(v).map(|v| (k.clone(), v)))
                .collect(),
            id: entry.id,
        })
        .collect()
}

fn parse_stream_id(id: &str) -> (u64, u64) {
    let mut parts = id.splitn(2, '-');
    let ms = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let seq = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (ms, seq)
}

pub(crate) fn stream_id_lt(a: &str, b: &str) -> bool {
    parse_stream_id(a) < parse_stream_id(b)
}
