//! Execution timeouts and the queue's limits (concurrency and rate, queue-wide and per key),
//! all enforced in the engine's scripts so every worker of a deployment shares them.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use apalis_core::{task::data::Data, worker::builder::WorkerBuilder};
use queue::{
    Applied, InlineStep, InlineWorker, JobContext, JobError, JobState, NewJob, Outcome,
    QueueLimits, RateLimit, RedisBackend, RenewStatus, RetryPolicy, WorkerOptions, decode_json,
};
use serde::{Deserialize, Serialize};

use super::common::{TestQueue, fetch_req, wait_for_stats};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Work {
    key: String,
    n: u64,
}

fn job(queue: &str, key: &str, n: u64) -> NewJob {
    NewJob::new(queue, &Work { key: key.into(), n })
        .expect("job")
        .with_limit_key(key)
        .with_max_attempts(3)
}

fn options(queue: &str) -> WorkerOptions {
    WorkerOptions::new(queue)
        .concurrency(8)
        .lease(Duration::from_millis(300))
        .shutdown_grace(Duration::from_millis(200))
        .timeout_grace(Duration::from_millis(100))
        .retry(RetryPolicy {
            max_attempts: 3,
            backoff_base: Duration::ZERO,
            backoff_cap: Duration::ZERO,
        })
}

#[tokio::test]
async fn an_attempt_past_its_timeout_is_cancelled_then_retried_and_counted() {
    let t = TestQueue::new("timeout-coop").await;
    let id = t
        .engine
        .push(job("slow", "k", 1).with_timeout(Duration::from_millis(80)))
        .await
        .expect("push")
        .id;
    let worker = InlineWorker::new(t.engine.clone(), options("slow"), decode_json::<Work>);
    // A handler that watches for the stop request gets it at the timeout.
    let started = Instant::now();
    let InlineStep::Ran(run) = worker
        .run_next(|_w: Work, ctx: JobContext| async move {
            assert_eq!(ctx.timeout, Some(Duration::from_millis(80)));
            ctx.cancel_requested().await;
            assert!(ctx.is_timed_out(), "the stop is the timeout's");
            Err::<(), _>(JobError::retryable("stopped"))
        })
        .await
        .expect("run")
    else {
        panic!("nothing ran");
    };
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(80), "stopped early: {took:?}");
    assert!(took < Duration::from_millis(1500), "stopped late: {took:?}");
    assert!(
        matches!(&run.outcome, Outcome::Retry { error, .. } if error.starts_with("timed out after 80ms")),
        "{:?}",
        run.outcome
    );
    assert_eq!(run.applied, Applied::Ok);
    let rec = t.engine.job(&id).await.expect("job").expect("rec");
    assert_eq!((rec.state, rec.attempt), (JobState::Retrying, 1));
    assert_eq!(rec.timeout_ms, Some(80));

    // A handler that ignores it is abandoned after the grace; that attempt counts too, and
    // the last one sends the job to the dead set.
    for attempt in 2..=3 {
        let InlineStep::Ran(run) = worker
            .run_next(|_w: Work, _ctx: JobContext| async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok::<(), JobError>(())
            })
            .await
            .expect("run")
        else {
            panic!("nothing ran on attempt {attempt}");
        };
        assert!(
            matches!(&run.outcome, Outcome::Retry { error, .. } if error.contains("abandoned")),
            "{:?}",
            run.outcome
        );
        assert_eq!(run.job.attempt, attempt);
    }
    let rec = t.engine.job(&id).await.expect("job").expect("rec");
    assert_eq!((rec.state, rec.attempt), (JobState::Dead, 3));
    assert_eq!(rec.errors.len(), 3);
    t.check_placement("slow");
}

