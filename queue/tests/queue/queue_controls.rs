//! Pause, resume and drain: a paused queue leases nothing yet loses nothing; a drain cancels
//! what waits, with events, in bounded calls.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use apalis_core::{task::data::Data, worker::builder::WorkerBuilder};
use queue::{
    EventStream, JobError, JobEvent, JobState, NewJob, Outcome, RedisBackend, RetryPolicy,
    WorkerOptions,
};
use serde::{Deserialize, Serialize};

use super::common::{TestQueue, eventually, fetch_req};

#[tokio::test]
async fn a_paused_queue_leases_nothing_but_still_reaps_promotes_and_takes_pushes() {
    let t = TestQueue::new("controls-pause").await;
    let running = t.push_n("ingest", 1).await;
    let leased = t.lease("ingest", 1, 50).await;
    assert_eq!(leased.len(), 1);
    let waiting = t.push_n("ingest", 3).await;
    t.engine
        .push(
            NewJob::new("ingest", &serde_json::json!({}))
                .expect("job")
                .with_delay(Duration::from_millis(20)),
        )
        .await
        .expect("push delayed");

    assert!(t.engine.pause("ingest").await.expect("pause"));
    assert!(!t.engine.pause("ingest").await.expect("pause again"));
    let since = t
        .engine
        .stats("ingest")
        .await
        .expect("stats")
        .paused_since_ms;
    assert!(since.is_some_and(|ms| ms <= queue::now_ms()), "{since:?}");
    // Pausing again keeps the first pause's time; another queue is not paused.
    t.engine.pause("ingest").await.expect("pause");
    assert_eq!(
        t.engine
            .stats("ingest")
            .await
            .expect("stats")
            .paused_since_ms,
        since
    );
    assert_eq!(
        t.engine
            .stats("evaluate")
            .await
            .expect("stats")
            .paused_since_ms,
        None
    );

    tokio::time::sleep(Duration::from_millis(80)).await;
    let fetched = t
        .engine
        .fetch(&fetch_req("ingest", 10, 30_000))
        .await
        .expect("fetch");
    assert!(
        fetched.jobs.is_empty(),
        "leased while paused: {:?}",
        fetched.jobs
    );
    // The expired lease was still reaped (to a retry, due at once with the tests' zero
    // backoff, so promoted), and the delayed job promoted.
    let stats = t.engine.stats("ingest").await.expect("stats");
    assert_eq!((stats.running, stats.retried_total), (0, 1), "{stats:?}");
    let record = t.engine.job(&running[0]).await.expect("job").expect("held");
    assert_eq!(record.state, JobState::Queued);
    assert_eq!((stats.ready, stats.scheduled), (5, 0), "{stats:?}");
    // Pushes are taken as usual while paused.
    t.push_n("ingest", 1).await;
    assert_eq!(t.engine.stats("ingest").await.expect("stats").ready, 6);

    assert!(t.engine.resume("ingest").await.expect("resume"));
    assert!(!t.engine.resume("ingest").await.expect("resume again"));
    assert_eq!(
        t.engine
            .stats("ingest")
            .await
            .expect("stats")
            .paused_since_ms,
        None
    );
    let fetched = t
        .engine
        .fetch(&fetch_req("ingest", 10, 30_000))
        .await
        .expect("fetch");
    let ids: Vec<&str> = fetched.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(fetched.jobs.len(), 6, "{ids:?}");
    assert!(waiting.iter().all(|w| ids.contains(&w.as_str())));
    t.check_placement("ingest");
}

