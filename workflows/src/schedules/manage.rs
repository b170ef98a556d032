//! Creating, editing, pausing and deleting schedules: the checks (a cron that parses, a known
//! time zone, a payload its kind accepts), the compare-and-set on `version`, and the audit
//! entry, shared by the API and the command line. Nothing is stored unless every field passes.

use chrono::Utc;
use entities::{
    manage::{Actor, ManageError, check_version, update_if_version},
    schedules,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set,
};
use serde_json::{Value, json};

use super::{MAX_NAME_LEN, Missed, Timing};
use crate::jobs::submission;

/// A schedule as an operator writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSpec {
    pub name: String,
    pub cron: String,
    pub time_zone: String,
    pub kind: String,
    pub payload: Value,
    pub missed: Missed,
}

fn audited(s: &schedules::Model) -> Value {
    json!({
        "name": s.name, "cron": s.cron, "timeZone": s.time_zone, "kind": s.kind,
        "payload": s.payload, "missed": s.missed, "enabled": s.enabled, "version": s.version,
    })
}

fn target(id: i64) -> String {
    format!("schedule:{id}")
}

/// Every field checked, naming the first one at fault; answers the timing.
fn check(spec: &ScheduleSpec) -> Result<Timing, ManageError> {
    let name = spec.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN || name.contains('\0') {
        return Err(ManageError::refused(
            "name",
            format!("a name has 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    let timing = Timing::parse(&spec.cron, &spec.time_zone)
        .map_err(|e| ManageError::refused(e.field, e.message))?;
    submission(&spec.kind, spec.payload.clone())
        .map_err(|e| ManageError::refused(e.field, e.message))?;
    Ok(timing)
}

async fn name_taken(
    db: &impl sea_orm::ConnectionTrait,
    name: &str,
    except: Option<i64>,
) -> Result<bool, ManageError> {
    let mut find = schedules::Entity::find().filter(schedules::Column::Name.eq(name));
    if let Some(id) = except {
        find = find.filter(schedules::Column::Id.ne(id));
    }
    Ok(find.one(db).await?.is_some())
}

pub async fn list(db: &DatabaseConnection) -> Result<Vec<schedules::Model>, ManageError> {
    Ok(schedules::Entity::find()
        .order_by_asc(schedules::Column::Name)
        .all(db)
        .await?)
}

pub async fn find(db: &DatabaseConnection, id: i64) -> Result<schedules::Model, ManageError> {
    schedules::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| ManageError::NotFound(format!("no schedule has id {id}")))
}

/// Stores a new schedule, running (its first tick is the next one after now).
pub async fn create(
    db: &DatabaseConnection,
    actor: &Actor,
    spec: &ScheduleSpec,
) -> Result<schedules::Model, ManageError> {
    let timing = check(spec)?;
    let txn = entities::begin_write(db).await?;
    let name = spec.name.trim();
    if name_taken(&txn, name, None).await? {
        return Err(ManageError::refused(
            "name",
            format!("a schedule is already named {name:?}"),
        ));
    }
    let now = Utc::now();
    let created = schedules::ActiveModel {
        name: Set(name.to_owned()),
        cron: Set(spec.cron.trim().to_owned()),
        time_zone: Set(spec.time_zone.trim().to_owned()),
        kind: Set(spec.kind.clone()),
        payload: Set(spec.payload.clone()),
        missed: Set(spec.missed.as_str().to_owned()),
        enabled: Set(true),
        next_run_at: Set(timing.next_after(now)),
        last_run_at: Set(None),
        last_job_id: Set(None),
        pending: Set(None),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(None),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    actor
        .audit(
            &txn,
            "schedule.create",
            &target(created.id),
            json!({ "after": audited(&created) }),
        )
        .await?;
    txn.commit().await?;
    Ok(created)
}

/// Replaces a schedule's definition, against the version it was read at. Its next tick is
/// worked out afresh from now.
pub async fn update(
    db: &DatabaseConnection,
    actor: &Actor,
    id: i64,
    expected_version: i64,
    spec: &ScheduleSpec,
) -> Result<schedules::Model, ManageError> {
    let timing = check(spec)?;
    let txn = entities::begin_write(db).await?;
    let before = find_in(&txn, id).await?;
    check_version("schedule", before.version, Some(expected_version))?;
    let name = spec.name.trim();
    if name_taken(&txn, name, Some(id)).await? {
        return Err(ManageError::refused(
            "name",
            format!("a schedule is already named {name:?}"),
        ));
    }
    let now = Utc::now();
    let mut active: schedules::ActiveModel = before.clone().into();
    active.name = Set(name.to_owned());
    active.cron = Set(spec.cron.trim().to_owned());
    active.time_zone = Set(spec.time_zone.trim().to_owned());
    active.kind = Set(spec.kind.clone());
    active.payload = Set(spec.payload.clone());
    active.missed = Set(spec.missed.as_str().to_owned());
    active.next_run_at = Set(before.enabled.then(|| timing.next_after(now)).flatten());
    commit_change(txn, actor, "schedule.update", &before, active).await
}

/// Writes `active` over `before` against its version (raised, with `updated_at`), audits the
/// change with both sides, and commits.
async fn commit_change(
    txn: sea_orm::DatabaseTransaction,
    actor: &Actor,
    action: &str,
    before: &schedules::Model,
    mut active: schedules::ActiveModel,
) -> Result<schedules::Model, ManageError> {
    active.version = Set(before.version + 1);
    active.updated_at = Set(Some(Utc::now()));
    let after = update_if_version(
        &txn,
        active,
        schedules::Column::Version,
        before.version,
        "schedule",
    )
    .await?;
    actor
        .audit(
            &txn,
            action,
            &target(before.id),
            json!({ "before": audited(before), "after": audited(&after) }),
        )
        .await?;
    txn.commit().await?;
    Ok(after)
}

/// Pauses (no jobs, the definition kept) or resumes (from the next tick after now: ticks
/// that passed while paused are not made up) a schedule.
pub async fn set_enabled(
    db: &DatabaseConnection,
    actor: &Actor,
    id: i64,
    enabled: bool,
    expected_version: Option<i64>,
) -> Result<schedules::Model, ManageError> {
    let txn = entities::begin_write(db).await?;
    let before = find_in(&txn, id).await?;
    check_version("schedule", before.version, expected_version)?;
    if before.enabled == enabled {
        txn.commit().await?;
        return Ok(before);
    }
    let now = Utc::now();
    let next = if enabled {
        Timing::parse(&before.cron, &before.time_zone)
            .map_err(|e| ManageError::refused(e.field, e.message))?
            .next_after(now)
    } else {
        None
    };
    let mut active: schedules::ActiveModel = before.clone().into();
    active.enabled = Set(enabled);
    active.next_run_at = Set(next);
    let action = if enabled {
        "schedule.resume"
    } else {
        "schedule.pause"
    };
    commit_change(txn, actor, action, &before, active).await
}

/// Deletes a schedule; the jobs it made stay.
pub async fn delete(
    db: &DatabaseConnection,
    actor: &Actor,
    id: i64,
    expected_version: Option<i64>,
) -> Result<(), ManageError> {
    let txn = entities::begin_write(db).await?;
    let before = find_in(&txn, id).await?;
    check_version("schedule", before.version, expected_version)?;
    let deleted = schedules::Entity::delete_many()
        .filter(schedules::Column::Id.eq(id))
        .filter(schedules::Column::Version.eq(before.version))
        .exec(&txn)
        .await?;
    if deleted.rows_affected != 1 {
        return Err(ManageError::Stale {
            what: "schedule",
            expected: before.version,
            current: None,
        });
    }
    actor
        .audit(
            &txn,
            "schedule.delete",
            &target(id),
            json!({ "before": audited(&before) }),
        )
        .await?;
    txn.commit().await?;
    Ok(())
}

async fn find_in(
    db: &impl sea_orm::ConnectionTrait,
    id: i64,
) -> Result<schedules::Model, ManageError> {
    schedules::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| ManageError::NotFound(format!("no schedule has id {id}")))
}
