//! A deployment split into partitions: jobs spread over them, a key's jobs share one and keep
//! their order, every lookup and operator action finds a job wherever it lives, counts and
//! controls cover every partition, the event streams are read whole with cursors that resume
//! without gap or repeat, workers drain and wake on every partition, and a deployment grown
//! from one partition keeps serving the jobs it had.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use apalis_core::{task::data::Data, worker::builder::WorkerBuilder};
use queue::{
    CancelOutcome, DeadFilter, DeadOpOutcome, EventCursor, EventStream, JobError, JobEvent, NewJob,
    Outcome, QueueLimits, RedisBackend, WorkerOptions,
};
use redis::Commands;
use serde::{Deserialize, Serialize};

use super::common::{TestQueue, eventually, fetch_req};

const PARTITIONS: u16 = 4;

async fn partitioned(tag: &str) -> TestQueue {
    TestQueue::with_config(tag, |c| c.partitions = PARTITIONS).await
}

/// The partition whose hash tag holds the job's hash (looked up key by key, not by the
/// engine's routing).
fn partition_of(t: &TestQueue, id: &str) -> Option<usize> {
    let mut conn = t.sync_conn();
    let tags = t.engine.partition_tags();
    let holding: Vec<usize> = tags
        .iter()
        .enumerate()
        .filter(|(_, tag)| conn.exists(format!("{tag}:job:{id}")).expect("exists"))
        .map(|(p, _)| p)
        .collect();
    assert!(holding.len() <= 1, "{id} lives in {holding:?}");
    holding.first().copied()
}

/// Every leased job's outcome: `outcome`.
fn outcomes(jobs: &[queue::LeasedJob], outcome: &Outcome) -> Vec<(String, String, Outcome)> {
    jobs.iter()
        .map(|j| (j.id.clone(), j.token.clone(), outcome.clone()))
        .collect()
}

/// A second engine on the test's deployment, with `partitions` partitions.
async fn grow(t: &TestQueue, partitions: u16) -> queue::Result<queue::Engine> {
    let mut config = queue::testing::config(&t.prefix);
    config.partitions = partitions;
    queue::Engine::connect(&t.url, config).await
}

fn keyed(queue: &str, key: &str, n: usize) -> NewJob {
    NewJob::raw(queue, queue, format!("{{\"n\":{n}}}")).with_limit_key(key)
}

#[tokio::test]
async fn jobs_spread_over_the_partitions_and_a_keys_jobs_share_one_in_order() {
    let t = partitioned("part-spread").await;
    assert_eq!(t.engine.partitions(), PARTITIONS);
    let tags = t.engine.partition_tags();
    assert_eq!(
        tags[0],
        format!("{{{}}}", t.prefix),
        "partition 0 is the old home"
    );
    assert_eq!(tags.iter().collect::<BTreeSet<_>>().len(), tags.len());

    let plain = t.push_n("q", 400).await;
    let mut per_partition = [0usize; PARTITIONS as usize];
    for id in &plain {
        per_partition[partition_of(&t, id).expect("stored")] += 1;
    }
    assert!(
        per_partition.iter().all(|&n| n >= 50),
        "400 jobs over {PARTITIONS} partitions: {per_partition:?}"
    );

    // Two keys' jobs, interleaved: each key's all in one partition.
    let mut by_key: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for n in 0..30 {
        let key = if n % 2 == 0 { "sensor:a" } else { "sensor:b" };
        let id = t.engine.push(keyed("q", key, n)).await.expect("push").id;
        by_key.entry(key).or_default().push(id);
    }
    for (key, ids) in &by_key {
        let homes: BTreeSet<usize> = ids.iter().filter_map(|id| partition_of(&t, id)).collect();
        assert_eq!(homes.len(), 1, "{key}'s jobs live in {homes:?}");
    }

    // Leasing everything: each key's jobs come out in push order.
    let mut leased = Vec::new();
    while leased.len() < 430 {
        let got = t.lease("q", 64, 30_000).await;
        assert!(!got.is_empty(), "leased {} of 430", leased.len());
        leased.extend(got.into_iter().map(|j| j.id));
    }
    for (key, ids) in &by_key {
        let order: Vec<&String> = leased.iter().filter(|id| ids.contains(id)).collect();
        assert_eq!(order, ids.iter().collect::<Vec<_>>(), "{key} out of order");
    }
    assert_eq!(
        leased.iter().collect::<BTreeSet<_>>().len(),
        430,
        "each once"
    );
    assert_eq!(t.engine.stats("q").await.expect("stats").running, 430);
    t.check_placement("q");
}

