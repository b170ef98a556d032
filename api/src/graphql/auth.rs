//! Accounts and sessions: register, login, refresh (rotating, reuse-detecting), sign out, roles.

use async_graphql::{Context, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entities::{refresh_tokens, users};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, Set, TransactionTrait, sea_query::Expr,
};
use serde_json::json;

use super::{ClientAddress, page, require, row_id, session, shared};
use crate::{
    auth::{
        Role, hash_password, new_secret, secret_hash, validate_email, validate_password,
        verify_password,
    },
    error::{ApiError, ApiResult},
    state::Shared,
};

#[derive(Debug, Clone, SimpleObject)]
pub struct User {
    pub id: ID,
    pub email: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

impl From<users::Model> for User {
    fn from(u: users::Model) -> Self {
        Self {
            id: ID(u.id.to_string()),
            email: u.email,
            role: Role::parse(&u.role).unwrap_or(Role::Viewer),
            created_at: u.created_at,
        }
    }
}

/// What register, login and refresh answer.
#[derive(Debug, Clone, SimpleObject)]
pub struct AuthPayload {
    /// Send as `Authorization: Bearer <accessToken>`; valid for `expiresIn` seconds.
    pub access_token: String,
    /// Single use: trade it for a new pair with `refreshToken` before it expires.
    pub refresh_token: String,
    pub expires_in: u64,
    pub user: User,
}

#[derive(Default)]
pub struct AuthQuery;

#[Object]
impl AuthQuery {
    /// The signed-in user.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        let session = session(ctx)?;
        let user = users::Entity::find_by_id(session.user_id)
            .one(&shared(ctx).db)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::unauthenticated("this account no longer exists"))?;
        Ok(user.into())
    }

    /// Every account (admin), newest first.
    #[graphql(complexity = "page::complexity(first, child_complexity)")]
    async fn users(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<page::Page<User>> {
        require(ctx, Role::Admin)?;
        let limit = page::first(first)?;
        let after = page::int_cursor(after.as_deref())?;
        let shared = shared(ctx);
        let mut query = users::Entity::find().order_by_desc(users::Column::Id);
        if let Some(after) = after {
            query = query.filter(users::Column::Id.lt(after));
        }
        Ok(page::fetch(
            &shared.db,
            query,
            limit,
            None,
            |u| u.id.to_string(),
            User::from,
        )
        .await?)
    }
}

#[derive(Default)]
pub struct AuthMutation;

