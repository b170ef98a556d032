//! Accounts and sessions: register, login, refresh (rotating, reuse-detecting), sign out, roles.

use async_graphql::{Context, Object, SimpleObject};
use chrono::Utc;
use entities::{refresh_tokens, users};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseTransaction,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, sea_query::Expr,
};
use serde_json::json;

use super::{ClientAddress, session, shared, users::User};
use crate::{
    auth::{
        Guarded, Role, hash_password, new_secret, secret_hash, secrets_match, validate_email,
        validate_password, verify_password,
    },
    error::{ApiError, ApiResult},
    state::Shared,
};

/// How accounts come to be here, for the sign-in page.
#[derive(Debug, Clone, SimpleObject)]
pub struct SignUpPolicy {
    /// Whether `register` takes new accounts now: open sign-up, or no account exists yet.
    pub open: bool,
    /// Whether the next registration (the first admin) needs the bootstrap token.
    pub bootstrap_token_required: bool,
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
    /// Whether registering is possible now, and whether it needs the bootstrap token.
    async fn sign_up_policy(&self, ctx: &Context<'_>) -> async_graphql::Result<SignUpPolicy> {
        let shared = shared(ctx);
        let empty = users::Entity::find()
            .count(&shared.db)
            .await
            .map_err(ApiError::from)?
            == 0;
        Ok(SignUpPolicy {
            open: empty || shared.config.allow_signup,
            bootstrap_token_required: empty && shared.config.bootstrap_required(),
        })
    }

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
}

#[derive(Default)]
pub struct AuthMutation;

fn client_address<'a>(ctx: &Context<'a>) -> &'a str {
    ctx.data_opt::<ClientAddress>()
        .map_or("unknown", |a| a.0.as_str())
}

#[Object]
impl AuthMutation {
    /// Creates an account and signs it in. The first account is the admin (in production it
    /// must bring `bootstrapToken`, the server's `BOOTSTRAP_ADMIN_TOKEN`). After that,
    /// registering is closed unless the server allows open sign-up (`ALLOW_SIGNUP`), where
    /// new accounts start as viewers; otherwise an admin creates accounts (`createUser`).
    /// Limited per address and per email (`RATE_LIMITED`).
    async fn register(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
        bootstrap_token: Option<String>,
    ) -> async_graphql::Result<AuthPayload> {
        let shared = shared(ctx);
        let email = validate_email(&email)?;
        validate_password(&password)?;
        shared
            .auth_limits
            .check(Guarded::Register, &email, client_address(ctx))
            .await?;
        let hash = hash_password(password).await?;
        let txn = entities::begin_write(&shared.db)
            .await
            .map_err(ApiError::from)?;
        entities::manage::users::lock_users(&txn).await?;
        let first_user = users::Entity::find()
            .count(&txn)
            .await
            .map_err(ApiError::from)?
            == 0;
        let role = if first_user {
            if shared.config.bootstrap_required() {
                check_bootstrap(
                    shared.config.bootstrap_admin_token.as_deref(),
                    bootstrap_token.as_deref(),
                )?;
            }
            Role::Admin
        } else if shared.config.allow_signup {
            Role::Viewer
        } else {
            return Err(ApiError::forbidden(
                "sign-up is closed here: an admin creates accounts (createUser)",
            )
            .into());
        };
        let user = insert_user(&txn, &email, hash, role).await?;
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
        let email = validate_email(&email)?;
        shared
            .auth_limits
            .check(Guarded::Login, &email, client_address(ctx))
            .await?;
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
        if user.disabled_at.is_some() {
            return Err(disabled_account().into());
        }
        Ok(issue(shared, &shared.db, user, None).await?)
    }

