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

pub use message::{Decoded, MESSAGE_ID_PROPERTY, Rejection, Verdict, decode, judge};

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
    /// On a clean stop, leave the shared subscription (`MQTT_LEAVE_ON_STOP`): for a bridge
    /// that will not come back under its client id (scaled in, renamed), so the broker stops
    /// queueing a share of the messages in its session (Mosquitto keeps feeding an offline
    /// member's session, and drops what is in it when the session expires). Off: the session
    /// keeps its subscription and queues messages for the bridge's return, which is what a
    /// fixed set of bridges with stable client ids (or a single bridge) wants: with no member
    /// left in the group, the broker would drop the messages instead.
    pub leave_on_stop: bool,
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
            leave_on_stop: false,
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
    /// 1 while the broker has confirmed the bridge's subscription on the current connection.
    pub subscribed: AtomicU64,
}

/// What the connection hands the bridge.
#[derive(Debug)]
enum Inbound {
    /// A message, with the connection it came on: an acknowledgement is only valid on that
    /// connection (packet ids are reused on the next).
    Message {
        publish: Box<Publish>,
        connection: u64,
    },
    /// The broker confirmed the unsubscribe of a stopping bridge: nothing more will come.
    Unsubscribed,
}

/// How long a stopping bridge waits for the broker to confirm it has left the shared
/// subscription and for the messages already sent to it.
const STOP_DRAIN: Duration = Duration::from_secs(5);

/// Runs a bridge until `shutdown`. A stopping bridge settles and acknowledges the messages it
/// holds, then disconnects. With `leave_on_stop` it first leaves the shared subscription (and
/// settles what the broker sent until it confirmed): its session is then fed nothing more.
/// Without, the session stays subscribed and the broker queues a share of the messages in it
/// for the bridge's return under the same client id.
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
        .set_max_packet_size(Some(MAX_MESSAGE_BYTES))
        .set_manual_acks(true);
    if let Some(user) = &config.username {
        options.set_credentials(user, config.password.clone().unwrap_or_default());
    }
    let (client, eventloop) = AsyncClient::new(options, usize::from(config.receive_maximum) + 64);
    // The broker's flow control bounds what waits here: at most `receive_maximum` messages
    // per connection (a reconnect may add the same again, redelivered).
    let (messages, mut inbox) = mpsc::unbounded_channel();
    let stopping = CancellationToken::new();
    let disconnected = CancellationToken::new();
    let connection = Arc::new(AtomicU64::new(0));
    let poller = tokio::spawn(keep_connected(
        config.clone(),
        client.clone(),
        eventloop,
        messages,
        stats.clone(),
        connection.clone(),
        stopping.clone(),
        disconnected.clone(),
    ));
    let bridge = Bridge {
        config: config.clone(),
        client: client.clone(),
        engine,
        db,
        stats,
        connection,
    };
    bridge.process(&mut inbox, &shutdown).await;

    stopping.cancel();
    if config.leave_on_stop {
        let _ = tokio::time::timeout(STOP_DRAIN, client.unsubscribe(config.subscription())).await;
    }
    let deadline = tokio::time::Instant::now() + STOP_DRAIN;
    bridge
        .drain(&mut inbox, deadline, !config.leave_on_stop)
        .await;
    let _ = client.try_disconnect();
    // The poller sends the acknowledgements and the DISCONNECT, then ends.
    let _ = tokio::time::timeout(Duration::from_secs(2), disconnected.cancelled()).await;
    disconnected.cancel();
    let _ = poller.await;
}

/// The largest message the bridge takes (the broker should refuse larger ones itself:
/// `max_packet_size`).
pub const MAX_MESSAGE_BYTES: u32 = 1024 * 1024;

