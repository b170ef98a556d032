//! The MQTT ingest bridge against a Mosquitto of the test's own (devices with passwords of
//! their own and an ACL), the real Redis and SQLite: messages become `ingest` jobs with the
//! checks of the HTTP path, bad ones are rejected visibly without holding up the next, a
//! redelivery makes no second job, and neither a broker restart nor Redis down loses a
//! message the broker acknowledged to its device.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use entities::readings;
use rumqttc::v5::{
    AsyncClient, Event, MqttOptions,
    mqttbytes::{
        QoS,
        v5::{Packet, PubAck, PubAckReason, PublishProperties},
    },
};
use runtime::mqtt::{BridgeStats, MqttConfig, run_bridge};
use sea_orm::{EntityTrait, PaginatorTrait};
use testkit::{
    OwnRedis, fixtures,
    mosquitto::{OwnMosquitto, device_password},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use workflows::jobs::ingest::Ingest;

use super::common::{Sql, TestApp, eventually, http_get, readings as batch};

/// A device's connection: what the broker acknowledged, and the rejections it was sent.
struct Device {
    id: i64,
    client: AsyncClient,
    acks: mpsc::UnboundedReceiver<PubAck>,
    rejections: mpsc::UnboundedReceiver<serde_json::Value>,
    prefix: String,
}

impl Device {
    async fn connect(broker: &OwnMosquitto, prefix: &str, id: i64) -> Self {
        let mut options = MqttOptions::new(format!("device-{id}"), "127.0.0.1", broker.port);
        options
            .set_credentials(id.to_string(), device_password(id))
            .set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        let (ack_tx, acks) = mpsc::unbounded_channel();
        let (rejection_tx, rejections) = mpsc::unbounded_channel();
        let rejection_topic = format!("{prefix}/devices/{id}/rejections");
        let subscriber = client.clone();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = subscriber.try_subscribe(&rejection_topic, QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if ack_tx.send(ack).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let body = serde_json::from_slice(&p.payload).unwrap_or_default();
                        let _ = rejection_tx.send(body);
                    }
                    Ok(_) => {}
                    // The broker restarting: connect again.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        let device = Self {
            id,
            client,
            acks,
            rejections,
            prefix: prefix.to_owned(),
        };
        // Subscribed (the broker answers a first publish only once connected).
        tokio::time::sleep(Duration::from_millis(100)).await;
        device
    }

    fn topic(&self) -> String {
        format!("{}/devices/{}/readings", self.prefix, self.id)
    }

    /// Publishes at QoS 1 and answers the broker's acknowledgement.
    async fn publish_to(
        &mut self,
        topic: &str,
        payload: &[u8],
        message_id: Option<&str>,
    ) -> PubAck {
        let properties = PublishProperties {
            user_properties: message_id
                .map(|id| vec![("message-id".to_owned(), id.to_owned())])
                .unwrap_or_default(),
            ..Default::default()
        };
        self.client
            .publish_with_properties(topic, QoS::AtLeastOnce, false, payload.to_vec(), properties)
            .await
            .expect("publish queued");
        tokio::time::timeout(Duration::from_secs(10), self.acks.recv())
            .await
            .expect("the broker acknowledged in time")
            .expect("connection task")
    }

    async fn publish(&mut self, payload: &[u8], message_id: Option<&str>) -> PubAck {
        let topic = self.topic();
        self.publish_to(&topic, payload, message_id).await
    }
}

