//! Which alert job applied a signal (`applied_by`: the id of that job's own signal) and which
//! alert the signal notified for (`notified_alert_id`), written in the commit that applies it.
//! A job retried after a crash between that commit and pushing its `notify` jobs finds every
//! notification of its batch here and pushes them again under the same keys, however many
//! signals one job applied.

use sea_orm_migration::{prelude::*, schema::*};

use super::m20261121_000017_create_alert_signals::AlertSignals;
use crate::create_index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Added {
    AppliedBy,
    NotifiedAlertId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        for column in [Added::AppliedBy, Added::NotifiedAlertId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(AlertSignals::Table)
                        .add_column(big_integer_null(column))
                        .to_owned(),
                )
                .await?;
        }
        create_index(
            manager,
            "idx_alert_signals_applied_by",
            Alias::new("alert_signals"),
            [Alias::new("applied_by")],
            false,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_alert_signals_applied_by")
                    .table(AlertSignals::Table)
                    .to_owned(),
            )
            .await?;
        for column in [Added::NotifiedAlertId, Added::AppliedBy] {
            manager
                .alter_table(
                    Table::alter()
                        .table(AlertSignals::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