#[tokio::test]
async fn outcomes_of_jobs_running_when_the_pause_came_are_applied() {
    let t = TestQueue::new("controls-outcome").await;
    t.push_n("alert", 2).await;
    let leased = t.lease("alert", 2, 30_000).await;
    t.engine.pause("alert").await.expect("pause");
    let applied = t
        .engine
        .complete(
            &leased
                .iter()
                .map(|j| {
                    (
                        j.id.clone(),
                        j.token.clone(),
                        Outcome::Succeeded { result: None },
                    )
                })
                .collect::<Vec<_>>(),
        )
        .await
        .expect("complete");
    assert!(
        applied.iter().all(|a| *a == queue::Applied::Ok),
        "{applied:?}"
    );
    assert_eq!(
        t.engine
            .stats("alert")
            .await
            .expect("stats")
            .succeeded_total,
        2
    );
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tick {
    n: u64,
}

async fn count(_: Tick, ran: Data<Arc<AtomicUsize>>) -> Result<(), JobError> {
    ran.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test]
async fn a_running_worker_stops_leasing_when_paused_and_wakes_at_once_on_resume() {
    let t = TestQueue::new("controls-worker").await;
    let ran = Arc::new(AtomicUsize::new(0));
    let mut opts = WorkerOptions::new("notify")
        .concurrency(4)
        .lease(Duration::from_millis(500))
        .retry(RetryPolicy {
            max_attempts: 3,
            backoff_base: Duration::from_millis(5),
            backoff_cap: Duration::from_millis(20),
        });
    // An idle worker that only polled would notice a resume after this long.
    opts.max_idle_wait = Duration::from_secs(5);
    let worker = WorkerBuilder::new("controls-worker")
        .backend(RedisBackend::<Tick>::new(t.engine.clone(), opts))
        .data(ran.clone())
        .build(count);
    let engine = t.engine.clone();
    let seen = ran.clone();
    let resumed_after = Arc::new(std::sync::Mutex::new(None));
    let took = resumed_after.clone();
    worker
        .run_until(async move {
            let push = |n| {
                let engine = engine.clone();
                async move {
                    engine
                        .push(NewJob::new("notify", &Tick { n }).expect("job"))
                        .await
                        .expect("push");
                }
            };
            push(0).await;
            assert!(
                eventually(Duration::from_secs(5), || async {
                    seen.load(Ordering::SeqCst) == 1
                })
                .await
            );
            engine.pause("notify").await.expect("pause");
            for n in 1..=20 {
                push(n).await;
            }
            // Pushes wake the idle worker; it must still lease nothing.
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(seen.load(Ordering::SeqCst), 1, "ran while paused");
            assert_eq!(engine.stats("notify").await.expect("stats").ready, 20);

            let resumed = Instant::now();
            engine.resume("notify").await.expect("resume");
            assert!(
                eventually(Duration::from_secs(4), || async {
                    seen.load(Ordering::SeqCst) == 21
                })
                .await,
                "after resume ran {}",
                seen.load(Ordering::SeqCst)
            );
            *took.lock().expect("lock") = Some(resumed.elapsed());
            Ok::<(), std::io::Error>(())
        })
        .await
        .expect("worker");
    // Woken by the resume, not by its 5 s idle timer.
    let took = resumed_after.lock().expect("lock").expect("resumed");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn a_drain_cancels_every_waiting_job_with_its_event_and_spares_running_ones() {
    let t = TestQueue::new("controls-drain").await;
    t.push_n("evaluate", 1).await;
    let running = t.lease("evaluate", 1, 30_000).await;
    let ready = t.push_n("evaluate", 25).await;
    let delayed = t
        .engine
        .push(
            NewJob::new("evaluate", &serde_json::json!({}))
                .expect("job")
                .with_delay(Duration::from_secs(60)),
        )
        .await
        .expect("push delayed");
    // A job cancelled earlier leaves a tombstone in the ready list; the drain clears it.
    t.engine.cancel(&ready[0]).await.expect("cancel");
    let other_queue = t.push_n("alert", 2).await;

    let cancelled = t.engine.drain("evaluate", 4).await.expect("drain");
    assert_eq!(cancelled, 25, "24 ready and the delayed one");
    let stats = t.engine.stats("evaluate").await.expect("stats");
    assert_eq!(
        (
            stats.ready,
            stats.scheduled,
            stats.running,
            stats.cancelled_total
        ),
        (0, 0, 1, 26),
        "{stats:?}"
    );
    for id in ready.iter().chain([&delayed.id]) {
        let job = t.engine.job(id).await.expect("job").expect("held");
        assert_eq!(job.state, JobState::Cancelled, "{id}");
    }
    let events: Vec<JobEvent> = t
        .engine
        .read_stream(EventStream::Jobs, "0-0", 100_000)
        .await
        .expect("events")
        .iter()
        .filter_map(JobEvent::from_entry)
        .filter(|e| e.event == "cancelled")
        .collect();
    assert_eq!(events.len(), 26);
    let job = t
        .engine
        .job(&running[0].id)
        .await
        .expect("job")
        .expect("held");
    assert_eq!(job.state, JobState::Running);
    assert_eq!(t.engine.stats("alert").await.expect("stats").ready, 2);
    assert_eq!(other_queue.len(), 2);
    // Nothing left: a second drain cancels nothing, and the queue takes jobs again.
    assert_eq!(t.engine.drain("evaluate", 4).await.expect("drain"), 0);
    t.push_n("evaluate", 1).await;
    assert_eq!(t.lease("evaluate", 5, 30_000).await.len(), 1);
    t.check_placement("evaluate");
}