/// A bridge of the test's own, stopped when dropped.
struct Bridge {
    stats: Arc<BridgeStats>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Bridge {
    /// Started and subscribed (a message published before would find no subscriber).
    async fn start(app: &TestApp, broker: &OwnMosquitto, prefix: &str, client_id: &str) -> Self {
        Self::start_with(app, broker, prefix, client_id, |_| {}).await
    }

    async fn start_with(
        app: &TestApp,
        broker: &OwnMosquitto,
        prefix: &str,
        client_id: &str,
        tweak: impl FnOnce(&mut MqttConfig),
    ) -> Self {
        let mut config = MqttConfig::from_url(&broker.bridge_url(), client_id).expect("url");
        config.topic_prefix = prefix.to_owned();
        config.share_group = format!("{prefix}-bridges");
        config.retry_min = Duration::from_millis(20);
        config.retry_max = Duration::from_millis(200);
        tweak(&mut config);
        let stats = Arc::new(BridgeStats::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(run_bridge(
            config,
            app.engine.clone(),
            app.db().clone(),
            stats.clone(),
            stop.clone(),
        ));
        let bridge = Self {
            stats,
            stop,
            task: Some(task),
        };
        eventually(Duration::from_secs(10), "the bridge subscribed", || async {
            reached(bridge.count(|s| &s.subscribed), 1)
        })
        .await;
        bridge
    }

    fn count(&self, pick: fn(&BridgeStats) -> &std::sync::atomic::AtomicU64) -> u64 {
        pick(&self.stats).load(Ordering::Relaxed)
    }

    /// A clean stop, waited for.
    async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("bridge task");
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// For `eventually`: done once `seen` is `wanted`.
fn reached(seen: u64, wanted: u64) -> Result<(), String> {
    if seen == wanted {
        Ok(())
    } else {
        Err(format!("{seen} of {wanted}"))
    }
}

fn payload(sensor: &str, seq: i64) -> Vec<u8> {
    batch(sensor, seq..seq + 1, |s| s as f64)
        .to_string()
        .into_bytes()
}

async fn ingest_jobs(app: &TestApp) -> usize {
    app.enqueued::<Ingest>().await.len()
}

#[tokio::test]
async fn messages_become_ingest_jobs_and_bad_ones_are_rejected_visibly() {
    let app = TestApp::new(Sql::Sqlite, "mqtt-judge").await;
    let prefix = format!("sf-{}", app.redis.prefix);
    let mine = fixtures::device(app.db(), "mine").await;
    let other = fixtures::device(app.db(), "other").await;
    fixtures::sensor_of(app.db(), "boiler", mine.id).await;
    fixtures::sensor_of(app.db(), "pump", other.id).await;
    fixtures::sensor(app.db(), "unowned").await;
    let broker = OwnMosquitto::start("judge", &prefix, &[mine.id, other.id]);
    let bridge = Bridge::start(&app, &broker, &prefix, "bridge-judge").await;
    let mut device = Device::connect(&broker, &prefix, mine.id).await;

    // Good, the same again under its message id, and a message without one sent twice.
    let good = payload("boiler", 1);
    for _ in 0..2 {
        assert_eq!(
            device.publish(&good, Some("m-1")).await.reason,
            PubAckReason::Success
        );
    }
    let keyless = payload("boiler", 2);
    device.publish(&keyless, None).await;
    device.publish(&keyless, None).await;
    // Bad, each kind once, between good ones: none holds up the next.
    device.publish(b"{not json", None).await;
    device.publish(br#"{"readings": "many"}"#, None).await;
    device.publish(&payload("no-such-sensor", 3), None).await;
    device.publish(&payload("pump", 4), None).await;
    device.publish(&payload("unowned", 5), None).await;
    device.publish(&payload("boiler", 6), Some("m-6")).await;
    // Another device's topic: the broker's ACL stops it before the bridge sees it.
    let foreign = format!("{prefix}/devices/{}/readings", other.id);
    let denied = device.publish_to(&foreign, &payload("pump", 7), None).await;
    assert_eq!(denied.reason, PubAckReason::NotAuthorized);

    eventually(Duration::from_secs(10), "every message settled", || async {
        reached(bridge.count(|s| &s.acknowledged) as u64, 10)
    })
    .await;
    assert_eq!(bridge.count(|s| &s.accepted), 3, "boiler 1, 2 and 6");
    assert_eq!(bridge.count(|s| &s.duplicates), 2, "the resends");
    assert_eq!(bridge.count(|s| &s.rejected), 5);
    assert_eq!(ingest_jobs(&app).await, 3);

    let mut reasons = Vec::new();
    while reasons.len() < 5 {
        let rejection = tokio::time::timeout(Duration::from_secs(5), device.rejections.recv())
            .await
            .expect("a rejection notice")
            .expect("connection task");
        assert_eq!(rejection["device"], mine.id, "{rejection}");
        reasons.push(rejection["reason"].as_str().unwrap_or_default().to_owned());
        if rejection["reason"] == "invalid" {
            assert_eq!(rejection["field"], "readings", "{rejection}");
        }
    }
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "foreign_sensor",
            "foreign_sensor",
            "invalid",
            "not_json",
            "unknown_sensor"
        ]
    );

    // The jobs are the HTTP path's: drained, each message is one stored reading.
    app.drain().await;
    let stored = readings::Entity::find()
        .count(app.db())
        .await
        .expect("count");
    assert_eq!(stored, 3);
}

/// Redis stops: the bridge holds its acknowledgements (the broker keeps the messages). The
/// broker restarts meanwhile: the bridge reconnects and gets them again. Redis back: every
/// message the broker acknowledged to the device is one job, none twice.
#[tokio::test]
async fn neither_redis_down_nor_a_broker_restart_loses_an_acknowledged_message() {
    let redis_port = testkit::free_port();
    let mut redis = OwnRedis::start(
        std::env::temp_dir().join(format!("steadfast-mqtt-redis-{}", std::process::id())),
        redis_port,
    );
    let app = TestApp::at(Sql::Sqlite, "mqtt-outage", &redis.url()).await;
    let prefix = format!("sf-{}", app.redis.prefix);
    let device_row = fixtures::device(app.db(), "d").await;
    fixtures::sensor_of(app.db(), "tank", device_row.id).await;
    let mut broker = OwnMosquitto::start("outage", &prefix, &[device_row.id]);
    let bridge = Bridge::start(&app, &broker, &prefix, "bridge-outage").await;
    let mut device = Device::connect(&broker, &prefix, device_row.id).await;

    for seq in 0..20 {
        device.publish(&payload("tank", seq), None).await;
    }
    eventually(Duration::from_secs(10), "the first 20 queued", || async {
        reached(bridge.count(|s| &s.accepted) as u64, 20)
    })
    .await;

    redis.kill();
    for seq in 20..50 {
        let ack = device.publish(&payload("tank", seq), None).await;
        assert_eq!(ack.reason, PubAckReason::Success, "the broker has it");
    }
    eventually(Duration::from_secs(10), "the bridge retries", || async {
        reached(bridge.count(|s| &s.retries).min(1), 1)
    })
    .await;
    assert_eq!(
        bridge.count(|s| &s.acknowledged),
        20,
        "nothing acknowledged while Redis is down"
    );

    broker.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    broker.spawn();
    redis.spawn();

    eventually(Duration::from_secs(20), "all 50 queued", || async {
        let jobs = ingest_jobs(&app).await;
        reached(jobs as u64, 50)
    })
    .await;
    assert!(bridge.count(|s| &s.connections) >= 2, "it reconnected");
    // Settled, and nothing more arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ingest_jobs(&app).await, 50);
    println!(
        "accepted {}, duplicates {}, retries {}, connections {}",
        bridge.count(|s| &s.accepted),
        bridge.count(|s| &s.duplicates),
        bridge.count(|s| &s.retries),
        bridge.count(|s| &s.connections)
    );
}

/// Two bridges in one shared subscription split the messages: each is queued once.
#[tokio::test]
async fn two_bridges_share_the_messages_and_queue_each_once() {
    let app = TestApp::new(Sql::Sqlite, "mqtt-shared").await;
    let prefix = format!("sf-{}", app.redis.prefix);
    let device_row = fixtures::device(app.db(), "d").await;
    fixtures::sensor_of(app.db(), "fan", device_row.id).await;
    let broker = OwnMosquitto::start("shared", &prefix, &[device_row.id]);
    let first = Bridge::start(&app, &broker, &prefix, "bridge-a").await;
    let second = Bridge::start(&app, &broker, &prefix, "bridge-b").await;
    let mut device = Device::connect(&broker, &prefix, device_row.id).await;
    for seq in 0..100 {
        device.publish(&payload("fan", seq), None).await;
    }
    eventually(Duration::from_secs(10), "all 100 settled", || async {
        reached(
            first.count(|s| &s.acknowledged) + second.count(|s| &s.acknowledged) as u64,
            100,
        )
    })
    .await;
    assert_eq!(ingest_jobs(&app).await, 100);
    assert!(
        first.count(|s| &s.accepted) > 0 && second.count(|s| &s.accepted) > 0,
        "both bridges took a share: {} and {}",
        first.count(|s| &s.accepted),
        second.count(|s| &s.accepted)
    );
}

/// A message the bridge holds is not lost when the bridge itself stops: unacknowledged, it
/// waits in the bridge's session and arrives when a bridge of that id connects again.
#[tokio::test]
async fn a_message_published_while_the_bridge_is_away_arrives_when_it_returns() {
    let app = TestApp::new(Sql::Sqlite, "mqtt-away").await;
    let prefix = format!("sf-{}", app.redis.prefix);
    let device_row = fixtures::device(app.db(), "d").await;
    fixtures::sensor_of(app.db(), "valve", device_row.id).await;
    let broker = OwnMosquitto::start("away", &prefix, &[device_row.id]);
    let bridge = Bridge::start(&app, &broker, &prefix, "bridge-away").await;
    let mut device = Device::connect(&broker, &prefix, device_row.id).await;
    device.publish(&payload("valve", 0), None).await;
    eventually(Duration::from_secs(10), "the first queued", || async {
        reached(bridge.count(|s| &s.accepted) as u64, 1)
    })
    .await;
    bridge.stop().await;
    for seq in 1..6 {
        device.publish(&payload("valve", seq), None).await;
    }
    let again = Bridge::start(&app, &broker, &prefix, "bridge-away").await;
    eventually(Duration::from_secs(10), "the five queued", || async {
        reached(again.count(|s| &s.accepted) as u64, 5)
    })
    .await;
    assert_eq!(ingest_jobs(&app).await, 6);
}

/// A bridge that leaves on stop (`MQTT_LEAVE_ON_STOP`, for one scaled in for good) takes
/// itself out of the shared subscription first: the broker queues nothing more in its
/// session, and the bridges that stay get every message.
#[tokio::test]
async fn a_bridge_that_leaves_on_stop_leaves_every_message_to_the_others() {
    let app = TestApp::new(Sql::Sqlite, "mqtt-leave").await;
    let prefix = format!("sf-{}", app.redis.prefix);
    let device_row = fixtures::device(app.db(), "d").await;
    fixtures::sensor_of(app.db(), "pump", device_row.id).await;
    let broker = OwnMosquitto::start("leave", &prefix, &[device_row.id]);
    let leaving = Bridge::start_with(&app, &broker, &prefix, "bridge-leaving", |c| {
        c.leave_on_stop = true
    })
    .await;
    let staying = Bridge::start(&app, &broker, &prefix, "bridge-staying").await;
    leaving.stop().await;
    let mut device = Device::connect(&broker, &prefix, device_row.id).await;
    for seq in 0..20 {
        device.publish(&payload("pump", seq), None).await;
    }
    eventually(
        Duration::from_secs(10),
        "all 20 with the bridge that stayed",
        || async { reached(staying.count(|s| &s.accepted), 20) },
    )
    .await;
    assert_eq!(ingest_jobs(&app).await, 20);
}

/// The `workers` binary with `MQTT_URL` runs the bridge beside its pools: a device's message
/// becomes a stored reading, and the bridge's counters show on /metrics.
#[tokio::test]
async fn the_workers_binary_runs_the_bridge_when_given_a_broker() {
    let app = TestApp::new(Sql::Sqlite, "mqtt-binary").await;
    let prefix = format!("sf-{}", app.redis.prefix);
    let device_row = fixtures::device(app.db(), "d").await;
    fixtures::sensor_of(app.db(), "meter", device_row.id).await;
    let broker = OwnMosquitto::start("binary", &prefix, &[device_row.id]);
    let metrics_port = testkit::free_port();
    let _workers = spawn_workers(&app, &broker, &prefix, "ingest,evaluate", metrics_port);
    let mut device = Device::connect(&broker, &prefix, device_row.id).await;
    // Until the bridge has subscribed, the broker has nobody to give the message to: send it
    // again (under one message id, so it makes one job) until its reading is stored.
    let message = payload("meter", 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        device.publish(&message, Some("m-1")).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stored = readings::Entity::find()
            .count(app.db())
            .await
            .expect("count");
        if stored == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reading was not stored within 30 s"
        );
    }
    let metrics = http_get(metrics_port, "/metrics").await;
    assert!(
        metrics.contains("steadfast_mqtt_messages_total{outcome=\"accepted\"} 1"),
        "{metrics}"
    );
}

/// The `workers` binary with the bridge, running the pools of `queues`, killed when dropped.
fn spawn_workers(
    app: &TestApp,
    broker: &OwnMosquitto,
    prefix: &str,
    queues: &str,
    metrics_port: u16,
) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_workers"))
        .args(["--redis-url", &app.redis.url])
        .args(["--prefix", &app.redis.prefix])
        .args(["--database-url", app.db.url()])
        .args(["--queues", queues])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .args(["--mqtt-url", &broker.bridge_url()])
        .args(["--mqtt-topic-prefix", prefix])
        .args(["--mqtt-client-id", "binary-bridge"])
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the workers binary")
}

