//! `workers --queues ingest,evaluate --concurrency 64`: runs worker pools until SIGTERM or
//! Ctrl-C, then stops them gracefully.

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Parser;
use migration::MigratorTrait;
use runtime::{Context, PoolArgs};
use telemetry::{Telemetry, TelemetryArgs};
use tokio_util::sync::CancellationToken;

mod http;

/// The workers binary's whole configuration, from flags or the environment. Not `Debug`: its
/// URLs may carry passwords.
#[derive(Parser)]
#[command(version, about = "Steadfast worker pools")]
struct Config {
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    #[arg(long, env = "STEADFAST_PREFIX", default_value = "steadfast")]
    prefix: String,
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://steadfast.db?mode=rwc"
    )]
    database_url: String,
    #[command(flatten)]
    pools: PoolArgs,
    /// Where this process serves /metrics, /health and /ready.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9464")]
    metrics_addr: SocketAddr,
    /// Serve no HTTP port (no metrics, no probes).
    #[arg(long, env = "NO_METRICS")]
    no_metrics: bool,
    /// Refuse to start when Redis could lose or evict jobs.
    #[arg(long, env = "REDIS_STRICT")]
    redis_strict: bool,
    /// Apply pending migrations before starting.
    #[arg(long, env = "MIGRATE")]
    migrate: bool,
    /// The MQTT broker devices publish readings to (`mqtt://user:password@host:1883`): this
    /// process then also runs the MQTT ingest bridge. Unset: no MQTT ingest.
    #[arg(long, env = "MQTT_URL")]
    mqtt_url: Option<String>,
    /// Devices publish to `{prefix}/devices/{device id}/readings`.
    #[arg(long, env = "MQTT_TOPIC_PREFIX", default_value = "steadfast")]
    mqtt_topic_prefix: String,
    /// The shared subscription the bridges of a deployment split the messages in; empty: every
    /// bridge gets every message.
    #[arg(long, env = "MQTT_SHARE_GROUP", default_value = "steadfast-bridge")]
    mqtt_share_group: String,
    /// This bridge's MQTT client id: keep it stable across restarts (the broker keeps the
    /// session, and the messages not yet acknowledged, under it). Default: from HOSTNAME.
    #[arg(long, env = "MQTT_CLIENT_ID")]
    mqtt_client_id: Option<String>,
    /// On a clean stop, leave the shared subscription: for bridges that will not come back
    /// under their client id (scaled in). Off: the broker queues messages for the bridge's
    /// return.
    #[arg(long, env = "MQTT_LEAVE_ON_STOP")]
    mqtt_leave_on_stop: bool,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

impl Config {
    fn mqtt(&self) -> anyhow::Result<Option<runtime::mqtt::MqttConfig>> {
        let Some(url) = &self.mqtt_url else {
            return Ok(None);
        };
        // The host name (the pod's in Kubernetes) is stable across a process's restarts on the
        // same host; the process id, the last resort, is not.
        let client_id = self.mqtt_client_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| std::process::id().to_string());
            format!("steadfast-bridge-{host}")
        });
        let mut mqtt = runtime::mqtt::MqttConfig::from_url(url, client_id)?;
        mqtt.topic_prefix = self.mqtt_topic_prefix.clone();
        mqtt.share_group = self.mqtt_share_group.clone();
        mqtt.leave_on_stop = self.mqtt_leave_on_stop;
        Ok(Some(mqtt))
    }
}

async fn shutdown_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let telemetry = Telemetry::init(&config.telemetry, "steadfast-workers", "info")?;
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(run(config));
    telemetry.shutdown();
    result
}

async fn run(config: Config) -> anyhow::Result<()> {
    let pools = config.pools.pool_config(!config.no_metrics)?;
    let mqtt = config.mqtt()?;
    let notifier = config.pools.notifier()?;
    let db = entities::connect(&config.database_url)
        .await
        .context("connecting to the database")?;
    if config.migrate {
        migration::Migrator::up(&db, None)
            .await
            .context("migrating")?;
    }
    let mut engine_config = queue::EngineConfig::with_prefix(&config.prefix);
    config.pools.apply_to_engine(&mut engine_config);
    let engine = queue::Engine::connect(&config.redis_url, engine_config)
        .await
        .with_context(|| {
            format!(
                "connecting to Redis at {}",
                queue::redact_url(&config.redis_url)
            )
        })?;
    engine.check_redis(config.redis_strict).await?;
    let http_stop = CancellationToken::new();
    let http = if config.no_metrics {
        None
    } else {
        let metrics = runtime::metrics::install_recorder().context("installing metrics")?;
        let listener = tokio::net::TcpListener::bind(config.metrics_addr)
            .await
            .with_context(|| format!("serving metrics on {}", config.metrics_addr))?;
        let stop = http_stop.clone();
        Some(tokio::spawn(http::serve(
            listener,
            metrics,
            engine.clone(),
            db.clone(),
            async move { stop.cancelled().await },
        )))
    };
    let bridge_stop = CancellationToken::new();
    let bridge = mqtt.map(|mqtt| {
        tokio::spawn(runtime::mqtt::run_bridge(
            mqtt,
            engine.clone(),
            db.clone(),
            Default::default(),
            bridge_stop.clone(),
        ))
    });
    let ctx = Context::new(db, engine, notifier)
        .with_ledger_pool(&config.database_url, pools.ledger_recorders)
        .await
        .context("connecting the ledger's pool")?;
    let ran = runtime::run_pools(ctx, pools, shutdown_signal()).await;
    bridge_stop.cancel();
    if let Some(bridge) = bridge {
        bridge.await.context("MQTT bridge")?;
    }
    http_stop.cancel();
    if let Some(http) = http {
        http.await
            .context("metrics server")?
            .context("metrics server")?;
    }
    Ok(ran?)
}
