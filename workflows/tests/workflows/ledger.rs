use std::time::Duration;

use entities::{dead_jobs, job_attempts, jobs, workflow_runs, workflow_steps};
use queue::{Engine, FetchRequest, JobState, NewJob, Outcome};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use workflows::ledger::{self, Recorder, RecorderConfig, RequeueFromLedger};

use super::env::{Sql, TestEnv, on_both_databases};

async fn lease_one(engine: &Engine, queue: &str) -> queue::LeasedJob {
    for _ in 0..200 {
        let fetched = engine
            .fetch(&FetchRequest {
                queue,
                worker_id: "w-test",
                max_jobs: 1,
                lease: Duration::from_secs(30),
                backoff_base: Duration::ZERO,
                backoff_cap: Duration::ZERO,
                timeout: None,
                timeout_grace: Duration::ZERO,
            })
            .await
            .expect("fetch");
        if let Some(job) = fetched.jobs.into_iter().next() {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("nothing to lease on {queue}");
}

async fn finish(engine: &Engine, job: &queue::LeasedJob, outcome: Outcome) {
    engine
        .complete(&[(job.id.clone(), job.token.clone(), outcome)])
        .await
        .expect("complete");
}

/// Steps the recorder until the stream has nothing more for it.
async fn catch_up(recorder: &mut Recorder) {
    while recorder.step().await.expect("ledger step") > 0 {}
}

/// A recorder in consumer group `group`, waiting only milliseconds for events.
async fn start_recorder(env: &TestEnv, group: &str) -> Recorder {
    let config = RecorderConfig {
        group: group.into(),
        block: Duration::from_millis(5),
        ..RecorderConfig::new("test-recorder")
    };
    Recorder::new(env.db().clone(), env.engine.clone(), config)
        .await
        .expect("recorder")
}

/// A run (an ingest and the evaluate it caused, both succeed) and a notify job that fails
/// twice and dies.
async fn play(engine: &Engine) -> (String, String, String) {
    let ingest = engine
        .push(NewJob::raw("ingest", "ingest", r#"{"readings":[]}"#.into()))
        .await
        .expect("push")
        .id;
    let evaluate = engine
        .push(
            NewJob::raw("evaluate", "evaluate", r#"{"sensor":"s1"}"#.into())
                .with_workflow_id(&ingest),
        )
        .await
        .expect("push")
        .id;
    let notify = engine
        .push(
            NewJob::raw("notify", "notify", r#"{"channel":1,"message":"hi"}"#.into())
                .with_max_attempts(2)
                .with_workflow_id(&ingest),
        )
        .await
        .expect("push")
        .id;
    let job = lease_one(engine, "ingest").await;
    finish(
        engine,
        &job,
        Outcome::Succeeded {
            result: Some(r#"{"stored":0}"#.into()),
        },
    )
    .await;
    let job = lease_one(engine, "evaluate").await;
    finish(engine, &job, Outcome::Succeeded { result: None }).await;
    for n in 1..=2 {
        let job = lease_one(engine, "notify").await;
        let error = format!("receiver answered 503 (try {n})");
        finish(
            engine,
            &job,
            Outcome::Retry {
                error,
                delay: Duration::from_millis(1),
            },
        )
        .await;
    }
    (ingest, evaluate, notify)
}

async fn the_ledger_records_jobs_attempts_dead_jobs_and_runs(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    let (ingest, evaluate, notify) = play(&env.engine).await;
    let mut recorder = start_recorder(&env, "ledger").await;
    catch_up(&mut recorder).await;

    let row = |id: &str| {
        let id = id.to_owned();
        let db = env.db().clone();
        async move {
            jobs::Entity::find_by_id(id)
                .one(&db)
                .await
                .expect("ledger query")
                .expect("ledger row")
        }
    };
    let ingest_row = row(&ingest).await;
    assert_eq!(
        (ingest_row.state.as_str(), ingest_row.attempt),
        ("SUCCEEDED", 1)
    );
    assert_eq!(ingest_row.workflow_run_id.as_deref(), Some(ingest.as_str()));
    assert_eq!(ingest_row.result, Some(serde_json::json!({"stored": 0})));
    assert!(ingest_row.finished_at.is_some());
    let eval_row = row(&evaluate).await;
    assert_eq!(eval_row.payload, serde_json::json!({"sensor": "s1"}));
    assert_eq!(eval_row.workflow_run_id.as_deref(), Some(ingest.as_str()));
    let dead_row = row(&notify).await;
    assert_eq!(
        (
            dead_row.state.as_str(),
            dead_row.attempt,
            dead_row.max_attempts
        ),
        ("DEAD", 2, 2)
    );
    assert!(
        dead_row
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("try 2")
    );

    let attempts = job_attempts::Entity::find()
        .filter(job_attempts::Column::JobId.eq(&notify))
        .order_by_asc(job_attempts::Column::Attempt)
        .all(env.db())
        .await
        .expect("ledger query");
    let outcomes: Vec<_> = attempts
        .iter()
        .map(|a| (a.attempt, a.outcome.clone()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (1, Some("retry_scheduled".into())),
            (2, Some("died".into()))
        ]
    );
    assert!(
        attempts
            .iter()
            .all(|a| a.worker.as_deref() == Some("w-test") && a.ended_at.is_some())
    );

    let dead = dead_jobs::Entity::find_by_id(notify.clone())
        .one(env.db())
        .await
        .expect("ledger query")
        .expect("dead row");
    assert_eq!((dead.kind.as_str(), dead.attempts), ("notify", 2));
    assert!(!dead.fingerprint.is_empty());
    assert_eq!(
        dead.errors.as_array().map(Vec::len),
        Some(2),
        "{:?}",
        dead.errors
    );
    assert_eq!(
        dead.payload,
        serde_json::json!({"channel": 1, "message": "hi"})
    );

    let run = workflow_runs::Entity::find_by_id(ingest.clone())
        .one(env.db())
        .await
        .expect("ledger query")
        .expect("run");
    assert_eq!(
        (run.state.as_str(), run.steps_total, run.steps_finished),
        ("FAILED", 3, 3)
    );
    assert!(run.finished_at.is_some());

    // A second recorder group reading the whole stream again changes nothing.
    let counts = |db: sea_orm::DatabaseConnection| async move {
        (
            jobs::Entity::find().count(&db).await.expect("ledger query"),
            job_attempts::Entity::find()
                .count(&db)
                .await
                .expect("ledger query"),
            dead_jobs::Entity::find()
                .count(&db)
                .await
                .expect("ledger query"),
            workflow_steps::Entity::find()
                .count(&db)
                .await
                .expect("ledger query"),
        )
    };
    let before = counts(env.db().clone()).await;
    let mut replay = start_recorder(&env, "replay").await;
    catch_up(&mut replay).await;
    assert_eq!(counts(env.db().clone()).await, before);
    assert_eq!(
        row(&notify).await,
        dead_row,
        "an old event never overwrites a newer one"
    );

    // Requeue from the ledger while Redis still has the job: the run resumes.
    assert_eq!(
        ledger::requeue_dead(env.db(), &env.engine, &notify)
            .await
            .expect("ledger query"),
        RequeueFromLedger::Requeued
    );
    catch_up(&mut recorder).await;
    let requeued = row(&notify).await;
    assert_eq!((requeued.state.as_str(), requeued.round), ("QUEUED", 1));
    let run = workflow_runs::Entity::find_by_id(ingest.clone())
        .one(env.db())
        .await
        .expect("ledger query")
        .expect("run");
    assert_eq!(run.state, "RUNNING", "a requeued dead step resumes its run");
    let job = lease_one(&env.engine, "notify").await;
    finish(&env.engine, &job, Outcome::Succeeded { result: None }).await;
    catch_up(&mut recorder).await;
    let run = workflow_runs::Entity::find_by_id(ingest)
        .one(env.db())
        .await
        .expect("ledger query")
        .expect("run");
    assert_eq!((run.state.as_str(), run.steps_finished), ("SUCCEEDED", 3));
    let rounds: Vec<_> = job_attempts::Entity::find()
        .filter(job_attempts::Column::JobId.eq(&notify))
        .order_by_asc(job_attempts::Column::Id)
        .all(env.db())
        .await
        .expect("ledger query")
        .into_iter()
        .map(|a| (a.round, a.attempt, a.outcome))
        .collect();
    assert_eq!(rounds.last(), Some(&(1, 1, Some("succeeded".into()))));
    assert!(
        dead_jobs::Entity::find_by_id(notify)
            .one(env.db())
            .await
            .expect("ledger query")
            .expect("ledger query")
            .requeued_at
            .is_some()
    );
}

async fn a_dead_job_redis_lost_is_requeued_from_its_sql_record(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    let (_, _, notify) = play(&env.engine).await;
    let mut recorder = start_recorder(&env, "ledger").await;
    catch_up(&mut recorder).await;
    // Redis loses the job (a failover without persistence, say).
    let mut conn = queue::testing::InspectConn::open(&env.redis.url);
    for home in env.engine.partition_tags() {
        let _: () = redis::Commands::del(&mut conn, format!("{home}:job:{notify}"))
            .expect("forget the job");
        let _: () = redis::Commands::zrem(&mut conn, format!("{home}:q:notify:dead"), &notify)
            .expect("forget the job");
    }
    assert!(
        env.engine
            .job(&notify)
            .await
            .expect("ledger query")
            .is_none()
    );

    assert_eq!(
        ledger::requeue_dead(env.db(), &env.engine, &notify)
            .await
            .expect("ledger query"),
        RequeueFromLedger::Restored
    );
    let restored = env
        .engine
        .job(&notify)
        .await
        .expect("ledger query")
        .expect("back in Redis");
    assert_eq!(restored.state, JobState::Queued);
    assert_eq!(restored.payload, r#"{"channel":1,"message":"hi"}"#);
    assert_eq!(restored.max_attempts, 2);
    let job = lease_one(&env.engine, "notify").await;
    assert_eq!(
        job.id, notify,
        "the same id, so its ledger history continues"
    );
    assert_eq!(
        ledger::requeue_dead(env.db(), &env.engine, "no-such-job")
            .await
            .expect("ledger query"),
        RequeueFromLedger::Unknown
    );
}

/// An attempt's outcome survives the job's later events when they come in later batches
/// (`promoted` carries the attempt number of the retry that scheduled it).
async fn an_attempt_outcome_survives_later_batches(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    let id = env
        .engine
        .push(
            NewJob::raw("notify", "notify", r#"{"channel":1,"message":"hi"}"#.into())
                .with_max_attempts(3),
        )
        .await
        .expect("push")
        .id;
    let mut recorder = start_recorder(&env, "ledger").await;
    let job = lease_one(&env.engine, "notify").await;
    let error = "receiver answered 503".to_owned();
    finish(
        &env.engine,
        &job,
        Outcome::Retry {
            error,
            delay: Duration::from_millis(1),
        },
    )
    .await;
    catch_up(&mut recorder).await;
    // Promoted, started again and succeeded: each in a batch of its own.
    let job = lease_one(&env.engine, "notify").await;
    catch_up(&mut recorder).await;
    finish(&env.engine, &job, Outcome::Succeeded { result: None }).await;
    catch_up(&mut recorder).await;
    let outcomes: Vec<_> = job_attempts::Entity::find()
        .filter(job_attempts::Column::JobId.eq(&id))
        .order_by_asc(job_attempts::Column::Attempt)
        .all(env.db())
        .await
        .expect("attempts")
        .into_iter()
        .map(|a| (a.attempt, a.outcome, a.error.is_some()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (1, Some("retry_scheduled".into()), true),
            (2, Some("succeeded".into()), false)
        ]
    );
}

/// Two recorders of one group, with the steps of each run ending close together in the stream
/// (as in a live pipeline), so both record steps of the same runs at the same moment. Each run
/// must end with every step counted: a recorder that counted only the steps it could see once
/// wrote its count over the other's.
async fn two_recorders_leave_every_run_with_all_its_steps(sql: Sql) {
    const RUNS: usize = 300;
    let env = TestEnv::new(sql, "wf").await;
    let ingests: Vec<NewJob> = (0..RUNS)
        .map(|i| NewJob::raw("ingest", "ingest", format!(r#"{{"readings":[{i}]}}"#)))
        .collect();
    let pushed = env.engine.push_many(ingests).await.expect("push");
    let steps: Vec<NewJob> = pushed
        .iter()
        .flat_map(|p| {
            ["evaluate", "notify"].map(|kind| {
                NewJob::raw(kind, kind, r#"{"sensor":"s1"}"#.into()).with_workflow_id(&p.id)
            })
        })
        .collect();
    env.engine.push_many(steps).await.expect("push");
    testkit::fixtures::complete_interleaved(&env.engine, &["ingest", "evaluate", "notify"], 25)
        .await;

    let mut tasks = Vec::new();
    for name in ["recorder-a", "recorder-b"] {
        let config = RecorderConfig {
            group: "ledger".into(),
            batch: 60,
            block: Duration::from_millis(5),
            ..RecorderConfig::new(name)
        };
        let mut recorder = Recorder::new(env.db().clone(), env.engine.clone(), config)
            .await
            .expect("recorder");
        tasks.push(tokio::spawn(async move {
            let mut failed = 0;
            loop {
                match recorder.step().await {
                    Ok(0) => return failed,
                    Ok(_) => {}
                    // A failed batch is read again, as the recorder's own loop does.
                    Err(_) if failed < 20 => failed += 1,
                    Err(e) => panic!("ledger batches keep failing: {e}"),
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("recorder task");
    }

    let runs = workflow_runs::Entity::find()
        .all(env.db())
        .await
        .expect("ledger query");
    let wrong: Vec<_> = runs
        .iter()
        .filter(|r| (r.state.as_str(), r.steps_total, r.steps_finished) != ("SUCCEEDED", 3, 3))
        .map(|r| {
            (
                r.id.clone(),
                r.state.clone(),
                r.steps_total,
                r.steps_finished,
            )
        })
        .collect();
    assert_eq!(runs.len(), RUNS);
    assert!(
        wrong.is_empty(),
        "{} runs with wrong progress: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
}

/// The recorders' own pool on PostgreSQL: batches of every size are statements of every
/// shape, and the connection keeps only a few of them prepared on the server (the shared
/// pool's connections kept up to 100 each, 36 MiB of the workers' heap). Not none at all
/// either: a cache of 0 would leave every statement prepared and never closed.
#[tokio::test]
async fn the_ledger_pool_keeps_few_statements_prepared_whatever_the_batch_sizes() {
    let env = TestEnv::new(Sql::Postgres, "wf").await;
    let ledger_db = entities::connect_bulk_writer(
        env.db.url(),
        env.db(),
        1,
        workflows::ledger::LEDGER_APPLICATION,
    )
    .await
    .expect("ledger pool");
    let config = RecorderConfig {
        group: "ledger".into(),
        block: Duration::from_millis(5),
        ..RecorderConfig::new("test-recorder")
    };
    let mut recorder = Recorder::new(ledger_db.clone(), env.engine.clone(), config)
        .await
        .expect("recorder");
    let mut pushed = 0;
    for size in 1..=30_usize {
        let jobs: Vec<NewJob> = (0..size)
            .map(|i| NewJob::raw("ingest", "ingest", format!(r#"{{"readings":[{i}]}}"#)))
            .collect();
        env.engine.push_many(jobs).await.expect("push");
        pushed += size;
        testkit::fixtures::complete_interleaved(&env.engine, &["ingest"], 250).await;
        catch_up(&mut recorder).await;
    }

    let recorded = jobs::Entity::find()
        .filter(jobs::Column::State.eq("SUCCEEDED"))
        .count(env.db())
        .await
        .expect("ledger query");
    assert_eq!(recorded, pushed as u64, "every job is recorded");
    let prepared: i64 = ledger_db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) FROM pg_prepared_statements",
        ))
        .await
        .expect("count prepared statements")
        .expect("a row")
        .try_get_by_index(0)
        .expect("a count");
    assert!(
        (1..=entities::db::BULK_STATEMENT_CACHE as i64).contains(&prepared),
        "{prepared} statements prepared on the ledger's connection after 30 batch sizes"
    );
}

on_both_databases!(
    an_attempt_outcome_survives_later_batches,
    the_ledger_records_jobs_attempts_dead_jobs_and_runs,
    a_dead_job_redis_lost_is_requeued_from_its_sql_record,
    two_recorders_leave_every_run_with_all_its_steps,
);

/// One event the database refuses (PostgreSQL takes no NUL in JSON or text) must not stop the
/// ledger: the batch is recorded entry by entry, the refused entry is quarantined with its
/// error, every other job is recorded, and the group is left with nothing pending.
async fn an_event_the_database_refuses_is_quarantined_and_the_rest_recorded(sql: Sql) {
    use entities::ledger_quarantine;
    let env = TestEnv::new(sql, "wf").await;
    let group = "ledger-poison";
    let mut recorder = start_recorder(&env, group).await;
    let before = env
        .engine
        .push(NewJob::raw("ingest", "ingest", r#"{"n":1}"#.into()))
        .await
        .expect("push")
        .id;
    let poison = env
        .engine
        .push(NewJob::raw(
            "ingest",
            "ingest",
            r#"{"note":"a\u0000b"}"#.into(),
        ))
        .await
        .expect("push")
        .id;
    let after = env
        .engine
        .push(NewJob::raw("ingest", "ingest", r#"{"n":2}"#.into()))
        .await
        .expect("push")
        .id;
    catch_up(&mut recorder).await;

    let recorded: Vec<String> = jobs::Entity::find()
        .order_by_asc(jobs::Column::Id)
        .all(env.db())
        .await
        .expect("jobs")
        .into_iter()
        .map(|j| j.id)
        .collect();
    let quarantined = ledger_quarantine::Entity::find()
        .all(env.db())
        .await
        .expect("quarantine");
    match sql {
        Sql::Postgres => {
            let mut good = vec![before, after];
            good.sort();
            assert_eq!(recorded, good, "both good jobs recorded");
            assert_eq!(quarantined.len(), 1, "{quarantined:?}");
            assert!(
                quarantined[0].event.contains(&poison),
                "{}",
                quarantined[0].event
            );
            assert!(
                quarantined[0].error.contains("Unicode escape"),
                "the database's own words: {}",
                quarantined[0].error
            );
        }
        // SQLite stores the NUL: nothing to quarantine.
        Sql::Sqlite => {
            assert_eq!(recorded.len(), 3);
            assert!(quarantined.is_empty());
        }
    }
    let progress = env
        .engine
        .group_progress(queue::EventStream::Jobs, group)
        .await
        .expect("redis")
        .expect("group");
    assert_eq!(
        (progress.lag, progress.pending),
        (Some(0), 0),
        "nothing left behind"
    );
    // Later events still flow.
    let later = env
        .engine
        .push(NewJob::raw("ingest", "ingest", r#"{"n":3}"#.into()))
        .await
        .expect("push")
        .id;
    catch_up(&mut recorder).await;
    assert!(
        jobs::Entity::find_by_id(later)
            .one(env.db())
            .await
            .expect("job")
            .is_some()
    );
}

on_both_databases!(an_event_the_database_refuses_is_quarantined_and_the_rest_recorded);
