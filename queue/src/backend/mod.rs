//! The apalis backend: `WorkerBuilder::new(..).backend(RedisBackend::new(engine, options))`.
//!
//! apalis drives the handler; this backend leases jobs only into free slots, decodes them,
//! and (through its middleware, which sees every result) records each outcome durably:
//! success, retry at `now + backoff` in Redis (nothing sleeps in the worker), dead,
//! snooze, or cancel.

mod context;
mod inline;
mod layer;
mod runtime;

use std::{
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use apalis_core::{
    backend::{Backend, BackendConfig, finalize::Ephemeral},
    task::Task,
    worker::context::WorkerContext,
};
use futures::{FutureExt, future::BoxFuture};
use serde::{Serialize, de::DeserializeOwned};
use tokio::{sync::mpsc, task::JoinHandle};

pub use context::{JobContext, JobError};
pub use inline::{InlineRun, InlineStep, InlineWorker};
pub use layer::{OutcomeLayer, OutcomeService};
pub use runtime::WorkerCounters;
use runtime::{OutcomeMsg, Shared};

/// Turns a leased job's payload (as pushed, with its schema version) into the handler's
/// arguments, or says why it cannot; a failure sends the job to the dead set at once.
pub type PayloadDecoder<Args> = fn(payload_version: u32, payload: &str) -> Result<Args, String>;

/// The decoder a backend uses unless told otherwise: serde, any version.
pub fn decode_json<Args: DeserializeOwned>(_version: u32, payload: &str) -> Result<Args, String> {
    serde_json::from_str(payload).map_err(|e| e.to_string())
}

use crate::{Engine, NewJob, PushOutcome, QueueError, RetryPolicy, job::Outcome};

/// How one worker runs one queue.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub queue: String,
    /// Jobs run at once by this worker.
    pub concurrency: usize,
    /// Most jobs leased per fetch (never more than free slots).
    pub fetch_batch: usize,
    /// While jobs are in flight, how long a fetch may wait for half the slots to be free.
    pub fetch_linger: Duration,
    /// Visibility timeout: a job whose lease is not renewed within it runs again elsewhere.
    pub lease: Duration,
    /// Backoff of the kind (max attempts travel with each job).
    pub retry: RetryPolicy,
    /// Longest an idle worker blocks before looking again (a lost wake-up costs at most this).
    pub max_idle_wait: Duration,
    /// Most outcomes applied per script call.
    pub ack_batch: usize,
    /// After a stop, in-flight jobs get this long to finish; the rest are released at once.
    pub shutdown_grace: Duration,
    /// How often finished jobs are cleaned up and the streams trimmed.
    pub cleanup_interval: Duration,
    /// Unique per process and backend; generated when `None`.
    pub worker_id: Option<String>,
    /// The kind's execution timeout: an attempt (of a job without a timeout of its own) is
    /// asked to stop once it has run this long.
    pub timeout: Option<Duration>,
    /// How long a timed-out handler has to stop before it is abandoned (and its lease ends).
    pub timeout_grace: Duration,
}

impl WorkerOptions {
    pub fn new(queue: impl Into<String>) -> Self {
        Self {
            queue: queue.into(),
            concurrency: 16,
            fetch_batch: 100,
            fetch_linger: Duration::from_millis(1),
            lease: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            max_idle_wait: Duration::from_secs(1),
            ack_batch: 500,
            shutdown_grace: Duration::from_secs(10),
            cleanup_interval: Duration::from_secs(5),
            worker_id: None,
            timeout: None,
            timeout_grace: Duration::from_secs(5),
        }
    }
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }
    pub fn timeout_grace(mut self, grace: Duration) -> Self {
        self.timeout_grace = grace;
        self
    }
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }
    pub fn fetch_batch(mut self, n: usize) -> Self {
        self.fetch_batch = n.max(1);
        self
    }
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = Some(id.into());
        self
    }
}

