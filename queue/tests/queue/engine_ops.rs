//! Each engine operation (one script each) against the real Redis.

use std::time::Duration;

use queue::{
    Applied, CancelOutcome, DeadFilter, DeadOpOutcome, EventStream, JobEvent, JobState, KeyScope,
    NewJob, Outcome, QueueError, RenewStatus,
};

use super::common::{TestQueue, fetch_req};

async fn events_of(t: &TestQueue, id: &str) -> Vec<(String, JobState)> {
    t.engine
        .read_stream(EventStream::Jobs, "0-0", 100_000)
        .await
        .expect("read events")
        .iter()
        .filter_map(JobEvent::from_entry)
        .filter(|e| e.job_id == id)
        .map(|e| (e.event, e.state))
        .collect()
}

#[tokio::test]
async fn push_fetch_ack_records_every_transition() {
    let t = TestQueue::new("ops-basic").await;
    let pushed = t
        .engine
        .push(
            NewJob::new("ingest", &serde_json::json!({"readings": []}))
                .expect("job")
                .with_payload_version(2)
                .with_workflow_id("run-1")
                .with_correlation_id("corr-9"),
        )
        .await
        .expect("push");
    assert!(!pushed.duplicate);
    let fetched = t
        .engine
        .fetch(&fetch_req("ingest", 10, 30_000))
        .await
        .expect("fetch");
    assert_eq!(fetched.jobs.len(), 1);
    let job = &fetched.jobs[0];
    assert_eq!(job.id, pushed.id);
    assert_eq!(job.attempt, 1);
    assert_eq!(job.payload_version, 2);
    assert_eq!(job.workflow_id.as_deref(), Some("run-1"));
    assert_eq!(job.correlation_id.as_deref(), Some("corr-9"));
    assert_eq!(job.payload, r#"{"readings":[]}"#);
    t.check_placement("ingest");

    let applied = t
        .engine
        .complete(&[(
            job.id.clone(),
            job.token.clone(),
            Outcome::Succeeded {
                result: Some("{\"ok\":1}".into()),
            },
        )])
        .await
        .expect("complete");
    assert_eq!(applied, vec![Applied::Ok]);
    let record = t.engine.job(&job.id).await.expect("job").expect("present");
    assert_eq!(record.state, JobState::Succeeded);
    assert_eq!(record.result.as_deref(), Some("{\"ok\":1}"));
    assert_eq!(
        events_of(&t, &job.id).await,
        vec![
            ("enqueued".into(), JobState::Queued),
            ("started".into(), JobState::Running),
            ("succeeded".into(), JobState::Succeeded)
        ]
    );
    let stats = t.engine.stats("ingest").await.expect("stats");
    assert_eq!(
        (
            stats.ready,
            stats.running,
            stats.succeeded_total,
            stats.pushed_total
        ),
        (0, 0, 1, 1)
    );
    assert_eq!(
        t.engine.queues().await.expect("queues"),
        vec!["ingest".to_string()]
    );
}

#[tokio::test]
async fn delayed_job_waits_for_its_time_and_the_hint_says_when() {
    let t = TestQueue::new("ops-delay").await;
    let id = t
        .engine
        .push(NewJob::raw("q", "q", "{}".into()).with_delay(Duration::from_millis(150)))
        .await
        .expect("push")
        .id;
    let first = t
        .engine
        .fetch(&fetch_req("q", 10, 30_000))
        .await
        .expect("fetch");
    assert!(first.jobs.is_empty());
    let hint = first.next_due_in.expect("a hint for the scheduled job");
    assert!(
        hint <= Duration::from_millis(150) && hint >= Duration::from_millis(50),
        "{hint:?}"
    );
    assert_eq!(
        t.engine.job(&id).await.expect("job").expect("rec").state,
        JobState::Scheduled
    );
    tokio::time::sleep(hint + Duration::from_millis(5)).await;
    let second = t
        .engine
        .fetch(&fetch_req("q", 10, 30_000))
        .await
        .expect("fetch");
    assert_eq!(second.jobs.len(), 1);
    assert_eq!(
        events_of(&t, &id)
            .await
            .iter()
            .map(|e| e.0.as_str())
            .collect::<Vec<_>>(),
        ["scheduled", "promoted", "started"]
    );
}

#[tokio::test]
async fn retries_are_scheduled_in_redis_and_max_attempts_is_honoured() {
    let t = TestQueue::new("ops-retry").await;
    let id = t
        .engine
        .push(NewJob::raw("q", "q", "{}".into()).with_max_attempts(2))
        .await
        .expect("push")
        .id;
    let job = t.lease("q", 1, 30_000).await.remove(0);
    let applied = t
        .engine
        .complete(&[(
            id.clone(),
            job.token.clone(),
            Outcome::Retry {
                error: "timeout after 30 ms".into(),
                delay: Duration::from_millis(40),
            },
        )])
        .await
        .expect("complete");
    assert_eq!(applied, vec![Applied::Ok]);
    let rec = t.engine.job(&id).await.expect("job").expect("rec");
    assert_eq!(rec.state, JobState::Retrying);
    assert!(rec.run_at_ms.is_some());
    t.check_placement("q");
    // Not due yet.
    assert!(t.lease("q", 1, 30_000).await.is_empty());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let again = t.lease("q", 1, 30_000).await.remove(0);
    assert_eq!(again.attempt, 2);
    // The last attempt's retryable error kills it, with both errors kept.
    let applied = t
        .engine
        .complete(&[(
            id.clone(),
            again.token,
            Outcome::Retry {
                error: "timeout after 31 ms".into(),
                delay: Duration::ZERO,
            },
        )])
        .await
        .expect("complete");
    assert_eq!(applied, vec![Applied::Died]);
    let rec = t.engine.job(&id).await.expect("job").expect("rec");
    assert_eq!(rec.state, JobState::Dead);
    assert_eq!(rec.errors.len(), 2);
    assert_eq!(rec.errors[0].attempt, 1);
    assert_eq!(rec.errors[1].error, "timeout after 31 ms");
    assert!(rec.fingerprint.is_some());
    t.check_placement("q");
}

#[tokio::test]
async fn permanent_errors_die_at_once_and_group_by_fingerprint() {
    let t = TestQueue::new("ops-dead").await;
    let ids = t.push_n("q", 3).await;
    let jobs = t.lease("q", 3, 30_000).await;
    let errors = [
        "unknown sensor 'boiler-17' at row 3",
        "unknown sensor 'pump-2' at row 99",
        "payload field readings.0.ts is not RFC 3339",
    ];
    let outcomes: Vec<_> = jobs
        .iter()
        .zip(errors)
        .map(|(j, e)| {
            (
                j.id.clone(),
                j.token.clone(),
                Outcome::Fail { error: e.into() },
            )
        })
        .collect();
    assert_eq!(
        t.engine.complete(&outcomes).await.expect("complete"),
        vec![Applied::Ok; 3]
    );
    let groups = t.engine.dead_groups("q").await.expect("groups");
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert_eq!(groups[0].count, 2);
    assert!(groups[0].sample_error.starts_with("unknown sensor"));
    let by_fp = t
        .engine
        .dead_jobs(
            &DeadFilter {
                queue: "q".into(),
                fingerprint: Some(groups[0].fingerprint.clone()),
                ..Default::default()
            },
            0,
            10,
        )
        .await
        .expect("dead jobs");
    assert_eq!(by_fp.len(), 2);
    let all = t
        .engine
        .dead_jobs(
            &DeadFilter {
                queue: "q".into(),
                ..Default::default()
            },
            0,
            10,
        )
        .await
        .expect("dead");
    assert_eq!(all.len(), 3);
    assert!(
        all.windows(2).all(|w| w[0].died_at_ms >= w[1].died_at_ms),
        "newest first"
    );
    assert_eq!(t.engine.stats("q").await.expect("stats").dead, 3);
    assert!(ids.iter().all(|id| all.iter().any(|r| &r.id == id)));
}

#[tokio::test]
async fn snooze_gives_the_attempt_back() {
    let t = TestQueue::new("ops-snooze").await;
    let id = t.push_n("q", 1).await.remove(0);
    let job = t.lease("q", 1, 30_000).await.remove(0);
    assert_eq!(job.attempt, 1);
    t.engine
        .complete(&[(
            id.clone(),
            job.token,
            Outcome::Snooze {
                delay: Duration::from_millis(20),
                reason: String::new(),
            },
        )])
        .await
        .expect("complete");
    let rec = t.engine.job(&id).await.expect("job").expect("rec");
    assert_eq!((rec.state, rec.attempt), (JobState::Scheduled, 0));
    tokio::time::sleep(Duration::from_millis(25)).await;
    let again = t.lease("q", 1, 30_000).await.remove(0);
    assert_eq!(again.attempt, 1, "a snooze spends no attempt");
}

#[tokio::test]
async fn expired_lease_is_reaped_and_the_stale_ack_refused() {
    let t = TestQueue::new("ops-reap").await;
    let id = t.push_n("q", 1).await.remove(0);
    let first = t.lease("q", 1, 5).await.remove(0);
    tokio::time::sleep(Duration::from_millis(15)).await;
    // Reaped (attempt spent, retry due at once with a zero backoff), promoted, leased again.
    let second = t.lease("q", 1, 30_000).await.remove(0);
    assert_eq!(second.id, id);
    assert_eq!(second.attempt, 2);
    assert_ne!(second.token, first.token);
    let stale = t
        .engine
        .complete(&[(id.clone(), first.token, Outcome::Succeeded { result: None })])
        .await
        .expect("complete");
    assert_eq!(stale, vec![Applied::Stale]);
    assert_eq!(
        t.engine.job(&id).await.expect("job").expect("rec").state,
        JobState::Running
    );
    let ok = t
        .engine
        .complete(&[(
            id.clone(),
            second.token,
            Outcome::Succeeded { result: None },
        )])
        .await
        .expect("complete");
    assert_eq!(ok, vec![Applied::Ok]);
    let kinds: Vec<String> = events_of(&t, &id).await.into_iter().map(|e| e.0).collect();
    assert_eq!(
        kinds,
        [
            "enqueued",
            "started",
            "lease_expired",
            "promoted",
            "started",
            "succeeded"
        ]
    );
    let rec = t.engine.job(&id).await.expect("job").expect("rec");
    assert!(rec.errors[0].error.contains("lease expired"));
}

#[tokio::test]
async fn expired_lease_on_the_last_attempt_dies() {
    let t = TestQueue::new("ops-reap-dead").await;
    let id = t
        .engine
        .push(NewJob::raw("q", "q", "{}".into()).with_max_attempts(1))
        .await
        .expect("push")
        .id;
    t.engine.fetch(&fetch_req("q", 1, 1)).await.expect("fetch");
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(t.lease("q", 1, 1).await.is_empty());
    let rec = t.engine.job(&id).await.expect("job").expect("rec");
    assert_eq!(rec.state, JobState::Dead);
    t.check_placement("q");
}

#[tokio::test]
async fn renew_keeps_the_lease_alive() {
    let t = TestQueue::new("ops-renew").await;
    let id = t.push_n("q", 1).await.remove(0);
    let job = t.lease("q", 1, 40).await.remove(0);
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let status = t
            .engine
            .renew(
                "q",
                Duration::from_millis(40),
                Duration::ZERO,
                &[(id.clone(), job.token.clone())],
            )
            .await
            .expect("renew");
        assert_eq!(status, vec![RenewStatus::Renewed]);
        t.engine
            .fetch(&fetch_req("q", 0, 40))
            .await
            .expect("reap pass");
    }
    assert_eq!(
        t.engine.job(&id).await.expect("job").expect("rec").state,
        JobState::Running
    );
    let lost = t
        .engine
        .renew(
            "q",
            Duration::from_millis(40),
            Duration::ZERO,
            &[(id.clone(), "not-the-token".into())],
        )
        .await
        .expect("renew");
    assert_eq!(lost, vec![RenewStatus::Lost]);
}

