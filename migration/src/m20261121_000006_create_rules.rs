//! Alert rules of a sensor.

use sea_orm_migration::{prelude::*, schema::*};

use crate::create_index;

use super::m20261121_000004_create_sensors::Sensors;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum Rules {
    Table,
    Id,
    SensorId,
    Kind,
    Threshold,
    ClearThreshold,
    ForReadings,
    SilenceSeconds,
    ThrottleSeconds,
    Enabled,
    InBreach,
    EvaluatedTo,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Rules::Table)
                    .col(big_pk_auto(Rules::Id))
                    .col(big_integer(Rules::SensorId))
                    .col(string(Rules::Kind))
                    .col(double_null(Rules::Threshold))
                    .col(double_null(Rules::ClearThreshold))
                    .col(integer(Rules::ForReadings))
                    .col(integer_null(Rules::SilenceSeconds))
                    .col(integer(Rules::ThrottleSeconds))
                    .col(boolean(Rules::Enabled))
                    .col(boolean(Rules::InBreach).default(false))
                    .col(big_integer(Rules::EvaluatedTo).default(0))
                    .col(timestamp_with_time_zone(Rules::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Rules::Table, Rules::SensorId)
                            .to(Sensors::Table, Sensors::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        create_index(
            manager,
            "idx_rules_sensor",
            Rules::Table,
            [Rules::SensorId],
            false,
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Rules::Table).to_owned())
            .await
    }
}
