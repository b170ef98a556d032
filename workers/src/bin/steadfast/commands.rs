//! Each command: what it reads, what it changes, what it prints. Changes are audited as the
//! API audits them, with no user (`actor_user_id` null) and `via: cli` with the OS user.

use chrono::{DateTime, Utc};
use entities::{
    devices, jobs,
    manage::{self, Actor},
    sensors, users,
};
use queue::{DeadFilter, DeadOpOutcome, Engine, EngineConfig, JobRecord};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde_json::{Value, json};

use crate::{CliError, Command, Config, DeviceAction, ScheduleAction, UserAction, output};

/// How many dead jobs one requeue script call moves.
const REQUEUE_CHUNK: usize = 500;

async fn engine(config: &Config) -> Result<Engine, CliError> {
    let engine_config = EngineConfig {
        partitions: config.redis_partitions,
        ..EngineConfig::with_prefix(&config.prefix)
    };
    Engine::connect(&config.redis_url, engine_config)
        .await
        .map_err(|e| {
            CliError::Unavailable(format!(
                "cannot reach Redis at {}: {e}",
                queue::redact_url(&config.redis_url)
            ))
        })
}

async fn database(config: &Config) -> Result<DatabaseConnection, CliError> {
    entities::connect(&config.database_url).await.map_err(|e| {
        CliError::Unavailable(format!(
            "cannot open the database {}: {e}",
            queue::redact_url(&config.database_url)
        ))
    })
}

fn known_queue(name: &str) -> Result<&'static str, CliError> {
    runtime::QUEUES
        .iter()
        .copied()
        .find(|q| *q == name)
        .ok_or_else(|| {
            CliError::NotFound(format!(
                "no queue is named {name:?}; the queues are {}",
                runtime::QUEUES.join(", ")
            ))
        })
}

fn limits_json(queue: &str, limits: &queue::QueueLimits) -> Value {
    let rate = |r: Option<queue::RateLimit>| {
        r.map_or(
            Value::Null,
            |r| json!({ "limit": r.limit, "window_ms": r.window.as_millis() as u64 }),
        )
    };
    json!({
        "queue": queue,
        "concurrency": limits.concurrency,
        "per_key_concurrency": limits.per_key_concurrency,
        "rate": rate(limits.rate),
        "per_key_rate": rate(limits.per_key_rate),
    })
}

fn limits_sentence(queue: &str, limits: &queue::QueueLimits) -> String {
    if limits.is_empty() {
        return format!("{queue} has no limits");
    }
    let rate = |r: queue::RateLimit| format!("{} per {:?}", r.limit, r.window);
    let mut parts = Vec::new();
    if let Some(n) = limits.concurrency {
        parts.push(format!("at most {n} running"));
    }
    if let Some(n) = limits.per_key_concurrency {
        parts.push(format!("at most {n} running per key"));
    }
    if let Some(r) = limits.rate {
        parts.push(format!("{} started", rate(r)));
    }
    if let Some(r) = limits.per_key_rate {
        parts.push(format!("{} started per key", rate(r)));
    }
    format!("{queue}: {}", parts.join(", "))
}

fn time(ms: u64) -> Value {
    DateTime::<Utc>::from_timestamp_millis(ms as i64).map_or(Value::Null, |t| json!(t.to_rfc3339()))
}

async fn audit(
    db: &DatabaseConnection,
    action: &str,
    target: &str,
    details: Value,
) -> Result<(), CliError> {
    Ok(cli_actor().audit(db, action, target, details).await?)
}

