//! Crashes and restarts: a worker process killed with SIGKILL or frozen past its lease, a Redis
//! killed and restarted on its own AOF, and a burst of 200,000 jobs.

use std::{
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use apalis_core::{task::data::Data, worker::builder::WorkerBuilder};
use queue::{Engine, JobError, JobState, NewJob, RedisBackend, WorkerOptions};
use redis::Commands;
use serde::{Deserialize, Serialize};

use queue::testing::{OwnRedis, free_port};

use super::common::{TestQueue, eventually, redis_url, wait_for_stats};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Work {
    n: u64,
}

/// The worker process of these tests: this very test binary, started with `PROBE_PREFIX` set,
/// runs only this (ignored) test, which becomes a worker until SIGTERM.
#[tokio::test]
#[ignore = "entry point of the worker process that the crash tests start"]
async fn probe_worker_process() {
    let Ok(prefix) = std::env::var("PROBE_PREFIX") else {
        return;
    };
    let env_ms = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let engine = Engine::connect(&redis_url(), queue::testing::config(&prefix))
        .await
        .expect("connect");
    let options = WorkerOptions::new("probe")
        .concurrency(env_ms("PROBE_CONCURRENCY", 8) as usize)
        .lease(Duration::from_millis(env_ms("PROBE_LEASE_MS", 300)))
        .shutdown_grace(Duration::from_millis(200));
    #[derive(Clone)]
    struct Probe {
        runs: Arc<std::sync::Mutex<queue::testing::InspectConn>>,
        runs_key: String,
        sleep: Duration,
    }
    async fn handler(_: Work, ctx: queue::JobContext, probe: Data<Probe>) -> Result<(), JobError> {
        tokio::time::sleep(probe.sleep).await;
        // Every run is recorded, re-runs included: the test counts them.
        let (runs, key, id) = (probe.runs.clone(), probe.runs_key.clone(), ctx.id.clone());
        tokio::task::spawn_blocking(move || {
            let mut conn = runs
                .lock()
                .map_err(|_| JobError::permanent("runs lock poisoned"))?;
            conn.rpush::<_, _, ()>(&key, &id)
                .map_err(JobError::retryable)
        })
        .await
        .map_err(JobError::retryable)??;
        Ok(())
    }
    let probe = Probe {
        runs: Arc::new(std::sync::Mutex::new(queue::testing::InspectConn::open(
            &redis_url(),
        ))),
        runs_key: format!("{{{prefix}}}:probe:runs"),
        sleep: Duration::from_millis(env_ms("PROBE_SLEEP_MS", 20)),
    };
    let backend = RedisBackend::<Work>::new(engine, options);
    let counters = backend.counters();
    let worker = WorkerBuilder::new("probe")
        .backend(backend)
        .data(probe)
        .build(handler);
    println!("probe ready");
    worker
        .run_until(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            term.recv().await;
            Ok::<(), std::io::Error>(())
        })
        .await
        .expect("worker");
    println!(
        "probe stopped succeeded={} stale={}",
        queue::WorkerCounters::get(&counters.succeeded),
        queue::WorkerCounters::get(&counters.stale)
    );
}

