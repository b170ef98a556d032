//! The one test kit of the workspace. A test makes a [`TestApp`] (a migrated database of its
//! own, a Redis prefix of its own, a webhook receiver; pools on demand), runs its scenario on
//! both databases with [`on_both_databases!`], performs jobs one at a time through the
//! production adapter ([`TestApp::perform`]), checks what was queued
//! ([`TestApp::assert_enqueued`]), runs the pipeline to rest ([`TestApp::drain`]), and when
//! it ends the app checks that no job died that the test did not expect
//! ([`TestApp::expect_dead`]).
#![allow(clippy::unwrap_used)]

mod app;
mod cpu;
pub mod fixtures;
pub mod mosquitto;
mod pools;
mod receiver;
mod wait;

pub use app::{Drained, Sql, TestApp};
pub use cpu::cpu_seconds;
pub use migration::testing::TestDb;
pub use pools::{Pools, start_pools};
pub use queue::testing::{OwnRedis, TestPrefix, free_port, redis_url};
pub use receiver::{Received, Receiver, Reply};
pub use wait::eventually;

/// Runs each scenario `async fn name(sql: Sql)` as two tests: `name::sqlite` and
/// `name::postgres`.
#[macro_export]
macro_rules! on_both_databases {
    ($($scenario:ident),+ $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test]
                async fn sqlite() {
                    super::$scenario($crate::Sql::Sqlite).await;
                }

                #[tokio::test]
                async fn postgres() {
                    super::$scenario($crate::Sql::Postgres).await;
                }
            }
        )+
    };
}
