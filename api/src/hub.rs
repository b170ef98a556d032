//! Each API process reads the job-event stream once and hands every transition to the
//! subscriptions it matches, looked up by job id or workflow run where the filter names one, so
//! a transition costs work only for the few subscribers that want it. A subscription that
//! resumes from a cursor first replays the stream from Redis, then goes live, with no gap and
//! no repeat; one that falls behind (its buffer full) catches up the same way.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::Stream;
use queue::{Engine, EventCursor, EventStream, JobEvent, JobState, QueueError, StreamEntry};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;

/// Events buffered per subscriber before it is marked behind and catches up from Redis.
const SUBSCRIBER_BUFFER: usize = 512;
/// Entries read per round trip, live and on replay.
const READ_COUNT: usize = 1000;

/// Which transitions a subscription wants. Every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub ids: Option<HashSet<String>>,
    pub kinds: Option<HashSet<String>>,
    pub states: Option<HashSet<JobState>>,
    pub workflow_run_id: Option<String>,
}

impl JobFilter {
    pub fn matches(&self, event: &JobEvent) -> bool {
        self.ids
            .as_ref()
            .is_none_or(|ids| ids.contains(&event.job_id))
            && self
                .kinds
                .as_ref()
                .is_none_or(|kinds| kinds.contains(&event.kind))
            && self
                .states
                .as_ref()
                .is_none_or(|states| states.contains(&event.state))
            && self
                .workflow_run_id
                .as_ref()
                .is_none_or(|run| event_run(event) == Some(run.as_str()))
    }
}

/// The workflow run of an event's job.
pub fn event_run(event: &JobEvent) -> Option<&str> {
    workflows::run_of(&event.kind, &event.job_id, event.workflow_id.as_deref())
}

struct Slot {
    filter: Arc<JobFilter>,
    tx: mpsc::Sender<Arc<JobEvent>>,
    behind: Arc<AtomicBool>,
}

#[derive(Default)]
struct Registry {
    slots: HashMap<u64, Slot>,
    by_job: HashMap<String, Vec<u64>>,
    by_run: HashMap<String, Vec<u64>>,
    /// Filters that name neither jobs nor a run: checked against every transition.
    broad: HashSet<u64>,
}

impl Registry {
    fn index_of(filter: &JobFilter) -> Index {
        if let Some(ids) = &filter.ids {
            Index::Jobs(ids.iter().cloned().collect())
        } else if let Some(run) = &filter.workflow_run_id {
            Index::Run(run.clone())
        } else {
            Index::Broad
        }
    }

    fn dispatch(&self, event: &Arc<JobEvent>) {
        let mut send = |id: &u64| {
            if let Some(slot) = self.slots.get(id)
                && slot.filter.matches(event)
                && slot.tx.try_send(event.clone()).is_err()
            {
                slot.behind.store(true, Ordering::Release);
            }
        };
        if let Some(ids) = self.by_job.get(&event.job_id) {
            ids.iter().for_each(&mut send);
        }
        if let Some(ids) = event_run(event).and_then(|run| self.by_run.get(run)) {
            ids.iter().for_each(&mut send);
        }
        self.broad.iter().for_each(send);
    }
}

enum Index {
    Jobs(Vec<String>),
    Run(String),
    Broad,
}

struct Inner {
    replay_max: usize,
    engine: Engine,
    registry: RwLock<Registry>,
    next_id: AtomicU64,
    /// The last transition handed out: a subscriber registered now gets everything after it.
    position: Mutex<Option<String>>,
    alerts: broadcast::Sender<Arc<StreamEntry>>,
}

/// The process's fan-out of job transitions and alert events.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("subscribers", &self.subscribers())
            .finish()
    }
}

/// One live registration; dropping it unregisters.
struct Registration {
    hub: Hub,
    id: u64,
    rx: mpsc::Receiver<Arc<JobEvent>>,
    behind: Arc<AtomicBool>,
    /// Where live delivery starts: everything after it arrives through `rx`.
    start: Option<String>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(self.id);
    }
}