    /// Trades a refresh token for a new pair. Each refresh token works once: presenting a
    /// spent one (a stolen copy, or a replay) revokes every token of its login. One
    /// transaction, serialised with sign-out and reuse detection on the login's first token,
    /// so no new token is ever left live in a revoked login.
    async fn refresh_token(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> async_graphql::Result<AuthPayload> {
        let shared = shared(ctx);
        let hash = secret_hash(refresh_token.trim());
        let refused = || ApiError::unauthenticated("the refresh token is not valid; sign in again");
        let txn = entities::begin_write(&shared.db)
            .await
            .map_err(ApiError::from)?;
        let Some(found) = find_token(&txn, &hash).await? else {
            return Err(refused().into());
        };
        lock_family(&txn, &found.family).await?;
        // Read again under the lock: a sign-out or a reuse may have revoked it meanwhile.
        let Some(token) = find_token(&txn, &hash).await? else {
            return Err(refused().into());
        };
        let now = Utc::now();
        if token.revoked_at.is_some() || token.expires_at <= now {
            return Err(refused().into());
        }
        if token.used_at.is_some() {
            revoke_family(&txn, &token.family).await?;
            shared
                .audit(
                    &txn,
                    Some(token.user_id),
                    "auth.refresh_reuse",
                    &format!("user:{}", token.user_id),
                    json!({ "family": token.family }),
                )
                .await?;
            txn.commit().await.map_err(ApiError::from)?;
            return Err(ApiError::unauthenticated(
                "this refresh token was already used: every session of that login was signed out; sign in again",
            )
            .into());
        }
        refresh_tokens::Entity::update_many()
            .col_expr(refresh_tokens::Column::UsedAt, Expr::value(now))
            .filter(refresh_tokens::Column::Id.eq(token.id))
            .exec(&txn)
            .await
            .map_err(ApiError::from)?;
        let user = users::Entity::find_by_id(token.user_id)
            .one(&txn)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(refused)?;
        if user.disabled_at.is_some() {
            revoke_family(&txn, &token.family).await?;
            txn.commit().await.map_err(ApiError::from)?;
            return Err(disabled_account().into());
        }
        let payload = issue(shared, &txn, user, Some(token.family)).await?;
        txn.commit().await.map_err(ApiError::from)?;
        Ok(payload)
    }

    /// Signs out: revokes the refresh token's whole login.
    async fn logout(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> async_graphql::Result<bool> {
        let shared = shared(ctx);
        let txn = entities::begin_write(&shared.db)
            .await
            .map_err(ApiError::from)?;
        let Some(token) = find_token(&txn, &secret_hash(refresh_token.trim())).await? else {
            return Ok(false);
        };
        lock_family(&txn, &token.family).await?;
        revoke_family(&txn, &token.family).await?;
        txn.commit().await.map_err(ApiError::from)?;
        Ok(true)
    }
}

fn disabled_account() -> ApiError {
    ApiError::unauthenticated("this account is disabled; ask an admin")
}

fn check_bootstrap(expected: Option<&str>, given: Option<&str>) -> ApiResult<()> {
    match (expected, given) {
        (Some(expected), Some(given)) if secrets_match(given, expected) => Ok(()),
        (None, _) => Err(ApiError::forbidden(
            "this production deployment has no admin yet: set BOOTSTRAP_ADMIN_TOKEN on the server and register with it as bootstrapToken",
        )),
        (Some(_), _) => Err(ApiError {
            field: Some("bootstrapToken".into()),
            ..ApiError::forbidden("the first admin registers with the server's bootstrap token")
        }),
    }
}

pub(super) async fn insert_user(
    txn: &DatabaseTransaction,
    email: &str,
    password_hash: String,
    role: Role,
) -> ApiResult<users::Model> {
    let exists = users::Entity::find()
        .filter(users::Column::Email.eq(email))
        .count(txn)
        .await?
        > 0;
    if exists {
        return Err(ApiError::bad_input(
            "email",
            "this email is already registered",
        ));
    }
    Ok(users::ActiveModel {
        email: Set(email.to_owned()),
        password_hash: Set(password_hash),
        role: Set(role.as_str().to_owned()),
        created_at: Set(Utc::now()),
        disabled_at: Set(None),
        ..Default::default()
    }
    .insert(txn)
    .await?)
}

async fn find_token(
    txn: &DatabaseTransaction,
    hash: &str,
) -> ApiResult<Option<refresh_tokens::Model>> {
    Ok(refresh_tokens::Entity::find()
        .filter(refresh_tokens::Column::TokenHash.eq(hash))
        .one(txn)
        .await?)
}

/// Takes the login's lock: the row lock of its first token (PostgreSQL). Refresh, sign-out and
/// reuse detection all take it before they read the login's state, so they run one after the
/// other and each sees what the one before committed. SQLite runs one transaction at a time.
async fn lock_family(txn: &DatabaseTransaction, family: &str) -> ApiResult<()> {
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        refresh_tokens::Entity::find()
            .select_only()
            .column(refresh_tokens::Column::Id)
            .filter(refresh_tokens::Column::Family.eq(family))
            .order_by_asc(refresh_tokens::Column::Id)
            .limit(1)
            .lock_exclusive()
            .into_tuple::<i64>()
            .one(txn)
            .await?;
    }
    Ok(())
}

async fn revoke_family(db: &impl ConnectionTrait, family: &str) -> ApiResult<()> {
    refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(refresh_tokens::Column::Family.eq(family))
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(db)
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