#[tokio::test]
async fn lookups_outcomes_and_operator_actions_find_a_job_in_any_partition() {
    let t = partitioned("part-ops").await;
    // Named by their submitter and routed by a key, these live where the key points, not
    // where their ids would: only a search of the other partitions finds them.
    let mut named = Vec::new();
    for n in 0..12 {
        let id = format!("named-{n}");
        let job = keyed("ops", "one-key", n).with_id(&id).with_max_attempts(1);
        assert_eq!(t.engine.push(job).await.expect("push").id, id);
        named.push(id);
    }
    let home = partition_of(&t, &named[0]).expect("stored");
    assert!(named.iter().all(|id| partition_of(&t, id) == Some(home)));
    let records = t.engine.jobs(&named).await.expect("jobs");
    assert!(records.iter().all(Option::is_some), "every named job found");
    assert_eq!(
        t.engine.job("nobody").await.expect("job"),
        None,
        "an unknown id is looked for everywhere and not found"
    );

    // Cancel one waiting job; lease the rest and fail them all (one attempt each).
    assert_eq!(
        t.engine.cancel(&named[0]).await.expect("cancel"),
        CancelOutcome::Cancelled
    );
    assert_eq!(
        t.engine.cancel("nobody").await.expect("cancel"),
        CancelOutcome::Missing
    );
    let leased = t.lease("ops", 20, 30_000).await;
    assert_eq!(leased.len(), 11);
    // Each its own error text (an id in it), one fingerprint.
    let boom: Vec<(String, String, Outcome)> = leased
        .iter()
        .map(|j| {
            let error = format!("boom {}", j.id);
            (j.id.clone(), j.token.clone(), Outcome::Fail { error })
        })
        .collect();
    let applied = t.engine.complete(&boom).await.expect("complete");
    assert!(
        applied.iter().all(|a| *a == queue::Applied::Ok),
        "{applied:?}"
    );
    assert!(
        named[1..]
            .iter()
            .all(|id| partition_of(&t, id) == Some(home)),
        "outcomes applied where the jobs live"
    );
    // Plus dead jobs spread over the partitions.
    let pushed = t
        .engine
        .push_many(
            (0..20)
                .map(|n| NewJob::raw("ops", "ops", format!("{{\"m\":{n}}}")).with_max_attempts(1))
                .collect(),
        )
        .await
        .expect("push");
    let leased = t.lease("ops", 40, 30_000).await;
    assert_eq!(leased.len(), 20);
    let timeout = Outcome::Fail {
        error: "timeout after 30 s".into(),
    };
    t.engine
        .complete(&outcomes(&leased, &timeout))
        .await
        .expect("complete");
    let stats = t.engine.stats("ops").await.expect("stats");
    assert_eq!((stats.dead, stats.cancelled_total), (31, 1));

    // The dead set, paged over every partition, newest first, no job twice.
    let filter = DeadFilter {
        queue: "ops".into(),
        ..DeadFilter::default()
    };
    let mut paged = Vec::new();
    for page in 0..4 {
        let got = t
            .engine
            .dead_jobs(&filter, page * 10, 10)
            .await
            .expect("dead");
        paged.extend(got);
    }
    assert_eq!(paged.len(), 31);
    assert!(
        paged.windows(2).all(|w| w[0].died_at_ms >= w[1].died_at_ms),
        "newest first"
    );
    assert_eq!(
        paged.iter().map(|r| &r.id).collect::<BTreeSet<_>>().len(),
        31
    );
    let groups = t.engine.dead_groups("ops").await.expect("groups");
    let counts: Vec<u64> = groups.iter().map(|g| g.count).collect();
    assert_eq!(
        counts,
        [20, 11],
        "one group per error shape, summed over partitions"
    );

    // Requeue by id (a named one in its key's partition), discard, then requeue by filter.
    assert_eq!(
        t.engine
            .requeue_dead(&[named[1].clone(), "nobody".into()])
            .await
            .expect("requeue"),
        [DeadOpOutcome::Done, DeadOpOutcome::Missing]
    );
    assert_eq!(
        t.engine
            .discard_dead_many(&[pushed[0].id.clone(), named[2].clone()])
            .await
            .expect("discard"),
        [DeadOpOutcome::Done, DeadOpOutcome::Done]
    );
    let requeued = t
        .engine
        .requeue_dead_matching(&filter, 3)
        .await
        .expect("requeue all");
    assert_eq!(requeued, 28);
    let stats = t.engine.stats("ops").await.expect("stats");
    assert_eq!((stats.dead, stats.ready), (0, 29));
    t.check_placement("ops");
}

