//! Notification deliveries, one idempotency key each.

use sea_orm_migration::{prelude::*, schema::*};

use crate::create_index;

use super::m20261121_000005_create_channels::Channels;
use super::m20261121_000009_create_alerts::Alerts;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum Deliveries {
    Table,
    Id,
    AlertId,
    ChannelId,
    IdempotencyKey,
    Status,
    Attempts,
    LastStatusCode,
    LastError,
    JobId,
    CreatedAt,
    DeliveredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Deliveries::Table)
                    .col(big_pk_auto(Deliveries::Id))
                    .col(big_integer_null(Deliveries::AlertId))
                    .col(big_integer(Deliveries::ChannelId))
                    .col(string_uniq(Deliveries::IdempotencyKey))
                    .col(string(Deliveries::Status))
                    .col(integer(Deliveries::Attempts))
                    .col(integer_null(Deliveries::LastStatusCode))
                    .col(text_null(Deliveries::LastError))
                    .col(string(Deliveries::JobId))
                    .col(timestamp_with_time_zone(Deliveries::CreatedAt))
                    .col(timestamp_with_time_zone_null(Deliveries::DeliveredAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Deliveries::Table, Deliveries::AlertId)
                            .to(Alerts::Table, Alerts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Deliveries::Table, Deliveries::ChannelId)
                            .to(Channels::Table, Channels::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        create_index(
            manager,
            "idx_deliveries_alert",
            Deliveries::Table,
            [Deliveries::AlertId],
            false,
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Deliveries::Table).to_owned())
            .await
    }
}