pub(crate) fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// A Redis queue as an apalis backend for payloads of type `Args` (JSON).
pub struct RedisBackend<Args> {
    shared: Arc<Shared>,
    outcomes_rx: Option<mpsc::UnboundedReceiver<OutcomeMsg>>,
    tasks_rx: Option<mpsc::Receiver<Task<Args>>>,
    tasks_tx: Option<mpsc::Sender<Task<Args>>>,
    background: Vec<JoinHandle<()>>,
    fetcher: Option<JoinHandle<()>>,
    closing: Option<BoxFuture<'static, ()>>,
    /// The producer side (`TaskSink`): jobs buffered until flushed.
    push_buffer: Vec<NewJob>,
    pushing: Option<BoxFuture<'static, Result<Vec<PushOutcome>, QueueError>>>,
    /// `None`: [`decode_json`].
    decode: Option<PayloadDecoder<Args>>,
    _args: PhantomData<fn() -> Args>,
}

impl<Args> std::fmt::Debug for RedisBackend<Args> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("queue", &self.shared.opts.queue)
            .field("worker_id", &self.shared.worker_id)
            .finish()
    }
}

impl<Args> RedisBackend<Args> {
    pub fn new(engine: Engine, options: WorkerOptions) -> Self {
        let worker_id = options.worker_id.clone().unwrap_or_else(|| {
            format!(
                "{}-{}-{}",
                host_name(),
                std::process::id(),
                ulid::Ulid::new().to_string().to_lowercase()
            )
        });
        let capacity = options.concurrency.max(1);
        let (shared, outcomes_rx) = Shared::new(engine, options, worker_id);
        let (tasks_tx, tasks_rx) = mpsc::channel(capacity);
        Self {
            shared,
            outcomes_rx: Some(outcomes_rx),
            tasks_rx: Some(tasks_rx),
            tasks_tx: Some(tasks_tx),
            background: Vec::new(),
            fetcher: None,
            closing: None,
            push_buffer: Vec::new(),
            pushing: None,
            decode: None,
            _args: PhantomData,
        }
    }

    /// Decodes leased payloads with `decode`, which sees each job's payload version: a kind
    /// whose payload changed upgrades the previous version there.
    pub fn decode_with(mut self, decode: PayloadDecoder<Args>) -> Self {
        self.decode = Some(decode);
        self
    }

    pub fn worker_id(&self) -> &str {
        &self.shared.worker_id
    }

    /// Live counters of this worker (fetched, succeeded, retried, dead, stale outcomes, ...).
    pub fn counters(&self) -> Arc<WorkerCounters> {
        self.shared.counters.clone()
    }

    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }
}

impl<Args: DeserializeOwned + Send + 'static> RedisBackend<Args> {
    fn start(&mut self, worker: &WorkerContext) {
        let (Some(outcomes_rx), Some(tasks_tx)) = (self.outcomes_rx.take(), self.tasks_tx.take())
        else {
            return;
        };
        tracing::info!(worker.id = %self.shared.worker_id, queue = %self.shared.opts.queue, concurrency = self.shared.opts.concurrency, "worker backend started");
        self.fetcher = Some(tokio::spawn(runtime::fetcher(
            self.shared.clone(),
            tasks_tx,
            self.decode.unwrap_or(decode_json::<Args>),
        )));
        self.background.push(tokio::spawn(runtime::acknowledger(
            self.shared.clone(),
            outcomes_rx,
        )));
        self.background.push(tokio::spawn(runtime::maintenance(
            self.shared.clone(),
            worker.clone(),
        )));
    }

    fn close_future(&mut self) -> BoxFuture<'static, ()> {
        let shared = self.shared.clone();
        let fetcher = self.fetcher.take();
        let tasks_rx = self.tasks_rx.take();
        let background = std::mem::take(&mut self.background);
        async move {
            shared.stop.cancel();
            if let Some(fetcher) = fetcher {
                let _ = fetcher.await;
            }
            // Leased but never started: give them back now rather than at lease expiry.
            if let Some(mut rx) = tasks_rx {
                rx.close();
                while let Ok(task) = rx.try_recv() {
                    if let Some(job) = task.ctx().data().get::<JobContext>() {
                        shared.finish(job, Outcome::Release);
                    }
                }
            }
            shared.closing.cancel();
            for handle in background {
                let _ = handle.await;
            }
            tracing::info!(worker.id = %shared.worker_id, "worker backend closed");
        }
        .boxed()
    }
}