#[tokio::test]
async fn counts_pause_limits_and_drain_cover_every_partition() {
    let t = partitioned("part-controls").await;
    t.push_n("c", 100).await;
    assert_eq!(t.engine.stats("c").await.expect("stats").ready, 100);
    assert_eq!(t.engine.queues().await.expect("queues"), ["c"]);
    assert!(t.engine.oldest_ready_age("c").await.expect("age").is_some());

    assert!(t.engine.pause("c").await.expect("pause"));
    assert!(
        t.lease("c", 100, 30_000).await.is_empty(),
        "paused everywhere"
    );
    assert!(
        t.engine
            .stats("c")
            .await
            .expect("stats")
            .paused_since_ms
            .is_some()
    );
    assert!(t.engine.resume("c").await.expect("resume"));

    // A queue-wide limit of 6 over 4 partitions: shares 2, 2, 1, 1, which add up to 6.
    let limits = QueueLimits {
        concurrency: Some(6),
        ..QueueLimits::default()
    };
    t.engine
        .set_queue_limits("c", &limits)
        .await
        .expect("limits");
    assert_eq!(t.engine.queue_limits("c").await.expect("read"), limits);
    let mut conn = t.sync_conn();
    let shares: Vec<u32> = t
        .engine
        .partition_tags()
        .iter()
        .map(|tag| {
            conn.hget(format!("{tag}:q:c:limits"), "conc")
                .expect("share")
        })
        .collect();
    assert_eq!(shares, [2, 2, 1, 1]);
    let leased = t.lease("c", 100, 30_000).await;
    assert_eq!(
        leased.len(),
        6,
        "the queue-wide limit holds over all partitions"
    );

    let cancelled = t.engine.drain("c", 7).await.expect("drain");
    assert_eq!(cancelled, 94);
    let stats = t.engine.stats("c").await.expect("stats");
    assert_eq!((stats.ready, stats.running), (0, 6));
    t.check_placement("c");
}

