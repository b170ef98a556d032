use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use workflows::statistics::{self, GROWING_TABLES};

use super::env::{Sql, TestEnv, on_both_databases};

/// The growing tables a manual ANALYZE has reached (PostgreSQL's own record of it).
async fn analyzed_tables(env: &TestEnv) -> Vec<String> {
    let list = GROWING_TABLES
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = env
        .db()
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT relname FROM pg_stat_user_tables \
                 WHERE last_analyze IS NOT NULL AND relname IN ({list}) ORDER BY relname"
            ),
        ))
        .await
        .expect("pg_stat_user_tables");
    rows.iter()
        .map(|r| r.try_get::<String>("", "relname").expect("relname"))
        .collect()
}

/// The workers analyze the growing tables exactly when the server's autovacuum would not.
async fn growing_tables_are_analyzed_only_where_autovacuum_is_off(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    let autovacuum = statistics::autovacuum_on(env.db()).await.expect("setting");
    let analyzed = statistics::refresh_if_unattended(env.db())
        .await
        .expect("refresh");
    let Sql::Postgres = sql else {
        assert_eq!(autovacuum, None, "SQLite has no autovacuum to ask");
        assert!(!analyzed, "nothing to analyze on SQLite");
        return;
    };
    let server_setting = env
        .db()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SHOW autovacuum",
        ))
        .await
        .expect("SHOW autovacuum")
        .expect("a row")
        .try_get::<String>("", "autovacuum")
        .expect("setting");
    assert_eq!(autovacuum, Some(server_setting == "on"));
    assert_eq!(analyzed, server_setting == "off");

    let mut expected: Vec<String> = if analyzed {
        GROWING_TABLES.iter().map(|t| (*t).to_owned()).collect()
    } else {
        Vec::new()
    };
    expected.sort();
    // The server publishes table statistics shortly after the statement, not within it.
    let mut seen = analyzed_tables(&env).await;
    for _ in 0..50 {
        if seen == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        seen = analyzed_tables(&env).await;
    }
    assert_eq!(
        seen, expected,
        "tables analyzed by hand in a fresh database"
    );
}

on_both_databases!(growing_tables_are_analyzed_only_where_autovacuum_is_off);
