//! What revocation and a poison-proof ledger need: a disabled user (`users.disabled_at`), a
//! revoked device (`devices.revoked_at`), a disabled channel (`channels.disabled_at`), and the
//! ledger's quarantine of events the database refused (`ledger_quarantine`), kept for admins
//! with the error instead of stopping the recorder.

use sea_orm_migration::{prelude::*, schema::*};

use crate::create_index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum LedgerQuarantine {
    Table,
    Id,
    /// The job-event stream entry's id: each entry is quarantined once.
    StreamId,
    /// The event as JSON, with characters the database refuses escaped.
    Event,
    Error,
    At,
}

/// `(table, column)` pairs added by this migration, each a nullable timestamp.
const TIMESTAMPS: [(&str, &str); 3] = [
    ("users", "disabled_at"),
    ("devices", "revoked_at"),
    ("channels", "disabled_at"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        for (table, column) in TIMESTAMPS {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new(table))
                        .add_column(timestamp_with_time_zone_null(Alias::new(column)))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(LedgerQuarantine::Table)
                    .col(big_pk_auto(LedgerQuarantine::Id))
                    .col(string(LedgerQuarantine::StreamId))
                    .col(text(LedgerQuarantine::Event))
                    .col(text(LedgerQuarantine::Error))
                    .col(timestamp_with_time_zone(LedgerQuarantine::At))
                    .to_owned(),
            )
            .await?;
        create_index(
            manager,
            "idx_ledger_quarantine_stream_id",
            LedgerQuarantine::Table,
            [LedgerQuarantine::StreamId],
            true,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(LedgerQuarantine::Table).to_owned())
            .await?;
        for (table, column) in TIMESTAMPS.into_iter().rev() {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new(table))
                        .drop_column(Alias::new(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