impl Hub {
    /// Starts the stream readers; they stop with `stop`.
    /// `replay_max`: the most stream entries one resume may read before it is refused with
    /// `CURSOR_EXPIRED` (a cursor from long ago would otherwise read the whole stream).
    pub fn start(engine: Engine, replay_max: usize, stop: CancellationToken) -> Self {
        let (alerts, _) = broadcast::channel(1024);
        let hub = Self {
            inner: Arc::new(Inner {
                engine,
                replay_max: replay_max.max(1),
                registry: RwLock::new(Registry::default()),
                next_id: AtomicU64::new(1),
                position: Mutex::new(None),
                alerts,
            }),
        };
        tokio::spawn(hub.clone().follow_jobs(stop.clone()));
        tokio::spawn(hub.clone().follow_alerts(stop));
        hub
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub fn subscribers(&self) -> usize {
        self.inner.registry.read().map_or(0, |r| r.slots.len())
    }

    /// Whether the job-event reader has found its starting point (Redis answered once).
    pub fn is_following(&self) -> bool {
        self.inner.position.lock().is_ok_and(|p| p.is_some())
    }

    pub fn alerts(&self) -> broadcast::Receiver<Arc<StreamEntry>> {
        self.inner.alerts.subscribe()
    }

    fn register(&self, filter: Arc<JobFilter>) -> Registration {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        let behind = Arc::new(AtomicBool::new(false));
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let index = Registry::index_of(&filter);
        // Under the write lock, no batch is being dispatched: everything after `start` will be.
        let start = {
            let mut registry = self
                .inner
                .registry
                .write()
                .unwrap_or_else(|e| e.into_inner());
            match index {
                Index::Jobs(ids) => ids.into_iter().for_each(|job| {
                    registry.by_job.entry(job).or_default().push(id);
                }),
                Index::Run(run) => registry.by_run.entry(run).or_default().push(id),
                Index::Broad => {
                    registry.broad.insert(id);
                }
            }
            registry.slots.insert(
                id,
                Slot {
                    filter,
                    tx,
                    behind: behind.clone(),
                },
            );
            metrics::gauge!("steadfast_api_subscriptions").set(registry.slots.len() as f64);
            self.inner
                .position
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        };
        Registration {
            hub: self.clone(),
            id,
            rx,
            behind,
            start,
        }
    }

    fn unregister(&self, id: u64) {
        let mut registry = self
            .inner
            .registry
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let Some(slot) = registry.slots.remove(&id) else {
            return;
        };
        let forget = |map: &mut HashMap<String, Vec<u64>>, key: &str| {
            if let Some(ids) = map.get_mut(key) {
                ids.retain(|other| *other != id);
                if ids.is_empty() {
                    map.remove(key);
                }
            }
        };
        match Registry::index_of(&slot.filter) {
            Index::Jobs(ids) => ids.iter().for_each(|job| forget(&mut registry.by_job, job)),
            Index::Run(run) => forget(&mut registry.by_run, &run),
            Index::Broad => {
                registry.broad.remove(&id);
            }
        }
        metrics::gauge!("steadfast_api_subscriptions").set(registry.slots.len() as f64);
    }

    /// Every transition matching `filter`: after `after` when given (replayed from Redis, then
    /// live), else from now on. Ends with an error when Redis no longer holds `after` or does
    /// not answer; the client resubscribes from the last cursor it received.
    pub fn job_updates(
        &self,
        filter: JobFilter,
        after: Option<String>,
    ) -> impl Stream<Item = Result<Arc<JobEvent>, ApiError>> + Send + 'static {
        let (out, rx) = mpsc::channel(64);
        let hub = self.clone();
        tokio::spawn(async move {
            let filter = Arc::new(filter);
            let mut registration = hub.register(filter.clone());
            // Registered first, so everything after the replay's end also arrives live;
            // live events up to `last` are repeats and skipped.
            let partitions = hub.inner.engine.partitions();
            let mut last = match after {
                Some(after) => match hub.replay_from(&filter, &after, &out).await {
                    Ok(replayed_to) => Some(replayed_to),
                    Err(e) => {
                        let _ = out.send(Err(e)).await;
                        return;
                    }
                },
                None => registration
                    .start
                    .as_deref()
                    .and_then(|start| EventCursor::parse(start, partitions).ok()),
            };
            loop {
                let event = tokio::select! {
                    () = out.closed() => return,
                    event = registration.rx.recv() => event,
                };
                let Some(event) = event else { return };
                if registration.behind.swap(false, Ordering::AcqRel) {
                    // Some transitions were dropped for this subscriber: read them from Redis.
                    let Some(from) = last.as_ref().map(EventCursor::to_string) else {
                        continue;
                    };
                    match hub.replay_from(&filter, &from, &out).await {
                        Ok(to) => last = Some(to),
                        Err(e) => {
                            let _ = out.send(Err(e)).await;
                            return;
                        }
                    }
                }
                // Live events up to where this subscriber already is are repeats. Past it, the
                // event's cursor is this subscriber's own (it may have read further in other
                // partitions than the live reader has).
                let event = match last.as_mut() {
                    Some(at) if at.covers(event.partition, &event.stream_id) => continue,
                    Some(at) => {
                        at.advance(event.partition, &event.stream_id);
                        let cursor = at.to_string();
                        if cursor == event.cursor {
                            event
                        } else {
                            Arc::new(JobEvent {
                                cursor,
                                ..JobEvent::clone(&event)
                            })
                        }
                    }
                    None => {
                        last = EventCursor::parse(&event.cursor, partitions).ok();
                        event
                    }
                };
                if out.send(Ok(event)).await.is_err() {
                    return;
                }
            }
        });
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
    }

