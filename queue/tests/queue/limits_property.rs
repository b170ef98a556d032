//! Random sequences of push / fetch / ack / retry / snooze / lease expiry / timeout / cancel /
//! limit changes on a queue with a concurrency limit and a per-key limit, checked after every
//! step against invariants instead of an exact order (which key waits where depends on the
//! order retries fall due): the limits hold, every job is in exactly one place, the counts
//! match, no job waits for a key that has room, and in the end every job can finish: nothing
//! is stranded behind a limit.

use std::{collections::HashMap, time::Duration};

use proptest::prelude::*;
use queue::{JobState, NewJob, Outcome, QueueLimits};
use redis::Commands;

use super::common::{TestQueue, fetch_req};

const QUEUE: &str = "lprop";
const KEYS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Op {
    Push {
        key: Option<u8>,
        count: u8,
    },
    Fetch {
        max: u8,
    },
    Ack {
        pick: u8,
    },
    Retry {
        pick: u8,
    },
    Snooze {
        pick: u8,
    },
    Expire {
        pick: u8,
    },
    TimeOut {
        pick: u8,
    },
    Cancel {
        pick: u8,
    },
    SetLimits {
        conc: Option<u8>,
        per_key: Option<u8>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (prop::option::weighted(0.8, 0u8..3), 1u8..4)
            .prop_map(|(key, count)| Op::Push { key, count }),
        4 => (0u8..6).prop_map(|max| Op::Fetch { max }),
        3 => any::<u8>().prop_map(|pick| Op::Ack { pick }),
        1 => any::<u8>().prop_map(|pick| Op::Retry { pick }),
        1 => any::<u8>().prop_map(|pick| Op::Snooze { pick }),
        1 => any::<u8>().prop_map(|pick| Op::Expire { pick }),
        1 => any::<u8>().prop_map(|pick| Op::TimeOut { pick }),
        1 => any::<u8>().prop_map(|pick| Op::Cancel { pick }),
        1 => (prop::option::of(1u8..5), prop::option::of(1u8..3))
            .prop_map(|(conc, per_key)| Op::SetLimits { conc, per_key }),
    ]
}

struct Case {
    t: TestQueue,
    /// Each job's limit key, and the token of its running attempt.
    keys: HashMap<String, Option<&'static str>>,
    tokens: HashMap<String, String>,
    limits: QueueLimits,
    /// What the last fetch leased (each job's key), under which limits (queue, per key).
    just_leased: Vec<Option<&'static str>>,
    leased_under: (Option<u32>, Option<u32>),
    /// Jobs past their deadline, not yet reaped (an outcome may still come first) ...
    timing_out: Vec<String>,
    /// ... and reaped, so their history must say they timed out.
    timed_out: Vec<String>,
}

impl Case {
    async fn state(&self, id: &str) -> JobState {
        self.t
            .engine
            .job(id)
            .await
            .expect("job")
            .expect("record")
            .state
    }

    async fn pick(&self, pick: u8, state: JobState) -> Option<String> {
        let mut ids = Vec::new();
        for id in self.keys.keys() {
            if self.state(id).await == state {
                ids.push(id.clone());
            }
        }
        ids.sort();
        (!ids.is_empty()).then(|| ids[pick as usize % ids.len()].clone())
    }

    async fn outcome(&mut self, pick: u8, outcome: Outcome) {
        if let Some(id) = self.pick(pick, JobState::Running).await {
            let token = self.tokens[&id].clone();
            self.timing_out.retain(|t| *t != id);
            self.t
                .engine
                .complete(&[(id, token, outcome)])
                .await
                .expect("complete");
        }
    }

    async fn fetch(&mut self, max: usize) -> usize {
        self.timed_out.append(&mut self.timing_out);
        let fetched = self
            .t
            .engine
            .fetch(&fetch_req(QUEUE, max, 60_000))
            .await
            .expect("fetch")
            .jobs;
        for job in &fetched {
            self.tokens.insert(job.id.clone(), job.token.clone());
            self.just_leased.push(self.keys[&job.id]);
        }
        self.leased_under = (self.limits.concurrency, self.limits.per_key_concurrency);
        fetched.len()
    }

