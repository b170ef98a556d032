//! The event streams: job transitions (written only by the engine's scripts) and application
//! events (written by the workflow). Readers either follow a stream from a cursor
//! (subscriptions) or consume it through a consumer group that acknowledges an entry only
//! after the consumer has committed it (the SQL recorder).

use std::{collections::HashMap, time::Duration};

use redis::{
    AsyncCommands, Value,
    streams::{StreamReadOptions, StreamReadReply},
};

use crate::{Engine, JobState, QueueError, Result, blocking::BlockingCalls};

/// Which of the deployment's two streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStream {
    Jobs,
    App,
}

/// One stream entry: where it is, where a reader resumes after it, and its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEntry {
    /// The entry's id in its partition's stream.
    pub id: String,
    /// The partition whose stream holds it (0 for the application stream).
    pub partition: u16,
    /// Where a reader resumes to read what comes after this entry, in every partition (see
    /// [`EventCursor`]); with one partition, the entry's id.
    pub cursor: String,
    pub fields: HashMap<String, String>,
}

impl StreamEntry {
    /// The entry's id, qualified by its partition where that is not 0: unique over the whole
    /// deployment's job events.
    pub fn qualified_id(&self) -> String {
        if self.partition == 0 {
            self.id.clone()
        } else {
            format!("{}:{}", self.partition, self.id)
        }
    }
}

/// A reader's position in a stream that has one part per partition: the id of the last entry
/// read in each. Written as the ids joined by commas (`1700000000000-0,1700000000003-2`); with
/// one partition, the plain stream id. A cursor with fewer parts than the deployment has
/// partitions (one written before it grew) reads the missing ones from their start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCursor {
    positions: Vec<String>,
}

impl EventCursor {
    /// The start of every partition's stream.
    pub fn start(partitions: u16) -> Self {
        Self {
            positions: vec!["0-0".into(); usize::from(partitions.max(1))],
        }
    }

    pub fn parse(text: &str, partitions: u16) -> Result<Self> {
        let n = usize::from(partitions.max(1));
        let mut positions: Vec<String> = text.split(',').map(|p| p.trim().to_owned()).collect();
        if positions.len() > n {
            return Err(QueueError::InvalidArgument(format!(
                "cursor {text:?} has {} parts; this deployment's streams have {n}",
                positions.len()
            )));
        }
        if let Some(bad) = positions.iter().find(|p| !is_stream_id(p)) {
            return Err(QueueError::InvalidArgument(format!(
                "cursor {text:?}: {bad:?} is not a stream position (ms-seq)"
            )));
        }
        positions.resize(n, "0-0".into());
        Ok(Self { positions })
    }

    /// The position in partition `p`'s stream.
    pub fn position(&self, p: u16) -> &str {
        self.positions
            .get(usize::from(p))
            .map_or("0-0", String::as_str)
    }

    /// Whether an entry of partition `p` with id `id` lies at or before this cursor (a reader
    /// here has seen it).
    pub fn covers(&self, p: u16, id: &str) -> bool {
        !stream_id_lt(self.position(p), id)
    }

    /// Moves partition `p`'s position to `id`, if that is further on.
    pub fn advance(&mut self, p: u16, id: &str) {
        if let Some(at) = self.positions.get_mut(usize::from(p))
            && stream_id_lt(at, id)
        {
            id.clone_into(at);
        }
    }
}

impl std::fmt::Display for EventCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.positions.join(","))
    }
}

