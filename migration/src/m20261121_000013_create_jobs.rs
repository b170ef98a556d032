//! The job ledger.

use sea_orm_migration::{prelude::*, schema::*};

use crate::create_index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum Jobs {
    Table,
    Id,
    Kind,
    Queue,
    State,
    Attempt,
    Round,
    MaxAttempts,
    Payload,
    Result,
    LastError,
    IdempotencyKey,
    WorkflowRunId,
    RunAt,
    LastEventId,
    CreatedAt,
    UpdatedAt,
    FinishedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Jobs::Table)
                    .col(string(Jobs::Id).primary_key())
                    .col(string(Jobs::Kind))
                    .col(string(Jobs::Queue))
                    .col(string(Jobs::State))
                    .col(integer(Jobs::Attempt))
                    .col(integer(Jobs::Round).default(0))
                    .col(integer(Jobs::MaxAttempts))
                    .col(json_binary(Jobs::Payload))
                    .col(json_binary_null(Jobs::Result))
                    .col(text_null(Jobs::LastError))
                    .col(string_null(Jobs::IdempotencyKey))
                    .col(string_null(Jobs::WorkflowRunId))
                    .col(timestamp_with_time_zone_null(Jobs::RunAt))
                    .col(string(Jobs::LastEventId))
                    .col(timestamp_with_time_zone(Jobs::CreatedAt))
                    .col(timestamp_with_time_zone(Jobs::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Jobs::FinishedAt))
                    .to_owned(),
            )
            .await?;
        create_index(
            manager,
            "idx_jobs_state_updated",
            Jobs::Table,
            [Jobs::State, Jobs::UpdatedAt],
            false,
        )
        .await?;
        create_index(
            manager,
            "idx_jobs_kind_created",
            Jobs::Table,
            [Jobs::Kind, Jobs::CreatedAt],
            false,
        )
        .await?;
        create_index(
            manager,
            "idx_jobs_workflow_run",
            Jobs::Table,
            [Jobs::WorkflowRunId],
            false,
        )
        .await?;
        create_index(
            manager,
            "idx_jobs_updated",
            Jobs::Table,
            [Jobs::UpdatedAt],
            false,
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Jobs::Table).to_owned())
            .await
    }
}