pub async fn run(config: &Config) -> Result<(), CliError> {
    let json = config.json;
    match &config.command {
        Command::Queues => queues(config).await,
        Command::Partitions => partitions(config).await,
        Command::Fence { slots } => fence(config, slots.clone(), true).await,
        Command::Unfence { slots } => fence(config, slots.clone(), false).await,
        Command::Jobs {
            kind,
            state,
            subject,
            key,
            since,
            until,
            limit,
        } => {
            let db = database(config).await?;
            let mut query = jobs::Entity::find().order_by_desc(jobs::Column::CreatedAt);
            if let Some(subject) = subject {
                query = query.filter(jobs::Column::Subject.eq(subject.as_str()));
            }
            if let Some(key) = key {
                query = query.filter(jobs::Column::IdempotencyKey.eq(key.as_str()));
            }
            if let Some(since) = since {
                query = query.filter(jobs::Column::CreatedAt.gte(*since));
            }
            if let Some(until) = until {
                query = query.filter(jobs::Column::CreatedAt.lt(*until));
            }
            if let Some(kind) = kind {
                query = query.filter(jobs::Column::Kind.eq(kind.to_lowercase()));
            }
            if let Some(state) = state {
                let state = state.to_uppercase();
                if !queue::JobState::ALL.iter().any(|s| s.as_str() == state) {
                    return Err(CliError::Refused(format!(
                        "no state is named {state}; the states are {}",
                        queue::JobState::ALL.map(|s| s.as_str()).join(", ")
                    )));
                }
                query = query.filter(jobs::Column::State.eq(state));
            }
            let rows: Vec<Value> = query
                .limit(*limit)
                .all(&db)
                .await?
                .into_iter()
                .map(|j| {
                    json!({ "id": j.id, "kind": j.kind, "state": j.state, "attempt": j.attempt,
                        "subject": j.subject, "idempotencyKey": j.idempotency_key,
                        "maxAttempts": j.max_attempts, "priority": j.priority, "createdAt": j.created_at.to_rfc3339(),
                        "lastError": j.last_error })
                })
                .collect();
            output::rows(
                json,
                &[
                    "id",
                    "kind",
                    "subject",
                    "state",
                    "attempt",
                    "priority",
                    "createdAt",
                    "lastError",
                ],
                &rows,
            );
            Ok(())
        }
        Command::Job { id } => job(config, id).await,
        Command::Dead { queue } => {
            let engine = engine(config).await?;
            let queues = match queue {
                Some(q) => vec![known_queue(q)?],
                None => runtime::QUEUES.to_vec(),
            };
            let mut rows = Vec::new();
            for q in queues {
                for g in engine.dead_groups(q).await? {
                    rows.push(
                        json!({ "queue": g.queue, "fingerprint": g.fingerprint, "count": g.count,
                        "sampleError": g.sample_error, "lastDiedAt": time(g.last_died_at_ms) }),
                    );
                }
            }
            output::rows(
                json,
                &["queue", "count", "fingerprint", "sampleError", "lastDiedAt"],
                &rows,
            );
            Ok(())
        }
        Command::Requeue {
            ids,
            queue,
            fingerprint,
            dry_run,
        } => {
            dead_action(
                config,
                DeadAction::Requeue,
                ids,
                queue.as_deref(),
                fingerprint.as_deref(),
                *dry_run,
            )
            .await
        }
        Command::Discard {
            ids,
            queue,
            fingerprint,
            dry_run,
        } => {
            dead_action(
                config,
                DeadAction::Discard,
                ids,
                queue.as_deref(),
                fingerprint.as_deref(),
                *dry_run,
            )
            .await
        }
        Command::Pause { queue } | Command::Resume { queue } => {
            let pause = matches!(config.command, Command::Pause { .. });
            let q = known_queue(queue)?;
            let engine = engine(config).await?;
            let changed = if pause {
                engine.pause(q).await?
            } else {
                engine.resume(q).await?
            };
            let db = database(config).await?;
            let action = if pause { "queue.pause" } else { "queue.resume" };
            audit(
                &db,
                action,
                &format!("queue:{q}"),
                json!({ "changed": changed }),
            )
            .await?;
            let state = if pause { "paused" } else { "running" };
            let sentence = match (pause, changed) {
                (true, true) => {
                    format!("{q} paused: workers lease nothing from it; running jobs finish")
                }
                (true, false) => format!("{q} was paused already"),
                (false, true) => format!("{q} resumed"),
                (false, false) => format!("{q} was not paused"),
            };
            output::done(
                json,
                &json!({ "queue": q, "state": state, "changed": changed }),
                &sentence,
            );
            Ok(())
        }
        Command::Limits {
            queue,
            concurrency,
            per_key_concurrency,
            rate,
            per_key_rate,
            clear,
        } => {
            let q = known_queue(queue)?;
            let engine = engine(config).await?;
            let wanted = queue::QueueLimits {
                concurrency: *concurrency,
                per_key_concurrency: *per_key_concurrency,
                rate: *rate,
                per_key_rate: *per_key_rate,
            };
            if wanted.is_empty() && !clear {
                let limits = engine.queue_limits(q).await?;
                output::done(json, &limits_json(q, &limits), &limits_sentence(q, &limits));
                return Ok(());
            }
            wanted
                .validate()
                .map_err(|e| CliError::Refused(e.to_string()))?;
            let before = engine.queue_limits(q).await?;
            engine.set_queue_limits(q, &wanted).await?;
            let db = database(config).await?;
            audit(
                &db,
                "queue.limits",
                &format!("queue:{q}"),
                json!({ "before": limits_json(q, &before), "after": limits_json(q, &wanted) }),
            )
            .await?;
            output::done(json, &limits_json(q, &wanted), &limits_sentence(q, &wanted));
            Ok(())
        }
        Command::Drain {
            queue,
            yes,
            dry_run,
        } => {
            let q = known_queue(queue)?;
            let engine = engine(config).await?;
            let stats = engine.stats(q).await?;
            let waiting = stats.ready + stats.scheduled;
            if *dry_run {
                output::done(
                    json,
                    &json!({ "queue": q, "wouldCancel": waiting }),
                    &format!("{waiting} job(s) waiting on {q} would be cancelled"),
                );
                return Ok(());
            }
            if !yes {
                return Err(CliError::Refused(format!(
                    "a drain cancels the {waiting} job(s) waiting on {q} for good: run again with --yes (or --dry-run)"
                )));
            }
            let cancelled = engine.drain(q, 500).await?;
            let db = database(config).await?;
            audit(
                &db,
                "queue.drain",
                &format!("queue:{q}"),
                json!({ "cancelled": cancelled }),
            )
            .await?;
            output::done(
                json,
                &json!({ "queue": q, "cancelled": cancelled }),
                &format!("{q} drained: {cancelled} waiting job(s) cancelled"),
            );
            Ok(())
        }
        Command::Users { action } => users_command(config, action.as_ref()).await,
        Command::Schedules { action } => schedules(config, action.as_ref()).await,
        Command::Devices {
            action: DeviceAction::List,
        } => {
            let db = database(config).await?;
            let mut rows = Vec::new();
            for d in devices::Entity::find()
                .order_by_asc(devices::Column::Id)
                .all(&db)
                .await?
            {
                let sensors = sensors::Entity::find()
                    .filter(sensors::Column::DeviceId.eq(d.id))
                    .count(&db)
                    .await?;
                rows.push(json!({ "id": d.id, "name": d.name, "sensors": sensors,
                    "revoked": d.revoked_at.is_some(), "createdAt": d.created_at.to_rfc3339() }));
            }
            output::rows(
                json,
                &["id", "name", "sensors", "revoked", "createdAt"],
                &rows,
            );
            Ok(())
        }
        Command::Devices {
            action: DeviceAction::Revoke { id },
        } => {
            let db = database(config).await?;
            let before = devices::Entity::find_by_id(*id)
                .one(&db)
                .await?
                .ok_or_else(|| CliError::NotFound(format!("no device has id {id}")))?;
            let already = before.revoked_at.is_some();
            let after = manage::devices::revoke(&db, &cli_actor(), *id, None).await?;
            let sentence = if already {
                format!("device {id} ({}) was revoked already", after.device.name)
            } else {
                format!(
                    "device {id} ({}) revoked: its key is refused from its next request",
                    after.device.name
                )
            };
            output::done(
                json,
                &json!({ "device": id, "revoked": true, "changed": !already,
                    "version": after.device.version }),
                &sentence,
            );
            Ok(())
        }
    }
}