fn spawn_probe(prefix: &str, lease_ms: u64, sleep_ms: u64) -> Child {
    let exe = std::env::current_exe().expect("test binary path");
    Command::new(exe)
        .args([
            "--exact",
            "queue::durability::probe_worker_process",
            "--ignored",
            "--nocapture",
        ])
        .env("PROBE_PREFIX", prefix)
        .env("PROBE_LEASE_MS", lease_ms.to_string())
        .env("PROBE_SLEEP_MS", sleep_ms.to_string())
        .env("REDIS_URL", redis_url())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn worker process")
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn runs(t: &TestQueue) -> Vec<String> {
    t.sync_conn()
        .lrange(t.key("probe:runs"), 0, -1)
        .expect("lrange")
}

#[tokio::test]
async fn a_worker_killed_mid_job_loses_nothing() {
    let t = TestQueue::new("kill9").await;
    let ids = t.push_n("probe", 200).await;
    let mut first = spawn_probe(&t.prefix, 300, 20);
    let engine = t.engine.clone();
    assert!(
        wait_for_stats(&engine, "probe", Duration::from_secs(30), |s| s
            .succeeded_total
            >= 40)
        .await,
        "the first worker made progress"
    );
    signal(&first, "-KILL");
    let _ = first.wait();
    let at_kill = t.engine.stats("probe").await.expect("stats");
    assert!(
        at_kill.running > 0,
        "the killed worker held leases: {at_kill:?}"
    );
    // A new process (a new worker id) reaps the expired leases and finishes everything.
    let mut second = spawn_probe(&t.prefix, 300, 1);
    let engine = t.engine.clone();
    let finished = wait_for_stats(&engine, "probe", Duration::from_secs(60), |s| {
        s.succeeded_total == 200
    })
    .await;
    signal(&second, "-TERM");
    let _ = second.wait();
    assert!(finished, "{:?}", t.engine.stats("probe").await);
    let records = t.engine.jobs(&ids).await.expect("jobs");
    let reran: Vec<_> = records.iter().flatten().filter(|r| r.attempt > 1).collect();
    assert!(
        records
            .iter()
            .flatten()
            .all(|r| r.state == JobState::Succeeded)
    );
    assert!(
        !reran.is_empty(),
        "the jobs in flight at the kill ran again"
    );
    assert!(
        reran
            .iter()
            .all(|r| r.errors.iter().any(|e| e.error.contains("lease expired")))
    );
    let all_runs = runs(&t);
    assert!(
        ids.iter().all(|id| all_runs.contains(id)),
        "every job ran at least once"
    );
    let stats = t.engine.stats("probe").await.expect("stats");
    assert_eq!(
        (stats.ready, stats.running, stats.scheduled, stats.dead),
        (0, 0, 0, 0)
    );
}

#[tokio::test]
async fn a_frozen_worker_past_its_lease_has_its_late_outcomes_refused() {
    let t = TestQueue::new("sigstop").await;
    t.push_n("probe", 8).await;
    // Long jobs, so the frozen worker holds all eight when it is stopped.
    let frozen = spawn_probe(&t.prefix, 150, 400);
    let engine = t.engine.clone();
    assert!(
        wait_for_stats(&engine, "probe", Duration::from_secs(20), |s| s.running
            == 8)
        .await
    );
    signal(&frozen, "-STOP");
    let mut healthy = spawn_probe(&t.prefix, 5_000, 1);
    let engine = t.engine.clone();
    assert!(
        wait_for_stats(&engine, "probe", Duration::from_secs(30), |s| s
            .succeeded_total
            == 8)
        .await,
        "the healthy worker took over the expired leases"
    );
    signal(&frozen, "-CONT");
    tokio::time::sleep(Duration::from_millis(600)).await;
    signal(&frozen, "-TERM");
    signal(&healthy, "-TERM");
    let output = frozen.wait_with_output().expect("frozen output");
    let _ = healthy.wait();
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("probe stopped"))
        .unwrap_or("");
    assert!(
        line.contains("succeeded=0"),
        "late outcomes must not apply: {text}"
    );
    assert!(
        !line.contains("stale=0"),
        "late outcomes must be reported stale: {text}"
    );
    let stats = t.engine.stats("probe").await.expect("stats");
    assert_eq!(stats.succeeded_total, 8, "nothing applied twice");
}