#[tokio::test]
async fn cancel_waiting_and_running_jobs() {
    let t = TestQueue::one_partition("ops-cancel").await;
    let ids = t.push_n("q", 3).await;
    let delayed = t
        .engine
        .push(NewJob::raw("q", "q", "{}".into()).with_delay(Duration::from_secs(3600)))
        .await
        .expect("push")
        .id;
    assert_eq!(
        t.engine.cancel(&ids[0]).await.expect("cancel"),
        CancelOutcome::Cancelled
    );
    assert_eq!(
        t.engine.cancel(&delayed).await.expect("cancel"),
        CancelOutcome::Cancelled
    );
    let stats = t.engine.stats("q").await.expect("stats");
    assert_eq!(
        (stats.ready, stats.scheduled, stats.cancelled_total),
        (2, 0, 2)
    );
    t.check_placement("q");
    // The tombstone is skipped: the next two jobs come out, not the cancelled one.
    let jobs = t.lease("q", 3, 30_000).await;
    let got: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(got, [ids[1].as_str(), ids[2].as_str()]);
    t.check_placement("q");
    // Running: a request the handler observes through lease renewal.
    assert_eq!(
        t.engine.cancel(&ids[1]).await.expect("cancel"),
        CancelOutcome::Requested
    );
    let renew = t
        .engine
        .renew(
            "q",
            Duration::from_secs(30),
            Duration::ZERO,
            &[(ids[1].clone(), jobs[0].token.clone())],
        )
        .await
        .expect("renew");
    assert_eq!(renew, vec![RenewStatus::CancelRequested]);
    t.engine
        .complete(&[(ids[1].clone(), jobs[0].token.clone(), Outcome::Cancelled)])
        .await
        .expect("complete");
    assert_eq!(
        t.engine
            .job(&ids[1])
            .await
            .expect("job")
            .expect("rec")
            .state,
        JobState::Cancelled
    );
    assert_eq!(
        t.engine.cancel(&ids[1]).await.expect("cancel"),
        CancelOutcome::NotCancellable("CANCELLED".into())
    );
    assert_eq!(
        t.engine.cancel("nope").await.expect("cancel"),
        CancelOutcome::Missing
    );
}

