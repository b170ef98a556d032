//! Readings by sensor in id order: what `evaluate` reads after its cursor (and its rules'
//! history before it) and what `silence_check` reads last. Without it PostgreSQL answered
//! `sensor_id = ? AND id > ? ORDER BY id LIMIT n` through the `(sensor_id, ts)` index: every
//! reading the sensor ever had, filtered and sorted, so each evaluation cost more as the table
//! grew (6 ms at 390,000 readings in the burst, for 20 rows) and the drain rate fell with it.
//! The index is append-only per sensor, so it costs an insert little.

use sea_orm_migration::prelude::*;

use super::m20261121_000008_create_readings::Readings;

#[derive(DeriveMigrationName)]
pub struct Migration;

const NAME: &str = "idx_readings_sensor_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // `IF NOT EXISTS`: on a large table an operator builds it beforehand with
        // `CREATE INDEX CONCURRENTLY` (no lock on inserts), and this finds it in place.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name(NAME)
                    .table(Readings::Table)
                    .col(Readings::SensorId)
                    .col(Readings::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(NAME).table(Readings::Table).to_owned())
            .await
    }
}
