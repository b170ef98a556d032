//! Finding jobs by what they are about: `jobs.subject` (the sensor an ingest, evaluate or alert
//! job concerns, `channel:<id>` for a notify), indexed with the id so a search by subject reads
//! only its own rows, newest first; and an index on the idempotency key.

use sea_orm_migration::{prelude::*, schema::*};

use crate::create_index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Id,
    Subject,
    IdempotencyKey,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Jobs::Table)
                    .add_column(string_null(Jobs::Subject))
                    .to_owned(),
            )
            .await?;
        create_index(
            manager,
            "idx_jobs_subject",
            Jobs::Table,
            [Jobs::Subject, Jobs::Id],
            false,
        )
        .await?;
        create_index(
            manager,
            "idx_jobs_idempotency_key",
            Jobs::Table,
            [Jobs::IdempotencyKey],
            false,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in ["idx_jobs_idempotency_key", "idx_jobs_subject"] {
            manager
                .drop_index(Index::drop().name(name).table(Jobs::Table).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Jobs::Table)
                    .drop_column(Jobs::Subject)
                    .to_owned(),
            )
            .await
    }
}
