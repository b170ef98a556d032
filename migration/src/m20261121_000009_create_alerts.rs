//! Alerts; `open_key` makes one open alert per rule and sensor.

use sea_orm_migration::{prelude::*, schema::*};

use crate::create_index;

use super::m20261121_000001_create_users::Users;
use super::m20261121_000004_create_sensors::Sensors;
use super::m20261121_000006_create_rules::Rules;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum Alerts {
    Table,
    Id,
    RuleId,
    SensorId,
    State,
    OpenKey,
    Count,
    OpenedReadingId,
    LastReadingId,
    WorkflowRunId,
    OpenedAt,
    UpdatedAt,
    ResolvedAt,
    AcknowledgedBy,
    AcknowledgedAt,
    LastNotifiedAt,
    LastNotifiedReadingId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alerts::Table)
                    .col(big_pk_auto(Alerts::Id))
                    .col(big_integer(Alerts::RuleId))
                    .col(big_integer(Alerts::SensorId))
                    .col(string(Alerts::State))
                    .col(string_null(Alerts::OpenKey).unique_key())
                    .col(integer(Alerts::Count))
                    .col(big_integer(Alerts::OpenedReadingId))
                    .col(big_integer(Alerts::LastReadingId))
                    .col(string_null(Alerts::WorkflowRunId))
                    .col(timestamp_with_time_zone(Alerts::OpenedAt))
                    .col(timestamp_with_time_zone(Alerts::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Alerts::ResolvedAt))
                    .col(big_integer_null(Alerts::AcknowledgedBy))
                    .col(timestamp_with_time_zone_null(Alerts::AcknowledgedAt))
                    .col(timestamp_with_time_zone_null(Alerts::LastNotifiedAt))
                    .col(big_integer_null(Alerts::LastNotifiedReadingId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Alerts::Table, Alerts::RuleId)
                            .to(Rules::Table, Rules::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Alerts::Table, Alerts::SensorId)
                            .to(Sensors::Table, Sensors::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Alerts::Table, Alerts::AcknowledgedBy)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        create_index(
            manager,
            "idx_alerts_state_opened",
            Alerts::Table,
            [Alerts::State, Alerts::OpenedAt],
            false,
        )
        .await?;
        create_index(
            manager,
            "idx_alerts_sensor",
            Alerts::Table,
            [Alerts::SensorId, Alerts::OpenedAt],
            false,
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alerts::Table).to_owned())
            .await
    }
}
