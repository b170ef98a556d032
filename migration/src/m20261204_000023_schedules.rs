//! Schedules: recurring jobs an operator defines (a cron expression in a time zone, a kind and
//! its payload). `next_run_at` is the tick due next. A scheduler claims due ticks by moving it
//! on with a compare-and-set that also writes the ticks it will push (`pending`), pushes them
//! under one idempotency key per tick, then clears `pending`: one claim per tick however many
//! processes run, and a claim cut short by a crash is pushed by the next scheduler.

use sea_orm_migration::{prelude::*, schema::*};

use crate::create_index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum Schedules {
    Table,
    Id,
    Name,
    Cron,
    TimeZone,
    Kind,
    Payload,
    Missed,
    Enabled,
    NextRunAt,
    LastRunAt,
    LastJobId,
    Pending,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Schedules::Table)
                    .col(big_pk_auto(Schedules::Id))
                    .col(string_uniq(Schedules::Name))
                    .col(string(Schedules::Cron))
                    .col(string(Schedules::TimeZone))
                    .col(string(Schedules::Kind))
                    .col(json_binary(Schedules::Payload))
                    .col(string(Schedules::Missed))
                    .col(boolean(Schedules::Enabled))
                    .col(timestamp_with_time_zone_null(Schedules::NextRunAt))
                    .col(timestamp_with_time_zone_null(Schedules::LastRunAt))
                    .col(string_null(Schedules::LastJobId))
                    .col(text_null(Schedules::Pending))
                    .col(big_integer(Schedules::Version).default(1))
                    .col(timestamp_with_time_zone(Schedules::CreatedAt))
                    .col(timestamp_with_time_zone_null(Schedules::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        create_index(
            manager,
            "idx_schedules_due",
            Schedules::Table,
            [Schedules::Enabled, Schedules::NextRunAt],
            false,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Schedules::Table).to_owned())
            .await
    }
}