#[tokio::test]
async fn a_kind_timeout_applies_to_jobs_without_their_own_and_a_job_timeout_wins() {
    let t = TestQueue::new("timeout-kind").await;
    let plain = t.engine.push(job("kind", "a", 1)).await.expect("push").id;
    let own = t
        .engine
        .push(job("kind", "b", 2).with_timeout(Duration::from_secs(600)))
        .await
        .expect("push")
        .id;
    let mut req = fetch_req("kind", 10, 60_000);
    req.timeout = Some(Duration::from_millis(50));
    req.timeout_grace = Duration::from_millis(20);
    let leased = t.engine.fetch(&req).await.expect("fetch").jobs;
    let timeouts: HashMap<_, _> = leased.iter().map(|j| (j.id.clone(), j.timeout)).collect();
    assert_eq!(timeouts[&plain], Some(Duration::from_millis(50)));
    assert_eq!(timeouts[&own], Some(Duration::from_secs(600)));
    let rec = t.engine.job(&plain).await.expect("job").expect("rec");
    let deadline = rec
        .attempt_deadline_ms
        .expect("a running attempt has a deadline");
    assert!(deadline > rec.updated_at_ms);
    assert!(deadline <= rec.updated_at_ms + 60);
}

#[tokio::test]
async fn the_lease_cannot_be_renewed_past_the_timeout_and_the_reaper_says_why() {
    let t = TestQueue::new("timeout-renew").await;
    let id = t
        .engine
        .push(job("renew", "k", 1).with_timeout(Duration::from_millis(60)))
        .await
        .expect("push")
        .id;
    // A worker that hung (no handler timer, no outcome) but still renews every few ms.
    let leased = t.lease("renew", 1, 10_000).await;
    let held = [(id.clone(), leased[0].token.clone())];
    let grace = Duration::from_millis(40);
    let mut statuses = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(400) {
        let status = t
            .engine
            .renew("renew", Duration::from_secs(10), grace, &held)
            .await
            .expect("renew")[0];
        statuses.push(status);
        if status == RenewStatus::Lost {
            break;
        }
        // Reaping happens in fetch: an idle worker elsewhere keeps looking.
        let _ = t.lease("renew", 0, 10_000).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(statuses.first(), Some(&RenewStatus::Renewed));
    assert!(statuses.contains(&RenewStatus::TimedOut), "{statuses:?}");
    assert_eq!(
        statuses.last(),
        Some(&RenewStatus::Lost),
        "a renewing worker kept the lease past timeout + grace: {statuses:?}"
    );
    let rec = t.engine.job(&id).await.expect("job").expect("rec");
    assert_eq!(rec.attempt, 1);
    assert!(
        rec.errors[0].error.starts_with("timed out"),
        "{:?}",
        rec.errors
    );
    t.check_placement("renew");
}

#[tokio::test]
async fn queue_concurrency_caps_running_jobs_across_workers() {
    let t = TestQueue::new("limit-conc").await;
    t.engine
        .set_queue_limits(
            "conc",
            &QueueLimits {
                concurrency: Some(3),
                ..QueueLimits::default()
            },
        )
        .await
        .expect("limits");
    for n in 0..40 {
        t.engine
            .push(job("conc", &format!("k{n}"), n))
            .await
            .expect("push");
    }
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    async fn handler(
        _w: Work,
        running: Data<Arc<AtomicUsize>>,
        peak: Data<PeakCounter>,
    ) -> Result<(), JobError> {
        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
        (*peak).0.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        running.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
    // Two workers of eight slots each: only the queue's limit holds them to three.
    let mut workers = Vec::new();
    for name in ["conc-a", "conc-b"] {
        let worker = WorkerBuilder::new(name)
            .backend(RedisBackend::<Work>::new(
                t.engine.clone(),
                options("conc").worker_id(name),
            ))
            .data(running.clone())
            .data(PeakCounter(peak.clone()))
            .build(handler);
        let engine = t.engine.clone();
        workers.push(tokio::spawn(async move {
            worker
                .run_until(async move {
                    wait_for_stats(&engine, "conc", Duration::from_secs(20), |s| {
                        s.succeeded_total == 40
                    })
                    .await;
                    Ok::<(), std::io::Error>(())
                })
                .await
        }));
    }
    for w in workers {
        w.await.expect("join").expect("worker");
    }
    assert_eq!(
        t.engine.stats("conc").await.expect("stats").succeeded_total,
        40
    );
    let peak = peak.load(Ordering::SeqCst);
    assert!((1..=3).contains(&peak), "peak concurrency {peak}");
}

#[derive(Clone)]
struct PeakCounter(Arc<AtomicUsize>);

#[tokio::test]
async fn one_job_per_key_runs_at_a_time_and_the_next_waits_in_order() {
    let t = TestQueue::new("limit-key").await;
    t.engine
        .set_queue_limits(
            "kc",
            &QueueLimits {
                per_key_concurrency: Some(1),
                ..QueueLimits::default()
            },
        )
        .await
        .expect("limits");
    let a1 = t.engine.push(job("kc", "a", 1)).await.expect("push").id;
    let a2 = t.engine.push(job("kc", "a", 2)).await.expect("push").id;
    let b1 = t.engine.push(job("kc", "b", 3)).await.expect("push").id;
    let a3 = t.engine.push(job("kc", "a", 4)).await.expect("push").id;
    let first = t.lease("kc", 10, 60_000).await;
    let ids: Vec<_> = first.iter().map(|j| j.id.clone()).collect();
    assert_eq!(ids, [a1.clone(), b1.clone()], "one of each key");
    let stats = t.engine.stats("kc").await.expect("stats");
    assert_eq!(
        (stats.ready, stats.waiting_for_key, stats.running),
        (2, 2, 2)
    );
    let parked = t.engine.job(&a2).await.expect("job").expect("rec");
    assert!(parked.waiting_for_key && parked.state == JobState::Queued);
    assert_eq!(parked.attempt, 0, "waiting spends no attempt");
    t.check_placement("kc");
    assert!(t.lease("kc", 10, 60_000).await.is_empty());

    // a1 ends: a2 (the older) takes the key, a3 still waits.
    let done = t
        .engine
        .complete(&[(
            a1,
            first[0].token.clone(),
            Outcome::Succeeded { result: None },
        )])
        .await
        .expect("complete");
    assert_eq!(done, [Applied::Ok]);
    let next = t.lease("kc", 10, 60_000).await;
    assert_eq!(next.iter().map(|j| &j.id).collect::<Vec<_>>(), [&a2]);
    // A retry frees the key as well; the retried job queues behind a3.
    t.engine
        .complete(&[(
            a2.clone(),
            next[0].token.clone(),
            Outcome::Retry {
                error: "flaky".into(),
                delay: Duration::ZERO,
            },
        )])
        .await
        .expect("complete");
    let after_retry = t.lease("kc", 10, 60_000).await;
    assert_eq!(after_retry.iter().map(|j| &j.id).collect::<Vec<_>>(), [&a3]);
    assert!(
        t.lease("kc", 10, 60_000).await.is_empty(),
        "a2 waits for a3"
    );
    assert!(
        t.engine
            .job(&a2)
            .await
            .expect("job")
            .expect("rec")
            .waiting_for_key
    );
    t.check_placement("kc");

    // Removing the limit lets the waiting job go without any job ending.
    t.engine
        .set_queue_limits("kc", &QueueLimits::default())
        .await
        .expect("limits");
    let freed = t.lease("kc", 10, 60_000).await;
    assert_eq!(freed.iter().map(|j| &j.id).collect::<Vec<_>>(), [&a2]);
    assert_eq!(
        t.engine.stats("kc").await.expect("stats").waiting_for_key,
        0
    );
    t.check_placement("kc");
}

#[tokio::test]
async fn a_crashed_worker_frees_its_key_slots_within_its_lease() {
    let t = TestQueue::one_partition("limit-crash").await;
    t.engine
        .set_queue_limits(
            "crash",
            &QueueLimits {
                concurrency: Some(2),
                per_key_concurrency: Some(1),
                ..QueueLimits::default()
            },
        )
        .await
        .expect("limits");
    let first = t.engine.push(job("crash", "s1", 1)).await.expect("push").id;
    let second = t.engine.push(job("crash", "s1", 2)).await.expect("push").id;
    // The worker leases with a 100 ms lease and dies: no outcome, no renewal.
    let held = t.lease("crash", 5, 100).await;
    assert_eq!(held.len(), 1);
    let held_at = Instant::now();
    assert!(t.lease("crash", 5, 100).await.is_empty(), "the key is held");
    // Another worker gets the key back once the lease ran out, and the reaped job is retried
    // behind the one that waited.
    let mut got = Vec::new();
    while got.is_empty() && held_at.elapsed() < Duration::from_secs(3) {
        got.extend(t.lease("crash", 5, 60_000).await.into_iter().map(|j| j.id));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(held_at.elapsed() >= Duration::from_millis(100));
    assert_eq!(got, [second]);
    // The reaped job, retried at once (zero backoff), now waits for the key in its turn.
    let reaped = t.engine.job(&first).await.expect("job").expect("rec");
    assert_eq!((reaped.state, reaped.attempt), (JobState::Queued, 1));
    assert!(reaped.waiting_for_key);
    assert!(
        reaped.errors[0].error.starts_with("lease expired"),
        "{:?}",
        reaped.errors
    );
    t.check_placement("crash");
}

#[tokio::test]
async fn rate_limits_hold_jobs_back_without_spending_attempts() {
    let t = TestQueue::new("limit-rate").await;
    t.engine
        .set_queue_limits(
            "rl",
            &QueueLimits {
                per_key_rate: Some(RateLimit {
                    limit: 2,
                    window: Duration::from_millis(300),
                }),
                ..QueueLimits::default()
            },
        )
        .await
        .expect("limits");
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(
            t.engine
                .push(job("rl", "host-a", n))
                .await
                .expect("push")
                .id,
        );
    }
    let other = t
        .engine
        .push(job("rl", "host-b", 9))
        .await
        .expect("push")
        .id;
    let first = t.lease("rl", 10, 60_000).await;
    let mut got: Vec<_> = first.iter().map(|j| j.id.clone()).collect();
    got.sort();
    let mut want = vec![ids[0].clone(), ids[1].clone(), other.clone()];
    want.sort();
    assert_eq!(got, want, "two of host-a, and host-b has its own budget");
    let held = t.engine.job(&ids[2]).await.expect("job").expect("rec");
    assert_eq!((held.state, held.attempt), (JobState::Scheduled, 0));
    let run_at = held.run_at_ms.expect("it waits for the budget");
    assert!(run_at > held.updated_at_ms && run_at <= held.updated_at_ms + 300);
    t.check_placement("rl");

    // The held jobs run once the budget allows, one interval apart.
    let mut later = Vec::new();
    let started = Instant::now();
    while later.len() < 2 && started.elapsed() < Duration::from_secs(3) {
        later.extend(t.lease("rl", 10, 60_000).await.into_iter().map(|j| j.id));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(later, [ids[2].clone(), ids[3].clone()]);
    for id in &ids[2..] {
        assert_eq!(
            t.engine.job(id).await.expect("job").expect("rec").attempt,
            1
        );
    }
}

#[tokio::test]
async fn a_queue_rate_limit_paces_starts_across_workers() {
    let t = TestQueue::new("limit-qrate").await;
    t.engine
        .set_queue_limits(
            "pace",
            &QueueLimits {
                rate: Some(RateLimit {
                    limit: 5,
                    window: Duration::from_millis(200),
                }),
                ..QueueLimits::default()
            },
        )
        .await
        .expect("limits");
    for n in 0..15 {
        t.engine
            .push(job("pace", &format!("k{n}"), n))
            .await
            .expect("push");
    }
    let starts = Arc::new(Mutex::new(Vec::<Instant>::new()));
    async fn handler(_w: Work, starts: Data<Arc<Mutex<Vec<Instant>>>>) -> Result<(), JobError> {
        starts.lock().expect("lock").push(Instant::now());
        Ok(())
    }
    let began = Instant::now();
    let worker = WorkerBuilder::new("pace")
        .backend(RedisBackend::<Work>::new(t.engine.clone(), options("pace")))
        .data(starts.clone())
        .build(handler);
    let engine = t.engine.clone();
    worker
        .run_until(async move {
            wait_for_stats(&engine, "pace", Duration::from_secs(10), |s| {
                s.succeeded_total == 15
            })
            .await;
            Ok::<(), std::io::Error>(())
        })
        .await
        .expect("worker");
    let starts = starts.lock().expect("lock").clone();
    assert_eq!(starts.len(), 15);
    // A burst of 5, then one every 40 ms: the 15th cannot start before about 400 ms.
    let last = starts.iter().max().expect("starts").duration_since(began);
    assert!(last >= Duration::from_millis(350), "15 starts in {last:?}");
    let in_first_100ms = starts
        .iter()
        .filter(|s| s.duration_since(began) < Duration::from_millis(100))
        .count();
    assert!(
        in_first_100ms <= 7,
        "{in_first_100ms} started in the first 100 ms"
    );
}

#[tokio::test]
async fn bad_limits_and_timeouts_are_refused_naming_the_field() {
    let t = TestQueue::new("limit-bad").await;
    let refused = t
        .engine
        .set_queue_limits(
            "bad",
            &QueueLimits {
                per_key_concurrency: Some(0),
                ..QueueLimits::default()
            },
        )
        .await
        .expect_err("zero");
    assert!(
        refused.to_string().contains("perKeyConcurrency"),
        "{refused}"
    );
    let refused = t
        .engine
        .set_queue_limits(
            "bad",
            &QueueLimits {
                rate: Some(RateLimit {
                    limit: 3,
                    window: Duration::ZERO,
                }),
                ..QueueLimits::default()
            },
        )
        .await
        .expect_err("window");
    assert!(refused.to_string().contains("rate: window"), "{refused}");
    assert_eq!(
        t.engine.queue_limits("bad").await.expect("limits"),
        QueueLimits::default(),
        "nothing stored"
    );
    let refused = t
        .engine
        .push(job("bad", "k", 1).with_timeout(Duration::ZERO))
        .await
        .expect_err("timeout");
    assert!(refused.to_string().contains("timeout"), "{refused}");
    let refused = t
        .engine
        .push(job("bad", "k", 1).with_limit_key(""))
        .await
        .expect_err("key");
    assert!(refused.to_string().contains("limit key"), "{refused}");
    assert_eq!(t.engine.stats("bad").await.expect("stats").pushed_total, 0);
}

#[tokio::test]
async fn limits_round_trip_and_apply_from_the_next_fetch() {
    let t = TestQueue::new("limit-set").await;
    let limits = QueueLimits {
        concurrency: Some(4),
        per_key_concurrency: Some(1),
        rate: Some(RateLimit::per_second(100)),
        per_key_rate: Some(RateLimit::per_minute(10)),
    };
    t.engine
        .set_queue_limits("set", &limits)
        .await
        .expect("set");
    assert_eq!(t.engine.queue_limits("set").await.expect("get"), limits);
    for n in 0..10 {
        t.engine
            .push(job("set", &format!("k{n}"), n))
            .await
            .expect("push");
    }
    assert_eq!(
        t.lease("set", 10, 60_000).await.len(),
        4,
        "capped at 4 running"
    );
    t.engine
        .set_queue_limits(
            "set",
            &QueueLimits {
                concurrency: Some(6),
                ..limits
            },
        )
        .await
        .expect("raise");
    assert_eq!(t.lease("set", 10, 60_000).await.len(), 2, "two more fit");
}
