//! Checking the books after a scenario: every accepted job ended, no reading stored twice, one
//! alert per breach episode, one Idempotency-Key per alert and channel at the receiver
//! (repeated POSTs of a key counted, not hidden), and the ledger agreeing with Redis.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    time::{Duration, Instant},
};

use entities::{alerts, deliveries, jobs, readings, rules};
use queue::{EventStream, JobEvent, JobState};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{
    cluster::{Cluster, Scale},
    load::{CLEAR, READINGS_PER_JOB, THRESHOLD},
};

/// The pipeline's queues: the silence check's periodic tick is always scheduled.
pub const PIPELINE: [&str; 4] = ["ingest", "evaluate", "alert", "notify"];

#[derive(Debug, Default)]
pub struct Books {
    /// Distinct jobs the API accepted.
    pub accepted: usize,
    /// Jobs of every kind the run pushed (ingest and what followed from it).
    pub pipeline_jobs: u64,
    /// Accepted jobs neither Redis nor the ledger knows.
    pub lost: usize,
    /// Accepted jobs not succeeded (dead or cancelled, or still unfinished).
    pub not_succeeded: usize,
    pub dead: u64,
    pub readings_expected: u64,
    pub readings_stored: u64,
    pub alerts: u64,
    pub episodes: u64,
    pub deliveries: u64,
    /// Distinct Idempotency-Keys the receiver saw.
    pub keys_received: u64,
    /// POSTs of a key the receiver had already seen (a retry after a lost answer or a crash).
    pub repeated_posts: u64,
    /// (alert, channel) pairs with more than one delivery.
    pub doubled_deliveries: u64,
    /// Ledger rows whose state is not Redis's, and jobs Redis pushed the ledger lacks.
    pub ledger_disagrees: u64,
    pub ledger_missing: u64,
    /// From the call to the last queue emptying.
    pub drained_in: Duration,
    /// From the queues emptying to the ledger agreeing.
    pub ledger_caught_up_in: Duration,
}

impl fmt::Display for Books {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted {} (pipeline jobs {}), lost {}, not succeeded {} (dead {}); readings {}/{} stored; \
             alerts {} for {} episodes; deliveries {}, keys at receiver {}, repeated POSTs {}, doubled deliveries {}; \
             ledger disagrees {} missing {}; drained in {:.1?}, ledger caught up {:.1?} later",
            self.accepted,
            self.pipeline_jobs,
            self.lost,
            self.not_succeeded,
            self.dead,
            self.readings_stored,
            self.readings_expected,
            self.alerts,
            self.episodes,
            self.deliveries,
            self.keys_received,
            self.repeated_posts,
            self.doubled_deliveries,
            self.ledger_disagrees,
            self.ledger_missing,
            self.drained_in,
            self.ledger_caught_up_in,
        )
    }
}

impl Books {
    /// Nothing lost, nothing applied twice, everything delivered once, the ledger in step.
    pub fn assert_balanced(&self) {
        let ok = self.lost == 0
            && self.not_succeeded == 0
            && self.readings_stored == self.readings_expected
            && self.alerts == self.episodes
            && self.deliveries == self.alerts
            && self.keys_received == self.deliveries
            && self.doubled_deliveries == 0
            && self.ledger_disagrees == 0
            && self.ledger_missing == 0;
        assert!(ok, "the books do not balance: {self}");
    }
}

/// `Ok(jobs pushed)` once no pipeline queue has a job waiting or running.
pub async fn pipeline_idle(cluster: &Cluster) -> Result<u64, String> {
    let mut pushed = 0;
    for queue in PIPELINE {
        let s = cluster
            .engine
            .stats(queue)
            .await
            .map_err(|e| e.to_string())?;
        if s.ready + s.scheduled + s.running > 0 {
            return Err(format!(
                "{queue}: {} ready, {} scheduled, {} running",
                s.ready, s.scheduled, s.running
            ));
        }
        pushed += s.pushed_total;
    }
    Ok(pushed)
}