    /// Delivers the matching transitions after `from`; returns where the last one read leaves
    /// a reader.
    async fn replay_from(
        &self,
        filter: &JobFilter,
        from: &str,
        out: &mpsc::Sender<Result<Arc<JobEvent>, ApiError>>,
    ) -> Result<EventCursor, ApiError> {
        let partitions = self.inner.engine.partitions();
        let mut cursor = from.to_owned();
        let mut read = 0usize;
        loop {
            if read >= self.inner.replay_max {
                return Err(ApiError::new(
                    crate::error::Code::CursorExpired,
                    format!(
                        "cursor {from} is more than {} events behind; reload and subscribe from the new eventCursor",
                        self.inner.replay_max
                    ),
                ));
            }
            let entries = self
                .inner
                .engine
                .read_stream(EventStream::Jobs, &cursor, READ_COUNT)
                .await?;
            let full = entries.len() == READ_COUNT;
            read += entries.len();
            for entry in entries {
                cursor.clone_from(&entry.cursor);
                if let Some(event) = JobEvent::from_entry(&entry)
                    && filter.matches(&event)
                    && out.send(Ok(Arc::new(event))).await.is_err()
                {
                    return Ok(EventCursor::parse(&cursor, partitions)?);
                }
            }
            if !full {
                return Ok(EventCursor::parse(&cursor, partitions)?);
            }
        }
    }

    async fn follow_jobs(self, stop: CancellationToken) {
        let engine = self.inner.engine.clone();
        let mut follower = loop {
            match engine.follow(EventStream::Jobs, "$").await {
                Ok(follower) => break follower,
                Err(e) => {
                    tracing::warn!(error = %e, "job events: waiting for Redis");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
        };
        self.set_position(follower.cursor().to_owned());
        loop {
            let batch = tokio::select! {
                () = stop.cancelled() => return,
                batch = follower.next_batch(READ_COUNT, Duration::from_secs(1)) => batch,
            };
            match batch {
                Ok(entries) if entries.is_empty() => {}
                Ok(entries) => self.dispatch(&entries),
                Err(QueueError::CursorExpired(_)) => {
                    // Down so long the stream was trimmed past us: every subscriber missed
                    // something, and finds out when it tries to catch up.
                    tracing::warn!("job events: trimmed past this reader; starting from now");
                    self.mark_all_behind();
                    if let Ok(fresh) = engine.follow(EventStream::Jobs, "$").await {
                        follower = fresh;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "job events: read failed; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
        }
    }

    fn set_position(&self, cursor: String) {
        *self
            .inner
            .position
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(cursor);
    }

    fn dispatch(&self, entries: &[StreamEntry]) {
        let registry = self
            .inner
            .registry
            .read()
            .unwrap_or_else(|e| e.into_inner());
        for entry in entries {
            if let Some(event) = JobEvent::from_entry(entry) {
                registry.dispatch(&Arc::new(event));
            }
        }
        if let Some(last) = entries.last() {
            // Still under the read lock: a registration waits for the whole batch.
            self.set_position(last.cursor.clone());
        }
    }

    fn mark_all_behind(&self) {
        let registry = self
            .inner
            .registry
            .read()
            .unwrap_or_else(|e| e.into_inner());
        for slot in registry.slots.values() {
            slot.behind.store(true, Ordering::Release);
        }
    }

    async fn follow_alerts(self, stop: CancellationToken) {
        let engine = self.inner.engine.clone();
        let mut follower = loop {
            match engine.follow(EventStream::App, "$").await {
                Ok(follower) => break follower,
                Err(_) => tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                },
            }
        };
        loop {
            let batch = tokio::select! {
                () = stop.cancelled() => return,
                batch = follower.next_batch(READ_COUNT, Duration::from_secs(1)) => batch,
            };
            match batch {
                Ok(entries) => {
                    for entry in entries {
                        let is_alert = entry
                            .fields
                            .get("type")
                            .is_some_and(|t| t.starts_with("alert_"));
                        if is_alert {
                            let _ = self.inner.alerts.send(Arc::new(entry));
                        }
                    }
                }
                Err(QueueError::CursorExpired(_)) => {
                    if let Ok(fresh) = engine.follow(EventStream::App, "$").await {
                        follower = fresh;
                    }
                }
                Err(_) => tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                },
            }
        }
    }
}
