#![allow(dead_code)]

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use queue::{
    Engine, EngineConfig, FetchRequest, JobState, LeasedJob, NewJob, QueueStats,
    testing::TestPrefix,
};
use redis::Commands;

pub use queue::testing::redis_url;

/// An engine under a prefix of its own (deleted when dropped, by `TestPrefix`), with the
/// queue suite's helpers.
pub struct TestQueue {
    pub engine: Engine,
    pub prefix: String,
    pub url: String,
    _redis: TestPrefix,
}

impl TestQueue {
    pub async fn new(tag: &str) -> Self {
        Self::with_config(tag, |_| {}).await
    }

    /// A deployment of one partition, whatever `REDIS_PARTITIONS` says: for tests of what
    /// holds within one partition (FIFO order over a whole queue, bounds per call, one
    /// stream), which a deployment of several keeps per partition.
    pub async fn one_partition(tag: &str) -> Self {
        Self::with_config(tag, |c| c.partitions = 1).await
    }

    pub async fn with_config(tag: &str, tweak: impl FnOnce(&mut EngineConfig)) -> Self {
        Self::at(&redis_url(), tag, tweak).await
    }

    pub async fn at(url: &str, tag: &str, tweak: impl FnOnce(&mut EngineConfig)) -> Self {
        let redis = TestPrefix::at(url, tag, tweak).await;
        Self {
            engine: redis.engine.clone(),
            prefix: redis.prefix.clone(),
            url: redis.url.clone(),
            _redis: redis,
        }
    }

    pub fn key(&self, rest: &str) -> String {
        format!("{{{}}}:{rest}", self.prefix)
    }

    pub fn sync_conn(&self) -> queue::testing::InspectConn {
        queue::testing::InspectConn::open(&self.url)
    }

    pub async fn push_n(&self, queue: &str, n: usize) -> Vec<String> {
        let jobs = (0..n)
            .map(|i| NewJob::raw(queue, queue, format!("{{\"n\":{i}}}")).with_max_attempts(3))
            .collect();
        self.engine
            .push_many(jobs)
            .await
            .expect("push")
            .into_iter()
            .map(|o| o.id)
            .collect()
    }

    /// Pushes one job of kind `queue` with the JSON `payload`; returns its id.
    pub async fn push_payload(&self, queue: &str, payload: &str) -> String {
        self.engine
            .push(NewJob::raw(queue, queue, payload.into()))
            .await
            .expect("push")
            .id
    }

    /// Leases up to `n` jobs of `queue` (zero backoff for reaped leases, so retries are due at once).
    pub async fn lease(&self, queue: &str, n: usize, lease_ms: u64) -> Vec<LeasedJob> {
        self.engine
            .fetch(&fetch_req(queue, n, lease_ms))
            .await
            .expect("fetch")
            .jobs
    }

    /// Where each job is, read from the engine's structures (not from its hash):
    /// every job must be in exactly one place, and that place must match its state.
    pub fn check_placement(&self, queue: &str) -> HashMap<String, JobState> {
        let mut placement: HashMap<String, JobState> = HashMap::new();
        for home in self.engine.partition_tags() {
            for (id, state) in self.check_partition(&home, queue) {
                assert!(
                    placement.insert(id.clone(), state).is_none(),
                    "job {id} is in two partitions"
                );
            }
        }
        placement
    }

