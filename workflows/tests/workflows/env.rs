//! The handler tests' deployment is the test kit's.

pub use testkit::{Sql, TestApp as TestEnv, on_both_databases};
