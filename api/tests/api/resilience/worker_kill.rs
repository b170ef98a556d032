//! Scenario 1: a worker process killed with SIGKILL every few seconds, and started again, while
//! the pipeline runs.

use std::{
    sync::{Arc, atomic::AtomicBool},
    time::{Duration, Instant},
};

use super::{
    books::{event_counts, pipeline_idle, settle},
    cluster::{Cluster, Options, Scale},
    load::{Client, provision},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_every_few_seconds_lose_nothing() {
    let scale = Scale::from_env();
    // About 2.4 pipeline jobs per ingest (ingest, evaluate, and an alert and notify for every
    // fifth): the long form's 42,000 ingests are about 100,000 jobs.
    let ingests = scale.count("RESILIENCE_INGESTS", 1_500, 42_000);
    let kill_every = scale.pick(Duration::from_secs(2), Duration::from_secs(4));
    let sensors = 20;
    let mut options = Options::new("kill9");
    options.worker_flags = vec!["--lease-ms=1000".into()];
    let mut cluster = Cluster::start(options).await;
    provision(&cluster, sensors).await;

    let started = Instant::now();
    let load = tokio::spawn(Client::of(&cluster).submit_range(
        0,
        ingests,
        250,
        Duration::ZERO,
        sensors,
        Arc::new(AtomicBool::new(false)),
    ));
    let mut kills = 0;
    let mut last_kill = Instant::now();
    loop {
        tokio::time::sleep(kill_every).await;
        // Kills go on until every stage has drained, alerts and notifications included.
        if load.is_finished() && pipeline_idle(&cluster).await.is_ok() {
            break;
        }
        let victim = kills % cluster.workers.len();
        cluster.workers[victim].kill9().await;
        cluster.restart_worker(victim);
        kills += 1;
        last_kill = Instant::now();
    }
    let submitted = load.await.expect("load");
    let books = settle(&mut cluster, &submitted.accepted, Duration::from_secs(120)).await;
    // `None` in a long run: the capped stream no longer holds its start.
    let expired = event_counts(&cluster)
        .await
        .map(|counts| counts.get("lease_expired").copied().unwrap_or(0));
    println!(
        "scenario 1, kill -9 a worker every {kill_every:?}: {kills} kills over {:.1?}, {} leases expired and their jobs run again; {books}; \
         refused batches {}; drained {:.1?} after the last kill",
        started.elapsed(),
        expired.map_or("(stream trimmed: not counted)".to_owned(), |n| n
            .to_string()),
        submitted.refused,
        last_kill.elapsed(),
    );
    assert!(
        kills >= 3,
        "only {kills} kills: the run was too short to tell"
    );
    assert_ne!(expired, Some(0), "no kill interrupted a job");
    books.assert_balanced();
    cluster.stop_workers().await;
}