#[tokio::test]
async fn requeue_keeps_id_and_history_and_starts_a_new_round() {
    let t = TestQueue::new("ops-requeue").await;
    let id = t.push_n("q", 1).await.remove(0);
    let job = t.lease("q", 1, 30_000).await.remove(0);
    t.engine
        .complete(&[(
            id.clone(),
            job.token,
            Outcome::Fail {
                error: "boom 1".into(),
            },
        )])
        .await
        .expect("complete");
    assert_eq!(
        t.engine
            .requeue_dead(std::slice::from_ref(&id))
            .await
            .expect("requeue"),
        vec![DeadOpOutcome::Done]
    );
    let rec = t.engine.job(&id).await.expect("job").expect("rec");
    assert_eq!(
        (rec.state, rec.attempt, rec.requeues),
        (JobState::Queued, 0, 1)
    );
    assert_eq!(rec.errors.len(), 1, "history kept");
    assert!(t.engine.dead_groups("q").await.expect("groups").is_empty());
    let again = t.lease("q", 1, 30_000).await.remove(0);
    assert_eq!((again.id.as_str(), again.attempt), (id.as_str(), 1));
    assert_eq!(
        t.engine
            .requeue_dead(&[id.clone(), "missing".into()])
            .await
            .expect("requeue"),
        vec![
            DeadOpOutcome::NotDead("RUNNING".into()),
            DeadOpOutcome::Missing
        ]
    );
    let kinds: Vec<String> = events_of(&t, &id).await.into_iter().map(|e| e.0).collect();
    assert_eq!(
        kinds,
        ["enqueued", "started", "died", "requeued", "started"]
    );
}

