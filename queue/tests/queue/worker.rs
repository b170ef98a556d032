//! The backend under a real apalis worker.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use apalis_core::{task::data::Data, worker::builder::WorkerBuilder};
use queue::{
    Engine, JobContext, JobError, JobState, NewJob, RedisBackend, RetryPolicy, WorkerOptions,
};
use serde::{Deserialize, Serialize};

use super::common::{TestQueue, eventually, wait_for_stats};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Reading {
    n: u64,
}

fn options(queue: &str) -> WorkerOptions {
    WorkerOptions::new(queue)
        .concurrency(8)
        .lease(Duration::from_millis(300))
        .shutdown_grace(Duration::from_millis(200))
        .retry(RetryPolicy {
            max_attempts: 5,
            backoff_base: Duration::from_millis(5),
            backoff_cap: Duration::from_millis(20),
        })
}

async fn wait_for_state(engine: &Engine, id: &str, state: JobState) -> bool {
    eventually(Duration::from_secs(5), || async {
        engine
            .job(id)
            .await
            .ok()
            .flatten()
            .is_some_and(|r| r.state == state)
    })
    .await
}

#[tokio::test]
async fn a_worker_runs_every_job_once_and_acknowledges_in_batches() {
    let t = TestQueue::new("worker-basic").await;
    let ids = t.push_n("ingest", 500).await;
    let seen = Arc::new(AtomicUsize::new(0));
    async fn handler(
        r: Reading,
        ctx: JobContext,
        seen: Data<Arc<AtomicUsize>>,
    ) -> Result<u64, JobError> {
        assert_eq!(ctx.attempt, 1);
        seen.fetch_add(1, Ordering::SeqCst);
        Ok(r.n)
    }
    let backend = RedisBackend::<Reading>::new(t.engine.clone(), options("ingest"));
    let counters = backend.counters();
    let worker = WorkerBuilder::new("worker-basic")
        .backend(backend)
        .data(seen.clone())
        .build(handler);
    let engine = t.engine.clone();
    worker
        .run_until(async move {
            wait_for_stats(&engine, "ingest", Duration::from_secs(20), |s| {
                s.succeeded_total == 500
            })
            .await;
            Ok::<(), std::io::Error>(())
        })
        .await
        .expect("worker");
    assert_eq!(seen.load(Ordering::SeqCst), 500);
    let stats = t.engine.stats("ingest").await.expect("stats");
    assert_eq!(
        (stats.succeeded_total, stats.ready, stats.running),
        (500, 0, 0)
    );
    assert_eq!(queue::WorkerCounters::get(&counters.succeeded), 500);
    assert_eq!(queue::WorkerCounters::get(&counters.stale), 0);
    for id in ids.iter().take(20) {
        assert_eq!(
            t.engine.job(id).await.expect("job").expect("rec").state,
            JobState::Succeeded
        );
    }
}

#[tokio::test]
async fn failures_retry_with_backoff_panics_included_then_succeed() {
    let t = TestQueue::new("worker-retry").await;
    let id = t.push_n("q", 1).await.remove(0);
    async fn flaky(_: Reading, ctx: JobContext) -> Result<(), JobError> {
        match ctx.attempt {
            1 => Err(JobError::retryable("upstream 503")),
            2 => panic!("handler bug on attempt 2"),
            _ => Ok(()),
        }
    }
    let worker = WorkerBuilder::new("worker-retry")
        .backend(RedisBackend::<Reading>::new(t.engine.clone(), options("q")))
        .build(flaky);
    let engine = t.engine.clone();
    let idc = id.clone();
    worker
        .run_until(async move {
            wait_for_state(&engine, &idc, JobState::Succeeded).await;
            Ok::<(), std::io::Error>(())
        })
        .await
        .expect("worker");
    let rec = t.engine.job(&id).await.expect("job").expect("rec");
    assert_eq!((rec.state, rec.attempt), (JobState::Succeeded, 3));
    assert_eq!(rec.errors.len(), 2);
    assert_eq!(rec.errors[0].error, "upstream 503");
    assert!(
        rec.errors[1].error.contains("handler bug on attempt 2"),
        "{:?}",
        rec.errors
    );
}

