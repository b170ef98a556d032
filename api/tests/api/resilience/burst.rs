//! Scenario 5: a burst of jobs submitted in batches as fast as the API takes them, drained by
//! the workers while it arrives. The rate must stay flat as the backlog shrinks, and the
//! worker's memory must not grow with the backlog.

use std::{
    sync::{Arc, atomic::AtomicBool},
    time::{Duration, Instant},
};

use super::{
    books::settle,
    cluster::{Cluster, Options, Scale},
    load::{Client, create_sensors},
};

struct Sample {
    at: Duration,
    done: u64,
    worker_rss_kib: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_drains_at_a_flat_rate_in_flat_memory() {
    let scale = Scale::from_env();
    let jobs = scale.count("RESILIENCE_BURST", 5_000, 1_000_000);
    let sensors = 50;
    let mut options = Options::new("burst");
    options.workers = 1;
    options.concurrency = 32;
    let mut cluster = Cluster::start(options).await;
    // Sensors without rules: the burst measures the queue and the ingest path, not alerting.
    create_sensors(&cluster, sensors).await;

    let started = Instant::now();
    let load = tokio::spawn(Client::of(&cluster).submit_range(
        0,
        jobs,
        1_000,
        Duration::ZERO,
        sensors,
        Arc::new(AtomicBool::new(false)),
    ));
    let mut samples: Vec<Sample> = Vec::new();
    let mut submitted_in = None;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cluster.assert_running();
        if submitted_in.is_none() && load.is_finished() {
            submitted_in = Some(started.elapsed());
        }
        let done = cluster
            .engine
            .stats("ingest")
            .await
            .map(|s| s.succeeded_total)
            .unwrap_or(0);
        samples.push(Sample {
            at: started.elapsed(),
            done,
            worker_rss_kib: cluster.workers[0].rss_kib().unwrap_or(0),
        });
        if samples.len().is_multiple_of(50) {
            let rss = samples.last().map_or(0, |s| s.worker_rss_kib) / 1024;
            eprintln!(
                "burst: {done} of {jobs} after {:.0?}, worker RSS {rss} MiB",
                started.elapsed()
            );
        }
        if done >= jobs as u64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3600 * 3),
            "the burst did not drain: {done} of {jobs}"
        );
    }
    let drained_in = started.elapsed();
    let submitted = load.await.expect("load");
    let books = settle(&mut cluster, &submitted.accepted, Duration::from_secs(300)).await;

    // The rate and the worker's memory over each tenth of the run's time.
    let at = |t: Duration| {
        samples
            .iter()
            .take_while(|s| s.at <= t)
            .last()
            .unwrap_or(&samples[0])
    };
    let tenth = drained_in / 10;
    let mut tenths = Vec::new();
    let mut memory = Vec::new();
    for i in 0..10u32 {
        let (from, to) = (at(tenth * i), at(tenth * (i + 1)));
        let seconds = (to.at.saturating_sub(from.at)).as_secs_f64().max(0.001);
        tenths.push(to.done.saturating_sub(from.done) as f64 / seconds);
        memory.push(to.worker_rss_kib / 1024);
    }
    let peak_rss = samples.iter().map(|s| s.worker_rss_kib).max().unwrap_or(0) / 1024;
    let rates: Vec<String> = tenths.iter().map(|r| format!("{r:.0}")).collect();
    let mems: Vec<String> = memory.iter().map(|m| m.to_string()).collect();
    println!(
        "scenario 5, burst of {jobs} ingest jobs: submitted in {:.1?}, drained in {drained_in:.1?} ({:.0} jobs/s); \
         rate per tenth of the time [{}] jobs/s; worker RSS after each tenth [{}] MiB, peak {peak_rss} MiB; {books}",
        submitted_in.unwrap_or(drained_in),
        jobs as f64 / drained_in.as_secs_f64(),
        rates.join(", "),
        mems.join(", "),
    );
    assert_eq!(books.lost, 0, "{books}");
    assert_eq!(books.not_succeeded, 0, "{books}");
    assert_eq!(books.readings_stored, books.readings_expected, "{books}");
    assert_eq!(books.ledger_disagrees + books.ledger_missing, 0, "{books}");
    // Flat: once submission is over (while it runs, the API takes a core from the worker) and
    // before the last tenth (it runs dry), the slowest tenth within a factor of two of the
    // fastest. A drain that slowed with the backlog's size would show here.
    let submitted_at = submitted_in.unwrap_or(drained_in);
    let steady: Vec<f64> = (0..9u32)
        .filter(|i| tenth * *i >= submitted_at)
        .map(|i| tenths[i as usize])
        .collect();
    assert!(
        steady.len() >= 3,
        "submission took {submitted_at:?} of {drained_in:?}: too little of the drain to judge"
    );
    let (slowest, fastest) = steady
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    assert!(
        slowest * 2.0 >= fastest,
        "the rate was not flat: {rates:?} jobs/s per tenth"
    );
    let (first, last) = (memory[0], memory[memory.len() - 1]);
    assert!(
        last <= first + 64,
        "the worker's memory grew with the run: {mems:?} MiB per tenth"
    );
    cluster.stop_workers().await;
}