/// Dropped without a graceful close (the worker future was dropped, aborted or restarted):
/// the background tasks stop, so nobody renews the leases of jobs whose handlers are gone.
/// Those leases expire and the jobs run again; outcomes already queued are still applied.
impl<Args> Drop for RedisBackend<Args> {
    fn drop(&mut self) {
        self.shared.stop.cancel();
        self.shared.closing.cancel();
    }
}

impl<Args: DeserializeOwned + Send + 'static> Backend for RedisBackend<Args> {
    type Task = Task<Args>;
    type Error = QueueError;

    fn poll_ready(
        &mut self,
        _: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        // Concurrency is enforced where jobs are leased: only into free slots.
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        self.start(worker);
        match self.tasks_rx.as_mut() {
            Some(rx) => rx.poll_recv(cx).map(|task| task.map(Ok)),
            None => Poll::Ready(None),
        }
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        if self.closing.is_none() {
            self.closing = Some(self.close_future());
        }
        match self.closing.as_mut() {
            Some(fut) => fut.poll_unpin(cx).map(Ok),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl<Args> BackendConfig for RedisBackend<Args> {
    type Args = Args;
    type Id = String;
    type Kind = Ephemeral;
    type Config = WorkerOptions;
    type Layer = OutcomeLayer;

    fn config(&self) -> &Self::Config {
        &self.shared.opts
    }

    fn middleware(&mut self, _: &mut WorkerContext) -> Self::Layer {
        OutcomeLayer {
            shared: self.shared.clone(),
        }
    }
}

/// The apalis producer side (`TaskSink`). apalis's `push` returns no id, so producers that
/// need one (or the duplicate flag) use [`Engine::push`] instead.
impl<Args: Serialize> futures::Sink<Task<Args>> for RedisBackend<Args> {
    type Error = QueueError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        if this.push_buffer.len() >= this.shared.engine.config().push_chunk {
            return this.poll_push(cx);
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, task: Task<Args>) -> Result<(), Self::Error> {
        let this = self.get_mut();
        let ctx = task.ctx().clone();
        let queue = this.shared.opts.queue.clone();
        let payload = serde_json::to_string(&task.args).map_err(QueueError::Encode)?;
        let mut job = NewJob::raw(queue.clone(), queue, payload).with_max_attempts(
            ctx.max_attempts()
                .map(|n| n as u32)
                .unwrap_or(this.shared.opts.retry.max_attempts),
        );
        if let Some(id) = ctx.task_id() {
            job = job.with_id(id.to_string());
        }
        if let Some(key) = ctx.idempotency_key() {
            job = job.with_idempotency_key(key, crate::KeyScope::For(None));
        }
        if let Some(run_at_secs) = ctx.run_at() {
            job = job.with_run_at_ms(run_at_secs.saturating_mul(1000));
        }
        this.push_buffer.push(job);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        loop {
            if this.pushing.is_none() && this.push_buffer.is_empty() {
                return Poll::Ready(Ok(()));
            }
            match this.poll_push(cx) {
                Poll::Ready(Ok(())) => continue,
                other => return other,
            }
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.poll_flush(cx)
    }
}

impl<Args> RedisBackend<Args> {
    fn poll_push(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), QueueError>> {
        if self.pushing.is_none() {
            if self.push_buffer.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let jobs = std::mem::take(&mut self.push_buffer);
            let engine = self.shared.engine.clone();
            self.pushing = Some(async move { engine.push_many(jobs).await }.boxed());
        }
        let Some(fut) = self.pushing.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let result = futures::ready!(fut.poll_unpin(cx));
        self.pushing = None;
        Poll::Ready(result.map(|_| ()))
    }
}
