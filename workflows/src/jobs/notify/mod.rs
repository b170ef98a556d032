//! `notify`: delivers to one channel, either about an alert or a free message.
//!
//! Every notify job is one delivery, keyed by the job's id: the key is stored unique in
//! `deliveries` and sent as the webhook's `Idempotency-Key`, so a POST sent again after a crash
//! or a timeout carries the same key and the receiver applies it once. A delivery already
//! marked delivered is never sent again.
//!
//! Webhooks are signed (`X-Steadfast-Signature: sha256=<hex HMAC-SHA256 of the body>`), sent
//! with a timeout and classified: 2xx delivered; 408, 5xx, timeouts and connection failures
//! retryable; 429 with `Retry-After` a snooze (a bounded number of times, then it spends
//! attempts like a 503, so a receiver that always answers 429 cannot keep a job alive for
//! ever); any other status permanent. A circuit breaker per destination host, kept in Redis,
//! snoozes jobs while the host is failing. Destinations are checked against
//! [`DestinationPolicy`] on the address actually connected to (see `destination.rs`), and no
//! error written to a delivery or a job carries the URL (its path or query may hold a token).

mod destination;

pub use destination::{DestinationPolicy, DestinationRefused, is_public};

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use entities::{
    alerts, channels, deliveries, readings, rules, sensors,
    states::{ChannelKind, DeliveryStatus},
};
use hmac::{Hmac, KeyInit, Mac};
use queue::{BreakerGate, BreakerPolicy, Engine, RetryPolicy};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, IntoActiveModel, QueryFilter,
    Set, sea_query::OnConflict,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;

use crate::{BackgroundJob, HandlerError, JobPolicy, ValidationError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    pub channel: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl BackgroundJob for Notify {
    const KIND: &'static str = "notify";
    const PAYLOAD_VERSION: u32 = 1;

    fn policy() -> JobPolicy {
        JobPolicy {
            retry: RetryPolicy {
                max_attempts: 12,
                backoff_base: Duration::from_secs(1),
                backoff_cap: Duration::from_secs(600),
            },
            visibility_timeout: Duration::from_secs(30),
            timeout: Some(Duration::from_secs(120)),
        }
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if self.channel <= 0 {
            return Err(ValidationError::new("channel", "must be a channel id"));
        }
        match (&self.alert, &self.message) {
            (Some(alert), None) if *alert > 0 => Ok(()),
            (Some(_), None) => Err(ValidationError::new("alert", "must be an alert id")),
            (None, Some(m)) if !m.is_empty() && m.len() <= 4096 => Ok(()),
            (None, Some(_)) => Err(ValidationError::new(
                "message",
                "must be 1 to 4096 characters",
            )),
            _ => Err(ValidationError::new(
                "alert",
                "give exactly one of alert and message",
            )),
        }
    }

    /// Limits count deliveries per channel (e.g. at most N per second to one webhook).
    fn limit_key(&self) -> Option<String> {
        Some(format!("channel:{}", self.channel))
    }
}

/// The header that carries the body's signature.
pub const SIGNATURE_HEADER: &str = "X-Steadfast-Signature";
/// The header that carries the delivery's stable key.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// The longest `Retry-After` honoured; a receiver asking for more is retried after this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How webhooks are sent.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// The whole request, connection included.
    pub timeout: Duration,
    pub breaker: BreakerPolicy,
    /// Which addresses webhooks may reach (public ones, plus these networks).
    pub destinations: DestinationPolicy,
    /// POSTs of one delivery after which a 429 no longer snoozes but spends an attempt.
    pub snooze_limit: u32,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            breaker: BreakerPolicy::default(),
            destinations: DestinationPolicy::default(),
            snooze_limit: DEFAULT_SNOOZE_LIMIT,
        }
    }
}

/// See [`NotifyConfig::snooze_limit`].
pub const DEFAULT_SNOOZE_LIMIT: u32 = 10;

/// Sends webhooks: one HTTP client (its connection pool shared by every job) and the settings.
#[derive(Debug, Clone)]
pub struct Notifier {
    http: reqwest::Client,
    config: NotifyConfig,
}

