//! The `api` binary's whole configuration, from flags or the environment (see `.env.sample`).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use runtime::PoolArgs;

/// The JWT secret used when none is configured: fine on a laptop, refused in production.
pub const DEFAULT_JWT_SECRET: &str = "steadfast-development-secret-change-me";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Development,
    Production,
}

#[derive(Clone, clap::Parser)]
#[command(
    version,
    about = "Steadfast API: GraphQL, device REST endpoints, health and metrics",
    args_override_self = true
)]
pub struct ApiConfig {
    /// Where the API listens.
    #[arg(long, env = "API_ADDR", default_value = "0.0.0.0:8080")]
    pub addr: SocketAddr,
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Key prefix of the deployment in Redis (every process of a deployment uses the same).
    #[arg(long, env = "STEADFAST_PREFIX", default_value = "steadfast")]
    pub prefix: String,
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://steadfast.db?mode=rwc"
    )]
    pub database_url: String,
    /// `production` refuses to start with the default JWT secret or a short one.
    #[arg(long, env = "STEADFAST_ENV", value_enum, default_value = "development")]
    pub mode: Mode,
    /// HMAC secret of access tokens (at least 32 bytes in production).
    #[arg(long, env = "JWT_SECRET", default_value = DEFAULT_JWT_SECRET, hide_default_value = true, hide_env_values = true)]
    pub jwt_secret: String,
    /// Lifetime of an access token, in seconds.
    #[arg(long, env = "ACCESS_TOKEN_TTL_SECS", default_value_t = 900)]
    pub access_token_ttl_secs: u64,
    /// Lifetime of a refresh token, in days.
    #[arg(long, env = "REFRESH_TOKEN_TTL_DAYS", default_value_t = 30)]
    pub refresh_token_ttl_days: u64,
    /// Login attempts per minute for one account; one address gets three times as many
    /// (login and register alike), counted in Redis across every API replica.
    #[arg(long, env = "LOGIN_ATTEMPTS_PER_MINUTE", default_value_t = 10)]
    pub login_attempts_per_minute: u32,
    /// Anyone may register an account (a viewer). Off: once an admin exists, accounts come
    /// from an admin (`createUser`).
    #[arg(long, env = "ALLOW_SIGNUP")]
    pub allow_signup: bool,
    /// In production, the first admin registers with this secret (`register(bootstrapToken:)`);
    /// without it nobody can claim an empty production deployment.
    #[arg(long, env = "BOOTSTRAP_ADMIN_TOKEN", hide_env_values = true)]
    pub bootstrap_admin_token: Option<String>,
    /// Serve GraphiQL and answer introspection (default: on in development, off in production).
    #[arg(long, env = "GRAPHQL_INTROSPECTION")]
    pub graphql_introspection: Option<bool>,
    /// Readings requests per minute one device may send (429 with Retry-After beyond it).
    #[arg(long, env = "DEVICE_REQUESTS_PER_MINUTE", default_value_t = 600)]
    pub device_requests_per_minute: u32,
    /// Largest websocket message, in bytes.
    #[arg(long, env = "WS_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub ws_max_message_bytes: usize,
    /// Operations (subscriptions) open at once on one websocket.
    #[arg(long, env = "WS_MAX_OPERATIONS", default_value_t = 50)]
    pub ws_max_operations: usize,
    /// Websockets one account may hold open on one API process.
    #[arg(long, env = "WS_MAX_SOCKETS_PER_USER", default_value_t = 20)]
    pub ws_max_sockets_per_user: usize,
    /// Most stream entries a subscription resumed from an old cursor may replay; further behind
    /// it gets CURSOR_EXPIRED and reloads.
    #[arg(long, env = "SUBSCRIPTION_REPLAY_MAX", default_value_t = 100_000)]
    pub subscription_replay_max: usize,
    /// A second listener for `/metrics` and the detailed `/ready`, for Prometheus and
    /// operators only. When set, the public port answers `/metrics` 404 and `/ready` with its
    /// status alone.
    #[arg(long, env = "OPS_ADDR")]
    pub ops_addr: Option<SocketAddr>,
    /// Largest request body, in bytes.
    #[arg(long, env = "API_BODY_LIMIT_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub body_limit_bytes: usize,
    /// Deepest GraphQL selection accepted.
    #[arg(long, env = "GRAPHQL_MAX_DEPTH", default_value_t = 16)]
    pub graphql_max_depth: usize,
    /// Highest GraphQL complexity accepted (each field counts 1, lists by their `first`).
    #[arg(long, env = "GRAPHQL_MAX_COMPLEXITY", default_value_t = 20_000)]
    pub graphql_max_complexity: usize,
    /// Operations accepted in one batched GraphQL request.
    #[arg(long, env = "GRAPHQL_MAX_BATCH", default_value_t = 10)]
    pub graphql_max_batch: usize,
    /// How long a Redis command may take before the request answers UNAVAILABLE, in ms.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 2_000)]
    pub redis_timeout_ms: u64,
    /// Period of the `queueStats` subscription, in ms.
    #[arg(long, env = "QUEUE_STATS_MS", default_value_t = 1_000)]
    pub queue_stats_ms: u64,
    /// The built web app to serve at `/` (default: `frontend/dist/browser` when it exists).
    #[arg(long, env = "STATIC_DIR")]
    pub static_dir: Option<PathBuf>,
    /// Refuse to start when Redis could lose or evict jobs.
    #[arg(long, env = "REDIS_STRICT")]
    pub redis_strict: bool,
    /// Apply pending migrations before serving (always done with --with-workers).
    #[arg(long, env = "MIGRATE")]
    pub migrate: bool,
    /// Reverse proxies (addresses or CIDR ranges, comma-separated) whose `X-Forwarded-For` names
    /// the client for the login limit. Requests from anywhere else are counted by their own
    /// address, whatever the header says.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', value_parser = crate::forwarded::parse_trusted)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Web origins (`https://ops.example.com`, comma-separated) whose pages may call the API
    /// from a browser (CORS). None by default: only the web app served by this process, from
    /// its own origin.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_allowed_origins: Vec<axum::http::HeaderValue>,
    #[command(flatten)]
    pub telemetry: telemetry::TelemetryArgs,
    /// Run the worker pools in this process too: one process serves everything.
    #[arg(long, env = "WITH_WORKERS")]
    pub with_workers: bool,
    #[command(flatten)]
    pub pools: PoolArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "STEADFAST_ENV=production refuses the default JWT secret: set JWT_SECRET to a random value of at least 32 bytes (e.g. `openssl rand -hex 32`)"
    )]
    DefaultSecretInProduction,
    #[error("JWT_SECRET must be at least 32 bytes in production (it has {0})")]
    ShortSecret(usize),
    #[error("ACCESS_TOKEN_TTL_SECS must be at least 1")]
    ZeroTokenLifetime,
    #[error("BOOTSTRAP_ADMIN_TOKEN must be at least 16 characters (it has {0})")]
    ShortBootstrapToken(usize),
}

