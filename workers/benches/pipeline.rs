//! Readings per second through the whole pipeline on PostgreSQL, and ingest→notify latency.
//!
//! 100 sensors with one `above` rule each and a webhook to a local receiver; ingest jobs of 100
//! readings for one sensor, 1% of readings breaching (each breach opens an alert, the next
//! reading clears it, so every breach is one webhook). The ledger recorder runs too.
//!
//! Phase 1 (throughput): a backlog of `BENCH_JOBS` ingest jobs drains to the last webhook.
//! Phase 2 (latency): ingest jobs pushed at `BENCH_RATE` readings/s for `BENCH_SECS` seconds;
//! latency is from an ingest job's push to the webhook its breach caused.
//!
//! `cargo bench -p steadfast-workers --bench pipeline` (needs Redis and `TEST_POSTGRES_URL`).
//! Sizes: `BENCH_JOBS` (3000), `BENCH_RATE` (10000), `BENCH_SECS` (10), `BENCH_CONCURRENCY`
//! (16), `BENCH_LEDGER` (ledger recorders, 1; 0 leaves the ledger out).

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use entities::alerts;
use hdrhistogram::Histogram;
use migration::testing::TestDb;
use queue::{BreakerPolicy, NewJob, testing::TestPrefix};
use runtime::{Context, PoolConfig};
use sea_orm::EntityTrait;
use testkit::{Receiver, cpu_seconds, fixtures as testing};
use workflows::jobs::notify::{DestinationPolicy, Notifier, NotifyConfig};

const SENSORS: usize = 100;
const READINGS_PER_JOB: usize = 100;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One ingest job: 100 readings of sensor `s{sensor}`, the 51st breaching.
fn ingest_job(sensor: usize, job: usize) -> NewJob {
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-11-21T00:00:00Z").expect("time");
    let readings: Vec<_> = (0..READINGS_PER_JOB)
        .map(|i| {
            let seq = (job * READINGS_PER_JOB + i) as i64;
            serde_json::json!({
                "sensor": format!("s{sensor}"),
                "ts": (t0 + chrono::Duration::milliseconds(seq)).to_rfc3339(),
                "value": if i == 50 { 90.0 } else { 50.0 },
                "seq": seq,
            })
        })
        .collect();
    NewJob::new("ingest", &serde_json::json!({ "readings": readings })).expect("job")
}

fn cpu_snapshot() -> [f64; 3] {
    [
        cpu_seconds("self"),
        cpu_seconds("postgres"),
        cpu_seconds("redis-server"),
    ]
}

#[tokio::main]
async fn main() {
    let jobs = env_or("BENCH_JOBS", 3000) as usize;
    let rate = env_or("BENCH_RATE", 10_000);
    let secs = env_or("BENCH_SECS", 10);
    let db = TestDb::migrated_postgres().await;
    let redis = TestPrefix::new("bench-pipeline").await;
    let engine = redis.engine.clone();
    let receiver = Receiver::start().await;
    for s in 0..SENSORS {
        let sensor = testing::sensor(db.db(), &format!("s{s}")).await;
        let rule = testing::rule(db.db(), sensor.id, "ABOVE", 80.0, 75.0, 1, 3600).await;
        testing::webhook_for(db.db(), rule.id, &receiver.url()).await;
    }
    let notifier = Notifier::new(NotifyConfig {
        timeout: Duration::from_secs(5),
        breaker: BreakerPolicy::default(),
        destinations: DestinationPolicy::allowing_loopback(),
        ..NotifyConfig::default()
    })
    .expect("notifier");
    let mut config = PoolConfig::all_queues("bench");
    config.concurrency = env_or("BENCH_CONCURRENCY", 16) as usize;
    // BENCH_LEDGER=0 leaves the ledger out, to see what recording it costs; N runs N recorders.
    config.ledger_recorders = env_or("BENCH_LEDGER", 1) as usize;
    println!(
        "pipeline bench: {SENSORS} sensors, {READINGS_PER_JOB} readings per ingest job, 1% breaching, concurrency {} per queue, {} ledger recorders",
        config.concurrency, config.ledger_recorders
    );
    let ctx = Context::new(db.db().clone(), engine.clone(), notifier)
        .with_ledger_pool(db.url(), config.ledger_recorders)
        .await
        .expect("ledger pool");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let pools = tokio::spawn(runtime::run_pools(ctx, config, async move {
        let _ = stopped.await;
        Ok(())
    }));

    // Phase 1: a backlog drains.
    let cpu0 = cpu_snapshot();
    let started = Instant::now();
    let backlog: Vec<NewJob> = (0..jobs)
        .map(|j| ingest_job(j % SENSORS, j / SENSORS))
        .collect();
    for chunk in backlog.chunks(500) {
        engine.push_many(chunk.to_vec()).await.expect("push");
    }
    let pushed_in = started.elapsed();
    while receiver.received().len() < jobs {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drained_in = started.elapsed();
    let cpu1 = cpu_snapshot();
    let readings = (jobs * READINGS_PER_JOB) as f64;
    println!(
        "throughput: {jobs} ingest jobs, {readings:.0} readings, {jobs} webhooks in {:.2} s (pushed in {:.2} s): {:.0} readings/s",
        drained_in.as_secs_f64(),
        pushed_in.as_secs_f64(),
        readings / drained_in.as_secs_f64()
    );
    let spent: Vec<f64> = cpu1.iter().zip(cpu0).map(|(b, a)| b - a).collect();
    println!(
        "cpu seconds while draining: steadfast {:.1}, postgres {:.1}, redis {:.1} (wall {:.1}, 2 cores)",
        spent[0],
        spent[1],
        spent[2],
        drained_in.as_secs_f64()
    );

    // Let the ledger catch up before measuring latency.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Phase 2: latency at a steady rate, open loop.
    let before = receiver.received().len();
    let jobs_per_sec = (rate as f64 / READINGS_PER_JOB as f64).max(1.0);
    let interval = Duration::from_secs_f64(1.0 / jobs_per_sec);
    let total = (jobs_per_sec * secs as f64) as usize;
    let mut pushed_at: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for j in 0..total {
        tick.tick().await;
        let job = ingest_job(j % SENSORS, jobs / SENSORS + 1 + j / SENSORS);
        let at = Instant::now();
        let id = engine.push(job).await.expect("push").id;
        pushed_at.insert(id, at);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while receiver.received().len() < before + total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let alert_runs: HashMap<i64, String> = alerts::Entity::find()
        .all(db.db())
        .await
        .expect("alerts")
        .into_iter()
        .filter_map(|a| a.workflow_run_id.map(|r| (a.id, r)))
        .collect();
    let mut latency = Histogram::<u64>::new(3).expect("histogram");
    for post in receiver.received().into_iter().skip(before) {
        let alert = post.json()["alert"]["id"].as_i64().unwrap_or_default();
        if let Some(pushed) = alert_runs.get(&alert).and_then(|run| pushed_at.get(run)) {
            let _ = latency.record(post.at.duration_since(*pushed).as_micros() as u64);
        }
    }
    println!(
        "latency at {rate} readings/s for {secs} s: {} of {total} webhooks; ingest→webhook p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latency.len(),
        latency.value_at_quantile(0.5) as f64 / 1000.0,
        latency.value_at_quantile(0.99) as f64 / 1000.0,
        latency.max() as f64 / 1000.0
    );
    let _ = stop.send(());
    let _ = pools.await;
}
