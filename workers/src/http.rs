//! A worker process's own HTTP port: `/metrics` for Prometheus, `/health` (the process serves)
//! for liveness, `/ready` (Redis and the database answer) for readiness.

use std::time::Duration;

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use metrics_exporter_prometheus::PrometheusHandle;
use sea_orm::DatabaseConnection;
use serde_json::json;

/// How long `/ready` waits for Redis and the database.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct Probes {
    metrics: PrometheusHandle,
    engine: queue::Engine,
    db: DatabaseConnection,
}

/// Serves the port until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: PrometheusHandle,
    engine: queue::Engine,
    db: DatabaseConnection,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/health", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/ready", get(ready))
        .with_state(Probes {
            metrics,
            engine,
            db,
        });
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
}

async fn render_metrics(State(probes): State<Probes>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        probes.metrics.render(),
    )
        .into_response()
}

async fn ready(State(probes): State<Probes>) -> Response {
    let redis = tokio::time::timeout(READY_TIMEOUT, probes.engine.breakers()).await;
    let database = tokio::time::timeout(READY_TIMEOUT, probes.db.ping()).await;
    let detail = |r: Result<Result<(), String>, tokio::time::error::Elapsed>| match r {
        Ok(Ok(())) => json!({ "up": true }),
        Ok(Err(e)) => json!({ "up": false, "error": e }),
        Err(_) => json!({ "up": false, "error": format!("no answer within {READY_TIMEOUT:?}") }),
    };
    let redis = detail(redis.map(|r| r.map(drop).map_err(|e| e.to_string())));
    let database = detail(database.map(|r| r.map_err(|e| e.to_string())));
    let up = redis["up"] == true && database["up"] == true;
    let status = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if up { "ready" } else { "unavailable" },
            "redis": redis,
            "database": database,
        })),
    )
        .into_response()
}