/// Waits (up to `within`, thirty times that in the long form) for the pipeline to drain and then
/// (up to 2 minutes, 20 in the long form) for the ledger to catch up, then counts.
pub async fn settle(cluster: &mut Cluster, accepted: &[String], within: Duration) -> Books {
    // The long form's backlogs are 20-200 times the short form's.
    let within = Scale::from_env().pick(within, within * 30);
    let started = Instant::now();
    let deadline = started + within;
    let pipeline_jobs = loop {
        match pipeline_idle(cluster).await {
            Ok(pushed) => break pushed,
            Err(state) if Instant::now() >= deadline => {
                panic!("the pipeline did not drain within {within:?}: {state}")
            }
            Err(_) => {
                cluster.assert_running();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let drained_in = started.elapsed();
    let mut books = count(cluster, accepted).await;
    books.pipeline_jobs = pipeline_jobs;
    books.drained_in = drained_in;
    let caught_up = Instant::now();
    // The ledger trails the pipeline; after a long run under kills it trails by tens of
    // thousands of jobs, which is a figure to report, not a failure.
    let deadline =
        caught_up + Scale::from_env().pick(Duration::from_secs(120), Duration::from_secs(1200));
    loop {
        // While events wait that no recorder has read, the ledger cannot agree yet: ask Redis
        // (cheap) before comparing every row (a scan that, polled, would slow the very
        // recorders it waits for). Entries read and not acknowledged may be recorded already
        // (a recorder stopped between commit and ack), so only the full check judges those.
        let recording = cluster
            .engine
            .group_progress(EventStream::Jobs, workflows::ledger::LEDGER_GROUP)
            .await
            .ok()
            .flatten()
            .is_some_and(|g| g.lag.is_some_and(|lag| lag > 0));
        if recording && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        let (disagrees, missing) = ledger_check(cluster, pipeline_jobs).await;
        books.ledger_disagrees = disagrees;
        books.ledger_missing = missing;
        if (disagrees == 0 && missing == 0) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    books.ledger_caught_up_in = caught_up.elapsed();
    books
}

async fn count(cluster: &Cluster, accepted: &[String]) -> Books {
    let db = cluster.db.db();
    let distinct: Vec<String> = {
        let mut seen = HashSet::new();
        accepted
            .iter()
            .filter(|id| seen.insert(id.as_str()))
            .cloned()
            .collect()
    };
    let mut books = Books {
        accepted: distinct.len(),
        readings_expected: distinct.len() as u64 * READINGS_PER_JOB as u64,
        ..Default::default()
    };
    for chunk in distinct.chunks(1000) {
        let records = cluster.engine.jobs(chunk).await.expect("jobs");
        // Only jobs Redis let go of are looked up in the ledger.
        let gone: Vec<String> = chunk
            .iter()
            .zip(&records)
            .filter(|(_, r)| r.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        let ledger: HashMap<String, String> = if gone.is_empty() {
            HashMap::new()
        } else {
            jobs::Entity::find()
                .select_only()
                .column(jobs::Column::Id)
                .column(jobs::Column::State)
                .filter(jobs::Column::Id.is_in(gone))
                .into_tuple::<(String, String)>()
                .all(db)
                .await
                .expect("ledger")
                .into_iter()
                .collect()
        };
        for (id, record) in chunk.iter().zip(records) {
            let state = match record {
                Some(r) => Some(r.state),
                None => ledger.get(id).and_then(|s| s.parse::<JobState>().ok()),
            };
            match state {
                None => books.lost += 1,
                Some(JobState::Succeeded) => {}
                Some(_) => books.not_succeeded += 1,
            }
        }
    }
    for queue in PIPELINE {
        books.dead += cluster.engine.stats(queue).await.expect("stats").dead;
    }

    books.readings_stored = readings::Entity::find().count(db).await.expect("readings");
    books.episodes = expected_episodes(cluster).await;
    books.alerts = alerts::Entity::find().count(db).await.expect("alerts");
    let rows = deliveries::Entity::find()
        .all(db)
        .await
        .expect("deliveries");
    books.deliveries = rows.len() as u64;
    let mut per_pair: HashMap<(Option<i64>, i64), u64> = HashMap::new();
    for d in &rows {
        *per_pair.entry((d.alert_id, d.channel_id)).or_default() += 1;
    }
    books.doubled_deliveries = per_pair.values().filter(|n| **n > 1).count() as u64;
    let known: HashSet<&str> = rows.iter().map(|d| d.idempotency_key.as_str()).collect();
    let received = cluster.received();
    let mut keys: HashMap<&str, u64> = HashMap::new();
    for r in &received {
        assert!(
            known.contains(r.idempotency_key.as_str()),
            "the receiver got a key no delivery has: {:?}",
            r.idempotency_key
        );
        *keys.entry(r.idempotency_key.as_str()).or_default() += 1;
    }
    books.keys_received = keys.len() as u64;
    books.repeated_posts = received.len() as u64 - books.keys_received;
    books
}

/// The breach episodes in the readings as stored, walked per sensor with a rule in the order
/// `evaluate` saw them: an episode opens above the threshold and ends at or below the clear
/// level.
async fn expected_episodes(cluster: &Cluster) -> u64 {
    let ruled: HashSet<i64> = rules::Entity::find()
        .all(cluster.db.db())
        .await
        .expect("rules")
        .into_iter()
        .map(|r| r.sensor_id)
        .collect();
    let rows: Vec<(i64, f64)> = readings::Entity::find()
        .select_only()
        .column(readings::Column::SensorId)
        .column(readings::Column::Value)
        .order_by_asc(readings::Column::Id)
        .into_tuple()
        .all(cluster.db.db())
        .await
        .expect("readings");
    let mut open: HashMap<i64, bool> = HashMap::new();
    let mut episodes = 0;
    for (sensor, value) in rows.into_iter().filter(|(s, _)| ruled.contains(s)) {
        let is_open = open.entry(sensor).or_default();
        if value > THRESHOLD && !*is_open {
            *is_open = true;
            episodes += 1;
        } else if value <= CLEAR && *is_open {
            *is_open = false;
        }
    }
    episodes
}

/// Ledger rows whose state differs from what Redis holds, and how many pushed jobs the ledger
/// has no row for.
async fn ledger_check(cluster: &Cluster, pushed: u64) -> (u64, u64) {
    // The full comparison reads every row; until the ledger has as many rows as Redis pushed
    // jobs, a count says enough.
    let rows = jobs::Entity::find()
        .filter(jobs::Column::Kind.is_in(PIPELINE))
        .count(cluster.db.db())
        .await
        .expect("ledger count");
    if rows < pushed {
        return (0, pushed - rows);
    }
    let rows: Vec<(String, String, String)> = jobs::Entity::find()
        .select_only()
        .column(jobs::Column::Id)
        .column(jobs::Column::State)
        .column(jobs::Column::Kind)
        .into_tuple()
        .all(cluster.db.db())
        .await
        .expect("ledger");
    let rows: Vec<(String, String)> = rows
        .into_iter()
        .filter(|(_, _, kind)| PIPELINE.contains(&kind.as_str()))
        .map(|(id, state, _)| (id, state))
        .collect();
    let mut disagrees = 0;
    for chunk in rows.chunks(1000) {
        let ids: Vec<String> = chunk.iter().map(|(id, _)| id.clone()).collect();
        let records = cluster.engine.jobs(&ids).await.expect("jobs");
        for ((_, state), record) in chunk.iter().zip(records) {
            if record.is_some_and(|r| r.state.as_str() != state) {
                disagrees += 1;
            }
        }
    }
    (disagrees, pushed.saturating_sub(rows.len() as u64))
}

/// The job events the stream holds after `cursor`; `None` when entries after it were already
/// trimmed away (the stream is capped: a long run outgrows it).
pub async fn events_after(cluster: &Cluster, cursor: &str) -> Option<Vec<JobEvent>> {
    let mut events = Vec::new();
    let mut cursor = cursor.to_owned();
    loop {
        let entries = match cluster
            .engine
            .read_stream(EventStream::Jobs, &cursor, 10_000)
            .await
        {
            Ok(entries) => entries,
            Err(queue::QueueError::CursorExpired(_)) => return None,
            Err(e) => panic!("reading the event stream: {e}"),
        };
        let Some(last) = entries.last() else {
            return Some(events);
        };
        cursor = last.cursor.clone();
        events.extend(entries.iter().filter_map(JobEvent::from_entry));
    }
}

/// How many of each job event the run caused; `None` once the stream was trimmed.
pub async fn event_counts(cluster: &Cluster) -> Option<HashMap<String, u64>> {
    let mut counts = HashMap::new();
    for event in events_after(cluster, "0").await? {
        *counts.entry(event.event).or_default() += 1;
    }
    Some(counts)
}