#[tokio::test]
async fn the_streams_are_read_whole_and_a_cursor_resumes_without_gap_or_repeat() {
    let t = partitioned("part-streams").await;
    let start = t
        .engine
        .stream_position(EventStream::Jobs)
        .await
        .expect("position");
    assert_eq!(start.split(',').count(), usize::from(PARTITIONS));
    let mut follower = t
        .engine
        .follow(EventStream::Jobs, "$")
        .await
        .expect("follow");
    let ids = t.push_n("s", 200).await;

    // A follower sees each job's enqueue once, whichever partition wrote it.
    let mut seen: Vec<JobEvent> = Vec::new();
    let mut half_way = None;
    while seen.len() < 200 {
        let batch = follower
            .next_batch(30, Duration::from_millis(500))
            .await
            .expect("read");
        assert!(!batch.is_empty(), "saw {} of 200", seen.len());
        seen.extend(batch.iter().filter_map(JobEvent::from_entry));
        if half_way.is_none() && seen.len() >= 100 {
            half_way = Some((seen.len(), follower.cursor().to_owned()));
        }
    }
    let seen_ids: BTreeSet<&String> = seen.iter().map(|e| &e.job_id).collect();
    assert_eq!(seen_ids, ids.iter().collect::<BTreeSet<_>>());
    assert_eq!(seen.len(), 200, "no repeats");
    assert!(seen.iter().all(|e| e.event == "enqueued"));
    assert_eq!(
        seen.iter()
            .map(|e| e.partition)
            .collect::<BTreeSet<_>>()
            .len(),
        usize::from(PARTITIONS)
    );

    // Resuming from the cursor of the 100-odd-th event reads exactly the rest.
    let (read_before, cursor) = half_way.expect("half way");
    let mut rest = Vec::new();
    let mut at = cursor.clone();
    loop {
        let page = t
            .engine
            .read_stream(EventStream::Jobs, &at, 17)
            .await
            .expect("read");
        let Some(last) = page.last() else { break };
        at = last.cursor.clone();
        rest.extend(
            page.iter()
                .filter_map(JobEvent::from_entry)
                .map(|e| e.job_id),
        );
    }
    let before: BTreeSet<&String> = seen[..read_before].iter().map(|e| &e.job_id).collect();
    assert_eq!(rest.len(), 200 - read_before, "no gap, no repeat");
    assert!(rest.iter().all(|id| !before.contains(id)));
    // A cursor written before the deployment grew (one part) reads the rest from the start.
    let parsed = EventCursor::parse(&cursor, PARTITIONS).expect("parse");
    assert!(EventCursor::parse("0-0", PARTITIONS).is_ok());
    assert!(EventCursor::parse("1-0,2-0,3-0,4-0,5-0", PARTITIONS).is_err());
    assert!(EventCursor::parse("yesterday", PARTITIONS).is_err());
    assert_eq!(parsed.to_string(), cursor);

    // A consumer group over every partition: all 200 once, then nothing pending.
    let mut consumer = t.engine.consumer(EventStream::Jobs, "recorder", "r1");
    consumer.ensure_group().await.expect("group");
    let mut consumed: HashMap<String, usize> = HashMap::new();
    while consumed.values().sum::<usize>() < 200 {
        let batch = consumer
            .read(50, Duration::from_millis(500))
            .await
            .expect("read");
        assert!(!batch.is_empty());
        for event in batch.iter().filter_map(JobEvent::from_entry) {
            *consumed.entry(event.job_id).or_default() += 1;
        }
        consumer.ack(&batch).await.expect("ack");
    }
    assert_eq!(consumed.len(), 200);
    assert!(consumed.values().all(|&n| n == 1));
    let progress = t
        .engine
        .group_progress(EventStream::Jobs, "recorder")
        .await
        .expect("progress")
        .expect("group");
    assert_eq!((progress.lag, progress.pending), (Some(0), 0));
    assert_eq!(progress.consumers, ["r1"]);
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tick {
    n: u64,
}

#[tokio::test]
async fn a_worker_drains_every_partition_and_an_idle_one_wakes_on_a_push_to_any() {
    let t = partitioned("part-worker").await;
    let ran = Arc::new(Mutex::new(Vec::<u64>::new()));
    async fn run(tick: Tick, ran: Data<Arc<Mutex<Vec<u64>>>>) -> Result<(), JobError> {
        ran.lock()
            .map_err(|_| JobError::permanent("poisoned"))?
            .push(tick.n);
        Ok(())
    }
    let opts = WorkerOptions::new("w")
        .concurrency(16)
        .lease(Duration::from_millis(500))
        .shutdown_grace(Duration::from_millis(200));
    let mut opts = opts;
    // Only a wake-up, not the poll timer, can explain a pick-up within a second.
    opts.max_idle_wait = Duration::from_secs(10);
    let worker = WorkerBuilder::new("part-worker")
        .backend(RedisBackend::<Tick>::new(t.engine.clone(), opts))
        .data(ran.clone())
        .build(run);
    let engine = t.engine.clone();
    let seen = ran.clone();
    worker
        .run_until(async move {
            let burst: Vec<NewJob> = (0..300)
                .map(|n| NewJob::new("w", &Tick { n }).expect("job"))
                .collect();
            engine.push_many(burst).await.expect("push");
            assert!(
                eventually(Duration::from_secs(10), || async {
                    seen.lock().map(|v| v.len() == 300).unwrap_or(false)
                })
                .await,
                "the burst drained"
            );
            // Idle now: one push at a time, to each partition in turn (routed by key).
            for n in 0..8u64 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let job = NewJob::new("w", &Tick { n: 1000 + n })
                    .expect("job")
                    .with_limit_key(format!("wake-{n}"));
                engine.push(job).await.expect("push");
                let want = 301 + n as usize;
                assert!(
                    eventually(Duration::from_secs(1), || async {
                        seen.lock().map(|v| v.len() >= want).unwrap_or(false)
                    })
                    .await,
                    "push {n} was not picked up within a second"
                );
            }
            Ok::<(), std::io::Error>(())
        })
        .await
        .expect("worker");
    let ran = ran.lock().expect("lock").clone();
    assert_eq!(ran.len(), 308);
    assert_eq!(ran.iter().collect::<BTreeSet<_>>().len(), 308, "each once");
    let stats = t.engine.stats("w").await.expect("stats");
    assert_eq!(
        (stats.succeeded_total, stats.ready, stats.running),
        (308, 0, 0)
    );
}

