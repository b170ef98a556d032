//! Sensor readings, unique per sensor by their natural key.

use sea_orm_migration::{prelude::*, schema::*};

use crate::create_index;

use super::m20261121_000004_create_sensors::Sensors;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum Readings {
    Table,
    Id,
    SensorId,
    Ts,
    Value,
    Seq,
    NaturalKey,
    IngestJobId,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Readings::Table)
                    .col(big_pk_auto(Readings::Id))
                    .col(big_integer(Readings::SensorId))
                    .col(timestamp_with_time_zone(Readings::Ts))
                    .col(double(Readings::Value))
                    .col(big_integer_null(Readings::Seq))
                    .col(string(Readings::NaturalKey))
                    .col(string(Readings::IngestJobId))
                    .col(timestamp_with_time_zone(Readings::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Readings::Table, Readings::SensorId)
                            .to(Sensors::Table, Sensors::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        create_index(
            manager,
            "uq_readings_sensor_natural_key",
            Readings::Table,
            [Readings::SensorId, Readings::NaturalKey],
            true,
        )
        .await?;
        create_index(
            manager,
            "idx_readings_sensor_ts",
            Readings::Table,
            [Readings::SensorId, Readings::Ts],
            false,
        )
        .await?;
        create_index(
            manager,
            "idx_readings_created_at",
            Readings::Table,
            [Readings::CreatedAt],
            false,
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Readings::Table).to_owned())
            .await
    }
}
