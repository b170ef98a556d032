//! A tour of the queue engine: push (with an idempotency key), a worker whose jobs succeed,
//! retry and die, dead-job groups, a requeue, stats and the event stream.
//!
//! `cargo run -p steadfast-queue --example tour` (Redis at `REDIS_URL`, default local).

use std::time::Duration;

use apalis_core::worker::builder::WorkerBuilder;
use queue::{
    DeadFilter, Engine, EngineConfig, EventStream, JobContext, JobError, JobEvent, KeyScope,
    NewJob, RedisBackend, RetryPolicy, WorkerOptions,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Reading {
    sensor: String,
    value: f64,
}

async fn ingest(reading: Reading, job: JobContext) -> Result<(), JobError> {
    match reading.sensor.as_str() {
        "flaky" if job.attempt < 3 => Err(JobError::retryable("upstream answered 503")),
        "unknown" => Err(JobError::permanent(format!(
            "unknown sensor '{}'",
            reading.sensor
        ))),
        _ => Ok(()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("tour-{}", ulid::Ulid::new().to_string().to_lowercase());
    let engine = Engine::connect(&url, EngineConfig::with_prefix(&prefix)).await?;
    let guard = engine.check_redis(false).await?;
    println!(
        "redis {}: durability {}",
        guard.redis_version,
        guard.durability()
    );

    let reading = |sensor: &str| Reading {
        sensor: sensor.into(),
        value: 21.5,
    };
    for sensor in ["boiler", "flaky", "unknown"] {
        let job = NewJob::new("ingest", &reading(sensor))?.with_max_attempts(5);
        let pushed = engine.push(job).await?;
        println!("pushed {sensor:<8} -> job {}", pushed.id);
    }
    let key = NewJob::new("ingest", &reading("boiler"))?
        .with_idempotency_key("batch-42", KeyScope::For(None));
    let first = engine.push(key.clone()).await?;
    let again = engine.push(key).await?;
    println!(
        "idempotent push: {} then {} (duplicate: {})",
        first.id, again.id, again.duplicate
    );

    let retry = RetryPolicy {
        max_attempts: 5,
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(200),
    };
    let worker = WorkerBuilder::new("tour")
        .backend(RedisBackend::<Reading>::new(
            engine.clone(),
            WorkerOptions::new("ingest").retry(retry),
        ))
        .build(ingest);
    let watcher = engine.clone();
    worker
        .run_until(async move {
            loop {
                let stats = watcher
                    .stats("ingest")
                    .await
                    .map_err(std::io::Error::other)?;
                if stats.succeeded_total + stats.dead == 4 {
                    return Ok::<(), std::io::Error>(());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await?;

    let stats = engine.stats("ingest").await?;
    println!(
        "stats: succeeded {} retried {} dead {}",
        stats.succeeded_total, stats.retried_total, stats.dead
    );
    for group in engine.dead_groups("ingest").await? {
        println!(
            "dead group {} x{}: {}",
            group.fingerprint, group.count, group.sample_error
        );
    }
    let dead = engine
        .dead_jobs(
            &DeadFilter {
                queue: "ingest".into(),
                ..Default::default()
            },
            0,
            10,
        )
        .await?;
    let ids: Vec<String> = dead.iter().map(|j| j.id.clone()).collect();
    println!("requeue {:?}: {:?}", ids, engine.requeue_dead(&ids).await?);

    println!("events:");
    for entry in engine.read_stream(EventStream::Jobs, "0-0", 100).await? {
        if let Some(e) = JobEvent::from_entry(&entry) {
            let error = e.error.map(|e| format!("  ({e})")).unwrap_or_default();
            println!(
                "  {}  {:<16} {:<10} attempt {}{error}",
                e.job_id, e.event, e.state, e.attempt
            );
        }
    }
    engine.destroy_all_data().await?;
    Ok(())
}