#[tokio::test]
async fn a_deployment_grown_from_one_partition_keeps_serving_the_jobs_it_had() {
    let t = TestQueue::with_config("part-grow", |c| c.partitions = 1).await;
    let old: Vec<String> = t.push_n("g", 40).await;
    let old_cursor = t
        .engine
        .stream_position(EventStream::Jobs)
        .await
        .expect("position");
    let leased_before = t.lease("g", 5, 30_000).await;

    let grown = grow(&t, 3).await.expect("connect grown");
    // Its jobs are found, leased, finished; the leases taken before still complete.
    let found = grown.jobs(&old).await.expect("jobs");
    assert!(found.iter().all(Option::is_some));
    let ok = Outcome::Succeeded { result: None };
    let applied = grown
        .complete(&outcomes(&leased_before, &ok))
        .await
        .expect("complete");
    assert!(
        applied.iter().all(|a| *a == queue::Applied::Ok),
        "{applied:?}"
    );
    let new: Vec<String> = grown
        .push_many(
            (0..40)
                .map(|n| NewJob::raw("g", "g", format!("{{\"new\":{n}}}")))
                .collect(),
        )
        .await
        .expect("push")
        .into_iter()
        .map(|o| o.id)
        .collect();
    let mut leased = BTreeSet::new();
    loop {
        let got = grown
            .fetch(&fetch_req("g", 50, 30_000))
            .await
            .expect("fetch")
            .jobs;
        if got.is_empty() {
            break;
        }
        grown
            .complete(&outcomes(&got, &ok))
            .await
            .expect("complete");
        leased.extend(got.into_iter().map(|j| j.id));
    }
    assert_eq!(
        leased.len(),
        75,
        "35 old jobs still waiting and 40 new ones"
    );
    let stats = grown.stats("g").await.expect("stats");
    assert_eq!((stats.succeeded_total, stats.ready), (80, 0));
    // A cursor from before reads on: the old partition from where it was, the new ones
    // from their start.
    let after = grown
        .read_stream(EventStream::Jobs, &old_cursor, 10_000)
        .await
        .expect("read");
    let events: Vec<JobEvent> = after.iter().filter_map(JobEvent::from_entry).collect();
    let enqueued: BTreeSet<&String> = events
        .iter()
        .filter(|e| e.event == "enqueued")
        .map(|e| &e.job_id)
        .collect();
    assert_eq!(enqueued, new.iter().collect::<BTreeSet<_>>());
    assert_eq!(events.iter().filter(|e| e.event == "succeeded").count(), 80);
    // The test prefix removes partition 0 only: the grown engine removes what it added.
    grown.destroy_all_data().await.expect("clean up");
}

