//! The MQTT ingest bridge: devices publish batches of readings (QoS 1) to
//! `{prefix}/devices/{device id}/readings`; the bridge turns each message into an `ingest` job
//! with the checks of `POST /api/sensors/data`, and acknowledges it to the broker only once the
//! job is pushed (or the message is rejected). Several bridges share the work through an MQTT 5
//! shared subscription.
//!
//! - **At least once.** The bridge asks for a persistent session with manual acknowledgements:
//!   a message it has not acknowledged is redelivered after a reconnect or a broker restart,
//!   and its idempotency key (the device's `message-id` property, else a hash of the payload)
//!   makes no second job.
//! - **Redis or the database down.** The batch in hand is tried again with backoff and nothing
//!   is acknowledged meanwhile; the broker holds the rest (at most `receive_maximum` unacked).
//! - **Bad messages** are acknowledged (they would only come back), counted, and described on
//!   `{prefix}/devices/{id}/rejections` (or `{prefix}/rejections` when the topic names no
//!   device); they never hold up the next message.
//! - **Device authentication** is the broker's: each device logs in with credentials of its
//!   own and an ACL lets it publish only under its own id (`pattern write
//!   steadfast/devices/%u/readings`); the bridge trusts the topic's id and checks that the
//!   device owns the sensors it writes.

pub mod message;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use queue::{Engine, NewJob};
use rumqttc::v5::{
    AsyncClient, Event, EventLoop, MqttOptions,
    mqttbytes::{
        QoS,
        v5::{Packet, Publish},
    },
};
use sea_orm::DatabaseConnection;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use message::{MESSAGE_ID_PROPERTY, Rejection, Verdict, judge};

