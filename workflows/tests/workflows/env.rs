use migration::testing::TestDb;
use queue::{Engine, EngineConfig};
use sea_orm::DatabaseConnection;

/// What a handler test needs: a migrated database and an engine under a Redis prefix of its
/// own, both removed when the test ends.
pub struct TestEnv {
    pub db: TestDb,
    pub engine: Engine,
    redis_url: String,
    prefix: String,
}

#[derive(Debug, Clone, Copy)]
pub enum Sql {
    Sqlite,
    Postgres,
}

impl TestEnv {
    pub async fn new(sql: Sql) -> Self {
        let db = match sql {
            Sql::Sqlite => TestDb::migrated_sqlite().await,
            Sql::Postgres => TestDb::migrated_postgres().await,
        };
        let redis_url =
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let prefix = format!("test-wf-{}", ulid::Ulid::new().to_string().to_lowercase());
        let engine = Engine::connect(&redis_url, EngineConfig::with_prefix(&prefix))
            .await
            .expect("redis must be reachable");
        Self {
            db,
            engine,
            redis_url,
            prefix,
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        self.db.db()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let (url, prefix) = (self.redis_url.clone(), self.prefix.clone());
        // Drop cannot await: a thread with a runtime of its own deletes the prefix's keys.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(engine) = Engine::connect(&url, EngineConfig::with_prefix(&prefix)).await
                {
                    let _ = engine.destroy_all_data().await;
                }
            });
        })
        .join();
    }
}

/// Runs each scenario `async fn name(sql: Sql)` as two tests: `name::sqlite` and `name::postgres`.
macro_rules! on_both_databases {
    ($($scenario:ident),+ $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test]
                async fn sqlite() {
                    super::$scenario($crate::workflows::env::Sql::Sqlite).await;
                }

                #[tokio::test]
                async fn postgres() {
                    super::$scenario($crate::workflows::env::Sql::Postgres).await;
                }
            }
        )+
    };
}
pub(crate) use on_both_databases;
