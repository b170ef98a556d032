//! The REST endpoints devices and load balancers expect: readings in, sensor status out,
//! liveness, readiness with detail, and Prometheus metrics.

use std::time::{Duration, Instant};

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use entities::{alerts, devices, readings, sensors};
use queue::KeyScope;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use serde_json::json;
use workflows::{
    decode_payload,
    jobs::ingest::{Ingest, SensorRefusal, check_device_sensors},
};

use crate::{
    auth::{Role, secret_hash},
    error::{ApiError, ApiResult},
    graphql::jobs::{ingest_job, push_all},
    server::AppState,
};

/// The device behind an API key (`Authorization: Bearer` or `X-Api-Key`).
async fn device(state: &AppState, headers: &HeaderMap) -> ApiResult<devices::Model> {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_owned)
        })
        .ok_or_else(|| {
            ApiError::unauthenticated(
                "send the device key as `Authorization: Bearer <key>` or `X-Api-Key`",
            )
        })?;
    let device = devices::Entity::find()
        .filter(devices::Column::ApiKeyHash.eq(secret_hash(key.trim())))
        .one(&state.shared.db)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("unknown device key"))?;
    if device.revoked_at.is_some() {
        return Err(ApiError::unauthenticated("this device key was revoked"));
    }
    Ok(device)
}

/// Counts one request of `device` against `DEVICE_REQUESTS_PER_MINUTE`, shared by every API
/// replica through Redis. Beyond it: 429 with `Retry-After`. When Redis does not answer, the
/// push that follows answers for it (503).
async fn limit_device(state: &AppState, device: &devices::Model) -> ApiResult<()> {
    let budget =
        queue::RateLimit::per_minute(state.shared.config.device_requests_per_minute.max(1));
    let key = format!("device:{}", device.id);
    let decision = tokio::time::timeout(
        state.shared.config.redis_timeout(),
        state.shared.engine.rate_limit(&key, budget),
    )
    .await;
    if let Ok(Ok(queue::RateDecision::Limited { retry_after })) = decision {
        let seconds = retry_after.as_secs() + 1;
        return Err(ApiError::rate_limited(
            format!(
                "this device sends more than {} requests a minute; retry in {seconds} s",
                budget.limit
            ),
            seconds,
        ));
    }
    Ok(())
}

fn body(body: Result<Bytes, BytesRejection>) -> ApiResult<serde_json::Value> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::limit("the request body is too large")
        } else {
            ApiError::bad_input("body", format!("the body could not be read: {e}"))
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_input("body", format!("the body is not JSON: {e}")))
}

/// `POST /api/sensors/data`: a batch of readings, queued as one `ingest` job.
pub async fn sensor_data(
    State(state): State<AppState>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // An oversized or malformed body is refused first, before any lookup: a client still
    // sending the rest of a huge body gets its 413 at once.
    let payload = body(raw)?;
    let device = device(&state, &headers).await?;
    limit_device(&state, &device).await?;
    let ingest: Ingest =
        decode_payload(payload).map_err(|e| ApiError::bad_input(e.field, e.message))?;
    let readings = ingest.readings.len();
    match check_device_sensors(&state.shared.db, device.id, &ingest).await? {
        Ok(()) => {}
        Err(refusal @ SensorRefusal::Disabled { .. }) => {
            return Err(ApiError::bad_input(refusal.field(), refusal.to_string()));
        }
        Err(refusal) => {
            return Err(ApiError {
                field: Some(refusal.field()),
                ..ApiError::forbidden(refusal.to_string())
            });
        }
    }
    let mut job = ingest_job(&ingest)?;
    if let Some(key) = headers.get("idempotency-key") {
        let key = key
            .to_str()
            .ok()
            .filter(|k| !k.is_empty() && k.len() <= 256)
            .ok_or_else(|| {
                ApiError::bad_input("Idempotency-Key", "1 to 256 visible ASCII characters")
            })?;
        // Scoped to the device: two devices never collide on a key.
        job = job.with_idempotency_key(format!("device:{}:{key}", device.id), KeyScope::For(None));
    }
    let outcome = push_all(&state.shared, vec![job])
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal("push answered nothing"))?;
    metrics::counter!("steadfast_api_readings_accepted_total").increment(readings as u64);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "jobId": outcome.job.id, "duplicate": outcome.duplicate })),
    )
        .into_response())
}

