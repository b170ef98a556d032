//! Priorities: a higher level is leased first, each level in push order; a job keeps its level
//! through retries, releases and requeues; aging lets a long-waiting lower job ahead of fresh
//! higher ones; drains, counts and listings see every level.

use std::time::Duration;

use queue::{Applied, NewJob, Outcome, Priority};

use super::common::TestQueue;

const Q: &str = "prio";

async fn push(t: &TestQueue, name: &str, priority: Priority) -> String {
    let job = NewJob::raw(Q, Q, format!("{{\"name\":\"{name}\"}}"))
        .with_priority(priority)
        .with_max_attempts(1);
    t.engine.push(job).await.expect("push").id
}

fn names(jobs: &[queue::LeasedJob]) -> Vec<String> {
    jobs.iter()
        .map(|j| {
            serde_json::from_str::<serde_json::Value>(&j.payload).expect("json")["name"]
                .as_str()
                .expect("name")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_higher_level_is_leased_first_and_each_level_in_push_order() {
    let t = TestQueue::one_partition("prio-order").await;
    for (name, level) in [
        ("low-1", Priority::Low),
        ("normal-1", Priority::Normal),
        ("high-1", Priority::High),
        ("low-2", Priority::Low),
        ("high-2", Priority::High),
        ("normal-2", Priority::Normal),
    ] {
        push(&t, name, level).await;
    }
    let stats = t.engine.stats(Q).await.expect("stats");
    assert_eq!(stats.ready, 6, "every level is counted");
    let waiting = t.engine.waiting(Q, 10).await.expect("waiting");
    assert_eq!(
        waiting.iter().map(|j| j.priority).collect::<Vec<_>>(),
        [
            Priority::High,
            Priority::High,
            Priority::Normal,
            Priority::Normal,
            Priority::Low,
            Priority::Low
        ]
    );
    assert!(t.engine.oldest_ready_age(Q).await.expect("age").is_some());
    t.check_placement(Q);

    let first = t.lease(Q, 3, 60_000).await;
    assert_eq!(names(&first), ["high-1", "high-2", "normal-1"]);
    let rest = t.lease(Q, 10, 60_000).await;
    assert_eq!(names(&rest), ["normal-2", "low-1", "low-2"]);
    t.check_placement(Q);
}

#[tokio::test]
async fn a_job_keeps_its_level_through_retry_release_and_requeue() {
    let t = TestQueue::one_partition("prio-keep").await;
    let high = push(&t, "high", Priority::High).await;
    let leased = t.lease(Q, 1, 60_000).await;
    let token = leased[0].token.clone();

    // Released (a worker shutting down): back to the front of its own level.
    let applied = t
        .engine
        .complete(&[(high.clone(), token, Outcome::Release)])
        .await
        .expect("complete");
    assert_eq!(applied, [Applied::Ok]);
    push(&t, "normal", Priority::Normal).await;
    t.check_placement(Q);
    let again = t.lease(Q, 1, 60_000).await;
    assert_eq!(names(&again), ["high"]);

    // Failed for good, then requeued by an operator: still high.
    let applied = t
        .engine
        .complete(&[(
            high.clone(),
            again[0].token.clone(),
            Outcome::Fail {
                error: "boom".into(),
            },
        )])
        .await
        .expect("complete");
    assert_eq!(applied, [Applied::Ok]);
    t.engine
        .requeue_dead(std::slice::from_ref(&high))
        .await
        .expect("requeue");
    t.check_placement(Q);
    let record = t.engine.job(&high).await.expect("job").expect("live");
    assert_eq!(record.priority, Priority::High);
    let both = t.lease(Q, 2, 60_000).await;
    assert_eq!(names(&both), ["high", "normal"]);

    // Retried after its lease expired: promoted back into its own level, ahead of a low job
    // that waited all along.
    let low = push(&t, "low", Priority::Low).await;
    let retried = NewJob::raw(Q, Q, "{\"name\":\"high-retried\"}".into())
        .with_priority(Priority::High)
        .with_max_attempts(2);
    let retried = t.engine.push(retried).await.expect("push").id;
    let leased = t.lease(Q, 1, 1).await;
    assert_eq!(leased[0].id, retried);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let next = t.lease(Q, 2, 60_000).await;
    assert_eq!(names(&next), ["high-retried", "low"]);
    assert_eq!((next[0].attempt, &next[1].id), (2, &low));
    t.check_placement(Q);
}

#[tokio::test]
async fn aging_lets_a_long_waiting_low_job_ahead_of_fresh_high_ones() {
    let t = TestQueue::with_config("prio-aging", |c| {
        c.partitions = 1;
        c.priority_aging = Duration::from_millis(40);
    })
    .await;
    push(&t, "old-low", Priority::Low).await;
    // Past twice the aging (low counts 40 ms less, high 40 ms more), the low job is ahead.
    tokio::time::sleep(Duration::from_millis(150)).await;
    push(&t, "fresh-high", Priority::High).await;
    push(&t, "fresh-normal", Priority::Normal).await;
    let leased = t.lease(Q, 3, 60_000).await;
    assert_eq!(names(&leased), ["old-low", "fresh-high", "fresh-normal"]);
}

#[tokio::test]
async fn drain_and_cancel_reach_every_level() {
    let t = TestQueue::one_partition("prio-drain").await;
    let high = push(&t, "high", Priority::High).await;
    for (name, level) in [("normal", Priority::Normal), ("low", Priority::Low)] {
        push(&t, name, level).await;
    }
    assert_eq!(
        t.engine.cancel(&high).await.expect("cancel"),
        queue::CancelOutcome::Cancelled
    );
    assert_eq!(t.engine.stats(Q).await.expect("stats").ready, 2);
    t.check_placement(Q);
    assert_eq!(t.engine.drain(Q, 10).await.expect("drain"), 2);
    let stats = t.engine.stats(Q).await.expect("stats");
    assert_eq!(stats.ready, 0);
    assert!(t.lease(Q, 5, 60_000).await.is_empty());
    t.check_placement(Q);
}
