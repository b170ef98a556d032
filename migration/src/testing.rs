//! Databases for tests: a fresh SQLite file or a fresh PostgreSQL database each, removed when
//! dropped (even when the test failed). `TestDb::migrated_*` also applies every migration.

use std::path::PathBuf;

use sea_orm::{ConnectionTrait, DatabaseConnection};
use sea_orm_migration::MigratorTrait;

use crate::Migrator;

/// A database of the test's own, removed when dropped (even when the test failed).
#[derive(Debug)]
pub struct TestDb {
    db: Option<DatabaseConnection>,
    url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    File(PathBuf),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    /// A fresh SQLite file (not migrated).
    pub async fn sqlite() -> Self {
        let path = std::env::temp_dir().join(format!(
            "steadfast-migration-{}.db",
            ulid::Ulid::new().to_string().to_lowercase()
        ));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let db = entities::connect(&url).await.expect("sqlite");
        Self {
            db: Some(db),
            url,
            cleanup: Cleanup::File(path),
        }
    }

    /// A fresh PostgreSQL database (not migrated), created through `TEST_POSTGRES_URL`.
    pub async fn postgres() -> Self {
        let admin_url = std::env::var("TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let name = format!(
            "steadfast_test_{}",
            ulid::Ulid::new().to_string().to_lowercase()
        );
        let admin = entities::connect(&admin_url)
            .await
            .expect("postgres must be reachable");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        let (base, _) = admin_url.rsplit_once('/').expect("url with a database");
        let url = format!("{base}/{name}");
        let db = entities::connect(&url).await.expect("connect");
        Self {
            db: Some(db),
            url,
            cleanup: Cleanup::Postgres { admin_url, name },
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        self.db.as_ref().expect("open")
    }

    /// Where another process (a spawned binary) connects to the same database.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let db = self.db.take();
        match &self.cleanup {
            Cleanup::File(path) => {
                drop(db);
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Cleanup::Postgres { admin_url, name } => {
                // The pool belongs to the test's runtime, which is blocked here: drop it without
                // awaiting, and let `DROP DATABASE ... WITH (FORCE)` end its connections.
                drop(db);
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Drop cannot await: a thread with a runtime of its own removes the database.
                let _ = std::thread::spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    rt.block_on(async move {
                        if let Ok(admin) = entities::connect(&admin_url).await {
                            let _ = admin
                                .execute_unprepared(&format!(
                                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                                ))
                                .await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

impl TestDb {
    /// A fresh SQLite file with every migration applied.
    pub async fn migrated_sqlite() -> Self {
        let t = Self::sqlite().await;
        Migrator::up(t.db(), None).await.expect("migrate sqlite");
        t
    }

    /// A fresh PostgreSQL database with every migration applied.
    pub async fn migrated_postgres() -> Self {
        let t = Self::postgres().await;
        Migrator::up(t.db(), None).await.expect("migrate postgres");
        t
    }
}