/// `GET /api/sensors/{key}/status`: for the device that owns the sensor, or a signed-in user.
pub async fn sensor_status(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let db = &state.shared.db;
    let user = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| state.shared.tokens.verify_header(v));
    let device = match user {
        Some(Ok(session)) => {
            if state.shared.revocations.is_disabled(session.user_id) {
                return Err(ApiError::unauthenticated(
                    "this account is disabled; ask an admin",
                ));
            }
            session.require(Role::Viewer)?;
            None
        }
        _ => Some(device(&state, &headers).await?),
    };
    let sensor = sensors::Entity::find()
        .filter(sensors::Column::Key.eq(&key))
        .one(db)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no sensor has key {key:?}")))?;
    if let Some(device) = device
        && sensor.device_id != Some(device.id)
    {
        return Err(ApiError::forbidden(format!(
            "this device may not read sensor {key:?}"
        )));
    }
    let last = readings::Entity::find()
        .filter(readings::Column::SensorId.eq(sensor.id))
        .order_by_desc(readings::Column::Ts)
        .order_by_desc(readings::Column::Id)
        .one(db)
        .await?;
    let open_alerts = alerts::Entity::find()
        .filter(alerts::Column::SensorId.eq(sensor.id))
        .filter(alerts::Column::State.eq(entities::states::AlertState::Open))
        .count(db)
        .await?;
    Ok(Json(json!({
        "key": sensor.key,
        "name": sensor.name,
        "unit": sensor.unit,
        "lastReading": last.map(|r| json!({ "ts": r.ts, "value": r.value, "seq": r.seq })),
        "lastSeenAt": sensor.last_reading_at,
        "openAlerts": open_alerts,
    }))
    .into_response())
}

/// `GET /health`: the process is up.
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /ready`: Redis and the database answer (with each one's detail, the Redis persistence
/// in force and every circuit breaker that is not closed). 503 when either does not.
pub async fn ready(State(state): State<AppState>) -> Response {
    let shared = &state.shared;
    let limit = shared.config.redis_timeout().min(Duration::from_secs(2));
    let started = Instant::now();
    let redis = tokio::time::timeout(limit, shared.engine.breakers()).await;
    let redis_ms = started.elapsed().as_millis() as u64;
    let started = Instant::now();
    let database = tokio::time::timeout(limit, shared.db.ping()).await;
    let database_ms = started.elapsed().as_millis() as u64;
    let durability = shared
        .redis_durability
        .lock()
        .map(|d| d.clone())
        .unwrap_or_default();
    let (redis_up, redis_detail, breakers) = match redis {
        Ok(Ok(breakers)) => (
            true,
            json!({ "up": true, "latencyMs": redis_ms, "durability": durability }),
            breakers
                .into_iter()
                .map(|b| json!({ "name": b.name, "state": b.state.to_uppercase(), "failures": b.failures }))
                .collect::<Vec<_>>(),
        ),
        Ok(Err(e)) => (
            false,
            json!({ "up": false, "error": e.to_string(), "durability": durability }),
            Vec::new(),
        ),
        Err(_) => (
            false,
            json!({ "up": false, "error": format!("no answer in {} ms", limit.as_millis()), "durability": durability }),
            Vec::new(),
        ),
    };
    let backend = format!("{:?}", shared.db.get_database_backend()).to_lowercase();
    let (database_up, database_detail) = match database {
        Ok(Ok(())) => (
            true,
            json!({ "up": true, "latencyMs": database_ms, "backend": backend }),
        ),
        Ok(Err(e)) => (
            false,
            json!({ "up": false, "error": e.to_string(), "backend": backend }),
        ),
        Err(_) => (
            false,
            json!({ "up": false, "error": format!("no answer in {} ms", limit.as_millis()), "backend": backend }),
        ),
    };
    let ready = redis_up && database_up;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if ready { "ready" } else { "unavailable" },
            "redis": redis_detail,
            "database": database_detail,
            "circuitBreakers": breakers,
            "subscriptions": shared.hub.subscribers(),
            "eventsFollowing": shared.hub.is_following(),
        })),
    )
        .into_response()
}

/// `GET /ready` on the public port when an operators' port exists: the status code and word
/// only (the detail names hosts, latencies and errors, for operators).
pub async fn ready_status(State(state): State<AppState>) -> Response {
    let response = ready(State(state)).await;
    let status = response.status();
    let word = if status.is_success() {
        "ready"
    } else {
        "unavailable"
    };
    (status, Json(json!({ "status": word }))).into_response()
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            handle.render(),
        )
            .into_response(),
        None => {
            ApiError::unavailable("metrics are not recorded in this process", 60).into_response()
        }
    }
}