    async fn step(&mut self, op: &Op) {
        match *op {
            Op::Push { key, count } => {
                let key = key.map(|k| KEYS[k as usize]);
                for _ in 0..count {
                    let mut job = NewJob::raw(QUEUE, QUEUE, "{}".into()).with_max_attempts(50);
                    if let Some(k) = key {
                        job = job.with_limit_key(k);
                    }
                    let id = self.t.engine.push(job).await.expect("push").id;
                    self.keys.insert(id, key);
                }
            }
            Op::Fetch { max } => {
                self.fetch(max as usize).await;
            }
            Op::Ack { pick } => {
                self.outcome(pick, Outcome::Succeeded { result: None })
                    .await
            }
            Op::Retry { pick } => {
                self.outcome(
                    pick,
                    Outcome::Retry {
                        error: "flaky".into(),
                        delay: Duration::ZERO,
                    },
                )
                .await
            }
            Op::Snooze { pick } => {
                self.outcome(
                    pick,
                    Outcome::Snooze {
                        delay: Duration::ZERO,
                        reason: String::new(),
                    },
                )
                .await
            }
            Op::Expire { pick } | Op::TimeOut { pick } => {
                if let Some(id) = self.pick(pick, JobState::Running).await {
                    let mut conn = self.t.sync_conn();
                    if matches!(op, Op::TimeOut { .. }) {
                        // Its deadline passed: the reaper must say it timed out.
                        let _: () = conn
                            .hset(self.t.key(&format!("job:{id}")), "dl", 1)
                            .expect("hset");
                        self.timing_out.push(id.clone());
                    }
                    let _: () = conn
                        .zadd(self.t.key(&format!("q:{QUEUE}:lease")), &id, 0)
                        .expect("zadd");
                }
            }
            Op::Cancel { pick } => {
                let state = if pick % 2 == 0 {
                    JobState::Queued
                } else {
                    JobState::Running
                };
                if let Some(id) = self.pick(pick / 2, state).await {
                    self.t.engine.cancel(&id).await.expect("cancel");
                }
            }
            Op::SetLimits { conc, per_key } => {
                self.limits = QueueLimits {
                    concurrency: conc.map(u32::from),
                    per_key_concurrency: per_key.map(u32::from),
                    ..QueueLimits::default()
                };
                self.t
                    .engine
                    .set_queue_limits(QUEUE, &self.limits)
                    .await
                    .expect("limits");
            }
        }
    }

    /// The limits hold for what a fetch just leased, every job sits in one place, the counts
    /// add up, and a job waits for its key only while the key's slots are taken (by running
    /// jobs, or by jobs of the key already back in a ready list) or a pass over the waiting
    /// keys is due after a limit change.
    async fn check(&mut self) {
        let placement = self.t.check_placement(QUEUE);
        let mut running_per_key: HashMap<&str, u32> = HashMap::new();
        let mut running = 0;
        let mut queued = 0;
        let mut waiting_keys = Vec::new();
        for (id, key) in &self.keys {
            let record = self.t.engine.job(id).await.expect("job").expect("record");
            if record.state != JobState::Cancelled {
                assert_eq!(placement.get(id), Some(&record.state), "{id} misplaced");
            }
            match record.state {
                JobState::Running => {
                    running += 1;
                    if let Some(k) = key {
                        *running_per_key.entry(k).or_default() += 1;
                    }
                }
                JobState::Queued => {
                    queued += 1;
                    if record.waiting_for_key {
                        waiting_keys.push(key.expect("a waiting job has a key"));
                    }
                }
                _ => {}
            }
        }
        let stats = self.t.engine.stats(QUEUE).await.expect("stats");
        assert_eq!((stats.ready, stats.running), (queued, running), "counts");

        let (conc, per_key) = self.leased_under;
        if !self.just_leased.is_empty() {
            if let Some(conc) = conc {
                assert!(
                    running <= u64::from(conc),
                    "{running} running, limit {conc}"
                );
            }
            if let Some(per_key) = per_key {
                for key in self.just_leased.iter().flatten() {
                    let n = running_per_key.get(key).copied().unwrap_or(0);
                    assert!(n <= per_key, "{n} of key {key} running, limit {per_key}");
                }
            }
        }
        self.just_leased.clear();

        let mut conn = self.t.sync_conn();
        let pass_due: bool = conn
            .hexists(self.t.key(&format!("q:{QUEUE}:limits")), "kdrain")
            .expect("hexists");
        let mut in_ready: HashMap<&str, u32> = HashMap::new();
        for list in ["ready:h", "ready", "ready:l"] {
            let ids: Vec<String> = conn
                .lrange(self.t.key(&format!("q:{QUEUE}:{list}")), 0, -1)
                .expect("lrange");
            for id in ids {
                if let Some(Some(k)) = self.keys.get(&id) {
                    *in_ready.entry(k).or_default() += 1;
                }
            }
        }
        for key in waiting_keys {
            let taken = running_per_key.get(key).copied().unwrap_or(0)
                + in_ready.get(key).copied().unwrap_or(0);
            let full = self.limits.per_key_concurrency.is_some_and(|l| taken >= l);
            assert!(
                full || pass_due,
                "a job waits for key {key} with {taken} of {:?} slots taken",
                self.limits.per_key_concurrency
            );
        }
    }