    /// [`TestQueue::check_placement`] in the partition whose hash tag is `home`.
    fn check_partition(&self, home: &str, queue: &str) -> HashMap<String, JobState> {
        let mut conn = self.sync_conn();
        let key = |rest: &str| format!("{home}:{rest}");
        let q = |part: &str| key(&format!("q:{queue}:{part}"));
        let ready: Vec<String> = conn.lrange(q("ready"), 0, -1).expect("lrange");
        let ready_high: Vec<String> = conn.lrange(q("ready:h"), 0, -1).expect("lrange");
        let ready_low: Vec<String> = conn.lrange(q("ready:l"), 0, -1).expect("lrange");
        let sched: Vec<String> = conn.zrange(q("sched"), 0, -1).expect("zrange");
        let lease: Vec<String> = conn.zrange(q("lease"), 0, -1).expect("zrange");
        let dead: Vec<String> = conn.zrange(q("dead"), 0, -1).expect("zrange");
        let done: Vec<String> = conn.lrange(q("done"), 0, -1).expect("lrange");
        // Jobs waiting for their limit key's slot: ready jobs held back, flagged `kw`.
        let mut key_waiting: Vec<String> = Vec::new();
        let wait_lists: Vec<String> = conn.keys(q("kwait:*")).expect("keys");
        for list in wait_lists {
            let ids: Vec<String> = conn.lrange(&list, 0, -1).expect("lrange");
            for id in &ids {
                let flag: Option<String> =
                    conn.hget(key(&format!("job:{id}")), "kw").expect("hget");
                let state: Option<String> =
                    conn.hget(key(&format!("job:{id}")), "st").expect("hget");
                assert!(
                    flag.as_deref() == Some("1") || state.as_deref() == Some("CANCELLED"),
                    "{id} waits in {list} without its flag"
                );
            }
            key_waiting.extend(ids);
        }
        let mut placement: HashMap<String, JobState> = HashMap::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut tombstones = 0;
        for (ids, place) in [
            (&ready_high, "ready:h"),
            (&ready, "ready"),
            (&ready_low, "ready:l"),
            (&key_waiting, "kwait"),
            (&sched, "sched"),
            (&lease, "lease"),
            (&dead, "dead"),
            (&done, "done"),
        ] {
            for id in ids {
                let state: Option<String> =
                    conn.hget(key(&format!("job:{id}")), "st").expect("hget");
                let state: JobState = state
                    .unwrap_or_else(|| panic!("{id} in {place} has no hash"))
                    .parse()
                    .expect("state");
                let in_ready = place.starts_with("ready") || place == "kwait";
                if place.starts_with("ready") {
                    let level: Option<String> =
                        conn.hget(key(&format!("job:{id}")), "pr").expect("hget");
                    let own_list = match level.as_deref() {
                        Some("h") => "ready:h",
                        Some("l") => "ready:l",
                        _ => "ready",
                    };
                    assert_eq!(place, own_list, "job {id} sits in another level's list");
                }
                let tombstone = in_ready && state == JobState::Cancelled;
                if tombstone {
                    tombstones += 1;
                    continue;
                }
                let expected_place = match state {
                    JobState::Queued => "ready",
                    JobState::Scheduled | JobState::Retrying => "sched",
                    JobState::Running => "lease",
                    JobState::Dead => "dead",
                    JobState::Succeeded | JobState::Cancelled => "done",
                };
                let place_kind = if in_ready { "ready" } else { place };
                assert_eq!(
                    place_kind, expected_place,
                    "job {id} is {state} but sits in {place}"
                );
                assert!(seen.insert(id.clone()), "job {id} is in two places");
                placement.insert(id.clone(), state);
            }
        }
        let tomb: Option<i64> = conn.hget(q("stats"), "tomb").expect("hget");
        assert_eq!(tomb.unwrap_or(0), tombstones, "tombstone counter drifted");
        placement
    }
}

/// Polls `check` every few milliseconds until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A fetch of up to `n` jobs by worker "w1", with zero backoff for reaped leases.
pub fn fetch_req(queue: &str, n: usize, lease_ms: u64) -> FetchRequest<'_> {
    FetchRequest {
        queue,
        worker_id: "w1",
        max_jobs: n,
        lease: Duration::from_millis(lease_ms),
        backoff_base: Duration::ZERO,
        backoff_cap: Duration::ZERO,
        timeout: None,
        timeout_grace: Duration::ZERO,
    }
}

/// Waits until the queue's counters satisfy `check`, for at most `within`.
pub async fn wait_for_stats(
    engine: &Engine,
    queue: &str,
    within: Duration,
    check: impl Fn(&QueueStats) -> bool,
) -> bool {
    eventually(within, || async {
        engine
            .stats(queue)
            .await
            .map(|s| check(&s))
            .unwrap_or(false)
    })
    .await
}
