//! How fast the ledger recorder catches up with a backlog of job events.
//!
//! `BENCH_RUNS` workflow runs of four jobs each (ingest, then evaluate, alert and notify in the
//! ingest's run) are pushed, leased and completed through the real engine, so the event stream
//! holds what a drained pipeline leaves behind (queued, started, succeeded per job), with the
//! four steps of a run close together. Then
//! `BENCH_RECORDERS` recorders of one consumer group record that backlog into a fresh database,
//! and the bench prints events/s and jobs/s until the group has nothing left to read.
//!
//! `cargo bench -p steadfast-workflows --bench ledger` (PostgreSQL at `TEST_POSTGRES_URL`).
//! `BENCH_DB=sqlite` records into a temporary SQLite file instead. Sizes: `BENCH_RUNS` (10000),
//! `BENCH_RECORDERS` (1), `BENCH_BATCH` (the recorder's default); `BENCH_LEDGER_POOL=shared`
//! records through the handlers' pool instead of the recorders' own.

use std::time::{Duration, Instant};

use entities::{jobs, workflow_runs};
use migration::testing::TestDb;
use queue::{NewJob, testing::TestPrefix};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use testkit::fixtures as testing;
use workflows::ledger::{Recorder, RecorderConfig};

const STEPS: [&str; 3] = ["evaluate", "alert", "notify"];

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let runs = env_or("BENCH_RUNS", 10_000) as usize;
    let recorders = env_or("BENCH_RECORDERS", 1) as usize;
    let sqlite = std::env::var("BENCH_DB").is_ok_and(|v| v == "sqlite");
    let db = if sqlite {
        TestDb::migrated_sqlite().await
    } else {
        TestDb::migrated_postgres().await
    };
    let redis = TestPrefix::new("bench-ledger").await;
    let engine = redis.engine.clone();

    let started = Instant::now();
    for chunk in (0..runs).collect::<Vec<_>>().chunks(1000) {
        let ingests: Vec<NewJob> = chunk
            .iter()
            .map(|i| NewJob::raw("ingest", "ingest", format!(r#"{{"readings":[{i}]}}"#)))
            .collect();
        let pushed = engine.push_many(ingests).await.expect("push ingests");
        let steps: Vec<NewJob> = pushed
            .iter()
            .flat_map(|p| {
                STEPS.iter().map(|kind| {
                    NewJob::raw(*kind, *kind, r#"{"sensor":"s1"}"#.into()).with_workflow_id(&p.id)
                })
            })
            .collect();
        engine.push_many(steps).await.expect("push steps");
    }
    // Rounds of 250 per queue: recorders side by side then record steps of the same run at once.
    let completed =
        testing::complete_interleaved(&engine, &["ingest", "evaluate", "alert", "notify"], 250)
            .await;
    let total_jobs = runs * 4;
    assert_eq!(completed, total_jobs, "every pushed job is completed");
    println!(
        "ledger bench: {} on {}, {runs} runs, {total_jobs} jobs played in {:.1} s; {recorders} recorder(s)",
        if sqlite { "SQLite" } else { "PostgreSQL" },
        db.url().split('@').next_back().unwrap_or(""),
        started.elapsed().as_secs_f64()
    );

    // As the workers run them: a pool of the recorders' own, unless `BENCH_LEDGER_POOL=shared`
    // (the handlers' pool, as before the recorders had their own).
    let shared = std::env::var("BENCH_LEDGER_POOL").is_ok_and(|v| v == "shared");
    let ledger_db = if shared {
        db.db().clone()
    } else {
        entities::connect_bulk_writer(
            db.url(),
            db.db(),
            recorders as u32,
            workflows::ledger::LEDGER_APPLICATION,
        )
        .await
        .expect("ledger pool")
    };
    println!(
        "recorders' pool: {}",
        if shared || sqlite {
            "shared"
        } else {
            "their own"
        }
    );

    let started = Instant::now();
    let mut tasks = Vec::new();
    for r in 0..recorders {
        let mut config = RecorderConfig {
            group: "bench".into(),
            block: Duration::from_millis(50),
            ..RecorderConfig::new(format!("bench-{r}"))
        };
        if let Some(batch) = std::env::var("BENCH_BATCH")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            config.batch = batch;
        }
        let mut recorder = Recorder::new(ledger_db.clone(), engine.clone(), config)
            .await
            .expect("recorder");
        tasks.push(tokio::spawn(async move {
            let (mut events, mut failed) = (0, 0);
            loop {
                match recorder.step().await {
                    Ok(0) => return (events, failed),
                    Ok(n) => events += n,
                    // Retried as the recorder's own loop does: the batch is read again.
                    Err(e) => {
                        eprintln!("batch failed, retried: {e}");
                        failed += 1;
                    }
                }
            }
        }));
    }
    let (mut events, mut failed) = (0, 0);
    for task in tasks {
        let (e, f) = task.await.expect("recorder task");
        events += e;
        failed += f;
    }
    let secs = started.elapsed().as_secs_f64();

    let recorded = jobs::Entity::find()
        .filter(jobs::Column::State.eq("SUCCEEDED"))
        .count(db.db())
        .await
        .expect("count jobs");
    let finished_runs = workflow_runs::Entity::find()
        .filter(workflow_runs::Column::State.eq("SUCCEEDED"))
        .filter(workflow_runs::Column::StepsFinished.eq(4))
        .count(db.db())
        .await
        .expect("count runs");
    assert_eq!(
        recorded as usize, total_jobs,
        "every job recorded succeeded"
    );
    assert_eq!(
        finished_runs as usize, runs,
        "every run recorded with its 4 steps"
    );
    println!(
        "recorded {events} events, {total_jobs} jobs, {runs} runs in {secs:.2} s: {:.0} events/s, {:.0} jobs/s; {failed} batches failed and retried",
        events as f64 / secs,
        total_jobs as f64 / secs
    );
}
