//! Roles and disabling. A user is never deleted: the audit log and their tokens refer to them,
//! so disabling is the delete. The last enabled admin can be neither demoted nor disabled.

use chrono::Utc;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, PaginatorTrait,
    QueryFilter, Set, sea_query::Expr,
};
use serde_json::{Value, json};

use super::{Actor, ManageError, check_version, update_if_version};
use crate::{refresh_tokens, users};

/// The roles a user may hold, as stored.
pub const ROLES: [&str; 3] = ["VIEWER", "OPERATOR", "ADMIN"];
const ADMIN: &str = "ADMIN";

/// The user as the audit log keeps it, before and after a change.
fn audited(u: &users::Model) -> Value {
    json!({ "email": u.email, "role": u.role, "disabled": u.disabled_at.is_some(), "version": u.version })
}

/// Serialises changes that count admins, so two admins demoting each other at once cannot
/// leave none (SQLite serialises every write transaction already).
pub async fn lock_users(db: &impl ConnectionTrait) -> Result<(), sea_orm::DbErr> {
    if db.get_database_backend() == DatabaseBackend::Postgres {
        db.execute_unprepared("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
            .await?;
    }
    Ok(())
}

async fn enabled_admins(db: &impl ConnectionTrait) -> Result<u64, sea_orm::DbErr> {
    users::Entity::find()
        .filter(users::Column::Role.eq(ADMIN))
        .filter(users::Column::DisabledAt.is_null())
        .count(db)
        .await
}

/// Finds a user by id or, when `who` holds an `@`, by email.
pub async fn find(db: &impl ConnectionTrait, who: &str) -> Result<users::Model, ManageError> {
    let found = if who.contains('@') {
        users::Entity::find()
            .filter(users::Column::Email.eq(who.trim().to_lowercase()))
            .one(db)
            .await?
    } else {
        match who.trim().parse::<i64>() {
            Ok(id) => users::Entity::find_by_id(id).one(db).await?,
            Err(_) => None,
        }
    };
    found.ok_or_else(|| ManageError::NotFound(format!("no user is {who:?}")))
}

/// Gives user `id` the role `role` (one of [`ROLES`]). `expected`: the version the change was
/// made against, if the caller read one.
pub async fn set_role(
    db: &DatabaseConnection,
    actor: &Actor,
    id: i64,
    role: &str,
    expected: Option<i64>,
) -> Result<users::Model, ManageError> {
    let Some(role) = ROLES.iter().copied().find(|r| *r == role) else {
        return Err(ManageError::refused(
            "role",
            format!("{role:?} is not a role: name one of {}", ROLES.join(", ")),
        ));
    };
    let txn = crate::begin_write(db).await?;
    lock_users(&txn).await?;
    let before = read(&txn, id, expected).await?;
    if before.role == ADMIN
        && role != ADMIN
        && before.disabled_at.is_none()
        && enabled_admins(&txn).await? <= 1
    {
        return Err(ManageError::refused(
            "role",
            "this is the last admin: promote another user first",
        ));
    }
    let mut active: users::ActiveModel = before.clone().into();
    active.role = Set(role.to_owned());
    let after = write(&txn, active, &before).await?;
    actor
        .audit(
            &txn,
            "user.set_role",
            &format!("user:{id}"),
            json!({ "before": audited(&before), "after": audited(&after) }),
        )
        .await?;
    txn.commit().await?;
    Ok(after)
}

/// Disables user `id` (their refresh tokens are revoked in the same transaction; the API
/// processes refuse their access tokens within a second) or enables them again.
pub async fn set_disabled(
    db: &DatabaseConnection,
    actor: &Actor,
    id: i64,
    disabled: bool,
    expected: Option<i64>,
) -> Result<users::Model, ManageError> {
    if disabled && actor == &Actor::User(id) {
        return Err(ManageError::refused(
            "userId",
            "you cannot disable your own account",
        ));
    }
    let txn = crate::begin_write(db).await?;
    lock_users(&txn).await?;
    let before = read(&txn, id, expected).await?;
    if disabled
        && before.role == ADMIN
        && before.disabled_at.is_none()
        && enabled_admins(&txn).await? <= 1
    {
        return Err(ManageError::refused(
            "userId",
            "this is the last admin: promote another user first",
        ));
    }
    let now = Utc::now();
    let mut active: users::ActiveModel = before.clone().into();
    active.disabled_at = Set(disabled.then_some(before.disabled_at.unwrap_or(now)));
    let after = write(&txn, active, &before).await?;
    if disabled {
        refresh_tokens::Entity::update_many()
            .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(now))
            .filter(refresh_tokens::Column::UserId.eq(id))
            .filter(refresh_tokens::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
    }
    actor
        .audit(
            &txn,
            if disabled {
                "user.disable"
            } else {
                "user.enable"
            },
            &format!("user:{id}"),
            json!({ "before": audited(&before), "after": audited(&after) }),
        )
        .await?;
    txn.commit().await?;
    Ok(after)
}

async fn read(
    db: &impl ConnectionTrait,
    id: i64,
    expected: Option<i64>,
) -> Result<users::Model, ManageError> {
    let user = users::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| ManageError::NotFound(format!("no user has id {id}")))?;
    check_version("user", user.version, expected)?;
    Ok(user)
}

async fn write(
    db: &impl ConnectionTrait,
    mut active: users::ActiveModel,
    before: &users::Model,
) -> Result<users::Model, ManageError> {
    active.version = Set(before.version + 1);
    active.updated_at = Set(Some(Utc::now()));
    update_if_version(db, active, users::Column::Version, before.version, "user").await
}
