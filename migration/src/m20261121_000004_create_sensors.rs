//! Sensors; `eval_cursor` is the last evaluated reading.

use sea_orm_migration::{prelude::*, schema::*};

use super::m20261121_000002_create_devices::Devices;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum Sensors {
    Table,
    Id,
    Key,
    Name,
    Unit,
    DeviceId,
    EvalCursor,
    LastReadingAt,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Sensors::Table)
                    .col(big_pk_auto(Sensors::Id))
                    .col(string_uniq(Sensors::Key))
                    .col(string(Sensors::Name))
                    .col(string(Sensors::Unit))
                    .col(big_integer_null(Sensors::DeviceId))
                    .col(big_integer(Sensors::EvalCursor).default(0))
                    .col(timestamp_with_time_zone_null(Sensors::LastReadingAt))
                    .col(timestamp_with_time_zone(Sensors::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Sensors::Table, Sensors::DeviceId)
                            .to(Devices::Table, Devices::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Sensors::Table).to_owned())
            .await
    }
}
