//! The migration CLI: `migration up`, `migration down`, `migration status`, `migration fresh`
//! (`DATABASE_URL` names the database).

use sea_orm_migration::prelude::*;

#[tokio::main]
async fn main() {
    cli::run_cli(migration::Migrator).await;
}