#[derive(Debug, thiserror::Error)]
#[error("webhook client: {0}")]
pub struct NotifierBuildError(#[from] reqwest::Error);

impl Notifier {
    pub fn new(config: NotifyConfig) -> Result<Self, NotifierBuildError> {
        // reqwest is built without a default crypto provider (aws-lc needs cmake here); ring is
        // installed once per process. A provider installed earlier by the host wins.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            // A webhook that redirects is misconfigured; following it would resend the body
            // somewhere the channel's owner did not name.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the host itself, out of the policy's sight.
            .no_proxy()
            .dns_resolver(Arc::new(destination::GuardedResolver {
                policy: Arc::new(config.destinations.clone()),
            }))
            .user_agent(concat!("steadfast/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, config })
    }

    pub fn config(&self) -> &NotifyConfig {
        &self.config
    }
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "sent")]
pub enum Sent {
    /// The receiver answered 2xx.
    Delivered { status: u16 },
    /// Shown in the app: a delivery row and an application event.
    InApp,
    /// An earlier run delivered it; nothing was sent.
    AlreadyDelivered,
    /// An admin disabled the channel; nothing was sent.
    ChannelDisabled,
}

/// The delivery key of the notify job `job_id`: stable across its retries, re-runs and
/// requeues, and sent as `Idempotency-Key`.
pub fn delivery_key(job_id: &str) -> String {
    format!("delivery-{job_id}")
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Delivers the notification of job `job_id`.
pub async fn run(
    db: &DatabaseConnection,
    engine: &Engine,
    notifier: &Notifier,
    job_id: &str,
    payload: &Notify,
) -> Result<Sent, HandlerError> {
    payload.validate()?;
    let channel = channels::Entity::find_by_id(payload.channel)
        .one(db)
        .await?
        .ok_or_else(|| HandlerError::Permanent(format!("unknown channel {}", payload.channel)))?;
    if channel.disabled_at.is_some() {
        return Ok(Sent::ChannelDisabled);
    }
    let key = delivery_key(job_id);
    // Built first: it checks the alert exists before a delivery row refers to it.
    let body = body(db, &key, &channel, payload).await?;
    let delivery = open_delivery(db, &key, job_id, payload).await?;
    if delivery.status == STATUS_DELIVERED {
        return Ok(Sent::AlreadyDelivered);
    }
    match ChannelKind::parse(&channel.kind) {
        Some(ChannelKind::InApp) => deliver_in_app(db, engine, delivery, &body).await,
        Some(ChannelKind::Webhook) => {
            deliver_webhook(db, engine, notifier, &channel, delivery, &body).await
        }
        None => Err(HandlerError::Permanent(format!(
            "channel {} has unknown kind {:?}",
            channel.id, channel.kind
        ))),
    }
}

const STATUS_PENDING: &str = DeliveryStatus::Pending.as_str();
const STATUS_DELIVERED: &str = DeliveryStatus::Delivered.as_str();
const STATUS_FAILED: &str = DeliveryStatus::Failed.as_str();

/// The delivery row of this job, created on its first run.
async fn open_delivery(
    db: &DatabaseConnection,
    key: &str,
    job_id: &str,
    payload: &Notify,
) -> Result<deliveries::Model, HandlerError> {
    let fresh = deliveries::ActiveModel {
        alert_id: Set(payload.alert),
        channel_id: Set(payload.channel),
        idempotency_key: Set(key.to_owned()),
        status: Set(STATUS_PENDING.into()),
        attempts: Set(0),
        last_status_code: Set(None),
        last_error: Set(None),
        job_id: Set(job_id.to_owned()),
        created_at: Set(Utc::now()),
        delivered_at: Set(None),
        ..Default::default()
    };
    deliveries::Entity::insert(fresh)
        .on_conflict(
            OnConflict::column(deliveries::Column::IdempotencyKey)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    deliveries::Entity::find()
        .filter(deliveries::Column::IdempotencyKey.eq(key))
        .one(db)
        .await?
        .ok_or_else(|| HandlerError::Retryable(format!("delivery {key} vanished")))
}

/// The JSON sent to webhooks and carried by the in-app event. It describes the alert as it
/// is now, so a retry may report a higher count; the delivery key stays the same.
async fn body(
    db: &DatabaseConnection,
    key: &str,
    channel: &channels::Model,
    payload: &Notify,
) -> Result<serde_json::Value, HandlerError> {
    let channel_json = json!({ "id": channel.id, "name": channel.name });
    let Some(alert_id) = payload.alert else {
        return Ok(json!({
            "type": "message",
            "delivery": key,
            "channel": channel_json,
            "message": payload.message,
        }));
    };
    let alert = alerts::Entity::find_by_id(alert_id)
        .one(db)
        .await?
        .ok_or_else(|| HandlerError::Permanent(format!("unknown alert {alert_id}")))?;
    let rule = rules::Entity::find_by_id(alert.rule_id).one(db).await?;
    let sensor = sensors::Entity::find_by_id(alert.sensor_id).one(db).await?;
    let reading = readings::Entity::find_by_id(alert.last_reading_id)
        .one(db)
        .await?;
    Ok(json!({
        "type": "alert",
        "delivery": key,
        "channel": channel_json,
        "alert": {
            "id": alert.id,
            "state": alert.state,
            "count": alert.count,
            "openedAt": alert.opened_at,
            "resolvedAt": alert.resolved_at,
            "rule": rule.map(|r| json!({
                "id": r.id, "kind": r.kind, "threshold": r.threshold,
                "clearThreshold": r.clear_threshold,
            })),
            "sensor": sensor.map(|s| json!({ "key": s.key, "name": s.name, "unit": s.unit })),
            "lastReading": reading.map(|r| json!({ "id": r.id, "ts": r.ts, "value": r.value })),
        },
    }))
}

async fn deliver_in_app(
    db: &DatabaseConnection,
    engine: &Engine,
    delivery: deliveries::Model,
    body: &serde_json::Value,
) -> Result<Sent, HandlerError> {
    // Published before the row is marked: a crash in between publishes again (subscribers
    // see the same delivery key twice) rather than never.
    let (delivery_id, channel) = (delivery.id.to_string(), delivery.channel_id.to_string());
    let alert = delivery.alert_id.map(|a| a.to_string()).unwrap_or_default();
    engine
        .publish_app_event(&[
            ("type", "notification"),
            ("delivery", &delivery_id),
            ("key", &delivery.idempotency_key),
            ("channel", &channel),
            ("alert", &alert),
            ("body", &body.to_string()),
        ])
        .await?;
    let attempts = delivery.attempts + 1;
    let mut active = delivery.into_active_model();
    active.status = Set(STATUS_DELIVERED.into());
    active.attempts = Set(attempts);
    active.last_error = Set(None);
    active.delivered_at = Set(Some(Utc::now()));
    active.update(db).await?;
    Ok(Sent::InApp)
}

/// How one POST ended.
enum Response {
    Status(u16, Option<Duration>),
    Unreachable(String),
    /// The destination policy refused every address of the host: nothing was sent.
    Refused(String),
}

async fn deliver_webhook(
    db: &DatabaseConnection,
    engine: &Engine,
    notifier: &Notifier,
    channel: &channels::Model,
    delivery: deliveries::Model,
    body: &serde_json::Value,
) -> Result<Sent, HandlerError> {
    let (Some(url), Some(secret)) = (&channel.url, &channel.secret) else {
        return Err(HandlerError::Permanent(format!(
            "webhook channel {} needs a URL and a secret",
            channel.id
        )));
    };
    let url = reqwest::Url::parse(url).map_err(|e| {
        HandlerError::Permanent(format!("channel {} has a bad URL: {e}", channel.id))
    })?;
    let host = match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) if matches!(url.scheme(), "http" | "https") => {
            format!("{host}:{port}")
        }
        _ => {
            return Err(HandlerError::Permanent(format!(
                "channel {} URL must be http(s) with a host",
                channel.id
            )));
        }
    };
    // An IP literal is connected to as it is, without the guarded resolver: check it here.
    let literal = url.host_str().and_then(|h| {
        h.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .ok()
    });
    if let Some(reason) = literal.and_then(|ip| notifier.config.destinations.refusal(ip)) {
        let outcome = Outcome {
            posted: false,
            code: None,
            error: Some(reason.clone()),
            status: Some(STATUS_FAILED),
        };
        record(db, delivery, outcome).await?;
        return Err(HandlerError::Permanent(reason));
    }
    let policy = &notifier.config.breaker;
    if let BreakerGate::Open { retry_in } = engine.breaker_acquire(&host, policy).await? {
        let outcome = Outcome {
            posted: false,
            code: None,
            error: Some(format!("circuit breaker open for {host}")),
            status: None,
        };
        record(db, delivery, outcome).await?;
        return Err(HandlerError::Snooze {
            after: retry_in,
            reason: format!("circuit breaker open for {host}"),
        });
    }

    let bytes = body.to_string().into_bytes();
    let posts_before = u32::try_from(delivery.attempts).unwrap_or(0);
    let sent = notifier
        .http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(IDEMPOTENCY_HEADER, &delivery.idempotency_key)
        .header(SIGNATURE_HEADER, signature(secret, &bytes))
        .body(bytes)
        .send()
        .await;
    let response = match sent {
        Ok(r) => Response::Status(r.status().as_u16(), retry_after(r.headers())),
        Err(e) => match destination::refused_by_policy(&e) {
            Some(reason) => Response::Refused(reason),
            // Without the URL: its path or query may carry a token.
            None if e.is_timeout() => {
                Response::Unreachable(format!("{host} timed out: {}", e.without_url()))
            }
            None => Response::Unreachable(format!("{host} unreachable: {}", e.without_url())),
        },
    };

    // The host answered unless it errored (5xx) or did not answer at all.
    let host_failed = match &response {
        Response::Status(code, _) => *code >= 500,
        Response::Unreachable(_) => true,
        Response::Refused(_) => false,
    };
    let posted = !matches!(response, Response::Refused(_));
    if posted {
        engine.breaker_record(&host, !host_failed, policy).await?;
    }

    let (code, error, status, result) = match response {
        Response::Status(code @ 200..=299, _) => (
            Some(code),
            None,
            Some(STATUS_DELIVERED),
            Ok(Sent::Delivered { status: code }),
        ),
        Response::Status(429, Some(after)) if posts_before + 1 < notifier.config.snooze_limit => {
            let reason = format!("{host} answered 429; retry after {after:?}");
            let snooze = HandlerError::Snooze {
                after,
                reason: reason.clone(),
            };
            (Some(429), Some(reason), None, Err(snooze))
        }
        Response::Status(code @ (408 | 429 | 500..), _) => {
            let reason = format!("{host} answered {code}");
            let retry = HandlerError::Retryable(reason.clone());
            (Some(code), Some(reason), None, Err(retry))
        }
        Response::Status(code, _) => {
            let reason = format!("{host} refused the delivery with {code}");
            let refused = HandlerError::Permanent(reason.clone());
            (Some(code), Some(reason), Some(STATUS_FAILED), Err(refused))
        }
        Response::Unreachable(reason) => {
            let retry = HandlerError::Retryable(reason.clone());
            (None, Some(reason), None, Err(retry))
        }
        Response::Refused(reason) => {
            let refused = HandlerError::Permanent(reason.clone());
            (None, Some(reason), Some(STATUS_FAILED), Err(refused))
        }
    };
    let outcome = Outcome {
        posted,
        code,
        error,
        status,
    };
    record(db, delivery, outcome).await?;
    result
}

/// What one run leaves on the delivery row.
struct Outcome {
    /// False when nothing was sent (the breaker was open).
    posted: bool,
    code: Option<u16>,
    error: Option<String>,
    /// The new status, when it changes.
    status: Option<&'static str>,
}

async fn record(
    db: &DatabaseConnection,
    delivery: deliveries::Model,
    outcome: Outcome,
) -> Result<(), HandlerError> {
    let attempts = delivery.attempts + i32::from(outcome.posted);
    let mut active = delivery.into_active_model();
    active.attempts = Set(attempts);
    if let Some(code) = outcome.code {
        active.last_status_code = Set(Some(i32::from(code)));
    }
    if let Some(status) = outcome.status {
        active.status = Set(status.into());
        if status == STATUS_DELIVERED {
            active.delivered_at = Set(Some(Utc::now()));
        }
    }
    active.last_error = Set(outcome.error);
    active.update(db).await?;
    Ok(())
}

/// `Retry-After` as seconds or an HTTP date, capped.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let raw = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let after = match raw.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(raw).ok()?;
            (at.with_timezone(&Utc) - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(after.clamp(Duration::from_millis(1), MAX_RETRY_AFTER))
}
