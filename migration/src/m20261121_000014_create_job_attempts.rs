//! One row per started attempt.

use sea_orm_migration::{prelude::*, schema::*};

use crate::create_index;

use super::m20261121_000013_create_jobs::Jobs;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum JobAttempts {
    Table,
    Id,
    JobId,
    Round,
    Attempt,
    Worker,
    StartedAt,
    EndedAt,
    Outcome,
    Error,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(JobAttempts::Table)
                    .col(big_pk_auto(JobAttempts::Id))
                    .col(string(JobAttempts::JobId))
                    .col(integer(JobAttempts::Round))
                    .col(integer(JobAttempts::Attempt))
                    .col(string_null(JobAttempts::Worker))
                    .col(timestamp_with_time_zone(JobAttempts::StartedAt))
                    .col(timestamp_with_time_zone_null(JobAttempts::EndedAt))
                    .col(string_null(JobAttempts::Outcome))
                    .col(text_null(JobAttempts::Error))
                    .foreign_key(
                        ForeignKey::create()
                            .from(JobAttempts::Table, JobAttempts::JobId)
                            .to(Jobs::Table, Jobs::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        create_index(
            manager,
            "uq_job_attempts_job_round_attempt",
            JobAttempts::Table,
            [JobAttempts::JobId, JobAttempts::Round, JobAttempts::Attempt],
            true,
        )
        .await?;
        create_index(
            manager,
            "idx_job_attempts_started",
            JobAttempts::Table,
            [JobAttempts::StartedAt],
            false,
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(JobAttempts::Table).to_owned())
            .await
    }
}
