//! Scenario 3: PostgreSQL unreachable for a while (the suite's proxy in front of it cut) while
//! jobs keep arriving: handlers retry, nothing dies or is lost, the backlog drains after.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use super::{
    books::{PIPELINE, settle},
    cluster::{Cluster, Options, Scale},
    load::{Client, provision},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_for_a_while_loses_nothing_and_the_backlog_drains() {
    let scale = Scale::from_env();
    let outage = Duration::from_secs(scale.count("RESILIENCE_PG_OUTAGE_SECS", 15, 30) as u64);
    let sensors = 10;
    // The kinds' own retry policies (ingest from 1 s, evaluate and alert from 500 ms, doubling).
    let mut cluster = Cluster::start(Options::new("pg-cut")).await;
    provision(&cluster, sensors).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(Client::of(&cluster).submit_range(
        0,
        usize::MAX,
        10,
        Duration::from_millis(200),
        sensors,
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.pg_proxy.cut();
    let cut_at = Instant::now();
    // Jobs keep being accepted (submitting needs only Redis) and keep failing their attempts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ready = cluster
        .http
        .get(format!("{}/ready", cluster.api_urls[0]))
        .send()
        .await
        .expect("ready");
    tokio::time::sleep(outage.saturating_sub(cut_at.elapsed())).await;
    let mut retried = 0;
    let mut dead_during = 0;
    for queue in PIPELINE {
        let s = cluster.engine.stats(queue).await.expect("stats");
        retried += s.retried_total;
        dead_during += s.dead;
    }
    cluster.pg_proxy.restore().await;
    stop.store(true, Ordering::Relaxed);
    let submitted = load.await.expect("load");
    let books = settle(&mut cluster, &submitted.accepted, Duration::from_secs(300)).await;
    println!(
        "scenario 3, PostgreSQL unreachable for {outage:?}: {books}; retries {retried}, dead during the outage {dead_during}; \
         /ready during the outage {}; backlog drained {:.1?} after the database came back",
        ready.status(),
        books.drained_in,
    );
    assert_eq!(
        ready.status().as_u16(),
        503,
        "/ready must say the database is down"
    );
    assert!(
        retried > 0,
        "no handler met the outage: was the database cut?"
    );
    assert_eq!(dead_during, 0, "jobs died during the outage");
    books.assert_balanced();
    cluster.stop_workers().await;
}
