//! Changes an admin makes to accounts and devices, shared by the API and the `steadfast` command
//! line so both check the same rules, raise the same version and write the same audit entry
//! (with the row before and after). Each runs in one transaction: read, check, compare-and-set.

pub mod devices;
pub mod users;

use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};
use serde_json::{Value, json};

/// Who makes a change, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in user, through the API.
    User(i64),
    /// The `steadfast` command line, run by this OS user.
    Cli { os_user: String },
}

impl Actor {
    fn user_id(&self) -> Option<i64> {
        match self {
            Actor::User(id) => Some(*id),
            Actor::Cli { .. } => None,
        }
    }

    /// Appends an audit entry for a change this actor made.
    pub async fn audit(
        &self,
        db: &impl ConnectionTrait,
        action: &str,
        target: &str,
        mut details: Value,
    ) -> Result<(), DbErr> {
        if let Actor::Cli { os_user } = self {
            details["via"] = json!("cli");
            details["osUser"] = json!(os_user);
        }
        crate::audit_log::record(db, self.user_id(), action, target, details).await
    }
}

/// Why a change was refused; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error("{0}")]
    NotFound(String),
    /// Somebody changed the row since it was read (`current` is `None` when the write lost the
    /// race after the check).
    #[error("the {what} changed since version {expected}")]
    Stale {
        what: &'static str,
        expected: i64,
        current: Option<i64>,
    },
    /// A rule of the change itself; `field` names the argument at fault.
    #[error("{field}: {message}")]
    Refused { field: String, message: String },
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl ManageError {
    pub fn refused(field: impl Into<String>, message: impl Into<String>) -> Self {
        ManageError::Refused {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Refuses a change made against a version other than the row's.
pub fn check_version(
    what: &'static str,
    current: i64,
    expected: Option<i64>,
) -> Result<(), ManageError> {
    match expected {
        Some(expected) if expected != current => Err(ManageError::Stale {
            what,
            expected,
            current: Some(current),
        }),
        _ => Ok(()),
    }
}

/// Writes `active` only if the row is still at `read` (its version when it was read), so a
/// change that raced past the check is refused rather than lost.
pub async fn update_if_version<A>(
    db: &impl ConnectionTrait,
    active: A,
    version: <A::Entity as EntityTrait>::Column,
    read: i64,
    what: &'static str,
) -> Result<<A::Entity as EntityTrait>::Model, ManageError>
where
    A: ActiveModelTrait + Send,
    <A::Entity as EntityTrait>::Model: sea_orm::IntoActiveModel<A>,
{
    match A::Entity::update(active)
        .validate()?
        .filter(version.eq(read))
        .exec(db)
        .await
    {
        Ok(model) => Ok(model),
        Err(DbErr::RecordNotUpdated) => Err(ManageError::Stale {
            what,
            expected: read,
            current: None,
        }),
        Err(e) => Err(e.into()),
    }
}