/// A `workers` process SIGKILLed while Redis is down and it holds 10 messages the broker had
/// acknowledged to their device: started again under its client id, with Redis back, it
/// queues every one of them, once (the broker redelivers what was never acknowledged).
#[tokio::test]
async fn a_bridge_killed_holding_messages_queues_them_all_when_started_again() {
    let mut redis = OwnRedis::start(
        std::env::temp_dir().join(format!("steadfast-redis-mqtt-kill-{}", std::process::id())),
        testkit::free_port(),
    );
    let app = TestApp::at(Sql::Sqlite, "mqtt-kill", &redis.url()).await;
    let prefix = format!("sf-{}", app.redis.prefix);
    let device_row = fixtures::device(app.db(), "d").await;
    fixtures::sensor_of(app.db(), "boiler", device_row.id).await;
    let broker = OwnMosquitto::start("kill", &prefix, &[device_row.id]);
    // Pools for another queue only: the ingest jobs stay queued, to be counted.
    let mut workers = spawn_workers(&app, &broker, &prefix, "notify", testkit::free_port());
    let mut device = Device::connect(&broker, &prefix, device_row.id).await;
    let first = payload("boiler", 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ingest_jobs(&app).await < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bridge never queued"
        );
        device.publish(&first, Some("m-0")).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    redis.kill();
    for seq in 1..=10 {
        let ack = device.publish(&payload("boiler", seq), None).await;
        assert_eq!(ack.reason, PubAckReason::Success, "the broker has it");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    workers.kill().await.expect("SIGKILL the workers");
    redis.spawn();
    let _again = spawn_workers(&app, &broker, &prefix, "notify", testkit::free_port());
    // The test's own connection finds Redis again in its own time: a failed read is a retry.
    eventually(
        Duration::from_secs(30),
        "the 10 held messages queued",
        || async {
            let stats = app
                .engine
                .stats("ingest")
                .await
                .map_err(|e| e.to_string())?;
            reached(stats.ready, 11)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ingest_jobs(&app).await, 11, "none twice");
}