fn schedule_json(s: &entities::schedules::Model) -> Value {
    json!({
        "id": s.id, "name": s.name, "cron": s.cron, "timeZone": s.time_zone, "kind": s.kind,
        "missed": s.missed, "enabled": s.enabled,
        "nextRunAt": s.next_run_at.map(|t| t.to_rfc3339()),
        "lastRunAt": s.last_run_at.map(|t| t.to_rfc3339()),
        "lastJobId": s.last_job_id, "version": s.version,
    })
}

async fn schedules(config: &Config, action: Option<&ScheduleAction>) -> Result<(), CliError> {
    use workflows::schedules::{Missed, manage as schedule};
    let json = config.json;
    let db = database(config).await?;
    match action.unwrap_or(&ScheduleAction::List) {
        ScheduleAction::List => {
            let rows: Vec<Value> = schedule::list(&db)
                .await?
                .iter()
                .map(schedule_json)
                .collect();
            output::rows(
                json,
                &[
                    "id",
                    "name",
                    "cron",
                    "timeZone",
                    "kind",
                    "enabled",
                    "nextRunAt",
                    "lastRunAt",
                ],
                &rows,
            );
        }
        ScheduleAction::Create {
            name,
            cron,
            time_zone,
            kind,
            payload,
            missed,
        } => {
            let payload: Value = serde_json::from_str(payload)
                .map_err(|e| CliError::Refused(format!("payload: not JSON: {e}")))?;
            let spec = schedule::ScheduleSpec {
                name: name.clone(),
                cron: cron.clone(),
                time_zone: time_zone.clone(),
                kind: kind.clone(),
                payload,
                missed: Missed::parse(missed).unwrap_or(Missed::Skip),
            };
            let created = schedule::create(&db, &cli_actor(), &spec).await?;
            let next = created
                .next_run_at
                .map_or_else(|| "never".into(), |t| t.to_rfc3339());
            output::done(
                json,
                &schedule_json(&created),
                &format!(
                    "schedule {} ({}) created; next tick {next}",
                    created.id, created.name
                ),
            );
        }
        ScheduleAction::Edit {
            id,
            name,
            cron,
            time_zone,
            kind,
            payload,
            missed,
        } => {
            let current = schedule::find(&db, *id).await?;
            let payload = match payload {
                Some(raw) => serde_json::from_str(raw)
                    .map_err(|e| CliError::Refused(format!("payload: not JSON: {e}")))?,
                None => current.payload.clone(),
            };
            let spec = schedule::ScheduleSpec {
                name: name.clone().unwrap_or_else(|| current.name.clone()),
                cron: cron.clone().unwrap_or_else(|| current.cron.clone()),
                time_zone: time_zone
                    .clone()
                    .unwrap_or_else(|| current.time_zone.clone()),
                kind: kind.clone().unwrap_or_else(|| current.kind.clone()),
                payload,
                missed: Missed::parse(missed.as_deref().unwrap_or(&current.missed))
                    .unwrap_or(Missed::Skip),
            };
            let edited = schedule::update(&db, &cli_actor(), *id, current.version, &spec).await?;
            output::done(
                json,
                &schedule_json(&edited),
                &format!("schedule {id} ({}) changed", edited.name),
            );
        }
        ScheduleAction::Pause { id } | ScheduleAction::Resume { id } => {
            let enable = matches!(action, Some(ScheduleAction::Resume { .. }));
            let changed = schedule::set_enabled(&db, &cli_actor(), *id, enable, None).await?;
            let state = if enable { "resumed" } else { "paused" };
            output::done(
                json,
                &schedule_json(&changed),
                &format!("schedule {id} ({}) {state}", changed.name),
            );
        }
        ScheduleAction::Delete { id } => {
            schedule::delete(&db, &cli_actor(), *id, None).await?;
            output::done(
                json,
                &json!({ "id": id, "deleted": true }),
                &format!("schedule {id} deleted; the jobs it made stay"),
            );
        }
    }
    Ok(())
}