#[tokio::test]
async fn growing_keeps_every_partition_and_its_controls_and_shrinking_is_refused() {
    let t = TestQueue::with_config("part-regrow", |c| c.partitions = 3).await;
    let before = t.engine.partition_tags();
    let ids = t.push_n("r", 60).await;
    t.engine.pause("r").await.expect("pause");
    let limits = QueueLimits {
        concurrency: Some(8),
        ..QueueLimits::default()
    };
    t.engine
        .set_queue_limits("r", &limits)
        .await
        .expect("limits");
    // Below the partition count a queue-wide limit could not hold: refused, naming the field.
    let refused = t
        .engine
        .set_queue_limits(
            "r",
            &QueueLimits {
                concurrency: Some(2),
                ..QueueLimits::default()
            },
        )
        .await;
    assert!(
        matches!(&refused, Err(queue::QueueError::InvalidArgument(why)) if why.starts_with("concurrency")),
        "{refused:?}"
    );

    let grown = grow(&t, 4).await.expect("grow to 4");
    let after = grown.partition_tags();
    assert_eq!(
        after[..3],
        before[..],
        "the partitions it had keep their tags"
    );
    assert_eq!(after.len(), 4);
    assert!(
        grown
            .jobs(&ids)
            .await
            .expect("jobs")
            .iter()
            .all(Option::is_some)
    );
    // The pause and the limits hold on the new partition too, the limits shared out afresh.
    assert_eq!(grown.queue_limits("r").await.expect("limits"), limits);
    let mut conn = t.sync_conn();
    let shares: Vec<u32> = after
        .iter()
        .map(|tag| {
            conn.hget(format!("{tag}:q:r:limits"), "conc")
                .expect("share")
        })
        .collect();
    assert_eq!(shares, [2, 2, 2, 2]);
    let paused: Vec<bool> = after
        .iter()
        .map(|tag| conn.exists(format!("{tag}:q:r:paused")).expect("paused"))
        .collect();
    assert_eq!(paused, [true; 4]);
    grown.resume("r").await.expect("resume");
    t.push_n("r", 60).await;
    grown
        .push_many(
            (0..60)
                .map(|n| NewJob::raw("r", "r", format!("{{\"g\":{n}}}")))
                .collect(),
        )
        .await
        .expect("push");
    let leased = grown
        .fetch(&fetch_req("r", 100, 30_000))
        .await
        .expect("fetch")
        .jobs;
    assert_eq!(leased.len(), 8, "the limit holds over all four");
    // An outcome under a token naming no partition of the deployment is refused.
    let forged = vec![(
        leased[0].id.clone(),
        format!(
            "9:{}",
            leased[0].token.split_once(':').map_or("", |(_, t)| t)
        ),
        Outcome::Succeeded { result: None },
    )];
    assert_eq!(
        grown.complete(&forged).await.expect("complete"),
        [queue::Applied::Stale]
    );

    // A process that still says 3 is refused: it would leave the fourth unserved.
    let shrunk = grow(&t, 3).await;
    assert!(
        matches!(&shrunk, Err(queue::QueueError::InvalidArgument(why)) if why.contains("has 4 partitions")),
        "{shrunk:?}"
    );
    // The test prefix removes the partitions it knows (3): the grown engine removes the rest.
    grown.destroy_all_data().await.expect("clean up");
}

