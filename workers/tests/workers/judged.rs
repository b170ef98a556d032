//! An alert job whose signal was never recorded: it retries while its evaluation may still
//! commit the signal, and ends unchanged once the sensor's cursor has passed the reading
//! without it (the reading was judged otherwise, e.g. under an edited rule), instead of
//! retrying until it dies.

use entities::{alerts, readings as reading_rows};
use queue::Outcome;
use sea_orm::{EntityTrait, PaginatorTrait};
use testkit::{fixtures as testing, on_both_databases};
use workflows::{
    BackgroundJob,
    jobs::{alert::Alert, evaluate::Evaluate, ingest::Ingest},
};

use super::common::{Sql, TestApp, readings};

async fn an_alert_job_for_a_signal_judged_away_ends_unchanged(sql: Sql) {
    let app = TestApp::new(sql, "judged-away").await;
    let sensor = testing::sensor(app.db(), "tank").await;
    let rule = testing::rule(app.db(), sensor.id, "ABOVE", 80.0, 75.0, 1, 300).await;
    // A reading below the threshold: its evaluation records no signal.
    app.engine
        .push(queue::NewJob::new("ingest", &readings("tank", 1..2, |_| 10.0)).expect("job"))
        .await
        .expect("push");
    app.perform::<Ingest>().await;
    let reading = reading_rows::Entity::find()
        .one(app.db())
        .await
        .expect("read")
        .expect("stored");
    // An alert job for a breach of that reading, as an evaluation that lost its cursor to
    // another would have pushed.
    let stray = Alert {
        rule: rule.id,
        sensor: "tank".into(),
        reading: reading.id,
        breach: true,
    };
    app.engine
        .push(stray.to_push().expect("job"))
        .await
        .expect("push");

    // Not evaluated yet: the signal may still come, so it retries.
    let early = app.perform::<Alert>().await;
    assert!(
        matches!(early.outcome, Outcome::Retry { .. }),
        "{:?}",
        early.outcome
    );

    // Evaluated past the reading without the signal: the retry ends unchanged.
    app.perform::<Evaluate>().await;
    let late = app.drain().await;
    assert_eq!(late.count("alert", "succeeded"), 1, "{late:?}");
    assert_eq!(late.count("alert", "retry"), 0, "{late:?}");
    assert_eq!(
        alerts::Entity::find().count(app.db()).await.expect("count"),
        0
    );
}

on_both_databases!(an_alert_job_for_a_signal_judged_away_ends_unchanged);
