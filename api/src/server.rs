//! Builds the process (database, queue engine, subscription hub, optional embedded workers)
//! and its HTTP router, and serves it until shutdown.

use std::{net::SocketAddr, sync::Arc, sync::OnceLock, time::Duration};

use async_graphql::{
    BatchRequest, BatchResponse,
    http::{GraphiQLSource, WebSocketProtocols},
};
use axum::{
    Json, Router,
    body::Bytes,
    extract::{ConnectInfo, DefaultBodyLimit, State, WebSocketUpgrade, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
};
use metrics_exporter_prometheus::PrometheusHandle;
use migration::MigratorTrait;
use queue::{Engine, EngineConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::{
    services::{ServeDir, ServeFile},
    trace::TraceLayer,
};

use crate::{
    auth::{AuthLimits, TokenKeys, hash_password},
    config::ApiConfig,
    error::{ApiError, Code},
    graphql::{
        AppSchema, Caller, ClientAddress, alerts::AlertFeed, build_schema, queues::QueueWatch,
    },
    hub::Hub,
    rest,
    state::{Shared, SharedState},
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("database: {0}")]
    Database(#[from] entities::DbError),
    #[error("migrating the database: {0}")]
    Migrate(sea_orm::DbErr),
    #[error("Redis at {url}: {source}")]
    Redis {
        url: String,
        source: queue::QueueError,
    },
    #[error("worker pools: {0}")]
    Pools(#[from] runtime::PoolArgsError),
    #[error("{0}")]
    Setup(String),
}

/// The router's state.
#[derive(Clone)]
pub struct AppState {
    pub shared: SharedState,
    pub schema: AppSchema,
    pub metrics: Option<PrometheusHandle>,
    pub stop: CancellationToken,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// The one recorder of the process: installed by the first app built in it.
fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = runtime::metrics::install_recorder().ok();
            crate::http_metrics::describe();
            handle
        })
        .clone()
}

/// A running API process: its address, and how to stop it.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    /// The operators' port, when `OPS_ADDR` is set.
    pub ops_addr: Option<SocketAddr>,
    pub state: AppState,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
    pools: Option<tokio::task::JoinHandle<Result<(), runtime::PoolError>>>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving (subscriptions are closed with 1001) and the embedded workers, and waits.
    pub async fn stop(self) {
        self.state.stop.cancel();
        let _ = self.served.await;
        if let Some(pools) = self.pools {
            let _ = pools.await;
        }
    }
}

