//! The jobs of a workflow run.

use sea_orm_migration::{prelude::*, schema::*};

use crate::create_index;

use super::m20261121_000011_create_workflow_runs::WorkflowRuns;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum WorkflowSteps {
    Table,
    Id,
    RunId,
    JobId,
    Kind,
    State,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WorkflowSteps::Table)
                    .col(big_pk_auto(WorkflowSteps::Id))
                    .col(string(WorkflowSteps::RunId))
                    .col(string_uniq(WorkflowSteps::JobId))
                    .col(string(WorkflowSteps::Kind))
                    .col(string(WorkflowSteps::State))
                    .col(timestamp_with_time_zone(WorkflowSteps::CreatedAt))
                    .col(timestamp_with_time_zone(WorkflowSteps::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(WorkflowSteps::Table, WorkflowSteps::RunId)
                            .to(WorkflowRuns::Table, WorkflowRuns::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        create_index(
            manager,
            "idx_workflow_steps_run",
            WorkflowSteps::Table,
            [WorkflowSteps::RunId],
            false,
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WorkflowSteps::Table).to_owned())
            .await
    }
}
