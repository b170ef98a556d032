//! Scenario 4: the webhook receiver is slow (5 s), down for a while, and answers 500 or 429 at
//! random. Every alert still reaches it under one Idempotency-Key per alert and channel; the
//! repeats a retry causes are counted.

use std::{
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use rand::{Rng, SeedableRng, rngs::StdRng};
use testkit::Reply;

use super::{
    books::settle,
    cluster::{Cluster, Options, Scale},
    load::{Client, provision},
};

/// A reproducible mix: half answered at once, the rest 500, 429 (Retry-After: 1) or 5 s late.
fn chaotic_replies(seed: u64, n: usize) -> Vec<Reply> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| match rng.random_range(0..100) {
            0..50 => Reply::Status(200),
            50..75 => Reply::Status(500),
            75..90 => Reply::TooManyRequests(1),
            _ => Reply::Stall(Duration::from_secs(5)),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_slow_down_and_failing_at_random_still_get_each_alert_once() {
    let scale = Scale::from_env();
    let ingests = scale.count("RESILIENCE_INGESTS", 500, 10_000);
    let sensors = 10;
    let mut options = Options::new("receivers");
    options.worker_flags = vec![
        "--backoff-base-ms=200".into(),
        "--backoff-cap-ms=3000".into(),
        "--breaker-cool-down-ms=1000".into(),
        // Longer than the receiver's 5 s stall: a slow answer is a success, only late.
        "--webhook-timeout-ms=8000".into(),
    ];
    let mut cluster = Cluster::start(options).await;
    provision(&cluster, sensors).await;
    cluster.receiver.script(chaotic_replies(6, ingests));

    let load = tokio::spawn(Client::of(&cluster).submit_range(
        0,
        ingests,
        50,
        Duration::ZERO,
        sensors,
        Arc::new(AtomicBool::new(false)),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.receiver_down();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.receiver_up().await;
    cluster.receiver.script(chaotic_replies(7, ingests));
    let submitted = load.await.expect("load");
    let books = settle(&mut cluster, &submitted.accepted, Duration::from_secs(180)).await;
    let received = cluster.received();
    println!(
        "scenario 4, receiver slow, down for 3 s, 500/429 at random: {books}; {} POSTs for {} alerts",
        received.len(),
        books.alerts
    );
    assert!(
        books.repeated_posts > 0,
        "no delivery was retried: did the receiver misbehave?"
    );
    books.assert_balanced();
    cluster.stop_workers().await;
}