/// How the bridge reaches the broker and what it subscribes to.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Unique per bridge instance: the broker keeps each one's session under it.
    pub client_id: String,
    /// Topics start with it: `{prefix}/devices/{id}/readings`.
    pub topic_prefix: String,
    /// The shared-subscription group the bridges of a deployment join (`$share/{group}/...`);
    /// empty: a plain subscription (every bridge would get every message).
    pub share_group: String,
    /// Most messages judged and pushed together (one push round trip).
    pub batch_max: usize,
    /// Most unacknowledged messages the broker sends this bridge (MQTT 5 receive maximum).
    pub receive_maximum: u16,
    /// How long the broker keeps the session (and queues messages) while the bridge is away.
    pub session_expiry: Duration,
    /// Reconnect backoff bounds, and the backoff while Redis or the database is down.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl MqttConfig {
    /// From `mqtt://[user[:password]@]host[:port]` (port 1883 by default).
    pub fn from_url(url: &str, client_id: impl Into<String>) -> Result<Self, MqttConfigError> {
        let rest = url
            .strip_prefix("mqtt://")
            .ok_or_else(|| MqttConfigError(format!("{url:?}: the URL must start with mqtt://")))?;
        let (credentials, address) = match rest.rsplit_once('@') {
            Some((c, a)) => (Some(c), a),
            None => (None, rest),
        };
        let address = address.trim_end_matches('/');
        let (host, port) = match address.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse()
                    .map_err(|_| MqttConfigError(format!("{p:?} is not a port")))?,
            ),
            None => (address, 1883),
        };
        if host.is_empty() {
            return Err(MqttConfigError("the URL names no host".into()));
        }
        let (username, password) = match credentials.map(|c| c.split_once(':')) {
            Some(Some((u, p))) => (Some(u.to_owned()), Some(p.to_owned())),
            Some(None) => (credentials.map(str::to_owned), None),
            None => (None, None),
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            username,
            password,
            client_id: client_id.into(),
            topic_prefix: "steadfast".into(),
            share_group: "steadfast-bridge".into(),
            batch_max: 256,
            receive_maximum: 1024,
            session_expiry: Duration::from_secs(3600),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
        })
    }

    /// What the bridge subscribes to.
    pub fn subscription(&self) -> String {
        let topic = format!("{}/devices/+/readings", self.topic_prefix);
        if self.share_group.is_empty() {
            topic
        } else {
            format!("$share/{}/{topic}", self.share_group)
        }
    }

    fn rejection_topic(&self, device: Option<i64>) -> String {
        match device {
            Some(id) => format!("{}/devices/{id}/rejections", self.topic_prefix),
            None => format!("{}/rejections", self.topic_prefix),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("MQTT_URL: {0}")]
pub struct MqttConfigError(String);

/// What the bridge has done since it started; also exported as metrics
/// (`steadfast_mqtt_messages_total{outcome}`, `steadfast_mqtt_rejected_total{reason}`).
#[derive(Debug, Default)]
pub struct BridgeStats {
    /// Messages that became a new job.
    pub accepted: AtomicU64,
    /// Messages whose job existed already (a redelivery, a resend).
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    /// Messages acknowledged to the broker.
    pub acknowledged: AtomicU64,
    /// Connections made (the first one and every reconnect).
    pub connections: AtomicU64,
    /// Batches tried again because Redis or the database did not answer.
    pub retries: AtomicU64,
}

impl BridgeStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Runs a bridge until `shutdown`; the batch in hand is finished (or left unacknowledged for
/// redelivery) first.
pub async fn run_bridge(
    config: MqttConfig,
    engine: Engine,
    db: DatabaseConnection,
    stats: Arc<BridgeStats>,
    shutdown: CancellationToken,
) {
    let mut options = MqttOptions::new(&config.client_id, &config.host, config.port);
    options
        .set_keep_alive(Duration::from_secs(10))
        .set_clean_start(false)
        .set_session_expiry_interval(Some(config.session_expiry.as_secs() as u32))
        .set_receive_maximum(Some(config.receive_maximum))
        .set_max_packet_size(Some(1024 * 1024))
        .set_manual_acks(true);
    if let Some(user) = &config.username {
        options.set_credentials(user, config.password.clone().unwrap_or_default());
    }
    let (client, eventloop) = AsyncClient::new(options, usize::from(config.receive_maximum) + 64);
    // The broker's flow control bounds what waits here: at most `receive_maximum` messages.
    let (messages, inbox) = mpsc::unbounded_channel();
    let connection = tokio::spawn(keep_connected(
        config.clone(),
        client.clone(),
        eventloop,
        messages,
        stats.clone(),
        shutdown.clone(),
    ));
    let bridge = Bridge {
        config,
        client: client.clone(),
        engine,
        db,
        stats,
    };
    bridge.process(inbox, &shutdown).await;
    let _ = client.disconnect().await;
    let _ = connection.await;
}

/// Polls the event loop: (re)connects with backoff and jitter, subscribes on every connection
/// (a new session has none), and hands each message to the bridge.
async fn keep_connected(
    config: MqttConfig,
    client: AsyncClient,
    mut eventloop: EventLoop,
    messages: mpsc::UnboundedSender<Publish>,
    stats: Arc<BridgeStats>,
    shutdown: CancellationToken,
) {
    let mut backoff = config.retry_min;
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = config.retry_min;
                stats.connections.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("steadfast_mqtt_connections_total").increment(1);
                tracing::info!(
                    host = %config.host,
                    port = config.port,
                    session_present = ack.session_present,
                    "connected to the MQTT broker"
                );
                if let Err(e) = client.try_subscribe(config.subscription(), QoS::AtLeastOnce) {
                    tracing::error!(error = %e, "could not subscribe");
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                if messages.send(publish).is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let refused = ack.return_codes.iter().any(|code| {
                    !matches!(
                        code,
                        rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)
                    )
                });
                if refused {
                    tracing::error!(codes = ?ack.return_codes, topic = %config.subscription(), "the broker refused the subscription");
                }
            }
            Ok(_) => {}
            Err(e) => {
                metrics::counter!("steadfast_mqtt_connection_errors_total").increment(1);
                tracing::warn!(error = %e, retry_in = ?backoff, "MQTT connection lost or refused");
                let jitter = backoff.mul_f64(rand::random::<f64>() * 0.5);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff + jitter) => {}
                }
                backoff = (backoff * 2).min(config.retry_max);
            }
        }
    }
}

struct Bridge {
    config: MqttConfig,
    client: AsyncClient,
    engine: Engine,
    db: DatabaseConnection,
    stats: Arc<BridgeStats>,
}