#[tokio::test]
async fn a_redis_crash_with_appendfsync_always_loses_no_accepted_job() {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("steadfast-redis-{port}-{}", std::process::id()));
    let mut redis_server = OwnRedis::start(dir.clone(), port);
    let t = TestQueue::at(&redis_server.url(), "restart", |c| {
        c.response_timeout = Duration::from_millis(500)
    })
    .await;
    let report = t
        .engine
        .check_redis(true)
        .await
        .expect("this redis is configured safely");
    assert!(report.durability().starts_with("strict"));

    let done = Arc::new(AtomicUsize::new(0));
    async fn handler(_: Work, done: Data<Arc<AtomicUsize>>) -> Result<(), JobError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        done.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    let options = WorkerOptions::new("probe")
        .concurrency(16)
        .lease(Duration::from_secs(2));
    let worker = WorkerBuilder::new("restart")
        .backend(RedisBackend::<Work>::new(t.engine.clone(), options))
        .data(done.clone())
        .build(handler);
    let engine = t.engine.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run_until(async move {
        let _ = stop_rx.await;
        Ok::<(), std::io::Error>(())
    }));

    let mut accepted = t.push_n("probe", 2000).await;
    let d = done.clone();
    assert!(
        eventually(Duration::from_secs(20), || async {
            d.load(Ordering::SeqCst) >= 300
        })
        .await
    );
    redis_server.kill();
    // While Redis is down, a push fails fast with a retryable error.
    let started = Instant::now();
    let err = engine
        .push(NewJob::new("probe", &Work { n: 0 }).expect("job"))
        .await
        .expect_err("redis is down");
    assert!(err.is_retryable(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failed in {:?}",
        started.elapsed()
    );

    redis_server.spawn();
    // The same engine and worker carry on once Redis is back.
    let more = loop {
        match engine
            .push_many(
                (0..500)
                    .map(|i| NewJob::new("probe", &Work { n: i }).expect("job"))
                    .collect(),
            )
            .await
        {
            Ok(outcomes) => break outcomes,
            Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("{e}"),
        }
    };
    accepted.extend(more.into_iter().map(|o| o.id));
    let finished = wait_for_stats(&engine, "probe", Duration::from_secs(60), |s| {
        s.succeeded_total as usize >= accepted.len()
    })
    .await;
    let _ = stop_tx.send(());
    let _ = running.await;
    assert!(finished, "{:?}", engine.stats("probe").await);
    let records = engine.jobs(&accepted).await.expect("jobs");
    let missing = records.iter().filter(|r| r.is_none()).count();
    assert_eq!(missing, 0, "every accepted job survived the crash");
    assert!(
        records
            .iter()
            .flatten()
            .all(|r| r.state == JobState::Succeeded)
    );
}

#[tokio::test]
async fn a_burst_of_200k_jobs_drains_completely() {
    let t = TestQueue::with_config("burst", |c| c.push_chunk = 5000).await;
    let started = Instant::now();
    let jobs: Vec<NewJob> = (0..200_000u64)
        .map(|i| NewJob::raw("burst", "burst", format!("{{\"n\":{i}}}")))
        .collect();
    t.engine.push_many(jobs).await.expect("push");
    let pushed_in = started.elapsed();
    assert_eq!(t.engine.stats("burst").await.expect("stats").ready, 200_000);
    let done = Arc::new(AtomicUsize::new(0));
    async fn handler(_: Work, done: Data<Arc<AtomicUsize>>) -> Result<(), JobError> {
        done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    let options = WorkerOptions::new("burst")
        .concurrency(256)
        .fetch_batch(256);
    let worker = WorkerBuilder::new("burst")
        .backend(RedisBackend::<Work>::new(t.engine.clone(), options))
        .data(done.clone())
        .build(handler);
    let engine = t.engine.clone();
    let drain_started = Instant::now();
    worker
        .run_until(async move {
            wait_for_stats(&engine, "burst", Duration::from_secs(300), |s| {
                s.succeeded_total == 200_000
            })
            .await;
            Ok::<(), std::io::Error>(())
        })
        .await
        .expect("worker");
    let drained_in = drain_started.elapsed();
    println!("burst: pushed 200000 in {pushed_in:?}, drained in {drained_in:?}");
    assert_eq!(done.load(Ordering::Relaxed), 200_000);
    let stats = t.engine.stats("burst").await.expect("stats");
    assert_eq!(
        (
            stats.succeeded_total,
            stats.ready,
            stats.running,
            stats.dead
        ),
        (200_000, 0, 0, 0)
    );
}