/// While a partition is fenced (its cluster slot being moved): its calls wait for the fence to
/// lift, up to `fence_wait`, then fail retryably; fetches pass over it to the other partitions;
/// the fence shows with its note; lifted, the waiting calls go through.
#[tokio::test]
async fn a_fenced_partition_makes_its_calls_wait_and_fetches_pass_over_it() {
    let t = TestQueue::with_config("part-fence", |c| {
        c.partitions = 2;
        c.fence_wait = Duration::from_secs(30);
    })
    .await;
    let ids = t.push_n("q", 20).await;
    let in_fenced: Vec<&String> = ids
        .iter()
        .filter(|id| partition_of(&t, id) == Some(1))
        .collect();
    assert!(!in_fenced.is_empty() && in_fenced.len() < ids.len());

    t.engine.fence(&[1], "moving slot").await.expect("fence");
    assert_eq!(
        t.engine.fences().await.expect("fences"),
        vec![None, Some("moving slot".to_owned())]
    );
    assert!(matches!(
        t.engine.fence(&[2], "no such").await,
        Err(queue::QueueError::InvalidArgument(_))
    ));

    // A fetch takes partition 0's jobs and passes over partition 1 without an error.
    let leased = t
        .engine
        .fetch(&fetch_req("q", 50, 60_000))
        .await
        .expect("fetch");
    assert_eq!(leased.jobs.len(), ids.len() - in_fenced.len());
    assert!(
        leased
            .jobs
            .iter()
            .all(|j| partition_of(&t, &j.id) == Some(0))
    );

    // An engine that waits 100 ms gives up with a retryable error, naming the cause.
    let mut impatient = queue::testing::config(&t.prefix);
    impatient.partitions = 2;
    impatient.fence_wait = Duration::from_millis(100);
    let impatient = queue::Engine::connect(&t.url, impatient)
        .await
        .expect("engine");
    let refused = impatient
        .push(NewJob::raw("q", "q", "{}".to_owned()).with_id(in_fenced[0].clone()))
        .await
        .expect_err("fenced");
    assert!(refused.is_retryable() && refused.redis_code() == Some("FENCED"));
    assert!(refused.unavailable_reason().is_some());

    // A patient call waits out the fence and then goes through.
    let engine = t.engine.clone();
    let cancel = tokio::spawn({
        let id = in_fenced[0].clone();
        async move { engine.cancel(&id).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!cancel.is_finished(), "the call waits for the fence");
    t.engine.unfence(&[1]).await.expect("unfence");
    let cancelled = cancel.await.expect("task").expect("cancel went through");
    assert_eq!(cancelled, CancelOutcome::Cancelled);
    let rest = t
        .engine
        .fetch(&fetch_req("q", 50, 60_000))
        .await
        .expect("fetch");
    assert_eq!(rest.jobs.len(), in_fenced.len() - 1);
}

/// One partition's stream at its cap (a consumer group that reads nothing pins it): a push
/// over both partitions is refused, retryably, but the other partition's jobs are in, once;
/// pushed again when the group is gone, they are duplicates and the rest go in.
#[tokio::test]
async fn a_full_stream_refuses_its_own_partitions_jobs_only_and_a_retry_doubles_none() {
    let t = TestQueue::with_config("part-full", |c| {
        c.partitions = 2;
        c.stream_cap = 40;
    })
    .await;
    let pinned = format!("{}:events", t.engine.partition_tags()[0]);
    let mut conn = t.sync_conn();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&pinned)
        .arg("pin")
        .arg("0")
        .arg("MKSTREAM")
        .query(&mut conn)
        .expect("group");
    // Fill partition 0's stream: single pushes until one is refused.
    let mut n = 0;
    loop {
        n += 1;
        assert!(n < 1000, "the cap was never reached");
        let job = NewJob::raw("q", "q", "{}".to_owned()).with_id(format!("fill-{n}"));
        match t.engine.push(job).await {
            Ok(_) => {}
            Err(queue::QueueError::StreamFull { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }

    let ids: Vec<String> = (0..20).map(|i| format!("batch-{i}")).collect();
    let batch = || -> Vec<NewJob> {
        ids.iter()
            .map(|id| NewJob::raw("q", "q", "{}".to_owned()).with_id(id.clone()))
            .collect()
    };
    let refused = t
        .engine
        .push_many(batch())
        .await
        .expect_err("partition 0 is full");
    assert!(refused.is_retryable(), "{refused}");
    let held: Vec<Option<usize>> = ids.iter().map(|id| partition_of(&t, id)).collect();
    assert!(
        held.iter().all(|p| *p != Some(0)),
        "nothing went into the full partition: {held:?}"
    );
    let in_other: Vec<&String> = ids
        .iter()
        .zip(&held)
        .filter(|(_, p)| **p == Some(1))
        .map(|(id, _)| id)
        .collect();
    assert!(
        !in_other.is_empty() && in_other.len() < ids.len(),
        "the other partition took its share: {held:?}"
    );

    let _: () = redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg(&pinned)
        .arg("pin")
        .query(&mut conn)
        .expect("destroy group");
    let pushed = t.engine.push_many(batch()).await.expect("pushed again");
    for (id, outcome) in ids.iter().zip(&pushed) {
        assert_eq!(
            outcome.duplicate,
            in_other.contains(&id),
            "{id}: a duplicate exactly when it went in the first time"
        );
        assert!(partition_of(&t, id).is_some(), "{id} stored");
    }
}