impl Bridge {
    async fn process(
        &self,
        mut inbox: mpsc::UnboundedReceiver<Publish>,
        shutdown: &CancellationToken,
    ) {
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return,
                message = inbox.recv() => match message {
                    Some(m) => m,
                    None => return,
                },
            };
            let mut batch = vec![first];
            while batch.len() < self.config.batch_max {
                match inbox.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            if !self.settle(&batch, shutdown).await {
                return;
            }
        }
    }

    /// Judges and pushes a batch, again and again while Redis or the database does not answer,
    /// then acknowledges every message of it in the order received. False: shut down before
    /// the batch was settled (it stays unacknowledged, and comes back).
    async fn settle(&self, batch: &[Publish], shutdown: &CancellationToken) -> bool {
        let mut backoff = self.config.retry_min;
        loop {
            match self.try_settle(batch).await {
                Ok(()) => break,
                Err(e) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("steadfast_mqtt_retries_total").increment(1);
                    tracing::warn!(error = %e, messages = batch.len(), retry_in = ?backoff, "could not queue MQTT messages; holding their acknowledgements");
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.config.retry_max);
                }
            }
        }
        for publish in batch {
            // An ack that cannot be sent (the connection dropped) is not lost work: the broker
            // redelivers the message and its key finds the job.
            if self.client.ack(publish).await.is_ok() {
                self.stats.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
        }
        true
    }

    async fn try_settle(&self, batch: &[Publish]) -> Result<(), SettleError> {
        let prefix = &self.config.topic_prefix;
        let mut jobs: Vec<NewJob> = Vec::new();
        let mut rejections: Vec<Rejection> = Vec::new();
        for publish in batch {
            let topic = String::from_utf8_lossy(&publish.topic);
            let message_id = publish.properties.as_ref().and_then(|p| {
                p.user_properties
                    .iter()
                    .find(|(name, _)| name == MESSAGE_ID_PROPERTY)
                    .map(|(_, value)| value.as_str())
            });
            match judge(&self.db, prefix, &topic, &publish.payload, message_id).await? {
                Verdict::Push { job, .. } => jobs.push(job),
                Verdict::Reject(rejection) => rejections.push(rejection),
            }
        }
        let pushed = if jobs.is_empty() {
            Vec::new()
        } else {
            match self.engine.push_many(jobs).await {
                Ok(pushed) => pushed,
                Err(e) if e.is_retryable() => return Err(SettleError::Queue(e)),
                Err(e) => return Err(SettleError::Refused(e)),
            }
        };
        let duplicates = pushed.iter().filter(|p| p.duplicate).count() as u64;
        let accepted = pushed.len() as u64 - duplicates;
        self.stats.accepted.fetch_add(accepted, Ordering::Relaxed);
        self.stats
            .duplicates
            .fetch_add(duplicates, Ordering::Relaxed);
        metrics::counter!("steadfast_mqtt_messages_total", "outcome" => "accepted")
            .increment(accepted);
        metrics::counter!("steadfast_mqtt_messages_total", "outcome" => "duplicate")
            .increment(duplicates);
        for rejection in rejections {
            self.reject(rejection);
        }
        Ok(())
    }

    fn reject(&self, rejection: Rejection) {
        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("steadfast_mqtt_messages_total", "outcome" => "rejected").increment(1);
        metrics::counter!("steadfast_mqtt_rejected_total", "reason" => rejection.reason)
            .increment(1);
        tracing::info!(device = ?rejection.device, reason = rejection.reason, message = %rejection.message, "MQTT message rejected");
        let topic = self.config.rejection_topic(rejection.device);
        match serde_json::to_vec(&rejection) {
            // Not waited for: a rejection notice is best effort and must not hold up the batch.
            Ok(body) => {
                if let Err(e) = self
                    .client
                    .try_publish(topic, QoS::AtLeastOnce, false, body)
                {
                    tracing::warn!(error = %e, "could not publish a rejection notice");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not encode a rejection notice"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum SettleError {
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("queue: {0}")]
    Queue(queue::QueueError),
    #[error("queue refused the batch: {0}")]
    Refused(queue::QueueError),
}

#[cfg(test)]
mod tests {
    use super::MqttConfig;

    #[test]
    fn the_url_gives_host_port_and_credentials() {
        let c = MqttConfig::from_url("mqtt://bridge:s3cret@broker:1884", "b1").expect("url");
        assert_eq!((c.host.as_str(), c.port), ("broker", 1884));
        assert_eq!(c.username.as_deref(), Some("bridge"));
        assert_eq!(c.password.as_deref(), Some("s3cret"));
        let c = MqttConfig::from_url("mqtt://127.0.0.1", "b1").expect("url");
        assert_eq!(
            (c.host.as_str(), c.port, c.username.as_deref()),
            ("127.0.0.1", 1883, None)
        );
        assert_eq!(
            c.subscription(),
            "$share/steadfast-bridge/steadfast/devices/+/readings"
        );
        assert!(MqttConfig::from_url("http://x", "b1").is_err());
        assert!(MqttConfig::from_url("mqtt://x:port", "b1").is_err());
        assert!(MqttConfig::from_url("mqtt://", "b1").is_err());
    }
}