    /// With the limits still set and every attempt acknowledged, everything finishes.
    async fn drain_to_the_end(&mut self) {
        let held: Vec<_> = self
            .tokens
            .iter()
            .map(|(id, token)| {
                (
                    id.clone(),
                    token.clone(),
                    Outcome::Succeeded { result: None },
                )
            })
            .collect();
        // Tokens of attempts that already ended are refused (stale); the running ones end.
        self.t.engine.complete(&held).await.expect("complete");
        for _ in 0..200 {
            let fetched = self
                .t
                .engine
                .fetch(&fetch_req(QUEUE, 50, 60_000))
                .await
                .expect("fetch")
                .jobs;
            let outcomes: Vec<_> = fetched
                .iter()
                .map(|j| {
                    (
                        j.id.clone(),
                        j.token.clone(),
                        Outcome::Succeeded { result: None },
                    )
                })
                .collect();
            self.t.engine.complete(&outcomes).await.expect("complete");
            let stats = self.t.engine.stats(QUEUE).await.expect("stats");
            if fetched.is_empty() && stats.ready == 0 && stats.running == 0 && stats.scheduled == 0
            {
                break;
            }
        }
        let stats = self.t.engine.stats(QUEUE).await.expect("stats");
        assert_eq!(
            (
                stats.ready,
                stats.running,
                stats.scheduled,
                stats.waiting_for_key
            ),
            (0, 0, 0, 0),
            "jobs stranded behind a limit"
        );
        for id in &self.timed_out {
            let record = self.t.engine.job(id).await.expect("job").expect("record");
            assert!(
                record
                    .errors
                    .iter()
                    .any(|e| e.error.starts_with("timed out")),
                "{id}: {:?}",
                record.errors
            );
        }
    }
}

async fn run_case(ops: Vec<Op>) {
    let t = TestQueue::one_partition("lprop").await;
    let limits = QueueLimits {
        concurrency: Some(3),
        per_key_concurrency: Some(1),
        ..QueueLimits::default()
    };
    t.engine
        .set_queue_limits(QUEUE, &limits)
        .await
        .expect("limits");
    let mut case = Case {
        t,
        keys: HashMap::new(),
        tokens: HashMap::new(),
        limits,
        just_leased: Vec::new(),
        leased_under: (None, None),
        timing_out: Vec::new(),
        timed_out: Vec::new(),
    };
    for op in &ops {
        case.step(op).await;
        case.check().await;
    }
    case.drain_to_the_end().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn limits_hold_every_job_has_one_place_and_nothing_is_stranded(ops in prop::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(run_case(ops));
    }
}
