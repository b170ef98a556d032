//! What editing needs: a `version` on sensors, rules, channels, devices and users that every
//! update checks and raises (optimistic concurrency: two operators cannot overwrite each other
//! silently), when each was last changed, `rules.archived_at` (a deleted rule is archived, because its
//! alerts and signals keep referring to it), and `sensors.disabled_at` (a switched-off sensor's
//! readings are refused).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

const EDITABLE: [&str; 5] = ["sensors", "rules", "channels", "devices", "users"];

/// `(table, column)`: the nullable timestamps this migration adds.
const NULLABLE_TIMES: [(&str, &str); 2] = [("rules", "archived_at"), ("sensors", "disabled_at")];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        for table in EDITABLE {
            for column in [
                big_integer(Alias::new("version")).default(1).to_owned(),
                timestamp_with_time_zone_null(Alias::new("updated_at")),
            ] {
                manager
                    .alter_table(
                        Table::alter()
                            .table(Alias::new(table))
                            .add_column(column)
                            .to_owned(),
                    )
                    .await?;
            }
        }
        for (table, column) in NULLABLE_TIMES {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new(table))
                        .add_column(timestamp_with_time_zone_null(Alias::new(column)))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, column) in NULLABLE_TIMES.into_iter().rev() {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new(table))
                        .drop_column(Alias::new(column))
                        .to_owned(),
                )
                .await?;
        }
        for table in EDITABLE.into_iter().rev() {
            for column in ["updated_at", "version"] {
                manager
                    .alter_table(
                        Table::alter()
                            .table(Alias::new(table))
                            .drop_column(Alias::new(column))
                            .to_owned(),
                    )
                    .await?;
            }
        }
        Ok(())
    }
}
