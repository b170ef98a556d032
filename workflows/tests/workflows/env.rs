use migration::testing::TestDb;
use queue::{Engine, testing::TestPrefix};
use sea_orm::DatabaseConnection;

/// What a handler test needs: a migrated database and an engine under a Redis prefix of its
/// own, both removed when the test ends.
pub struct TestEnv {
    pub db: TestDb,
    pub engine: Engine,
    pub redis: TestPrefix,
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
        let redis = TestPrefix::new("wf").await;
        Self {
            db,
            engine: redis.engine.clone(),
            redis,
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        self.db.db()
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