fn is_stream_id(text: &str) -> bool {
    let (ms, seq) = text.split_once('-').unwrap_or((text, "0"));
    !ms.is_empty()
        && ms.bytes().all(|b| b.is_ascii_digit())
        && !seq.is_empty()
        && seq.bytes().all(|b| b.is_ascii_digit())
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
    /// Where a reader resumes to read what came after this event (see [`EventCursor`]).
    pub cursor: String,
    /// The partition whose stream holds the event: every event of one job is in one.
    pub partition: u16,
    /// The event's id in its partition's stream; a job's events rise in it.
    pub stream_id: String,
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
            cursor: entry.cursor.clone(),
            partition: entry.partition,
            stream_id: entry.id.clone(),
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
    /// The stream's key in each of its partitions (the application stream has one).
    fn stream_keys(&self, stream: EventStream) -> Vec<String> {
        match stream {
            EventStream::Jobs => self
                .keys()
                .all()
                .map(|p| self.keys().job_events(p))
                .collect(),
            EventStream::App => vec![self.keys().app_events()],
        }
    }

    /// Where the newest entries are (each partition's newest id, "0-0" where empty): a list
    /// read now reflects events up to here.
    pub async fn stream_position(&self, stream: EventStream) -> Result<String> {
        Ok(self
            .stream_position_of(&self.stream_keys(stream))
            .await?
            .to_string())
    }

    async fn stream_position_of(&self, keys: &[String]) -> Result<EventCursor> {
        let positions =
            futures::future::try_join_all(keys.iter().map(|key| self.newest_id(key))).await?;
        Ok(EventCursor { positions })
    }

    async fn newest_id(&self, key: &str) -> Result<String> {
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

    /// Up to `count` entries after `cursor` ("0-0" for the start), without waiting, oldest
    /// first over every partition. Fails with [`QueueError::CursorExpired`] when entries after
    /// the cursor were already trimmed away, so the reader knows to reload.
    pub async fn read_stream(
        &self,
        stream: EventStream,
        cursor: &str,
        count: usize,
    ) -> Result<Vec<StreamEntry>> {
        let keys = self.stream_keys(stream);
        let mut at = EventCursor::parse(cursor, keys.len() as u16)?;
        let reads = keys.iter().enumerate().map(|(p, key)| {
            let (mut conn, from) = (self.conn(), at.position(p as u16).to_owned());
            let opts = StreamReadOptions::default().count(count);
            async move {
                let reply: Option<StreamReadReply> =
                    conn.xread_options(&[key], &[&from], &opts).await?;
                // Checked after the read: a trim between a check and the read would go unseen.
                self.check_cursor(key, &from).await?;
                Ok::<_, QueueError>(flatten(reply, p as u16))
            }
        });
        let mut entries: Vec<StreamEntry> = futures::future::try_join_all(reads)
            .await?
            .into_iter()
            .flatten()
            .collect();
        entries.sort_by_key(|e| (parse_stream_id(&e.id), e.partition));
        entries.truncate(count);
        stamp_cursors(&mut entries, &mut at);
        Ok(entries)
    }

    /// A reader that follows `stream` from `cursor` ("$" for what comes after this call),
    /// with connections of its own for its blocking reads.
    pub async fn follow(&self, stream: EventStream, cursor: impl Into<String>) -> Result<Follower> {
        let keys = self.stream_keys(stream);
        let cursor = cursor.into();
        let cursor = if cursor == "$" {
            // Resolved now, so nothing appended between two reads is ever skipped.
            self.stream_position_of(&keys).await?
        } else {
            EventCursor::parse(&cursor, keys.len() as u16)?
        };
        Ok(Follower {
            engine: self.clone(),
            reads: BlockingCalls::new(keys.len()),
            text: cursor.to_string(),
            cursor,
            keys,
        })
    }

    async fn check_cursor(&self, key: &str, cursor: &str) -> Result<()> {
        let trimmed_up_to: Option<String> = self
            .conn()
            .hget(self.keys().trimmed_marks(key), key)
            .await?;
        match trimmed_up_to {
            Some(mark) if stream_id_lt(cursor, &mark) => {
                Err(QueueError::CursorExpired(cursor.to_owned()))
            }
            _ => Ok(()),
        }
    }

    /// `group`'s progress through `stream`, over every partition; `None` when the stream or
    /// the group does not exist.
    pub async fn group_progress(
        &self,
        stream: EventStream,
        group: &str,
    ) -> Result<Option<GroupProgress>> {
        let keys = self.stream_keys(stream);
        let parts = futures::future::try_join_all(
            keys.iter().map(|key| self.group_progress_of(key, group)),
        )
        .await?;
        let mut total: Option<GroupProgress> = None;
        for part in parts.into_iter().flatten() {
            total = Some(match total {
                None => part,
                Some(mut t) => {
                    t.lag = t.lag.zip(part.lag).map(|(a, b)| a + b);
                    t.pending += part.pending;
                    t.consumers.extend(part.consumers);
                    t.consumers.sort_unstable();
                    t.consumers.dedup();
                    t
                }
            });
        }
        Ok(total)
    }

    async fn group_progress_of(&self, key: &str, group: &str) -> Result<Option<GroupProgress>> {
        let groups: redis::RedisResult<Vec<HashMap<String, Value>>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(key)
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
            .arg(key)
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

    /// A consumer in `group` of `stream` (of each of its partitions). Any number of processes
    /// may share a group.
    pub fn consumer(
        &self,
        stream: EventStream,
        group: impl Into<String>,
        consumer: impl Into<String>,
    ) -> Consumer {
        let keys = self.stream_keys(stream);
        Consumer {
            engine: self.clone(),
            reads: BlockingCalls::new(keys.len()),
            keys,
            group: group.into(),
            consumer: consumer.into(),
            pending_done: false,
            claim_after: Duration::from_secs(60),
            last_claim: None,
        }
    }
}

/// Gives each entry, in order, the cursor a reader resumes from after it.
fn stamp_cursors(entries: &mut [StreamEntry], at: &mut EventCursor) {
    for entry in entries {
        at.advance(entry.partition, &entry.id);
        entry.cursor = at.to_string();
    }
}

/// A consumer-group reader over every partition of a stream. Entries are redelivered until
/// [`Consumer::ack`] is called for them, so a consumer acknowledges only after it has committed
/// what it read.
#[derive(Debug)]
pub struct Consumer {
    engine: Engine,
    keys: Vec<String>,
    group: String,
    consumer: String,
    /// After a restart, a consumer first re-reads what it was given and never acknowledged.
    pending_done: bool,
    reads: BlockingCalls<Option<StreamReadReply>>,
    /// Entries another consumer left unacknowledged this long are taken over (it died).
    claim_after: Duration,
    last_claim: Option<std::time::Instant>,
}

/// Follows a stream from a cursor: what a subscription reads.
#[derive(Debug)]
pub struct Follower {
    engine: Engine,
    keys: Vec<String>,
    cursor: EventCursor,
    /// `cursor` as text, kept so [`Follower::cursor`] can lend it.
    text: String,
    reads: BlockingCalls<Option<StreamReadReply>>,
}

impl Follower {
    /// Where the last entry returned leaves a reader (or the starting cursor).
    pub fn cursor(&self) -> &str {
        &self.text
    }

    /// The next entries, waiting up to `block` for some to arrive.
    pub async fn next_batch(&mut self, count: usize, block: Duration) -> Result<Vec<StreamEntry>> {
        let (keys, cursor) = (&self.keys, &self.cursor);
        let replies = self
            .reads
            .wait(
                &self.engine,
                block,
                |p, left| {
                    let opts = StreamReadOptions::default()
                        .count(count)
                        .block(left.as_millis().max(1) as usize);
                    let mut cmd = redis::cmd("XREAD");
                    cmd.arg(&opts)
                        .arg("STREAMS")
                        .arg(&keys[p])
                        .arg(cursor.position(p as u16));
                    cmd
                },
                has_entries,
            )
            .await?;
        let mut entries = Vec::new();
        for (p, reply) in replies {
            // Checked after the read: a trim between a check and the read would go unseen.
            self.engine
                .check_cursor(&self.keys[p], self.cursor.position(p as u16))
                .await?;
            entries.extend(flatten(reply, p as u16));
        }
        entries.sort_by_key(|e| (parse_stream_id(&e.id), e.partition));
        stamp_cursors(&mut entries, &mut self.cursor);
        self.text = self.cursor.to_string();
        Ok(entries)
    }
}

impl Consumer {
    /// Creates the group on every partition's stream if it does not exist, reading from the
    /// stream's start.
    pub async fn ensure_group(&self) -> Result<()> {
        for key in &self.keys {
            let created: redis::RedisResult<()> = self
                .engine
                .conn()
                .xgroup_create_mkstream(key, &self.group, "0")
                .await;
            match created {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Entries other consumers of the group left unacknowledged for this long are taken over
    /// by this one (default 60 s): a consumer that died must not pin the stream.
    pub fn claim_after(mut self, idle: Duration) -> Self {
        self.claim_after = idle;
        self
    }

    /// Up to `count` entries per partition: first those delivered to this consumer before and
    /// never acknowledged, then entries other consumers left idle past `claim_after`, then new
    /// ones (waiting up to `block`). After a failed read the next starts again with the
    /// pending ones: a failure in one partition may come after another's entries were already
    /// delivered to this consumer.
    pub async fn read(&mut self, count: usize, block: Duration) -> Result<Vec<StreamEntry>> {
        let read = self.read_once(count, block).await;
        if read.is_err() {
            self.pending_done = false;
        }
        read
    }

    async fn read_once(&mut self, count: usize, block: Duration) -> Result<Vec<StreamEntry>> {
        if !self.pending_done {
            let opts = StreamReadOptions::default()
                .group(&self.group, &self.consumer)
                .count(count);
            let mut entries = Vec::new();
            for (p, key) in self.keys.iter().enumerate() {
                let reply: Option<StreamReadReply> = self
                    .engine
                    .conn()
                    .xread_options(&[key], &["0"], &opts)
                    .await?;
                entries.extend(flatten(reply, p as u16));
            }
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
            let mut claimed = Vec::new();
            for p in 0..self.keys.len() {
                claimed.extend(self.claim_idle(p, count).await?);
            }
            if !claimed.is_empty() {
                self.last_claim = None;
                return Ok(claimed);
            }
        }
        let (keys, group, consumer) = (&self.keys, &self.group, &self.consumer);
        Ok(self
            .reads
            .wait(
                &self.engine,
                block,
                |p, left| {
                    let opts = StreamReadOptions::default()
                        .group(group, consumer)
                        .count(count)
                        .block(left.as_millis().max(1) as usize);
                    let mut cmd = redis::cmd("XREADGROUP");
                    cmd.arg(&opts).arg("STREAMS").arg(&keys[p]).arg(">");
                    cmd
                },
                has_entries,
            )
            .await?
            .into_iter()
            .flat_map(|(p, reply)| flatten(reply, p as u16))
            .collect())
    }

    async fn claim_idle(&self, p: usize, count: usize) -> Result<Vec<StreamEntry>> {
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(&self.keys[p])
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
                Some(StreamEntry {
                    cursor: id.clone(),
                    id,
                    partition: p as u16,
                    fields,
                })
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
    pub async fn ack(&self, entries: &[StreamEntry]) -> Result<u64> {
        let mut by_partition: std::collections::BTreeMap<u16, Vec<&str>> = Default::default();
        for entry in entries {
            by_partition
                .entry(entry.partition)
                .or_default()
                .push(entry.id.as_str());
        }
        let mut acked = 0;
        for (p, ids) in by_partition {
            let Some(key) = self.keys.get(usize::from(p)) else {
                continue;
            };
            acked += self
                .engine
                .conn()
                .xack::<_, _, _, u64>(key, &self.group, &ids)
                .await?;
        }
        Ok(acked)
    }
}

fn has_entries(reply: &Option<StreamReadReply>) -> bool {
    reply
        .as_ref()
        .is_some_and(|r| r.keys.iter().any(|k| !k.ids.is_empty()))
}

/// A read's entries, each with its own id as its cursor until [`stamp_cursors`] gives it the
/// whole stream's.
fn flatten(reply: Option<StreamReadReply>, partition: u16) -> Vec<StreamEntry> {
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
            cursor: entry.id.clone(),
            id: entry.id,
            partition,
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