/// Polls the event loop: (re)connects with backoff and jitter, subscribes on every connection
/// (until the bridge stops), and hands each message to the bridge.
#[allow(clippy::too_many_arguments)]
async fn keep_connected(
    config: MqttConfig,
    client: AsyncClient,
    mut eventloop: EventLoop,
    messages: mpsc::UnboundedSender<Inbound>,
    stats: Arc<BridgeStats>,
    connection: Arc<AtomicU64>,
    stopping: CancellationToken,
    disconnected: CancellationToken,
) {
    let mut backoff = config.retry_min;
    loop {
        let event = tokio::select! {
            _ = disconnected.cancelled() => return,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = config.retry_min;
                connection.fetch_add(1, Ordering::SeqCst);
                stats.connections.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("steadfast_mqtt_connections_total").increment(1);
                tracing::info!(
                    host = %config.host,
                    port = config.port,
                    session_present = ack.session_present,
                    "connected to the MQTT broker"
                );
                if !stopping.is_cancelled() {
                    subscribe(&client, config.subscription(), Duration::ZERO);
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let connection = connection.load(Ordering::SeqCst);
                if messages
                    .send(Inbound::Message {
                        publish: Box::new(publish),
                        connection,
                    })
                    .is_err()
                {
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
                    stats.subscribed.store(0, Ordering::Relaxed);
                    tracing::error!(codes = ?ack.return_codes, topic = %config.subscription(), retry_in = ?config.retry_max, "the broker refused the subscription");
                    if !stopping.is_cancelled() {
                        subscribe(&client, config.subscription(), config.retry_max);
                    }
                } else {
                    stats.subscribed.store(1, Ordering::Relaxed);
                }
            }
            Ok(Event::Incoming(Packet::UnsubAck(_))) => {
                stats.subscribed.store(0, Ordering::Relaxed);
                let _ = messages.send(Inbound::Unsubscribed);
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                disconnected.cancel();
                return;
            }
            Ok(_) => {}
            Err(e) => {
                stats.subscribed.store(0, Ordering::Relaxed);
                metrics::counter!("steadfast_mqtt_connection_errors_total").increment(1);
                tracing::warn!(error = %e, retry_in = ?backoff, "MQTT connection lost or refused");
                if stopping.is_cancelled() {
                    // Nothing more to deliver or acknowledge on a connection that is gone.
                    disconnected.cancel();
                    return;
                }
                let jitter = backoff.mul_f64(rand::random::<f64>() * 0.5);
                tokio::select! {
                    _ = disconnected.cancelled() => return,
                    _ = tokio::time::sleep(backoff + jitter) => {}
                }
                backoff = (backoff * 2).min(config.retry_max);
            }
        }
    }
}

/// Subscribes from a task of its own, after `delay`: the request waits for room in the
/// client's queue, which only the event loop empties (awaited there, it could deadlock).
fn subscribe(client: &AsyncClient, topic: String, delay: Duration) {
    let client = client.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        if let Err(e) = client.subscribe(topic, QoS::AtLeastOnce).await {
            tracing::error!(error = %e, "could not subscribe");
        }
    });
}

struct Bridge {
    config: MqttConfig,
    client: AsyncClient,
    engine: Engine,
    db: DatabaseConnection,
    stats: Arc<BridgeStats>,
    /// The current connection's number.
    connection: Arc<AtomicU64>,
}