#[tokio::test]
async fn requeue_by_filter_moves_everything_in_bounded_chunks() {
    let t = TestQueue::new("ops-requeue-filter").await;
    t.push_n("q", 25).await;
    let jobs = t.lease("q", 25, 30_000).await;
    let outcomes: Vec<_> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| {
            let error = if i < 20 {
                format!("http 503 from host-{i}")
            } else {
                "bad payload".into()
            };
            (j.id.clone(), j.token.clone(), Outcome::Fail { error })
        })
        .collect();
    t.engine.complete(&outcomes).await.expect("complete");
    let groups = t.engine.dead_groups("q").await.expect("groups");
    assert_eq!(groups.iter().map(|g| g.count).collect::<Vec<_>>(), [20, 5]);
    let moved = t
        .engine
        .requeue_dead_matching(
            &DeadFilter {
                queue: "q".into(),
                fingerprint: Some(groups[0].fingerprint.clone()),
                ..Default::default()
            },
            7,
        )
        .await
        .expect("requeue");
    assert_eq!(moved, 20);
    let stats = t.engine.stats("q").await.expect("stats");
    assert_eq!((stats.ready, stats.dead, stats.requeued_total), (20, 5, 20));
    t.check_placement("q");
}

#[tokio::test]
async fn discard_deletes_a_dead_job() {
    let t = TestQueue::new("ops-discard").await;
    let id = t.push_n("q", 1).await.remove(0);
    assert_eq!(
        t.engine.discard_dead(&id).await.expect("discard"),
        DeadOpOutcome::NotDead("QUEUED".into())
    );
    let job = t.lease("q", 1, 30_000).await.remove(0);
    t.engine
        .complete(&[(id.clone(), job.token, Outcome::Fail { error: "x".into() })])
        .await
        .expect("complete");
    assert_eq!(
        t.engine.discard_dead(&id).await.expect("discard"),
        DeadOpOutcome::Done
    );
    assert!(t.engine.job(&id).await.expect("job").is_none());
    assert_eq!(t.engine.stats("q").await.expect("stats").dead, 0);
    assert!(t.engine.dead_groups("q").await.expect("groups").is_empty());
}

