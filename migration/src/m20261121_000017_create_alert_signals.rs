//! The breach and clear signals `evaluate` found, in reading order, until an `alert` job has
//! applied them. Alert jobs of one rule may run at once and in any order; each applies every
//! pending signal of its rule up to its own, in order, so episodes and counts come out exactly
//! as the readings say.

use sea_orm_migration::{prelude::*, schema::*};

use super::m20261121_000006_create_rules::Rules;
use crate::create_index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum AlertSignals {
    Table,
    Id,
    RuleId,
    ReadingId,
    Breach,
    CreatedAt,
    AppliedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AlertSignals::Table)
                    .col(big_pk_auto(AlertSignals::Id))
                    .col(big_integer(AlertSignals::RuleId))
                    .col(big_integer(AlertSignals::ReadingId))
                    .col(boolean(AlertSignals::Breach))
                    .col(timestamp_with_time_zone(AlertSignals::CreatedAt))
                    .col(timestamp_with_time_zone_null(AlertSignals::AppliedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(AlertSignals::Table, AlertSignals::RuleId)
                            .to(Rules::Table, Rules::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        create_index(
            manager,
            "uq_alert_signals_rule_reading_breach",
            AlertSignals::Table,
            [
                AlertSignals::RuleId,
                AlertSignals::ReadingId,
                AlertSignals::Breach,
            ],
            true,
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AlertSignals::Table).to_owned())
            .await
    }
}