#[tokio::test]
async fn permanent_errors_and_undecodable_payloads_go_dead_and_snoozes_spend_nothing() {
    let t = TestQueue::new("worker-outcomes").await;
    let permanent = t.push_payload("q", r#"{"n":1}"#).await;
    let snoozy = t.push_payload("q", r#"{"n":2}"#).await;
    let garbage = t.push_payload("q", r#"{"n":"not a number"}"#).await;
    let snoozes = Arc::new(AtomicUsize::new(0));
    async fn handler(
        r: Reading,
        ctx: JobContext,
        snoozes: Data<Arc<AtomicUsize>>,
    ) -> Result<(), JobError> {
        match r.n {
            1 => Err(JobError::permanent("unknown sensor 'x'")),
            _ if snoozes.fetch_add(1, Ordering::SeqCst) < 2 => {
                Err(JobError::snooze(Duration::from_millis(10), ""))
            }
            _ => {
                assert_eq!(ctx.attempt, 1, "snoozes gave their attempts back");
                Ok(())
            }
        }
    }
    let worker = WorkerBuilder::new("worker-outcomes")
        .backend(RedisBackend::<Reading>::new(t.engine.clone(), options("q")))
        .data(snoozes.clone())
        .build(handler);
    let engine = t.engine.clone();
    let (p, s, g) = (permanent.clone(), snoozy.clone(), garbage.clone());
    worker
        .run_until(async move {
            wait_for_state(&engine, &p, JobState::Dead).await;
            wait_for_state(&engine, &s, JobState::Succeeded).await;
            wait_for_state(&engine, &g, JobState::Dead).await;
            Ok::<(), std::io::Error>(())
        })
        .await
        .expect("worker");
    let p = t.engine.job(&permanent).await.expect("job").expect("rec");
    assert_eq!((p.state, p.attempt), (JobState::Dead, 1));
    let g = t.engine.job(&garbage).await.expect("job").expect("rec");
    assert_eq!(g.state, JobState::Dead);
    assert!(
        g.last_error
            .as_deref()
            .unwrap_or("")
            .contains("does not decode"),
        "{:?}",
        g.last_error
    );
    let s = t.engine.job(&snoozy).await.expect("job").expect("rec");
    assert_eq!((s.state, s.attempt), (JobState::Succeeded, 1));
    assert_eq!(snoozes.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_running_job_observes_a_cancel_request() {
    let t = TestQueue::new("worker-cancel").await;
    let id = t.push_n("q", 1).await.remove(0);
    async fn patient(_: Reading, ctx: JobContext) -> Result<(), JobError> {
        tokio::select! {
            _ = ctx.cancel_requested() => Err(JobError::Cancelled),
            _ = tokio::time::sleep(Duration::from_secs(10)) => Ok(()),
        }
    }
    let worker = WorkerBuilder::new("worker-cancel")
        .backend(RedisBackend::<Reading>::new(
            t.engine.clone(),
            options("q").lease(Duration::from_millis(60)),
        ))
        .build(patient);
    let engine = t.engine.clone();
    let idc = id.clone();
    worker
        .run_until(async move {
            wait_for_state(&engine, &idc, JobState::Running).await;
            assert_eq!(
                engine.cancel(&idc).await.expect("cancel"),
                queue::CancelOutcome::Requested
            );
            wait_for_state(&engine, &idc, JobState::Cancelled).await;
            Ok::<(), std::io::Error>(())
        })
        .await
        .expect("worker");
    assert_eq!(
        t.engine.job(&id).await.expect("job").expect("rec").state,
        JobState::Cancelled
    );
}

#[tokio::test]
async fn graceful_shutdown_finishes_short_jobs_and_releases_long_ones_at_once() {
    let t = TestQueue::new("worker-shutdown").await;
    let short = t.push_payload("q", r#"{"n":10}"#).await;
    let long = t.push_payload("q", r#"{"n":60000}"#).await;
    let started = Arc::new(AtomicUsize::new(0));
    async fn sleepy(r: Reading, started: Data<Arc<AtomicUsize>>) -> Result<(), JobError> {
        started.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(r.n)).await;
        Ok(())
    }
    let worker = WorkerBuilder::new("worker-shutdown")
        .backend(RedisBackend::<Reading>::new(
            t.engine.clone(),
            options("q").shutdown_grace(Duration::from_millis(100)),
        ))
        .data(started.clone())
        .build(sleepy);
    let s = started.clone();
    let stop_at = Arc::new(Mutex::new(None));
    let stop_at_w = stop_at.clone();
    worker
        .run_until(async move {
            eventually(Duration::from_secs(5), || async {
                s.load(Ordering::SeqCst) == 2
            })
            .await;
            *stop_at_w.lock().expect("lock") = Some(Instant::now());
            Ok::<(), std::io::Error>(())
        })
        .await
        .expect("worker");
    let took = stop_at.lock().expect("lock").expect("stopped").elapsed();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    assert_eq!(
        t.engine.job(&short).await.expect("job").expect("rec").state,
        JobState::Succeeded
    );
    let long = t.engine.job(&long).await.expect("job").expect("rec");
    assert_eq!(
        (long.state, long.attempt),
        (JobState::Queued, 0),
        "released with its attempt given back"
    );
    assert_eq!(
        t.engine.stats("q").await.expect("stats").running,
        0,
        "no lease left to expire"
    );
    assert!(
        t.engine.workers().await.expect("workers").is_empty(),
        "heartbeat removed"
    );
}

#[tokio::test]
async fn an_idle_worker_wakes_on_push_not_on_its_poll_timer() {
    let t = TestQueue::new("worker-wake").await;
    let picked = Arc::new(Mutex::new(Vec::<Duration>::new()));
    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Stamp {
        pushed_at_us: u128,
    }
    async fn stamp(s: Stamp, picked: Data<Arc<Mutex<Vec<Duration>>>>) -> Result<(), JobError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        picked
            .lock()
            .map_err(|_| JobError::permanent("poisoned"))?
            .push(Duration::from_micros(
                now.saturating_sub(s.pushed_at_us) as u64
            ));
        Ok(())
    }
    let mut opts = options("q");
    opts.max_idle_wait = Duration::from_secs(1);
    let worker = WorkerBuilder::new("worker-wake")
        .backend(RedisBackend::<Stamp>::new(t.engine.clone(), opts))
        .data(picked.clone())
        .build(stamp);
    let engine = t.engine.clone();
    let p = picked.clone();
    worker
        .run_until(async move {
            for _ in 0..5 {
                // Let the worker go idle (blocked on its wake-up list), then push.
                tokio::time::sleep(Duration::from_millis(150)).await;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros())
                    .unwrap_or(0);
                let job = NewJob::new("q", &Stamp { pushed_at_us: now }).expect("job");
                engine.push(job).await.expect("push");
            }
            eventually(Duration::from_secs(5), || async {
                p.lock().map(|v| v.len() == 5).unwrap_or(false)
            })
            .await;
            Ok::<(), std::io::Error>(())
        })
        .await
        .expect("worker");
    let latencies = picked.lock().expect("lock").clone();
    assert_eq!(latencies.len(), 5);
    // A worker that only polled each second would average ~500 ms here.
    assert!(
        latencies.iter().all(|l| *l < Duration::from_millis(250)),
        "{latencies:?}"
    );
    let backend_workers = t.engine.workers().await.expect("workers");
    assert!(backend_workers.is_empty());
}

#[tokio::test]
async fn apalis_task_sink_pushes_through_the_engine() {
    use apalis_core::backend::TaskSink;
    use apalis_core::task::builder::TaskBuilder;
    let t = TestQueue::one_partition("worker-sink").await;
    let mut producer = RedisBackend::<Reading>::new(t.engine.clone(), options("sink"));
    producer.push(Reading { n: 1 }).await.expect("push");
    producer
        .push_bulk(vec![Reading { n: 2 }, Reading { n: 3 }])
        .await
        .expect("push_bulk");
    let keyed = || {
        TaskBuilder::new(Reading { n: 4 })
            .idempotency_key("once")
            .max_attempts(7)
            .build()
    };
    producer.push_task(keyed()).await.expect("push_task");
    producer
        .push_task(keyed())
        .await
        .expect("duplicate is absorbed");
    let stats = t.engine.stats("sink").await.expect("stats");
    assert_eq!((stats.pushed_total, stats.ready), (4, 4));
    let jobs = t.lease("sink", 10, 30_000).await;
    let payloads: Vec<String> = jobs.iter().map(|j| j.payload.clone()).collect();
    assert_eq!(
        payloads,
        [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#, r#"{"n":4}"#]
    );
    assert_eq!(jobs[3].max_attempts, 7);
}

#[tokio::test]
async fn a_worker_dropped_without_closing_stops_renewing_its_leases() {
    let t = TestQueue::new("worker-dropped").await;
    let id = t.push_n("q", 1).await.remove(0);
    async fn forever(_: Reading) -> Result<(), JobError> {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(())
    }
    let worker = WorkerBuilder::new("worker-dropped")
        .backend(RedisBackend::<Reading>::new(
            t.engine.clone(),
            options("q").lease(Duration::from_millis(60)),
        ))
        .build(forever);
    let running = tokio::spawn(worker.run());
    assert!(wait_for_state(&t.engine, &id, JobState::Running).await);
    // Renewed while the worker lives...
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        t.lease("q", 1, 30_000).await.is_empty(),
        "the lease is renewed"
    );
    // ...and no longer once it is gone: the lease expires and the job runs again elsewhere.
    running.abort();
    let _ = running.await;
    let engine = t.engine.clone();
    let taken_over = eventually(Duration::from_secs(5), || async {
        engine
            .fetch(&super::common::fetch_req("q", 1, 30_000))
            .await
            .map(|f| f.jobs.iter().any(|j| j.id == id && j.attempt == 2))
            .unwrap_or(false)
    })
    .await;
    assert!(
        taken_over,
        "the dropped worker's lease expired and the job was leased again"
    );
}

/// A payload of the previous schema version, upgraded by the backend's decoder: the handler
/// only ever sees the current shape. Without `decode_with`, serde alone would refuse it.
#[tokio::test]
async fn the_backends_decoder_sees_the_payload_version_and_upgrades_old_payloads() {
    let t = TestQueue::new("worker-decoder").await;
    let old = t
        .engine
        .push(NewJob::raw("q", "q", r#"{"count":5}"#.into()).with_payload_version(1))
        .await
        .expect("push")
        .id;
    let new = t
        .engine
        .push(NewJob::raw("q", "q", r#"{"n":6}"#.into()).with_payload_version(2))
        .await
        .expect("push")
        .id;
    let future = t
        .engine
        .push(NewJob::raw("q", "q", r#"{"n":7}"#.into()).with_payload_version(3))
        .await
        .expect("push")
        .id;
    fn upgrade(version: u32, raw: &str) -> Result<Reading, String> {
        #[derive(Deserialize)]
        struct V1 {
            count: u64,
        }
        match version {
            1 => serde_json::from_str::<V1>(raw)
                .map(|v| Reading { n: v.count })
                .map_err(|e| e.to_string()),
            2 => serde_json::from_str(raw).map_err(|e| e.to_string()),
            other => Err(format!("payload version {other} is newer than this build")),
        }
    }
    let seen = Arc::new(Mutex::new(Vec::<u64>::new()));
    async fn handler(r: Reading, seen: Data<Arc<Mutex<Vec<u64>>>>) -> Result<(), JobError> {
        seen.lock().expect("lock").push(r.n);
        Ok(())
    }
    let worker = WorkerBuilder::new("worker-decoder")
        .backend(RedisBackend::<Reading>::new(t.engine.clone(), options("q")).decode_with(upgrade))
        .data(seen.clone())
        .build(handler);
    let engine = t.engine.clone();
    let (o, n, f) = (old.clone(), new.clone(), future.clone());
    worker
        .run_until(async move {
            wait_for_state(&engine, &o, JobState::Succeeded).await;
            wait_for_state(&engine, &n, JobState::Succeeded).await;
            wait_for_state(&engine, &f, JobState::Dead).await;
            Ok::<(), std::io::Error>(())
        })
        .await
        .expect("worker");
    let mut values = seen.lock().expect("lock").clone();
    values.sort_unstable();
    assert_eq!(values, vec![5, 6], "the v1 payload arrived upgraded");
    let dead = t.engine.job(&future).await.expect("job").expect("rec");
    assert!(
        dead.last_error
            .as_deref()
            .is_some_and(|e| e.contains("newer than this build")),
        "{:?}",
        dead.last_error
    );
}

/// A snooze's reason is the job's last error while it waits, and rides on its event.
#[tokio::test]
async fn a_snoozed_job_says_why_it_waits() {
    let t = TestQueue::new("worker-snooze-reason").await;
    let id = t.push_n("q", 1).await.remove(0);
    let from = t
        .engine
        .stream_position(queue::EventStream::Jobs)
        .await
        .expect("position");
    async fn handler(_: Reading) -> Result<(), JobError> {
        Err(JobError::snooze(
            Duration::from_secs(60),
            "circuit breaker open for hooks.example:443",
        ))
    }
    let worker = WorkerBuilder::new("worker-snooze-reason")
        .backend(RedisBackend::<Reading>::new(t.engine.clone(), options("q")))
        .build(handler);
    let engine = t.engine.clone();
    let waiting = id.clone();
    worker
        .run_until(async move {
            wait_for_state(&engine, &waiting, JobState::Scheduled).await;
            Ok::<(), std::io::Error>(())
        })
        .await
        .expect("worker");
    let rec = t.engine.job(&id).await.expect("job").expect("rec");
    assert_eq!((rec.state, rec.attempt), (JobState::Scheduled, 0));
    assert_eq!(
        rec.last_error.as_deref(),
        Some("circuit breaker open for hooks.example:443")
    );
    let events = t
        .engine
        .read_stream(queue::EventStream::Jobs, &from, 100)
        .await
        .expect("events");
    let snoozed = events
        .iter()
        .filter_map(queue::JobEvent::from_entry)
        .find(|e| e.job_id == id && e.event == "snoozed")
        .expect("a snoozed event");
    assert_eq!(
        snoozed.error.as_deref(),
        Some("circuit breaker open for hooks.example:443")
    );
}