impl ApiConfig {
    /// Refuses settings that would make the deployment unsafe.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.jwt_secret.is_empty() {
            return Err(ConfigError::ShortSecret(0));
        }
        if self.access_token_ttl_secs == 0 {
            return Err(ConfigError::ZeroTokenLifetime);
        }
        if let Some(token) = &self.bootstrap_admin_token
            && token.chars().count() < 16
        {
            return Err(ConfigError::ShortBootstrapToken(token.chars().count()));
        }
        if self.mode == Mode::Production {
            if self.jwt_secret == DEFAULT_JWT_SECRET {
                return Err(ConfigError::DefaultSecretInProduction);
            }
            if self.jwt_secret.len() < 32 {
                return Err(ConfigError::ShortSecret(self.jwt_secret.len()));
            }
        }
        Ok(())
    }

    /// GraphiQL and introspection: on in development unless turned off, off in production
    /// unless turned on.
    pub fn introspection(&self) -> bool {
        self.graphql_introspection
            .unwrap_or(self.mode == Mode::Development)
    }

    /// The first admin must bring the bootstrap token (production), or anyone may be first.
    pub fn bootstrap_required(&self) -> bool {
        self.mode == Mode::Production
    }

    pub fn access_token_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl_secs)
    }

    pub fn refresh_token_ttl(&self) -> Duration {
        Duration::from_secs(self.refresh_token_ttl_days.max(1) * 86_400)
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms.max(1))
    }

    /// The web app's files, if there are any to serve.
    pub fn web_app_dir(&self) -> Option<PathBuf> {
        let dir = self
            .static_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("frontend/dist/browser"));
        dir.join("index.html").exists().then_some(dir)
    }
}

/// Secrets and URLs that may carry passwords stay out of logs and panics: `{:?}` of the
/// configuration shows them redacted.
impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("addr", &self.addr)
            .field("redis_url", &queue::redact_url(&self.redis_url))
            .field("prefix", &self.prefix)
            .field("database_url", &queue::redact_url(&self.database_url))
            .field("mode", &self.mode)
            .field("jwt_secret", &"<redacted>")
            .field(
                "bootstrap_admin_token",
                &self.bootstrap_admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_signup", &self.allow_signup)
            .field("introspection", &self.introspection())
            .field("ops_addr", &self.ops_addr)
            .field("with_workers", &self.with_workers)
            .field("pools", &self.pools)
            .finish_non_exhaustive()
    }
}

/// A web origin: `scheme://host[:port]`, no path, no wildcard.
fn parse_origin(raw: &str) -> Result<axum::http::HeaderValue, String> {
    let origin = raw.trim().trim_end_matches('/');
    let well_formed = origin.split_once("://").is_some_and(|(scheme, host)| {
        matches!(scheme, "http" | "https") && !host.is_empty() && !host.contains(['/', '*', ' '])
    });
    if !well_formed {
        return Err(format!(
            "{raw:?} is not an origin: give scheme://host[:port], e.g. https://ops.example.com"
        ));
    }
    axum::http::HeaderValue::from_str(origin).map_err(|e| format!("{raw:?}: {e}"))
}
