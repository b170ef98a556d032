//! The shared circuit breaker: opens after N consecutive failures, half-opens after the
//! cool-down with one probe at a time, closes on success, and is seen alike by every engine.

use std::time::Duration;

use queue::{BreakerGate, BreakerPolicy, Engine};

use super::common::TestQueue;

fn policy() -> BreakerPolicy {
    BreakerPolicy {
        failure_threshold: 3,
        cool_down: Duration::from_millis(150),
        probe_timeout: Duration::from_millis(100),
    }
}

#[tokio::test]
async fn opens_after_consecutive_failures_and_a_success_resets_the_count() {
    let q = TestQueue::new("breaker-open").await;
    let (e, p) = (&q.engine, policy());
    assert_eq!(
        e.breaker_acquire("h:1", &p).await.expect("redis"),
        BreakerGate::Closed
    );
    e.breaker_record("h:1", false, &p).await.expect("redis");
    e.breaker_record("h:1", false, &p).await.expect("redis");
    // A success between failures: the count starts again.
    e.breaker_record("h:1", true, &p).await.expect("redis");
    e.breaker_record("h:1", false, &p).await.expect("redis");
    e.breaker_record("h:1", false, &p).await.expect("redis");
    assert_eq!(
        e.breaker_acquire("h:1", &p).await.expect("redis"),
        BreakerGate::Closed
    );
    let third = e.breaker_record("h:1", false, &p).await.expect("redis");
    assert!(matches!(third, BreakerGate::Open { .. }), "{third:?}");
    match e.breaker_acquire("h:1", &p).await.expect("redis") {
        BreakerGate::Open { retry_in } => assert!(retry_in <= p.cool_down, "{retry_in:?}"),
        other => panic!("expected open, got {other:?}"),
    }
    let listed = e.breakers().await.expect("redis");
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].name.as_str(), listed[0].failures), ("h:1", 3));
    assert_eq!(listed[0].state, "open");
    // Other destinations are unaffected.
    assert_eq!(
        e.breaker_acquire("h:2", &p).await.expect("redis"),
        BreakerGate::Closed
    );
}

#[tokio::test]
async fn half_open_lets_one_probe_through_and_its_outcome_decides() {
    let q = TestQueue::new("breaker-probe").await;
    let (e, p) = (&q.engine, policy());
    // A second engine on the same prefix stands for another worker process.
    let other = Engine::connect(&q.url, queue::testing::config(q.prefix.clone()))
        .await
        .expect("redis");
    for _ in 0..3 {
        e.breaker_record("h", false, &p).await.expect("redis");
    }
    assert!(
        !other
            .breaker_acquire("h", &p)
            .await
            .expect("redis")
            .allows()
    );
    tokio::time::sleep(p.cool_down + Duration::from_millis(20)).await;
    assert_eq!(
        other.breaker_acquire("h", &p).await.expect("redis"),
        BreakerGate::Probe
    );
    // While the probe is out, everybody else waits.
    assert!(!e.breaker_acquire("h", &p).await.expect("redis").allows());
    assert_eq!(e.breakers().await.expect("redis")[0].state, "half_open");
    // The probe failed: open again for a full cool-down.
    let reopened = other.breaker_record("h", false, &p).await.expect("redis");
    assert!(matches!(reopened, BreakerGate::Open { .. }));
    assert!(!e.breaker_acquire("h", &p).await.expect("redis").allows());
    tokio::time::sleep(p.cool_down + Duration::from_millis(20)).await;
    assert_eq!(
        e.breaker_acquire("h", &p).await.expect("redis"),
        BreakerGate::Probe
    );
    assert_eq!(
        e.breaker_record("h", true, &p).await.expect("redis"),
        BreakerGate::Closed
    );
    assert_eq!(
        other.breaker_acquire("h", &p).await.expect("redis"),
        BreakerGate::Closed
    );
    assert!(e.breakers().await.expect("redis").is_empty());
}

#[tokio::test]
async fn a_probe_that_never_reports_frees_the_breaker_after_its_timeout() {
    let q = TestQueue::new("breaker-lost-probe").await;
    let (e, p) = (&q.engine, policy());
    for _ in 0..3 {
        e.breaker_record("h", false, &p).await.expect("redis");
    }
    tokio::time::sleep(p.cool_down + Duration::from_millis(20)).await;
    assert_eq!(
        e.breaker_acquire("h", &p).await.expect("redis"),
        BreakerGate::Probe
    );
    // The prober crashed before reporting.
    tokio::time::sleep(p.probe_timeout + Duration::from_millis(20)).await;
    assert_eq!(
        e.breaker_acquire("h", &p).await.expect("redis"),
        BreakerGate::Probe
    );
}