#[tokio::test]
async fn discard_many_answers_each_id_in_one_call() {
    let t = TestQueue::new("ops-discard-many").await;
    let ids = t.push_n("q", 3).await;
    let leased = t.lease("q", 2, 30_000).await;
    let outcomes: Vec<_> = leased
        .iter()
        .map(|job| {
            (
                job.id.clone(),
                job.token.clone(),
                Outcome::Fail { error: "x".into() },
            )
        })
        .collect();
    t.engine.complete(&outcomes).await.expect("complete");
    let dead: Vec<String> = leased.iter().map(|job| job.id.clone()).collect();
    let waiting = ids
        .iter()
        .find(|id| !dead.contains(id))
        .expect("one still queued")
        .clone();
    let asked = vec![
        dead[0].clone(),
        waiting.clone(),
        "NOSUCHJOB".into(),
        dead[1].clone(),
    ];
    assert_eq!(
        t.engine.discard_dead_many(&asked).await.expect("discard"),
        vec![
            DeadOpOutcome::Done,
            DeadOpOutcome::NotDead("QUEUED".into()),
            DeadOpOutcome::Missing,
            DeadOpOutcome::Done,
        ]
    );
    assert_eq!(t.engine.stats("q").await.expect("stats").dead, 0);
    assert!(t.engine.job(&waiting).await.expect("job").is_some());
    t.check_placement("q");
}

