//! What every request handler shares: the database, the queue engine, the token keys, the
//! subscription hub and the limits.

use std::sync::Arc;

use queue::Engine;
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::{
    auth::{AuthLimits, TokenKeys},
    config::ApiConfig,
    error::ApiResult,
    hub::Hub,
};

#[derive(Debug)]
pub struct Shared {
    pub db: DatabaseConnection,
    pub engine: Engine,
    pub config: ApiConfig,
    pub tokens: TokenKeys,
    pub hub: Hub,
    pub queue_watch: crate::graphql::queues::QueueWatch,
    pub alert_feed: crate::graphql::alerts::AlertFeed,
    pub auth_limits: AuthLimits,
    /// Users disabled by an admin, reloaded every second.
    pub revocations: Arc<crate::revocation::Revocations>,
    /// Open websockets per user, for `WS_MAX_SOCKETS_PER_USER`.
    pub sockets: crate::ws::SocketCounts,
    /// A real argon2 hash, verified against when an email is unknown, so a login takes as long
    /// whether or not the account exists.
    pub dummy_hash: String,
    /// The Redis persistence in force, as the start-up guard read it.
    pub redis_durability: std::sync::Mutex<Option<String>>,
}

pub type SharedState = Arc<Shared>;

impl Shared {
    /// Appends to the audit log (admin actions, role changes).
    pub async fn audit(
        &self,
        db: &impl ConnectionTrait,
        actor: Option<i64>,
        action: &str,
        target: &str,
        details: serde_json::Value,
    ) -> ApiResult<()> {
        Ok(entities::audit_log::record(db, actor, action, target, details).await?)
    }
}

impl Shared {
    /// A Redis call bounded by `REDIS_TIMEOUT_MS`: `UNAVAILABLE` rather than a hang.
    pub async fn redis<T>(
        &self,
        call: impl std::future::Future<Output = queue::Result<T>>,
    ) -> ApiResult<T> {
        tokio::time::timeout(self.config.redis_timeout(), call)
            .await
            .map_err(|_| {
                crate::error::ApiError::unavailable(
                    "the job queue (Redis) did not answer in time",
                    2,
                )
            })?
            .map_err(Into::into)
    }
}
