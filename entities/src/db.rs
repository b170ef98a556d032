//! Opening the database. SQLite runs in WAL mode with a busy timeout and a single connection,
//! so writers never meet `SQLITE_BUSY`; PostgreSQL gets a pool.

use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("DATABASE_URL must start with sqlite: or postgres:, got {0:?}")]
    UnsupportedUrl(String),
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Result<Self, DbError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(DbError::UnsupportedUrl(url.to_owned()))
        }
    }
}

/// Connects to `url` (`sqlite://path/to/file.db?mode=rwc`, `postgres://user@host/db`).
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbError> {
    let backend = Backend::of(url)?;
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    match backend {
        Backend::Sqlite => {
            options
                .max_connections(1)
                .min_connections(1)
                .map_sqlx_sqlite_opts(|o| {
                    o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                        .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                        .busy_timeout(Duration::from_secs(5))
                        .foreign_keys(true)
                        .create_if_missing(true)
                });
        }
        Backend::Postgres => {
            options.max_connections(16).min_connections(1);
        }
    }
    let db = Database::connect(options).await?;
    tracing::debug!(backend = ?db.get_database_backend(), "database connected");
    Ok(db)
}
