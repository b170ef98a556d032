//! Messages per second through the MQTT ingest bridge, from a device's publish to a stored
//! reading.
//!
//! A Mosquitto of the bench's own (passwords, ACL, persistence, as in production); `BENCH_DEVICES`
//! devices, each owning one sensor, publish `BENCH_MESSAGES` messages in all at QoS 1
//! (`BENCH_READINGS` readings each: one, as a device reporting one value does, by default); one
//! bridge turns them into `ingest`
//! jobs while the worker pools store the readings. Printed: how fast the broker took them, how
//! fast the bridge queued them (each pushed before it is acknowledged), how fast they were
//! stored, and the CPU each process used.
//!
//! `cargo bench -p steadfast-workers --bench mqtt` (needs Redis, Mosquitto and, for the default
//! `BENCH_SQL=postgres`, `TEST_POSTGRES_URL`). Sizes: `BENCH_MESSAGES` (20000), `BENCH_DEVICES`
//! (10), `BENCH_READINGS` (readings per message, 1), `BENCH_CONCURRENCY` (16), `BENCH_BATCH`
//! (the bridge's batch, 256).

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use entities::readings;
use rumqttc::v5::{
    AsyncClient, Event, MqttOptions,
    mqttbytes::{QoS, v5::Packet},
};
use runtime::mqtt::{BridgeStats, MqttConfig, run_bridge};
use sea_orm::{EntityTrait, PaginatorTrait};
use testkit::{
    Sql, TestApp, cpu_seconds, fixtures,
    mosquitto::{OwnMosquitto, device_password},
};
use tokio_util::sync::CancellationToken;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const PROCESSES: [&str; 4] = ["self", "mosquitto", "redis-server", "postgres"];

fn cpu_snapshot() -> Vec<f64> {
    PROCESSES.iter().map(|p| cpu_seconds(p)).collect()
}

/// Publishes `count` messages of `readings` readings each for `sensor` at QoS 1; answers once
/// the broker has acknowledged them all.
async fn publish_all(
    broker_port: u16,
    device: i64,
    sensor: String,
    count: usize,
    readings: usize,
    prefix: String,
) {
    let mut options = MqttOptions::new(format!("bench-device-{device}"), "127.0.0.1", broker_port);
    options
        .set_credentials(device.to_string(), device_password(device))
        .set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    let topic = format!("{prefix}/devices/{device}/readings");
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z").expect("time");
    let publisher = tokio::spawn(async move {
        for message in 0..count {
            let batch: Vec<_> = (0..readings)
                .map(|r| {
                    let seq = message * readings + r;
                    serde_json::json!({
                        "sensor": sensor,
                        "ts": (t0 + chrono::Duration::milliseconds(seq as i64)).to_rfc3339(),
                        "value": 20.0 + (seq % 10) as f64,
                        "seq": seq,
                    })
                })
                .collect();
            let body = serde_json::json!({ "readings": batch });
            client
                .publish(&topic, QoS::AtLeastOnce, false, body.to_string())
                .await
                .expect("publish");
        }
    });
    let mut acked = 0;
    while acked < count {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
            Ok(_) => {}
            Err(e) => panic!("device {device}: {e}"),
        }
    }
    publisher.await.expect("publisher");
}

#[tokio::main]
async fn main() {
    let messages = env_or("BENCH_MESSAGES", 20_000) as usize;
    let devices = env_or("BENCH_DEVICES", 10) as usize;
    let concurrency = env_or("BENCH_CONCURRENCY", 16) as usize;
    let readings = env_or("BENCH_READINGS", 1).max(1) as usize;
    let sql = match std::env::var("BENCH_SQL").as_deref() {
        Ok("sqlite") => Sql::Sqlite,
        _ => Sql::Postgres,
    };
    let app = TestApp::new(sql, "bench-mqtt").await;
    let prefix = format!("bench-{}", app.redis.prefix);
    let mut ids = Vec::new();
    for d in 0..devices {
        let device = fixtures::device(app.db(), &format!("bench-{d}")).await;
        fixtures::sensor_of(app.db(), &format!("bench-s{d}"), device.id).await;
        ids.push(device.id);
    }
    let broker = OwnMosquitto::start("bench", &prefix, &ids);
    let mut config = MqttConfig::from_url(&broker.bridge_url(), "bench-bridge").expect("url");
    config.topic_prefix = prefix.clone();
    config.batch_max = env_or("BENCH_BATCH", 256) as usize;
    let stats = Arc::new(BridgeStats::default());
    let stop = CancellationToken::new();
    let bridge = tokio::spawn(run_bridge(
        config,
        app.engine.clone(),
        app.db().clone(),
        stats.clone(),
        stop.clone(),
    ));
    let pools = app.start_pools(|c| c.concurrency = concurrency);
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "mqtt bench: {messages} messages of {readings} reading(s) from {devices} devices, QoS 1, bridge batch {}, pools concurrency {concurrency}, {sql:?}",
        env_or("BENCH_BATCH", 256)
    );

    let cpu0 = cpu_snapshot();
    let started = Instant::now();
    let per_device = messages / devices;
    let publishers: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(d, id)| {
            tokio::spawn(publish_all(
                broker.port,
                *id,
                format!("bench-s{d}"),
                per_device,
                readings,
                prefix.clone(),
            ))
        })
        .collect();
    for p in publishers {
        p.await.expect("device");
    }
    let published_in = started.elapsed();
    let total = (per_device * devices) as u64;
    while stats.accepted.load(Ordering::Relaxed) + stats.duplicates.load(Ordering::Relaxed) < total
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let queued_in = started.elapsed();
    loop {
        let stored = readings::Entity::find()
            .count(app.db())
            .await
            .expect("count");
        if stored >= total * readings as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored_in = started.elapsed();
    let cpu1 = cpu_snapshot();
    let rate = |d: Duration| total as f64 / d.as_secs_f64();
    println!(
        "published (broker PUBACK to devices): {:>8.0} msg/s ({:?})",
        rate(published_in),
        published_in
    );
    println!(
        "queued (bridge pushed and acked):     {:>8.0} msg/s ({:?})",
        rate(queued_in),
        queued_in
    );
    println!(
        "stored (readings committed):          {:>8.0} msg/s, {:.0} readings/s ({:?})",
        rate(stored_in),
        rate(stored_in) * readings as f64,
        stored_in
    );
    for (i, name) in PROCESSES.iter().enumerate() {
        let used = cpu1[i] - cpu0[i];
        println!(
            "cpu {:<13} {:>6.1} s  {:>6.0} µs/msg  {:>4.0} % of a core",
            if *name == "self" {
                "bench+bridge+pools"
            } else {
                name
            },
            used,
            used * 1e6 / total as f64,
            used * 100.0 / stored_in.as_secs_f64()
        );
    }
    println!(
        "bridge: {} accepted, {} duplicates, {} rejected, {} retries",
        stats.accepted.load(Ordering::Relaxed),
        stats.duplicates.load(Ordering::Relaxed),
        stats.rejected.load(Ordering::Relaxed),
        stats.retries.load(Ordering::Relaxed)
    );
    stop.cancel();
    let _ = bridge.await;
    pools.stop().await;
}
