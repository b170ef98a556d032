//! Workflow runs: one ingest job and every job it causes.

use sea_orm_migration::{prelude::*, schema::*};

use crate::create_index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum WorkflowRuns {
    Table,
    Id,
    Workflow,
    State,
    StepsTotal,
    StepsFinished,
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
                    .table(WorkflowRuns::Table)
                    .col(string(WorkflowRuns::Id).primary_key())
                    .col(string(WorkflowRuns::Workflow))
                    .col(string(WorkflowRuns::State))
                    .col(integer(WorkflowRuns::StepsTotal))
                    .col(integer(WorkflowRuns::StepsFinished))
                    .col(timestamp_with_time_zone(WorkflowRuns::CreatedAt))
                    .col(timestamp_with_time_zone(WorkflowRuns::UpdatedAt))
                    .col(timestamp_with_time_zone_null(WorkflowRuns::FinishedAt))
                    .to_owned(),
            )
            .await?;
        create_index(
            manager,
            "idx_workflow_runs_created",
            WorkflowRuns::Table,
            [WorkflowRuns::CreatedAt],
            false,
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WorkflowRuns::Table).to_owned())
            .await
    }
}
