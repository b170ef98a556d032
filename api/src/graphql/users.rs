//! Accounts as an admin manages them: list, create with a role, change the role, disable and
//! enable. A user is never deleted (the audit log and their tokens refer to them): disabling is
//! the delete. The checks and the audit live in `entities::manage::users`, shared with the
//! command line.

use async_graphql::{Context, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entities::{
    manage::{self, Actor},
    users,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::json;

use super::{auth::insert_user, page, require, row_id, shared};
use crate::{
    auth::{Role, hash_password, validate_email, validate_password},
    error::ApiError,
};

#[derive(Debug, Clone, SimpleObject)]
pub struct User {
    pub id: ID,
    pub email: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// When an admin disabled the account; null while it may sign in.
    pub disabled_at: Option<DateTime<Utc>>,
    /// Raised by every change; name it as `expectedVersion` to change the account.
    pub version: i64,
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<users::Model> for User {
    fn from(u: users::Model) -> Self {
        Self {
            id: ID(u.id.to_string()),
            email: u.email,
            role: Role::parse(&u.role).unwrap_or(Role::Viewer),
            created_at: u.created_at,
            disabled_at: u.disabled_at,
            version: u.version,
            updated_at: u.updated_at,
        }
    }
}

#[derive(Default)]
pub struct UserQuery;

#[Object]
impl UserQuery {
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
pub struct UserMutation;

#[Object]
impl UserMutation {
    /// Creates an account (admin), with its role; audited. The user signs in with the
    /// password given here.
    async fn create_user(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
        #[graphql(default_with = "Role::Viewer")] role: Role,
    ) -> async_graphql::Result<User> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let email = validate_email(&email)?;
        validate_password(&password)?;
        let hash = hash_password(password).await?;
        let txn = entities::begin_write(&shared.db)
            .await
            .map_err(ApiError::from)?;
        let user = insert_user(&txn, &email, hash, role).await?;
        shared
            .audit(
                &txn,
                Some(admin.user_id),
                "user.create",
                &format!("user:{}", user.id),
                json!({ "email": email, "role": role.as_str() }),
            )
            .await?;
        txn.commit().await.map_err(ApiError::from)?;
        Ok(user.into())
    }

    /// Disables an account (admin) or enables it again; audited with the account before and
    /// after. A disabled user's sessions end: their refresh tokens are revoked at once, and
    /// every API process refuses their access tokens and closes their sockets (4403) within
    /// about a second. `expectedVersion` (the user's `version` as read) refuses the change with
    /// `CONFLICT` if another admin changed the account since.
    async fn set_user_disabled(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        disabled: bool,
        expected_version: Option<i64>,
    ) -> async_graphql::Result<User> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let id = row_id("userId", &user_id)?;
        let user = manage::users::set_disabled(
            &shared.db,
            &Actor::User(admin.user_id),
            id,
            disabled,
            expected_version,
        )
        .await
        .map_err(ApiError::from)?;
        shared.revocations.mark(id, disabled);
        Ok(user.into())
    }

    /// Changes a user's role (admin); audited with the account before and after. The change
    /// reaches the user's access token at its next refresh (within the access token
    /// lifetime). The last enabled admin cannot be demoted.
    async fn set_user_role(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        role: Role,
        expected_version: Option<i64>,
    ) -> async_graphql::Result<User> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let id = row_id("userId", &user_id)?;
        let user = manage::users::set_role(
            &shared.db,
            &Actor::User(admin.user_id),
            id,
            role.as_str(),
            expected_version,
        )
        .await
        .map_err(ApiError::from)?;
        Ok(user.into())
    }
}