/// Connects everything `config` names and starts serving on `listener`.
pub async fn start(config: ApiConfig, listener: TcpListener) -> Result<Running, StartError> {
    config.check()?;
    let db = entities::connect(&config.database_url).await?;
    if config.migrate || config.with_workers {
        migration::Migrator::up(&db, None)
            .await
            .map_err(StartError::Migrate)?;
    }
    let mut engine_config = EngineConfig::with_prefix(&config.prefix);
    engine_config.response_timeout = config.redis_timeout();
    config.pools.apply_to_engine(&mut engine_config);
    let engine = Engine::connect(&config.redis_url, engine_config)
        .await
        .map_err(|source| StartError::Redis {
            url: queue::redact_url(&config.redis_url),
            source,
        })?;
    let durability = match engine.check_redis(config.redis_strict).await {
        Ok(report) => Some(report.durability().to_owned()),
        Err(e @ queue::QueueError::UnsafeRedis(_)) => {
            return Err(StartError::Redis {
                url: queue::redact_url(&config.redis_url),
                source: e,
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "Redis settings could not be read (CONFIG disabled?)");
            None
        }
    };
    let stop = CancellationToken::new();
    let hub = Hub::start(engine.clone(), config.subscription_replay_max, stop.clone());
    let revocations = Arc::new(crate::revocation::Revocations::default());
    if let Err(e) = revocations.reload(&db).await {
        tracing::warn!(error = %e, "disabled users could not be read yet (is the database migrated?)");
    }
    revocations.clone().follow(db.clone(), stop.clone());
    let queue_watch = QueueWatch::start(
        engine.clone(),
        Duration::from_millis(config.queue_stats_ms.max(100)),
        stop.clone(),
    );
    let alert_feed = AlertFeed::start(&hub, db.clone(), stop.clone());
    let shared: SharedState = Arc::new(Shared {
        db: db.clone(),
        engine: engine.clone(),
        tokens: TokenKeys::new(&config.jwt_secret, config.access_token_ttl()),
        hub,
        queue_watch,
        alert_feed,
        auth_limits: AuthLimits::new(
            engine.clone(),
            config.login_attempts_per_minute,
            config.redis_timeout(),
        ),
        revocations,
        sockets: crate::ws::SocketCounts::default(),
        dummy_hash: hash_password(ulid::Ulid::new().to_string())
            .await
            .map_err(|e| StartError::Setup(e.message))?,
        redis_durability: std::sync::Mutex::new(durability),
        config: config.clone(),
    });
    let metrics = metrics_handle();
    let state = AppState {
        schema: build_schema(shared.clone()),
        shared,
        metrics,
        stop: stop.clone(),
    };
    let pools = if config.with_workers {
        let pool_config = config.pools.pool_config(true)?;
        let ctx = runtime::Context::new(db, engine, config.pools.notifier()?)
            .with_ledger_pool(&config.database_url, pool_config.ledger_recorders)
            .await?;
        let stop = stop.clone();
        Some(tokio::spawn(runtime::run_pools(
            ctx,
            pool_config,
            async move {
                stop.cancelled().await;
                Ok(())
            },
        )))
    } else {
        None
    };
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Setup(e.to_string()))?;
    let app = router(state.clone(), &config);
    let ops = match config.ops_addr {
        Some(ops_addr) => {
            let listener = TcpListener::bind(ops_addr)
                .await
                .map_err(|e| StartError::Setup(format!("binding OPS_ADDR {ops_addr}: {e}")))?;
            let ops_addr = listener
                .local_addr()
                .map_err(|e| StartError::Setup(e.to_string()))?;
            let app = ops_router(state.clone());
            let shutdown = stop.clone();
            tokio::spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { shutdown.cancelled().await })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "the operators' port stopped");
                }
            });
            Some(ops_addr)
        }
        None => None,
    };
    let shutdown = stop.clone();
    let served = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    });
    tracing::info!(%addr, with_workers = config.with_workers, "api serving");
    Ok(Running {
        addr,
        ops_addr: ops,
        state,
        served,
        pools,
    })
}

/// The operators' port (`OPS_ADDR`): metrics and the detailed readiness, nothing else.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(rest::health))
        .route("/ready", get(rest::ready))
        .route("/metrics", get(rest::metrics))
        .with_state(state)
}

pub fn router(state: AppState, config: &ApiConfig) -> Router {
    let mut api = Router::new()
        .route("/graphql", get(graphiql).post(graphql))
        .route("/graphql/ws", get(graphql_ws))
        .route("/api/sensors/data", post(rest::sensor_data))
        .route("/api/sensors/{key}/status", get(rest::sensor_status))
        .route(
            "/api/openapi.json",
            get(crate::rest_operations::openapi_document),
        )
        .merge(crate::rest_operations::routes())
        .route("/health", get(rest::health));
    // With an operators' port, the public one tells load balancers only whether it is ready.
    api = if config.ops_addr.is_some() {
        api.route("/ready", get(rest::ready_status))
    } else {
        api.route("/ready", get(rest::ready))
            .route("/metrics", get(rest::metrics))
    };
    let api = api
        .route_layer(axum::middleware::from_fn(crate::http_metrics::record))
        .layer(DefaultBodyLimit::max(config.body_limit_bytes));
    // Only the origins named: a browser page elsewhere cannot read the answers.
    let api = if config.cors_allowed_origins.is_empty() {
        api
    } else {
        api.layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(config.cors_allowed_origins.clone())
                .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    axum::http::HeaderName::from_static("idempotency-key"),
                    axum::http::HeaderName::from_static("x-api-key"),
                ])
                .max_age(std::time::Duration::from_secs(600)),
        )
    };
    let api = api
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state);
    match config.web_app_dir() {
        Some(dir) => {
            let index = dir.join("index.html");
            api.fallback_service(ServeDir::new(dir).fallback(ServeFile::new(index)))
        }
        None => api.fallback(not_found),
    }
}

