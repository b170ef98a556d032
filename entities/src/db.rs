//! Opening the database. SQLite runs in WAL mode with a busy timeout and a single connection,
//! so writers never meet `SQLITE_BUSY`; PostgreSQL gets a pool, and bulk writers (the ledger)
//! can get a second, small one of their own.

use std::time::Duration;

use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DbErr, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Carries the URL's scheme only: the rest may hold a password.
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
            Err(DbError::UnsupportedUrl(
                url.split_once(':')
                    .map_or("", |(scheme, _)| scheme)
                    .to_owned(),
            ))
        }
    }
}

/// Prepared statements each connection of a bulk-writing pool keeps (sqlx's default is 100).
///
/// A bulk writer's statements change shape with the size of each batch (a 37-row upsert is a
/// different statement from a 38-row one), so a cache rarely hits. Filled anyway, the shared
/// pool's caches of up to 100 such statements (up to 2,400 parameters each) per connection held
/// 36 MiB of the workers' 69 MiB peak heap (heaptrack, 30,000-ingest burst, docs/benchmarks.md).
/// Not 0: with the cache off, sqlx still prepares named statements and never closes them, so
/// they would pile up in the server's memory instead. A few entries keep the shapes every
/// batch repeats (the full chunks) prepared.
pub const BULK_STATEMENT_CACHE: usize = 16;

/// A pool of `connections` for a bulk writer, beside the `shared` pool, so the writer's
/// statements of every shape neither fill the shared connections' statement caches nor evict
/// the handlers' statements from them. Its connections show as `application` in
/// `pg_stat_activity`, so operators can tell them from the handlers'.
///
/// SQLite has one connection, and a second would be a second writer meeting `SQLITE_BUSY`:
/// there `shared` is returned.
pub async fn connect_bulk_writer(
    url: &str,
    shared: &DatabaseConnection,
    connections: u32,
    application: &'static str,
) -> Result<DatabaseConnection, DbError> {
    if Backend::of(url)? == Backend::Sqlite {
        return Ok(shared.clone());
    }
    let mut options = base_options(url);
    options
        .max_connections(connections.max(1))
        .min_connections(1)
        .map_sqlx_postgres_opts(move |o| {
            o.statement_cache_capacity(BULK_STATEMENT_CACHE)
                .application_name(application)
        });
    Ok(Database::connect(options).await?)
}

/// Connects to `url` (`sqlite://path/to/file.db?mode=rwc`, `postgres://user@host/db`).
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbError> {
    let backend = Backend::of(url)?;
    let mut options = base_options(url);
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

/// Starts a transaction that will write. On SQLite it begins `IMMEDIATE`, taking the write lock
/// before its first read: a deferred transaction that read and then tries to write after another
/// process committed cannot upgrade its stale snapshot, and SQLite answers `SQLITE_BUSY` at once,
/// busy timeout or not. Begun immediate, it waits its turn (the busy timeout) instead.
/// PostgreSQL ignores the mode. Every read-then-write transaction starts here.
pub async fn begin_write<C: TransactionTrait>(db: &C) -> Result<C::Transaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

fn base_options(url: &str) -> ConnectOptions {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    options
}
