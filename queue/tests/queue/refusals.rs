//! Shared rate limits, and Redis answers that mean "not now": `READONLY` from a primary turned
//! replica after a failover, `OOM` at `maxmemory`. Both must read as retryable, never as a bug.

use std::time::Duration;

use queue::{
    Engine, NewJob, QueueError, RateDecision, RateLimit,
    testing::{OwnRedis, free_port},
};

use super::common::TestQueue;

#[tokio::test]
async fn a_rate_limit_is_one_budget_for_every_engine_sharing_the_prefix() {
    let q = TestQueue::new("rate-shared").await;
    // A second engine on the same prefix stands for another API replica.
    let other = Engine::connect(&q.url, queue::testing::config(q.prefix.clone()))
        .await
        .expect("redis");
    let budget = RateLimit {
        limit: 4,
        window: Duration::from_secs(60),
    };
    let mut allowed = 0;
    for i in 0..10 {
        let engine = if i % 2 == 0 { &q.engine } else { &other };
        if engine
            .rate_limit("login:a@example.com", budget)
            .await
            .expect("redis")
            .is_allowed()
        {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 4, "both engines count against one budget");
    match q
        .engine
        .rate_limit("login:a@example.com", budget)
        .await
        .expect("redis")
    {
        RateDecision::Limited { retry_after } => {
            // One call's share of the window: 60 s / 4.
            assert!(
                retry_after > Duration::from_secs(5) && retry_after <= Duration::from_secs(15),
                "{retry_after:?}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Another name has its own budget.
    assert!(
        q.engine
            .rate_limit("login:b@example.com", budget)
            .await
            .expect("redis")
            .is_allowed()
    );
}

#[tokio::test]
async fn a_rate_limit_refills_with_time_and_refuses_oversized_names() {
    let q = TestQueue::new("rate-refill").await;
    let budget = RateLimit {
        limit: 2,
        window: Duration::from_millis(200),
    };
    for _ in 0..2 {
        assert!(
            q.engine
                .rate_limit("d:1", budget)
                .await
                .expect("redis")
                .is_allowed()
        );
    }
    assert!(
        !q.engine
            .rate_limit("d:1", budget)
            .await
            .expect("redis")
            .is_allowed()
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(
        q.engine
            .rate_limit("d:1", budget)
            .await
            .expect("redis")
            .is_allowed(),
        "one call's share (100 ms) has refilled"
    );
    let huge = "x".repeat(queue::MAX_RATE_KEY_BYTES + 1);
    assert!(matches!(
        q.engine.rate_limit(&huge, budget).await,
        Err(QueueError::InvalidArgument(_))
    ));
    assert!(matches!(
        q.engine.rate_limit("", budget).await,
        Err(QueueError::InvalidArgument(_))
    ));
}

fn own_redis(tag: &str) -> OwnRedis {
    let dir = std::env::temp_dir().join(format!("steadfast-{tag}-{}", ulid::Ulid::new()));
    OwnRedis::start_with(dir, free_port(), "no")
}

async fn engine_at(url: &str) -> Engine {
    let mut config = queue::testing::config("refusals");
    config.response_timeout = Duration::from_secs(3);
    // One partition: a deployment of several records its partitions when it first connects,
    // which a read-only replica refuses before any push could.
    config.partitions = 1;
    Engine::connect(url, config).await.expect("redis")
}

fn job() -> NewJob {
    NewJob::new("ingest", &serde_json::json!({ "n": 1 })).expect("job")
}

#[tokio::test]
async fn a_push_to_a_read_only_replica_is_retryable_and_says_why() {
    let primary = own_redis("readonly-primary");
    let replica = own_redis("readonly-replica");
    let mut conn = redis::Client::open(replica.url())
        .and_then(|c| c.get_connection())
        .expect("replica");
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(primary.port)
        .query(&mut conn)
        .expect("replicaof");
    let engine = engine_at(&replica.url()).await;
    let err = engine
        .push(job())
        .await
        .expect_err("a replica refuses writes");
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.unavailable_reason()
            .is_some_and(|r| r.contains("read-only")),
        "{err}"
    );
}

#[tokio::test]
async fn a_push_to_a_redis_out_of_memory_is_retryable_and_says_why() {
    let redis = own_redis("oom");
    let engine = engine_at(&redis.url()).await;
    engine.push(job()).await.expect("room for one");
    let mut conn = redis::Client::open(redis.url())
        .and_then(|c| c.get_connection())
        .expect("redis");
    // Below what is in use already: every write is refused from now on.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .query(&mut conn)
        .expect("config set");
    let err = engine.push(job()).await.expect_err("no memory left");
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.unavailable_reason()
            .is_some_and(|r| r.contains("out of memory")),
        "{err}"
    );
}

/// `replicated` durability on a primary with no replica: the write happens but is never
/// acknowledged. The answer is a retryable `NotReplicated`; a client retrying the same push
/// makes no second job, and once the push is acknowledged elsewhere it reads as a duplicate.
#[tokio::test]
async fn a_write_no_replica_confirms_is_refused_as_retryable_and_a_retry_makes_no_second_job() {
    let redis = own_redis("norepl");
    let prefix = format!("norepl-{}", ulid::Ulid::new().to_string().to_lowercase());
    let mut config = queue::testing::config(&prefix);
    config.durability = queue::Durability::Replicated {
        replicas: 1,
        timeout: Duration::from_millis(50),
    };
    let replicated = Engine::connect(&redis.url(), config).await.expect("redis");
    let job = || NewJob::raw("q", "q", "{}".into()).with_id("norepl-1");
    for _ in 0..2 {
        match replicated.push(job()).await {
            Err(
                e @ QueueError::NotReplicated {
                    wanted: 1,
                    acknowledged: 0,
                },
            ) => {
                assert!(e.is_retryable(), "{e}")
            }
            other => panic!("expected NotReplicated, got {other:?}"),
        }
    }
    let local = Engine::connect(&redis.url(), queue::testing::config(&prefix))
        .await
        .expect("redis");
    let stats = local.stats("q").await.expect("stats");
    assert_eq!(stats.pushed_total, 1, "the retry made no second job");
    assert!(
        local.job("norepl-1").await.expect("job").is_some(),
        "it stands on the primary"
    );
    let again = local.push(job()).await.expect("push");
    assert!(
        again.duplicate,
        "the same push, acknowledged, is the job already there"
    );
}