impl Bridge {
    async fn process(
        &self,
        inbox: &mut mpsc::UnboundedReceiver<Inbound>,
        shutdown: &CancellationToken,
    ) {
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return,
                inbound = inbox.recv() => match inbound {
                    Some(inbound) => inbound,
                    None => return,
                },
            };
            let batch = self.batch(first, inbox);
            if !batch.is_empty() && !self.settle(&batch, shutdown).await {
                return;
            }
        }
    }

    /// A stopping bridge settles what it was sent until the broker confirms the unsubscribe
    /// and nothing is left, or until `deadline` (a broker that does not answer).
    async fn drain(
        &self,
        inbox: &mut mpsc::UnboundedReceiver<Inbound>,
        deadline: tokio::time::Instant,
        staying: bool,
    ) {
        // Never cancelled: the deadline below cuts a batch's retries short instead.
        let no_shutdown = CancellationToken::new();
        // Staying subscribed, it settles what it holds now; leaving, also what the broker
        // sends until it confirms the unsubscribe.
        let mut unsubscribed = staying;
        loop {
            let next = if unsubscribed {
                match inbox.try_recv() {
                    Ok(inbound) => inbound,
                    Err(_) => return,
                }
            } else {
                match tokio::time::timeout_at(deadline, inbox.recv()).await {
                    Ok(Some(inbound)) => inbound,
                    Ok(None) | Err(_) => return,
                }
            };
            if matches!(next, Inbound::Unsubscribed) {
                unsubscribed = true;
                continue;
            }
            let batch = self.batch(next, inbox);
            let settling = self.settle(&batch, &no_shutdown);
            if tokio::time::timeout_at(deadline, settling).await.is_err() {
                return;
            }
        }
    }

    /// `first` and what else waits, up to a batch.
    fn batch(
        &self,
        first: Inbound,
        inbox: &mut mpsc::UnboundedReceiver<Inbound>,
    ) -> Vec<(Publish, u64)> {
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(inbound) = next {
            if let Inbound::Message {
                publish,
                connection,
            } = inbound
            {
                batch.push((*publish, connection));
            }
            next = if batch.len() < self.config.batch_max {
                inbox.try_recv().ok()
            } else {
                None
            };
        }
        batch
    }

    /// Judges and pushes a batch, again and again while Redis or the database does not answer,
    /// then acknowledges every message of it in the order received. False: shut down before
    /// the batch was settled (it stays unacknowledged, and comes back).
    async fn settle(&self, batch: &[(Publish, u64)], shutdown: &CancellationToken) -> bool {
        let publishes: Vec<&Publish> = batch.iter().map(|(p, _)| p).collect();
        let mut backoff = self.config.retry_min;
        loop {
            match self.try_settle(&publishes).await {
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
        let current = self.connection.load(Ordering::SeqCst);
        for (publish, connection) in batch {
            // A message from an earlier connection is not acknowledged: its packet id may name
            // another message now. The broker sends it again (its key finds the job), or, had
            // the session been lost, never will: it is queued all the same.
            if *connection != current {
                continue;
            }
            // An ack that cannot be sent (the connection dropped) is not lost work: the broker
            // redelivers the message and its key finds the job.
            if self.client.ack(publish).await.is_ok() {
                self.stats.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
        }
        true
    }

    async fn try_settle(&self, batch: &[&Publish]) -> Result<(), SettleError> {
        let prefix = &self.config.topic_prefix;
        // Each job with the device and topic of its message, for a rejection if it is refused.
        let mut jobs: Vec<(NewJob, i64, String)> = Vec::new();
        let mut rejections: Vec<Rejection> = Vec::new();
        let mut decoded = Vec::new();
        for &publish in batch {
            let topic = String::from_utf8_lossy(&publish.topic);
            let message_id = publish.properties.as_ref().and_then(|p| {
                p.user_properties
                    .iter()
                    .find(|(name, _)| name == MESSAGE_ID_PROPERTY)
                    .map(|(_, value)| value.as_str())
            });
            match decode(prefix, &topic, &publish.payload, message_id) {
                Ok(d) => decoded.push(d),
                Err(rejection) => rejections.push(*rejection),
            }
        }
        // A redelivery can only come while the bridge's session lives: the key need not outlive
        // it by much (a key per message costs Redis memory while it lasts).
        let key_ttl = self.config.session_expiry * 2;
        for verdict in judge(&self.db, decoded, key_ttl).await? {
            match verdict {
                Verdict::Push { job, device, topic } => jobs.push((job, device, topic)),
                Verdict::Reject(rejection) => rejections.push(rejection),
            }
        }
        let pushed = if jobs.is_empty() {
            Vec::new()
        } else {
            let all = jobs.iter().map(|(job, ..)| job.clone()).collect();
            match self.engine.push_many(all).await {
                Ok(pushed) => pushed,
                Err(e) if e.is_retryable() => return Err(SettleError::Queue(e)),
                // One job the engine refuses for good must not hold up the others: push them
                // one by one, and reject the ones refused.
                Err(e) => {
                    tracing::warn!(error = %e, "the engine refused a batch; pushing its jobs one by one");
                    let mut pushed = Vec::new();
                    for (job, device, topic) in jobs {
                        match self.engine.push(job).await {
                            Ok(outcome) => pushed.push(outcome),
                            Err(e) if e.is_retryable() => return Err(SettleError::Queue(e)),
                            Err(e) => rejections.push(Rejection {
                                device: Some(device),
                                topic,
                                reason: "refused",
                                field: None,
                                message: e.to_string(),
                                message_id: None,
                            }),
                        }
                    }
                    pushed
                }
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
