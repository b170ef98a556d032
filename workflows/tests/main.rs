//! The job handlers against the real Redis and both databases (a fresh SQLite file and a fresh
//! PostgreSQL database per test).

mod workflows {
    mod alert;
    pub mod env;
    mod evaluate;
    mod ingest;
    mod ledger;
    mod notify;
    mod retention;
    mod schedules;
    mod silence;
    mod statistics;
}
