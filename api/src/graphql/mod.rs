//! The GraphQL schema: one module per domain, merged here, with the limits (depth,
//! complexity) and the extension that gives every error its code.

// async-graphql's derives and `#[Object]` generate types without `Debug`.
#![allow(missing_debug_implementations)]

pub mod alerts;
pub mod alerts_by_hand;
pub mod audit;
pub mod auth;
pub mod channels;
pub mod dead;
pub mod devices;
mod errors;
pub mod jobs;
pub mod ledger;
pub mod page;
pub mod queue_limits;
pub mod queues;
pub mod rules;
pub mod runs;
pub mod schedules;
pub mod sensors;
mod subscriptions;
pub mod users;

use async_graphql::{Context, MergedObject, MergedSubscription, Schema};

use crate::{
    auth::{Role, Session},
    error::{ApiError, ApiResult},
    state::SharedState,
};

#[derive(MergedObject, Default)]
pub struct Query(
    auth::AuthQuery,
    users::UserQuery,
    jobs::JobQuery,
    dead::DeadQuery,
    queues::QueueQuery,
    queue_limits::QueueLimitsQuery,
    runs::RunQuery,
    schedules::ScheduleQuery,
    sensors::SensorQuery,
    channels::ChannelQuery,
    devices::DeviceQuery,
    alerts::AlertQuery,
    audit::AuditQuery,
    ledger::LedgerQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    auth::AuthMutation,
    users::UserMutation,
    jobs::JobMutation,
    dead::DeadMutation,
    queues::QueueMutation,
    queue_limits::QueueLimitsMutation,
    schedules::ScheduleMutation,
    sensors::SensorMutation,
    rules::RuleMutation,
    channels::ChannelMutation,
    devices::DeviceMutation,
    alerts::AlertMutation,
    alerts_by_hand::AlertByHandMutation,
);

#[derive(MergedSubscription, Default)]
pub struct Subscription(
    jobs::JobSubscription,
    queues::QueueSubscription,
    alerts::AlertSubscription,
);

pub type AppSchema = Schema<Query, Mutation, Subscription>;

pub fn build_schema(shared: SharedState) -> AppSchema {
    let (depth, complexity, introspection) = (
        shared.config.graphql_max_depth,
        shared.config.graphql_max_complexity,
        shared.config.introspection(),
    );
    let builder = Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    );
    let builder = if introspection {
        builder
    } else {
        builder.disable_introspection()
    };
    builder
        .data(shared)
        .limit_depth(depth)
        .limit_complexity(complexity)
        .limit_recursive_depth(64)
        .limit_directives(8)
        .extension(errors::ErrorCodes)
        .extension(subscriptions::SubscriptionGauge)
        .finish()
}

/// The schema as SDL, for clients and the snapshot test.
pub fn sdl() -> String {
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .finish()
    .sdl()
}

/// Who is asking, read once per request (HTTP) or connection (websocket).
#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    Known(Session),
    /// A token was sent and refused: every operation that needs a caller says why.
    Refused(ApiError),
}

/// The client's address, for the login rate limit.
#[derive(Debug, Clone)]
pub struct ClientAddress(pub String);

pub(crate) fn shared<'a>(ctx: &Context<'a>) -> &'a SharedState {
    ctx.data_unchecked::<SharedState>()
}

/// The caller's session, or `UNAUTHENTICATED`.
pub(crate) fn session(ctx: &Context<'_>) -> ApiResult<Session> {
    match ctx.data_opt::<Caller>() {
        Some(Caller::Known(session)) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if session.expires_at <= now {
                return Err(ApiError::unauthenticated(
                    "the access token expired; refresh it",
                ));
            }
            if shared(ctx).revocations.is_disabled(session.user_id) {
                return Err(ApiError::unauthenticated(
                    "this account is disabled; ask an admin",
                ));
            }
            Ok(session.clone())
        }
        Some(Caller::Refused(e)) => Err(e.clone()),
        _ => Err(ApiError::unauthenticated(
            "sign in: send `Authorization: Bearer <access token>`",
        )),
    }
}

/// The caller's session if it holds at least `role`; else `UNAUTHENTICATED` or `FORBIDDEN`.
pub(crate) fn require(ctx: &Context<'_>, role: Role) -> ApiResult<Session> {
    let session = session(ctx)?;
    session.require(role)?;
    Ok(session)
}

/// Row `id` of table `E`, or `NOT_FOUND` naming it as `what` ("no channel has id 7").
pub(crate) async fn row_or_not_found<E>(
    db: &impl sea_orm::ConnectionTrait,
    id: i64,
    what: &str,
) -> ApiResult<E::Model>
where
    E: sea_orm::EntityTrait,
    <E::PrimaryKey as sea_orm::PrimaryKeyTrait>::ValueType: From<i64>,
{
    E::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no {what} has id {id}")))
}

/// Parses an integer row id given as `ID`.
pub(crate) fn row_id(field: &str, id: &async_graphql::ID) -> ApiResult<i64> {
    id.parse::<i64>()
        .map_err(|_| ApiError::bad_input(field, format!("{:?} is not an id here", id.as_str())))
}

/// Writes `active` (its version already raised) only if the row is still at version
/// `expected`: the compare and the write are one `UPDATE ... WHERE version = $expected`, so of
/// two concurrent edits of one version only one lands. The other gets `CONFLICT` and nothing
/// changes. `what` names the row in the error ("rule").
pub(crate) async fn update_if_version<A>(
    db: &impl sea_orm::ConnectionTrait,
    active: A,
    version: <A::Entity as sea_orm::EntityTrait>::Column,
    expected: i64,
    what: &str,
) -> ApiResult<<A::Entity as sea_orm::EntityTrait>::Model>
where
    A: sea_orm::ActiveModelTrait + Send,
    <A::Entity as sea_orm::EntityTrait>::Model: sea_orm::IntoActiveModel<A>,
{
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    match A::Entity::update(active)
        .validate()?
        .filter(version.eq(expected))
        .exec(db)
        .await
    {
        Ok(model) => Ok(model),
        Err(sea_orm::DbErr::RecordNotUpdated) => Err(ApiError::stale(what, expected, None)),
        Err(e) => Err(e.into()),
    }
}

/// `CONFLICT` unless the row read is at the version the edit was made against.
pub(crate) fn check_version(what: &str, current: i64, expected: i64) -> ApiResult<()> {
    if current == expected {
        Ok(())
    } else {
        Err(ApiError::stale(what, expected, Some(current)))
    }
}
