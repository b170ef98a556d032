//! Users an admin disabled, as every API process knows them. Access tokens are stateless
//! JWTs, so without this a disabled user would keep working until the token expired (15
//! minutes by default). Each process reloads the set from SQL every second, and the process
//! that disabled the user marks it at once: on every replica the user's requests are refused
//! and their open sockets closed within about a second.

use std::{collections::HashSet, sync::RwLock, time::Duration};

use entities::users;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use tokio_util::sync::CancellationToken;

/// How often each process reloads the disabled users.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct Revocations {
    disabled: RwLock<HashSet<i64>>,
}

impl Revocations {
    pub fn is_disabled(&self, user_id: i64) -> bool {
        self.disabled
            .read()
            .map(|set| set.contains(&user_id))
            .unwrap_or(false)
    }

    /// Marks a change this process made, before the next reload sees it.
    pub fn mark(&self, user_id: i64, disabled: bool) {
        if let Ok(mut set) = self.disabled.write() {
            if disabled {
                set.insert(user_id);
            } else {
                set.remove(&user_id);
            }
        }
    }

    pub async fn reload(&self, db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
        let ids: Vec<i64> = users::Entity::find()
            .select_only()
            .column(users::Column::Id)
            .filter(users::Column::DisabledAt.is_not_null())
            .into_tuple()
            .all(db)
            .await?;
        if let Ok(mut set) = self.disabled.write() {
            *set = ids.into_iter().collect();
        }
        Ok(())
    }

    /// Reloads every [`RELOAD_EVERY`] until `stop`. A failed reload keeps the last set.
    pub fn follow(self: std::sync::Arc<Self>, db: DatabaseConnection, stop: CancellationToken) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err(e) = self.reload(&db).await {
                    tracing::warn!(error = %e, "disabled users could not be reloaded; keeping the last set");
                }
            }
        });
    }
}
