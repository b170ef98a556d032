//! Scenario 6: SIGTERM to a worker under load. Jobs in flight finish within the grace period or
//! are released at once: none waits for its lease to expire.

use std::{
    sync::{Arc, atomic::AtomicBool},
    time::{Duration, Instant},
};

use testkit::Reply;

use super::{
    books::{PIPELINE, event_counts, settle},
    cluster::{Cluster, Options, Scale},
    load::{Client, provision},
};

const LEASE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_leaves_no_job_waiting_for_its_lease() {
    let scale = Scale::from_env();
    let ingests = scale.count("RESILIENCE_INGESTS", 600, 10_000);
    let sensors = 10;
    let mut options = Options::new("sigterm");
    // One worker to begin with, so the hanging deliveries are surely on the one stopped.
    options.workers = 1;
    options.worker_flags = vec![
        format!("--lease-ms={}", LEASE.as_millis()),
        "--shutdown-grace-secs=1".into(),
    ];
    let mut cluster = Cluster::start(options).await;
    provision(&cluster, sensors).await;
    // The first deliveries hang for 4 s: past the grace period, so they must be released.
    cluster
        .receiver
        .script(std::iter::repeat_n(Reply::Stall(Duration::from_secs(4)), 8));

    let load = tokio::spawn(Client::of(&cluster).submit_range(
        0,
        ingests,
        50,
        Duration::ZERO,
        sensors,
        Arc::new(AtomicBool::new(false)),
    ));
    // Until a delivery hangs and other jobs run beside it.
    let started = Instant::now();
    let in_flight = loop {
        let mut running = 0;
        for queue in PIPELINE {
            running += cluster.engine.stats(queue).await.expect("stats").running;
        }
        if !cluster.receiver.received().is_empty() && running > 2 {
            break running;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no load built up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let exited_in = cluster.workers[0].sigterm().await;
    // Another process carries on: what it takes over, it took because it was handed back.
    cluster.add_worker();
    let submitted = load.await.expect("load");
    let books = settle(&mut cluster, &submitted.accepted, Duration::from_secs(120)).await;
    let events = event_counts(&cluster)
        .await
        .expect("the run's events still in the stream");
    let count = |event: &str| events.get(event).copied().unwrap_or(0);
    let (released, expired) = (count("released"), count("lease_expired"));
    println!(
        "scenario 6, SIGTERM with {in_flight} jobs running (deliveries hanging 4 s, grace 1 s, lease {LEASE:?}): \
         the worker exited in {exited_in:.1?}; {released} jobs released, {expired} leases expired; {books}",
    );
    assert!(
        exited_in < Duration::from_secs(5),
        "exit took {exited_in:?}"
    );
    assert!(released > 0, "nothing was in flight past the grace period");
    assert_eq!(expired, 0, "a job waited for its lease");
    assert!(books.drained_in < LEASE, "{books}");
    books.assert_balanced();
    cluster.stop_workers().await;
}