/// The command line as the audit log names it.
fn cli_actor() -> Actor {
    Actor::Cli {
        os_user: std::env::var("USER").unwrap_or_default(),
    }
}

fn user_row(u: &users::Model) -> Value {
    json!({ "id": u.id, "email": u.email, "role": u.role, "disabled": u.disabled_at.is_some(),
        "version": u.version, "createdAt": u.created_at.to_rfc3339() })
}

async fn users_command(config: &Config, action: Option<&UserAction>) -> Result<(), CliError> {
    let json = config.json;
    let db = database(config).await?;
    let (user, changed) = match action {
        None | Some(UserAction::List) => {
            let rows: Vec<Value> = users::Entity::find()
                .order_by_asc(users::Column::Id)
                .all(&db)
                .await?
                .iter()
                .map(user_row)
                .collect();
            output::rows(
                json,
                &["id", "email", "role", "disabled", "version", "createdAt"],
                &rows,
            );
            return Ok(());
        }
        Some(UserAction::Disable { user }) | Some(UserAction::Enable { user }) => {
            let disabled = matches!(action, Some(UserAction::Disable { .. }));
            let found = manage::users::find(&db, user).await?;
            let was = found.disabled_at.is_some();
            let after =
                manage::users::set_disabled(&db, &cli_actor(), found.id, disabled, None).await?;
            (after, was != disabled)
        }
        Some(UserAction::Role { user, role }) => {
            let found = manage::users::find(&db, user).await?;
            let was = found.role.clone();
            let after = manage::users::set_role(&db, &cli_actor(), found.id, role, None).await?;
            (after, &was != role)
        }
    };
    let state = if user.disabled_at.is_some() {
        "disabled"
    } else {
        "enabled"
    };
    output::done(
        json,
        &json!({ "user": user_row(&user), "changed": changed }),
        &format!(
            "user {} ({}): {}, {state}{}",
            user.id,
            user.email,
            user.role,
            if changed { "" } else { " (no change)" }
        ),
    );
    Ok(())
}

