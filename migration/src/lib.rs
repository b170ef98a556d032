//! Steadfast's migrations, for SQLite and PostgreSQL alike. Each module creates one table with
//! its foreign keys and the indexes the operator views need, or changes one table. `main.rs` is the migration CLI;
//! the services run `Migrator::up` on start when asked (`--migrate`).

// `MigrationTrait` is an `async_trait`: its methods must name `&SchemaManager` exactly as the
// trait does, without the `<'_>` that rust_2018_idioms asks for.
#![allow(elided_lifetimes_in_paths)]

pub use sea_orm_migration::prelude::*;

#[cfg(feature = "testing")]
pub mod testing;

mod m20261121_000001_create_users;
mod m20261121_000002_create_devices;
mod m20261121_000003_create_refresh_tokens;
mod m20261121_000004_create_sensors;
mod m20261121_000005_create_channels;
mod m20261121_000006_create_rules;
mod m20261121_000007_create_rule_channels;
mod m20261121_000008_create_readings;
mod m20261121_000009_create_alerts;
mod m20261121_000010_create_deliveries;
mod m20261121_000011_create_workflow_runs;
mod m20261121_000012_create_workflow_steps;
mod m20261121_000013_create_jobs;
mod m20261121_000014_create_job_attempts;
mod m20261121_000015_create_dead_jobs;
mod m20261121_000016_create_audit_log;
mod m20261121_000017_create_alert_signals;
mod m20261121_000018_alert_signals_applied_by;
mod m20261121_000019_readings_sensor_id_index;
mod m20261202_000020_access_controls;
mod m20261203_000021_versions;
mod m20261203_000022_job_priority;
mod m20261204_000023_schedules;
mod m20261204_000024_job_subject;

/// Creates an index (unique or not) on `table`: one statement, the same on SQLite and
/// PostgreSQL. Shared by the table migrations, and never changed once they shipped.
pub(crate) async fn create_index<T: IntoIden + 'static>(
    manager: &SchemaManager<'_>,
    name: &str,
    table: T,
    columns: impl IntoIterator<Item = T>,
    unique: bool,
) -> Result<(), DbErr> {
    let mut index = Index::create();
    index.name(name).table(table);
    for column in columns {
        index.col(column);
    }
    if unique {
        index.unique();
    }
    manager.create_index(index.to_owned()).await
}

#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_create_users::Migration),
            Box::new(m20261121_000002_create_devices::Migration),
            Box::new(m20261121_000003_create_refresh_tokens::Migration),
            Box::new(m20261121_000004_create_sensors::Migration),
            Box::new(m20261121_000005_create_channels::Migration),
            Box::new(m20261121_000006_create_rules::Migration),
            Box::new(m20261121_000007_create_rule_channels::Migration),
            Box::new(m20261121_000008_create_readings::Migration),
            Box::new(m20261121_000009_create_alerts::Migration),
            Box::new(m20261121_000010_create_deliveries::Migration),
            Box::new(m20261121_000011_create_workflow_runs::Migration),
            Box::new(m20261121_000012_create_workflow_steps::Migration),
            Box::new(m20261121_000013_create_jobs::Migration),
            Box::new(m20261121_000014_create_job_attempts::Migration),
            Box::new(m20261121_000015_create_dead_jobs::Migration),
            Box::new(m20261121_000016_create_audit_log::Migration),
            Box::new(m20261121_000017_create_alert_signals::Migration),
            Box::new(m20261121_000018_alert_signals_applied_by::Migration),
            Box::new(m20261121_000019_readings_sensor_id_index::Migration),
            Box::new(m20261202_000020_access_controls::Migration),
            Box::new(m20261203_000021_versions::Migration),
            Box::new(m20261203_000022_job_priority::Migration),
            Box::new(m20261204_000023_schedules::Migration),
            Box::new(m20261204_000024_job_subject::Migration),
        ]
    }
}
