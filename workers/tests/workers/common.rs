#![allow(dead_code)]

use std::{future::Future, time::Duration};

use migration::testing::TestDb;
use queue::{Engine, testing::TestPrefix};
use sea_orm::DatabaseConnection;
use workers::PoolConfig;
pub use workers::testing::Pools;
use workflows::testing::Receiver;

#[derive(Debug, Clone, Copy)]
pub enum Sql {
    Sqlite,
    Postgres,
}

/// One deployment for a test: a migrated database, a Redis prefix, a webhook receiver; all
/// removed when the test ends.
pub struct TestApp {
    pub db: TestDb,
    pub redis: TestPrefix,
    pub engine: Engine,
    pub receiver: Receiver,
}

impl TestApp {
    pub async fn new(sql: Sql, tag: &str) -> Self {
        let db = match sql {
            Sql::Sqlite => TestDb::migrated_sqlite().await,
            Sql::Postgres => TestDb::migrated_postgres().await,
        };
        let redis = TestPrefix::new(tag).await;
        Self {
            engine: redis.engine.clone(),
            db,
            redis,
            receiver: Receiver::start().await,
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        self.db.db()
    }

    /// Pools for every queue in this process, tuned for tests: millisecond backoff and
    /// breaker, short timeouts.
    pub fn start_pools(&self, tweak: impl FnOnce(&mut PoolConfig)) -> Pools {
        workers::testing::start_pools(&self.db, &self.engine, 3, tweak)
    }
}

/// Polls `check` until it returns `Some`, failing with the last `None`'s description after
/// `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(state) if tokio::time::Instant::now() >= deadline => {
                panic!("{what} did not happen within {within:?}; last seen: {state}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// `n` readings for `sensor`, one second apart from `start_seq`, valued by `value(seq)`.
pub fn readings(
    sensor: &str,
    seqs: std::ops::Range<i64>,
    value: impl Fn(i64) -> f64,
) -> serde_json::Value {
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-11-21T08:00:00Z").expect("time");
    let readings: Vec<_> = seqs
        .map(|seq| {
            serde_json::json!({
                "sensor": sensor,
                "ts": (t0 + chrono::Duration::seconds(seq)).to_rfc3339(),
                "value": value(seq),
                "seq": seq,
            })
        })
        .collect();
    serde_json::json!({ "readings": readings })
}