#[tokio::test]
async fn idempotent_submission_with_both_key_scopes() {
    let t = TestQueue::new("ops-idem").await;
    let job = || NewJob::raw("evaluate", "evaluate", r#"{"sensor":"s1"}"#.into());
    // A key that lives for a time.
    let a = t
        .engine
        .push(job().with_idempotency_key("k1", KeyScope::For(None)))
        .await
        .expect("push");
    let b = t
        .engine
        .push(job().with_idempotency_key("k1", KeyScope::For(None)))
        .await
        .expect("push");
    assert_eq!(
        (b.id.as_str(), a.duplicate, b.duplicate),
        (a.id.as_str(), false, true)
    );
    // It still holds after the job ran.
    let j = t.lease("evaluate", 1, 30_000).await.remove(0);
    t.engine
        .complete(&[(j.id, j.token, Outcome::Succeeded { result: None })])
        .await
        .expect("ack");
    assert!(
        t.engine
            .push(job().with_idempotency_key("k1", KeyScope::For(None)))
            .await
            .expect("push")
            .duplicate
    );
    // A short one expires.
    let short = KeyScope::For(Some(Duration::from_millis(30)));
    let c = t
        .engine
        .push(job().with_idempotency_key("k2", short))
        .await
        .expect("push");
    tokio::time::sleep(Duration::from_millis(40)).await;
    let d = t
        .engine
        .push(job().with_idempotency_key("k2", short))
        .await
        .expect("push");
    assert!(!d.duplicate);
    assert_ne!(c.id, d.id);
    // A key that holds only while the job waits.
    let w1 = t
        .engine
        .push(job().with_idempotency_key("sensor:s9", KeyScope::WhileWaiting))
        .await
        .expect("push");
    let w2 = t
        .engine
        .push(job().with_idempotency_key("sensor:s9", KeyScope::WhileWaiting))
        .await
        .expect("push");
    assert_eq!((w2.id.as_str(), w2.duplicate), (w1.id.as_str(), true));
    // Drain the queue up to and including w1: once started, a new request makes a new job.
    let started = t.lease("evaluate", 10, 30_000).await;
    assert!(started.iter().any(|j| j.id == w1.id));
    let w3 = t
        .engine
        .push(job().with_idempotency_key("sensor:s9", KeyScope::WhileWaiting))
        .await
        .expect("push");
    assert!(!w3.duplicate);
    assert_ne!(w3.id, w1.id);
    // Duplicates within one batch resolve to the first.
    let batch = t
        .engine
        .push_many(vec![
            job().with_idempotency_key("k3", KeyScope::For(None)),
            job().with_idempotency_key("k3", KeyScope::For(None)),
        ])
        .await
        .expect("push");
    assert_eq!(batch[1].id, batch[0].id);
    assert!(batch[1].duplicate && !batch[0].duplicate);
    // A push under a known id (requeue from the SQL record) is a duplicate while it exists.
    let again = t
        .engine
        .push(job().with_id(a.id.clone()))
        .await
        .expect("push");
    assert!(again.duplicate);
}

#[tokio::test]
async fn bad_jobs_are_refused_before_anything_is_sent() {
    let t = TestQueue::new("ops-invalid").await;
    let bad = [
        NewJob::raw("has space", "k", "{}".into()),
        NewJob::raw("q", "", "{}".into()),
        NewJob::raw("q", "q", "{}".into()).with_max_attempts(0),
        NewJob::raw("q", "q", "{}".into()).with_idempotency_key("", KeyScope::WhileWaiting),
    ];
    for job in bad {
        let err = t
            .engine
            .push_many(vec![NewJob::raw("q", "q", "{}".into()), job])
            .await
            .expect_err("refused");
        assert!(matches!(err, QueueError::InvalidJob(_)), "{err}");
    }
    assert_eq!(
        t.engine.stats("q").await.expect("stats").pushed_total,
        0,
        "nothing pushed"
    );
}

#[tokio::test]
async fn promotion_is_bounded_per_call() {
    let t = TestQueue::with_config("ops-promote", |c| {
        c.promote_chunk = 1000;
        c.partitions = 1;
    })
    .await;
    let now = queue::now_ms();
    let jobs = (0..2500)
        .map(|_| NewJob::raw("q", "q", "{}".into()).with_run_at_ms(now + 300))
        .collect();
    t.engine.push_many(jobs).await.expect("push");
    assert_eq!(t.engine.stats("q").await.expect("stats").scheduled, 2500);
    tokio::time::sleep(Duration::from_millis(320)).await;
    t.engine
        .fetch(&fetch_req("q", 0, 30_000))
        .await
        .expect("fetch");
    let stats = t.engine.stats("q").await.expect("stats");
    assert_eq!((stats.ready, stats.scheduled), (1000, 1500));
    let hint = t
        .engine
        .fetch(&fetch_req("q", 0, 30_000))
        .await
        .expect("fetch")
        .next_due_in;
    assert_eq!(
        hint,
        Some(Duration::ZERO),
        "more is due: an idle worker must not wait"
    );
}

#[tokio::test]
async fn finished_jobs_are_cleaned_only_after_every_group_read_them() {
    let t = TestQueue::with_config("ops-cleanup", |c| c.completed_retention = Duration::ZERO).await;
    let mut consumer = t.engine.consumer(EventStream::Jobs, "recorder", "r1");
    consumer.ensure_group().await.expect("group");
    let id = t.push_n("q", 1).await.remove(0);
    let j = t.lease("q", 1, 30_000).await.remove(0);
    t.engine
        .complete(&[(j.id, j.token, Outcome::Succeeded { result: None })])
        .await
        .expect("ack");
    assert_eq!(
        t.engine.cleanup_finished("q").await.expect("cleanup"),
        0,
        "the recorder has not read it"
    );
    let entries = consumer
        .read(100, Duration::from_millis(10))
        .await
        .expect("read");
    assert_eq!(entries.len(), 3);
    assert_eq!(
        t.engine.cleanup_finished("q").await.expect("cleanup"),
        0,
        "read but not acknowledged"
    );
    consumer.ack(&entries).await.expect("ack");
    assert_eq!(t.engine.cleanup_finished("q").await.expect("cleanup"), 1);
    assert!(t.engine.job(&id).await.expect("job").is_none());
    assert_eq!(
        t.engine.stats("q").await.expect("stats").succeeded_total,
        1,
        "totals survive"
    );
}

#[tokio::test]
async fn redis_guard_reports_unsafe_settings() {
    let t = TestQueue::new("ops-guard").await;
    let report = t.engine.check_redis(false).await.expect("report");
    assert!(!report.redis_version.is_empty());
    let unsafe_settings = report.maxmemory_policy != "noeviction" || !report.appendonly;
    assert_eq!(!report.problems.is_empty(), unsafe_settings);
    let strict = t.engine.check_redis(true).await;
    assert_eq!(strict.is_err(), unsafe_settings);
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_retryable_error() {
    let started = std::time::Instant::now();
    let err = queue::Engine::connect(
        "redis://127.0.0.1:1",
        queue::EngineConfig::with_prefix("unreachable"),
    )
    .await
    .expect_err("nothing listens on port 1");
    assert!(err.is_retryable(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "fails within a bounded time"
    );
}

#[tokio::test]
async fn finished_jobs_beyond_the_count_limit_are_cleaned_oldest_first() {
    let t = TestQueue::with_config("ops-cleanup-count", |c| {
        c.completed_max = 2;
        c.partitions = 1;
    })
    .await;
    let ids = t.push_n("q", 5).await;
    let jobs = t.lease("q", 5, 30_000).await;
    for job in jobs {
        t.engine
            .complete(&[(job.id, job.token, Outcome::Succeeded { result: None })])
            .await
            .expect("ack");
    }
    assert_eq!(t.engine.cleanup_finished("q").await.expect("cleanup"), 3);
    let left: Vec<bool> = t
        .engine
        .jobs(&ids)
        .await
        .expect("jobs")
        .iter()
        .map(Option::is_some)
        .collect();
    assert_eq!(left, [false, false, false, true, true]);
    assert_eq!(t.engine.stats("q").await.expect("stats").finished_held, 2);
    assert_eq!(t.engine.cleanup_finished("q").await.expect("cleanup"), 0);
}

#[tokio::test]
async fn reaping_is_bounded_per_call() {
    let t = TestQueue::with_config("ops-reap-bound", |c| {
        c.reap_chunk = 100;
        c.partitions = 1;
    })
    .await;
    t.push_n("q", 150).await;
    assert_eq!(t.lease("q", 150, 1).await.len(), 150);
    tokio::time::sleep(Duration::from_millis(5)).await;
    // One call reaps at most 100 expired leases (zero backoff: they are promoted at once).
    t.lease("q", 0, 1).await;
    let stats = t.engine.stats("q").await.expect("stats");
    assert_eq!((stats.running, stats.ready), (50, 100));
    t.lease("q", 0, 1).await;
    let stats = t.engine.stats("q").await.expect("stats");
    assert_eq!(
        (stats.running, stats.ready, stats.retried_total),
        (0, 150, 150)
    );
    t.check_placement("q");
}

#[tokio::test]
async fn the_oldest_ready_age_looks_past_tombstones_and_is_none_when_idle() {
    let t = TestQueue::new("ops-oldest").await;
    assert_eq!(
        t.engine.oldest_ready_age("ingest").await.expect("age"),
        None
    );
    let first = t.push_payload("ingest", "{}").await;
    tokio::time::sleep(Duration::from_millis(120)).await;
    t.push_payload("ingest", "{}").await;
    let age = t
        .engine
        .oldest_ready_age("ingest")
        .await
        .expect("age")
        .expect("a job is ready");
    assert!(age >= Duration::from_millis(120), "the head waited {age:?}");

    // Cancelled at the head: its tombstone stays in the list, but the age is the next job's.
    t.engine.cancel(&first).await.expect("cancel");
    let age = t
        .engine
        .oldest_ready_age("ingest")
        .await
        .expect("age")
        .expect("one job is still ready");
    assert!(
        age < Duration::from_millis(120),
        "the tombstone was skipped: {age:?}"
    );

    t.lease("ingest", 10, 10_000).await;
    assert_eq!(
        t.engine.oldest_ready_age("ingest").await.expect("age"),
        None
    );
}