/// One span per request, continuing the caller's trace when it sends a W3C `traceparent` (and
/// `tracestate`);
/// the jobs the request pushes carry its context on (`queue::TracePropagator`).
/// Probes and scrapes get none: they would flood the traces.
fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    if matches!(request.uri().path(), "/health" | "/ready" | "/metrics") {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "request",
        http.method = %request.method(),
        http.path = %request.uri().path(),
        trace_id = tracing::field::Empty,
    );
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    telemetry::W3cTraceContext::continue_span(&span, header("traceparent"), header("tracestate"));
    span
}

async fn not_found() -> Response {
    ApiError::not_found(
        "no such endpoint: GraphQL is at /graphql, devices post to /api/sensors/data",
    )
    .into_response()
}

async fn graphiql(State(state): State<AppState>) -> Response {
    if !state.shared.config.introspection() {
        return ApiError::not_found(
            "GraphiQL is off here (production); set GRAPHQL_INTROSPECTION=true to serve it",
        )
        .into_response();
    }
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .finish(),
    )
    .into_response()
}

/// A GraphQL error response (for a request that never reached the schema).
fn graphql_error(error: ApiError) -> Response {
    let mut extensions = serde_json::json!({ "code": error.code.as_str() });
    if let Some(field) = &error.field {
        extensions["field"] = serde_json::json!(field);
    }
    let status = match error.code {
        Code::LimitExceeded => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    (
        status,
        Json(serde_json::json!({
            "data": null,
            "errors": [{ "message": error.message, "extensions": extensions }],
        })),
    )
        .into_response()
}

pub(crate) fn caller(state: &AppState, headers: &HeaderMap) -> Caller {
    match headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default())
    {
        None => Caller::Anonymous,
        Some(value) => match state.shared.tokens.verify_header(value) {
            Ok(session) => Caller::Known(session),
            Err(e) => Caller::Refused(e.into()),
        },
    }
}

async fn graphql(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return graphql_error(ApiError::limit(format!(
                "the request body is larger than {} bytes",
                state.shared.config.body_limit_bytes
            )));
        }
        Err(e) => return graphql_error(ApiError::bad_input("body", e.body_text())),
    };
    let request: BatchRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return graphql_error(ApiError::bad_input(
                "body",
                format!("expected a GraphQL request as JSON ({{\"query\": ...}}): {e}"),
            ));
        }
    };
    let max = state.shared.config.graphql_max_batch;
    if let BatchRequest::Batch(items) = &request
        && items.len() > max
    {
        return graphql_error(ApiError::limit(format!(
            "a batch holds at most {max} operations, this one {}",
            items.len()
        )));
    }
    let request = request.data(caller(&state, &headers)).data(ClientAddress(
        crate::forwarded::client_address(peer.ip(), &headers, &state.shared.config.trusted_proxies)
            .to_string(),
    ));
    let response: BatchResponse = state.schema.execute_batch(request).await;
    Json(response).into_response()
}

async fn graphql_ws(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    // The first subprotocol the client offers that we speak; none offered means the current one.
    let offered = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("graphql-transport-ws");
    let Some(protocol) = offered
        .split(',')
        .find_map(|p| p.trim().parse::<WebSocketProtocols>().ok())
    else {
        return ApiError::bad_input(
            "Sec-WebSocket-Protocol",
            "speak graphql-transport-ws (or the older graphql-ws)",
        )
        .into_response();
    };
    let address =
        crate::forwarded::client_address(peer.ip(), &headers, &state.shared.config.trusted_proxies)
            .to_string();
    let max = state.shared.config.ws_max_message_bytes.max(1024);
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            crate::ws::serve(
                socket,
                state.schema.clone(),
                state.shared.clone(),
                protocol,
                address,
                state.stop.clone(),
            )
        })
}
