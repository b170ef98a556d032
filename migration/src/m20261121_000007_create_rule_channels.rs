//! Which channels a rule notifies.

use sea_orm_migration::{prelude::*, schema::*};

use super::m20261121_000005_create_channels::Channels;
use super::m20261121_000006_create_rules::Rules;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum RuleChannels {
    Table,
    RuleId,
    ChannelId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RuleChannels::Table)
                    .col(big_integer(RuleChannels::RuleId))
                    .col(big_integer(RuleChannels::ChannelId))
                    .primary_key(
                        Index::create()
                            .col(RuleChannels::RuleId)
                            .col(RuleChannels::ChannelId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(RuleChannels::Table, RuleChannels::RuleId)
                            .to(Rules::Table, Rules::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(RuleChannels::Table, RuleChannels::ChannelId)
                            .to(Channels::Table, Channels::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RuleChannels::Table).to_owned())
            .await
    }
}
