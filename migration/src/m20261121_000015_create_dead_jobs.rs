//! Dead jobs, kept until requeued or discarded.

use sea_orm_migration::{prelude::*, schema::*};

use crate::create_index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum DeadJobs {
    Table,
    JobId,
    Kind,
    Queue,
    Payload,
    PayloadVersion,
    MaxAttempts,
    Attempts,
    Error,
    Fingerprint,
    Errors,
    WorkflowRunId,
    DiedAt,
    RequeuedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DeadJobs::Table)
                    .col(string(DeadJobs::JobId).primary_key())
                    .col(string(DeadJobs::Kind))
                    .col(string(DeadJobs::Queue))
                    .col(json_binary(DeadJobs::Payload))
                    .col(integer(DeadJobs::PayloadVersion))
                    .col(integer(DeadJobs::MaxAttempts))
                    .col(integer(DeadJobs::Attempts))
                    .col(text(DeadJobs::Error))
                    .col(string(DeadJobs::Fingerprint))
                    .col(json_binary(DeadJobs::Errors))
                    .col(string_null(DeadJobs::WorkflowRunId))
                    .col(timestamp_with_time_zone(DeadJobs::DiedAt))
                    .col(timestamp_with_time_zone_null(DeadJobs::RequeuedAt))
                    .to_owned(),
            )
            .await?;
        create_index(
            manager,
            "idx_dead_jobs_kind_fingerprint",
            DeadJobs::Table,
            [DeadJobs::Kind, DeadJobs::Fingerprint],
            false,
        )
        .await?;
        create_index(
            manager,
            "idx_dead_jobs_died",
            DeadJobs::Table,
            [DeadJobs::DiedAt],
            false,
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(DeadJobs::Table).to_owned())
            .await
    }
}