async fn queues(config: &Config) -> Result<(), CliError> {
    let engine = engine(config).await?;
    let mut rows = Vec::new();
    for q in runtime::QUEUES {
        let stats = engine.stats(q).await?;
        let age = engine.oldest_ready_age(q).await?;
        rows.push(json!({
            "queue": q, "ready": stats.ready, "scheduled": stats.scheduled, "running": stats.running,
            "dead": stats.dead, "paused": stats.paused_since_ms.is_some(),
            "oldestReadyAgeMs": age.map(|a| a.as_millis() as u64),
            "succeeded": stats.succeeded_total, "failed": stats.failed_total,
        }));
    }
    output::rows(
        config.json,
        &[
            "queue",
            "ready",
            "scheduled",
            "running",
            "dead",
            "paused",
            "oldestReadyAgeMs",
            "succeeded",
            "failed",
        ],
        &rows,
    );
    Ok(())
}

async fn partitions(config: &Config) -> Result<(), CliError> {
    let engine = engine(config).await?;
    let tags = engine.partition_tags();
    let slots = engine.partition_slots();
    let mut per_queue = Vec::new();
    for q in runtime::QUEUES {
        per_queue.push(engine.partition_stats(q).await?);
    }
    let fences = engine.fences().await?;
    let rows: Vec<Value> = tags
        .iter()
        .zip(&slots)
        .enumerate()
        .map(|(p, (tag, slot))| {
            let sum = |count: fn(&queue::QueueStats) -> u64| -> u64 {
                per_queue.iter().filter_map(|q| q.get(p)).map(count).sum()
            };
            json!({
                "partition": p, "tag": tag, "slot": slot,
                "ready": sum(|s| s.ready), "scheduled": sum(|s| s.scheduled),
                "running": sum(|s| s.running), "dead": sum(|s| s.dead),
                "fenced": fences.get(p).cloned().flatten(),
            })
        })
        .collect();
    output::rows(
        config.json,
        &[
            "partition",
            "tag",
            "slot",
            "ready",
            "scheduled",
            "running",
            "dead",
            "fenced",
        ],
        &rows,
    );
    Ok(())
}