#[Object]
impl AuthMutation {
    /// Creates an account and signs it in. The first account is an admin; later ones start as
    /// viewers until an admin promotes them.
    async fn register(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
    ) -> async_graphql::Result<AuthPayload> {
        let shared = shared(ctx);
        let email = validate_email(&email)?;
        validate_password(&password)?;
        let hash = hash_password(password).await?;
        let txn = shared.db.begin().await.map_err(ApiError::from)?;
        if txn.get_database_backend() == DatabaseBackend::Postgres {
            // Two first registrations at once must not both become admin.
            txn.execute_unprepared("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
                .await
                .map_err(ApiError::from)?;
        }
        let exists = users::Entity::find()
            .filter(users::Column::Email.eq(&email))
            .count(&txn)
            .await
            .map_err(ApiError::from)?
            > 0;
        if exists {
            return Err(ApiError::bad_input("email", "this email is already registered").into());
        }
        let first_user = users::Entity::find()
            .count(&txn)
            .await
            .map_err(ApiError::from)?
            == 0;
        let role = if first_user {
            Role::Admin
        } else {
            Role::Viewer
        };
        let user = users::ActiveModel {
            email: Set(email.clone()),
            password_hash: Set(hash),
            role: Set(role.as_str().to_owned()),
            created_at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(ApiError::from)?;
        shared
            .audit(
                &txn,
                Some(user.id),
                "user.register",
                &format!("user:{}", user.id),
                json!({ "email": email, "role": role.as_str() }),
            )
            .await?;
        let payload = issue(shared, &txn, user, None).await?;
        txn.commit().await.map_err(ApiError::from)?;
        Ok(payload)
    }

    /// Signs in. Limited per account and per client address (`RATE_LIMITED`).
    async fn login(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
    ) -> async_graphql::Result<AuthPayload> {
        let shared = shared(ctx);
        let email = email.trim().to_lowercase();
        let address = ctx
            .data_opt::<ClientAddress>()
            .map_or("unknown", |a| a.0.as_str());
        shared.login_limits.check(&email, address)?;
        let user = users::Entity::find()
            .filter(users::Column::Email.eq(&email))
            .one(&shared.db)
            .await
            .map_err(ApiError::from)?;
        // An unknown email costs the same hash as a wrong password: timing tells nothing.
        let hash = user
            .as_ref()
            .map_or_else(|| shared.dummy_hash.clone(), |u| u.password_hash.clone());
        let matches = verify_password(password, hash).await?;
        let Some(user) = user.filter(|_| matches) else {
            return Err(ApiError::unauthenticated("wrong email or password").into());
        };
        Ok(issue(shared, &shared.db, user, None).await?)
    }

    /// Trades a refresh token for a new pair. Each refresh token works once: presenting a
    /// spent one (a stolen copy, or a replay) revokes every token of its login.
    async fn refresh_token(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> async_graphql::Result<AuthPayload> {
        let shared = shared(ctx);
        let hash = secret_hash(refresh_token.trim());
        let refused = || ApiError::unauthenticated("the refresh token is not valid; sign in again");
        let Some(token) = refresh_tokens::Entity::find()
            .filter(refresh_tokens::Column::TokenHash.eq(hash))
            .one(&shared.db)
            .await
            .map_err(ApiError::from)?
        else {
            return Err(refused().into());
        };
        let now = Utc::now();
        if token.revoked_at.is_some() || token.expires_at <= now {
            return Err(refused().into());
        }
        // Spend it: only the first of two concurrent uses gets the row.
        let spent = refresh_tokens::Entity::update_many()
            .col_expr(refresh_tokens::Column::UsedAt, Expr::value(now))
            .filter(refresh_tokens::Column::Id.eq(token.id))
            .filter(refresh_tokens::Column::UsedAt.is_null())
            .exec(&shared.db)
            .await
            .map_err(ApiError::from)?;
        if spent.rows_affected == 0 {
            revoke_family(shared, &token.family).await?;
            shared
                .audit(
                    &shared.db,
                    Some(token.user_id),
                    "auth.refresh_reuse",
                    &format!("user:{}", token.user_id),
                    json!({ "family": token.family }),
                )
                .await?;
            return Err(ApiError::unauthenticated(
                "this refresh token was already used: every session of that login was signed out; sign in again",
            )
            .into());
        }
        let user = users::Entity::find_by_id(token.user_id)
            .one(&shared.db)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(refused)?;
        Ok(issue(shared, &shared.db, user, Some(token.family)).await?)
    }

    /// Signs out: revokes the refresh token's whole login.
    async fn logout(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> async_graphql::Result<bool> {
        let shared = shared(ctx);
        let token = refresh_tokens::Entity::find()
            .filter(refresh_tokens::Column::TokenHash.eq(secret_hash(refresh_token.trim())))
            .one(&shared.db)
            .await
            .map_err(ApiError::from)?;
        match token {
            Some(token) => {
                revoke_family(shared, &token.family).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Changes a user's role (admin). The change reaches the user's access token at its next
    /// refresh (within the access token lifetime).
    async fn set_user_role(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        role: Role,
    ) -> async_graphql::Result<User> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let id = row_id("userId", &user_id)?;
        let txn = shared.db.begin().await.map_err(ApiError::from)?;
        let user = users::Entity::find_by_id(id)
            .one(&txn)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::not_found(format!("no user has id {id}")))?;
        if user.role == Role::Admin.as_str() && role != Role::Admin {
            let admins = users::Entity::find()
                .filter(users::Column::Role.eq(Role::Admin.as_str()))
                .count(&txn)
                .await
                .map_err(ApiError::from)?;
            if admins <= 1 {
                return Err(ApiError::bad_input(
                    "role",
                    "this is the last admin: promote another user first",
                )
                .into());
            }
        }
        let before = user.role.clone();
        let mut active: users::ActiveModel = user.into();
        active.role = Set(role.as_str().to_owned());
        let user = active.update(&txn).await.map_err(ApiError::from)?;
        shared
            .audit(
                &txn,
                Some(admin.user_id),
                "user.set_role",
                &format!("user:{id}"),
                json!({ "from": before, "to": role.as_str() }),
            )
            .await?;
        txn.commit().await.map_err(ApiError::from)?;
        Ok(user.into())
    }
}

async fn revoke_family(shared: &Shared, family: &str) -> ApiResult<()> {
    refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(refresh_tokens::Column::Family.eq(family))
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(&shared.db)
        .await?;
    Ok(())
}

/// A new access token and refresh token (in `family`, or a new one for a fresh login).
async fn issue(
    shared: &Shared,
    db: &impl ConnectionTrait,
    user: users::Model,
    family: Option<String>,
) -> ApiResult<AuthPayload> {
    let role = Role::parse(&user.role).unwrap_or(Role::Viewer);
    let access_token = shared.tokens.issue(user.id, role)?;
    let (refresh_token, hash) = new_secret("sfr_");
    let now = Utc::now();
    let ttl = chrono::Duration::from_std(shared.config.refresh_token_ttl())
        .map_err(ApiError::internal)?;
    refresh_tokens::ActiveModel {
        user_id: Set(user.id),
        token_hash: Set(hash),
        family: Set(family.unwrap_or_else(|| ulid::Ulid::new().to_string())),
        expires_at: Set(now + ttl),
        used_at: Set(None),
        revoked_at: Set(None),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(AuthPayload {
        access_token,
        refresh_token,
        expires_in: shared.tokens.access_ttl().as_secs(),
        user: user.into(),
    })
}