/// Fences (or unfences) every partition whose slot lies in `slots`, and says which.
async fn fence(
    config: &Config,
    slots: std::ops::RangeInclusive<u16>,
    on: bool,
) -> Result<(), CliError> {
    let engine = engine(config).await?;
    let partitions = engine.partitions_in_slots(slots.clone());
    if on {
        let note = format!(
            "fenced by steadfast fence {}-{} at {}",
            slots.start(),
            slots.end(),
            chrono::Utc::now().to_rfc3339()
        );
        engine.fence(&partitions, &note).await?;
    } else {
        engine.unfence(&partitions).await?;
    }
    let db = database(config).await?;
    audit(
        &db,
        if on {
            "partition.fence"
        } else {
            "partition.unfence"
        },
        &format!("slots:{}-{}", slots.start(), slots.end()),
        json!({ "partitions": partitions }),
    )
    .await?;
    let tags = engine.partition_tags();
    let slot_of = engine.partition_slots();
    let rows: Vec<Value> = partitions
        .iter()
        .map(|&p| {
            let p = usize::from(p);
            json!({ "partition": p, "tag": tags[p], "slot": slot_of[p], "fenced": on })
        })
        .collect();
    output::rows(config.json, &["partition", "tag", "slot", "fenced"], &rows);
    Ok(())
}

fn live_job(j: &JobRecord) -> Value {
    json!({
        "id": j.id, "queue": j.queue, "kind": j.kind, "state": j.state.as_str(),
        "attempt": j.attempt, "maxAttempts": j.max_attempts, "priority": j.priority.as_str(),
        "createdAt": time(j.created_at_ms),
        "runAt": j.run_at_ms.map(time), "lastError": j.last_error, "fingerprint": j.fingerprint,
        "workflowRunId": j.workflow_id, "payload": j.payload, "source": "redis",
    })
}

async fn job(config: &Config, id: &str) -> Result<(), CliError> {
    let engine = engine(config).await?;
    if let Some(job) = engine.job(id).await? {
        output::one(config.json, &live_job(&job));
        return Ok(());
    }
    let db = database(config).await?;
    let job = jobs::Entity::find_by_id(id.to_owned())
        .one(&db)
        .await?
        .ok_or_else(|| CliError::NotFound(format!("no job has id {id}")))?;
    output::one(
        config.json,
        &json!({
            "id": job.id, "queue": job.queue, "kind": job.kind, "state": job.state,
            "attempt": job.attempt, "maxAttempts": job.max_attempts, "priority": job.priority,
            "createdAt": job.created_at.to_rfc3339(), "finishedAt": job.finished_at.map(|t| t.to_rfc3339()),
            "lastError": job.last_error, "workflowRunId": job.workflow_run_id,
            "payload": job.payload.to_string(), "source": "ledger",
        }),
    );
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeadAction {
    Requeue,
    Discard,
}

/// Requeue or discard: by ids, or by queue (and fingerprint). `--dry-run` counts.
async fn dead_action(
    config: &Config,
    action: DeadAction,
    ids: &[String],
    queue: Option<&str>,
    fingerprint: Option<&str>,
    dry_run: bool,
) -> Result<(), CliError> {
    let verb = match action {
        DeadAction::Requeue => "requeue",
        DeadAction::Discard => "discard",
    };
    if ids.is_empty() == queue.is_none() {
        return Err(CliError::Refused(format!(
            "{verb} takes job ids, or --queue (with --fingerprint), not both and not neither"
        )));
    }
    let engine = engine(config).await?;
    let db = database(config).await?;
    let json = config.json;
    if !ids.is_empty() {
        let records = engine.jobs(ids).await?;
        let dead: Vec<String> = ids
            .iter()
            .zip(&records)
            .filter(|(_, r)| r.as_ref().is_some_and(|r| r.state == queue::JobState::Dead))
            .map(|(id, _)| id.clone())
            .collect();
        if dry_run {
            output::done(
                json,
                &json!({ "wouldChange": dead.len(), "of": ids.len() }),
                &format!(
                    "{} of {} job(s) are dead and would be {verb}d",
                    dead.len(),
                    ids.len()
                ),
            );
            return Ok(());
        }
        let outcomes = match action {
            DeadAction::Requeue => engine.requeue_dead(ids).await?,
            DeadAction::Discard => engine.discard_dead_many(ids).await?,
        };
        let changed = outcomes
            .iter()
            .filter(|o| matches!(o, DeadOpOutcome::Done))
            .count();
        audit(
            &db,
            &format!("dead_job.{verb}_many"),
            "jobs",
            json!({ "count": changed, "ids": ids.len() }),
        )
        .await?;
        output::done(
            json,
            &json!({ "changed": changed, "of": ids.len() }),
            &format!("{changed} of {} job(s) {verb}d", ids.len()),
        );
        if changed == 0 {
            return Err(CliError::Refused(format!(
                "none of the jobs given is dead: nothing to {verb}"
            )));
        }
        return Ok(());
    }
    let q = known_queue(queue.unwrap_or_default())?;
    let filter = DeadFilter {
        queue: q.to_owned(),
        since_ms: None,
        until_ms: None,
        fingerprint: fingerprint.map(str::to_owned),
    };
    let matching: u64 = engine
        .dead_groups(q)
        .await?
        .iter()
        .filter(|g| fingerprint.is_none_or(|fp| g.fingerprint == fp))
        .map(|g| g.count)
        .sum();
    if dry_run {
        output::done(
            json,
            &json!({ "queue": q, "wouldChange": matching }),
            &format!("{matching} dead job(s) of {q} would be {verb}d"),
        );
        return Ok(());
    }
    let changed = match action {
        DeadAction::Requeue => {
            let until = queue::now_ms();
            let mut total = 0u64;
            loop {
                let n = engine
                    .requeue_dead_chunk(&filter, until, REQUEUE_CHUNK)
                    .await?;
                if n == 0 {
                    break;
                }
                total += n;
                if !json {
                    eprintln!("requeued {total} of {matching}…");
                }
            }
            total
        }
        DeadAction::Discard => {
            let mut total = 0u64;
            loop {
                let page: Vec<String> = engine
                    .dead_jobs(&filter, 0, 500)
                    .await?
                    .into_iter()
                    .map(|j| j.id)
                    .collect();
                if page.is_empty() {
                    break;
                }
                let outcomes = engine.discard_dead_many(&page).await?;
                let done = outcomes
                    .iter()
                    .filter(|o| matches!(o, DeadOpOutcome::Done))
                    .count() as u64;
                total += done;
                if !json {
                    eprintln!("discarded {total} of {matching}…");
                }
                if done == 0 {
                    break;
                }
            }
            total
        }
    };
    audit(
        &db,
        &format!("dead_job.{verb}_many"),
        "jobs",
        json!({ "count": changed, "queue": q, "fingerprint": fingerprint }),
    )
    .await?;
    output::done(
        json,
        &json!({ "queue": q, "changed": changed }),
        &format!("{changed} dead job(s) of {q} {verb}d"),
    );
    Ok(())
}
