//! Random sequences of push / fetch / ack / retry / fail / snooze / lease expiry / stale ack /
//! cancel / requeue / discard, checked against a model after every step: every job is in
//! exactly one place that matches its state, and the events appended are exactly the
//! transitions the model expects. Jobs come in three priorities: each fetch leases the higher
//! levels first and each level in push order (aging is 60 s, far beyond a case's length).

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::Duration,
};

use proptest::prelude::*;
use queue::{
    Applied, CancelOutcome, DeadOpOutcome, EventStream, FetchRequest, JobEvent, JobState, KeyScope,
    NewJob, Outcome, Priority,
};
use redis::Commands;

use super::common::TestQueue;

const QUEUE: &str = "prop";
const MAX_ATTEMPTS: u32 = 2;

#[derive(Debug, Clone)]
enum Op {
    Push {
        count: u8,
        delayed: bool,
        key: Option<u8>,
        level: Priority,
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
    Fail {
        pick: u8,
    },
    Snooze {
        pick: u8,
    },
    Expire {
        pick: u8,
    },
    StaleAck {
        pick: u8,
    },
    Cancel {
        pick: u8,
    },
    Requeue {
        pick: u8,
    },
    Discard {
        pick: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (
            1u8..4,
            prop::bool::weighted(0.15),
            prop::option::weighted(0.3, 0u8..3),
            prop_oneof![2 => Just(Priority::Normal), 1 => Just(Priority::High), 1 => Just(Priority::Low)],
        )
            .prop_map(|(count, delayed, key, level)| Op::Push { count, delayed, key, level }),
        4 => (0u8..5).prop_map(|max| Op::Fetch { max }),
        2 => any::<u8>().prop_map(|pick| Op::Ack { pick }),
        2 => any::<u8>().prop_map(|pick| Op::Retry { pick }),
        1 => any::<u8>().prop_map(|pick| Op::Fail { pick }),
        1 => any::<u8>().prop_map(|pick| Op::Snooze { pick }),
        1 => any::<u8>().prop_map(|pick| Op::Expire { pick }),
        1 => any::<u8>().prop_map(|pick| Op::StaleAck { pick }),
        1 => any::<u8>().prop_map(|pick| Op::Cancel { pick }),
        1 => any::<u8>().prop_map(|pick| Op::Requeue { pick }),
        1 => any::<u8>().prop_map(|pick| Op::Discard { pick }),
    ]
}

#[derive(Debug, Clone)]
struct ModelJob {
    state: JobState,
    attempt: u32,
    token: Option<String>,
    lease_expired: bool,
    /// An operator asked to cancel while it ran: a retry, snooze or expiry cancels it.
    cancel_requested: bool,
    /// Scheduled far in the future (never falls due during a case).
    far_future: bool,
    priority: Priority,
}

/// The position of a level in lease order (high first).
fn rank(level: Priority) -> usize {
    Priority::ALL
        .iter()
        .position(|p| *p == level)
        .expect("a level")
}

#[derive(Default)]
struct Model {
    jobs: HashMap<String, ModelJob>,
    keys: HashMap<u8, String>,
    /// The ready jobs of each level, in lease order, high first.
    ready: [VecDeque<String>; 3],
    expected_events: Vec<(String, String)>,
}

impl Model {
    fn pick(&self, pick: u8, state: JobState) -> Option<String> {
        let mut ids: Vec<&String> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.state == state)
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        (!ids.is_empty()).then(|| ids[pick as usize % ids.len()].clone())
    }

    fn expect(&mut self, id: &str, event: &str) {
        self.expected_events.push((id.to_owned(), event.to_owned()));
    }

    fn set(&mut self, id: &str, state: JobState) {
        if let Some(j) = self.jobs.get_mut(id) {
            j.state = state;
            if !matches!(state, JobState::Running) {
                j.token = None;
                j.lease_expired = false;
                j.cancel_requested = false;
            }
            if state != JobState::Scheduled {
                j.far_future = false;
            }
        }
    }

    /// A retryable failure of a running job: retry while attempts remain, else dead.
    fn fail_retryable(&mut self, id: &str, via: &str) {
        let attempt = self.jobs[id].attempt;
        if self.jobs[id].cancel_requested {
            self.set(id, JobState::Cancelled);
            self.expect(id, "cancelled");
        } else if attempt >= MAX_ATTEMPTS {
            self.set(id, JobState::Dead);
            self.expect(id, "died");
        } else {
            self.set(id, JobState::Retrying);
            self.expect(id, via);
        }
    }
}

fn fetch_req(max: usize) -> FetchRequest<'static> {
    FetchRequest {
        queue: QUEUE,
        worker_id: "prop-worker",
        max_jobs: max,
        lease: Duration::from_secs(60),
        backoff_base: Duration::ZERO,
        backoff_cap: Duration::ZERO,
        timeout: None,
        timeout_grace: Duration::ZERO,
    }
}

async fn step(t: &TestQueue, m: &mut Model, op: &Op) {
    let e = &t.engine;
    match *op {
        Op::Push {
            count,
            delayed,
            key,
            level,
        } => {
            let jobs: Vec<NewJob> = (0..count)
                .map(|_| {
                    let mut job = NewJob::raw(QUEUE, QUEUE, "{}".into())
                        .with_max_attempts(MAX_ATTEMPTS)
                        .with_priority(level);
                    if delayed {
                        job = job.with_delay(Duration::from_secs(3600));
                    }
                    if let Some(k) = key {
                        job = job.with_idempotency_key(format!("key-{k}"), KeyScope::For(None));
                    }
                    job
                })
                .collect();
            for out in e.push_many(jobs).await.expect("push") {
                if let Some(k) = key {
                    if let Some(existing) = m.keys.get(&k) {
                        assert!(out.duplicate, "a live key must answer with its job");
                        assert_eq!(&out.id, existing);
                        continue;
                    }
                    m.keys.insert(k, out.id.clone());
                }
                assert!(!out.duplicate);
                let state = if delayed {
                    JobState::Scheduled
                } else {
                    JobState::Queued
                };
                m.jobs.insert(
                    out.id.clone(),
                    ModelJob {
                        state,
                        attempt: 0,
                        token: None,
                        lease_expired: false,
                        cancel_requested: false,
                        far_future: delayed,
                        priority: level,
                    },
                );
                if delayed {
                    m.expect(&out.id, "scheduled");
                } else {
                    m.ready[rank(level)].push_back(out.id.clone());
                    m.expect(&out.id, "enqueued");
                }
            }
        }
        Op::Fetch { max } => {
            // Reap: expired leases first.
            let mut expired: Vec<String> = m
                .jobs
                .iter()
                .filter(|(_, j)| j.state == JobState::Running && j.lease_expired)
                .map(|(id, _)| id.clone())
                .collect();
            expired.sort();
            for id in &expired {
                m.fail_retryable(id, "lease_expired");
            }
            // Promote: everything due (retries and snoozes were scheduled with no delay).
            let promoted: HashSet<String> = m
                .jobs
                .iter()
                .filter(|(_, j)| {
                    j.state == JobState::Retrying
                        || (j.state == JobState::Scheduled && !j.far_future)
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in &promoted {
                m.set(id, JobState::Queued);
                m.expect(id, "promoted");
            }
            let fetched = e.fetch(&fetch_req(max as usize)).await.expect("fetch").jobs;
            let waiting: usize = m.ready.iter().map(VecDeque::len).sum();
            let expected_count = (max as usize).min(waiting + promoted.len());
            assert_eq!(fetched.len(), expected_count, "fetch count");
            // The slots in lease order: each level's ready jobs in order, then the jobs of that
            // level just promoted (in an order the model does not predict).
            let mut slots: Vec<(Priority, Option<&String>)> = Vec::new();
            for level in Priority::ALL {
                slots.extend(m.ready[rank(level)].iter().map(|id| (level, Some(id))));
                let promoted_here = promoted
                    .iter()
                    .filter(|id| m.jobs[*id].priority == level)
                    .count();
                slots.extend(std::iter::repeat_n((level, None), promoted_here));
            }
            for (job, (level, expected)) in fetched.iter().zip(&slots) {
                match expected {
                    Some(id) => assert_eq!(&job.id, *id, "priority, then FIFO order"),
                    None => {
                        assert!(promoted.contains(&job.id), "{} came from nowhere", job.id);
                        assert_eq!(
                            m.jobs[&job.id].priority, *level,
                            "{} out of its level",
                            job.id
                        );
                    }
                }
            }
            let taken: HashSet<&String> = fetched.iter().map(|j| &j.id).collect();
            for list in &mut m.ready {
                list.retain(|id| !taken.contains(id));
            }
            for job in &fetched {
                let mj = m.jobs.get_mut(&job.id).expect("known job");
                mj.attempt += 1;
                assert_eq!(job.attempt, mj.attempt, "attempt counts started attempts");
                mj.state = JobState::Running;
                mj.token = Some(job.token.clone());
                m.expect(&job.id, "started");
            }
            // The promoted jobs not taken joined their level's list in an order the model adopts.
            for level in Priority::ALL {
                let list = match level {
                    Priority::High => "ready:h",
                    Priority::Normal => "ready",
                    Priority::Low => "ready:l",
                };
                let actual: Vec<String> = t
                    .sync_conn()
                    .lrange(t.key(&format!("q:{QUEUE}:{list}")), 0, -1)
                    .expect("lrange");
                let live: Vec<String> = actual
                    .into_iter()
                    .filter(|id| m.jobs.get(id).is_some_and(|j| j.state == JobState::Queued))
                    .collect();
                let model_list = &mut m.ready[rank(level)];
                let mut expected: Vec<&String> = model_list
                    .iter()
                    .chain(
                        promoted
                            .iter()
                            .filter(|id| !taken.contains(id) && m.jobs[*id].priority == level),
                    )
                    .collect();
                expected.sort();
                let mut got: Vec<&String> = live.iter().collect();
                got.sort();
                assert_eq!(got, expected, "{list} contents");
                assert_eq!(
                    &live[..model_list.len()],
                    model_list.make_contiguous(),
                    "older {list} jobs keep their order"
                );
                *model_list = live.into();
            }
        }
        Op::Ack { pick } | Op::Retry { pick } | Op::Fail { pick } | Op::Snooze { pick } => {
            let Some(id) = m.pick(pick, JobState::Running) else {
                return;
            };
            let token = m.jobs[&id].token.clone().expect("running job has a token");
            let outcome = match op {
                Op::Ack { .. } => Outcome::Succeeded { result: None },
                Op::Retry { .. } => Outcome::Retry {
                    error: format!("flaky {id}"),
                    delay: Duration::ZERO,
                },
                Op::Fail { .. } => Outcome::Fail {
                    error: "permanent".into(),
                },
                _ => Outcome::Snooze {
                    delay: Duration::ZERO,
                    reason: String::new(),
                },
            };
            let applied = e
                .complete(&[(id.clone(), token, outcome)])
                .await
                .expect("complete");
            match op {
                Op::Ack { .. } => {
                    assert_eq!(applied, vec![Applied::Ok]);
                    m.set(&id, JobState::Succeeded);
                    m.expect(&id, "succeeded");
                }
                Op::Retry { .. } => {
                    let dies = m.jobs[&id].attempt >= MAX_ATTEMPTS && !m.jobs[&id].cancel_requested;
                    assert_eq!(
                        applied,
                        vec![if dies { Applied::Died } else { Applied::Ok }]
                    );
                    m.fail_retryable(&id, "retry_scheduled");
                }
                Op::Fail { .. } => {
                    assert_eq!(applied, vec![Applied::Ok]);
                    m.set(&id, JobState::Dead);
                    m.expect(&id, "died");
                }
                _ if m.jobs[&id].cancel_requested => {
                    assert_eq!(applied, vec![Applied::Ok]);
                    m.set(&id, JobState::Cancelled);
                    m.expect(&id, "cancelled");
                }
                _ => {
                    assert_eq!(applied, vec![Applied::Ok]);
                    m.jobs.get_mut(&id).expect("job").attempt -= 1;
                    m.set(&id, JobState::Scheduled);
                    m.expect(&id, "snoozed");
                }
            }
        }
        Op::Expire { pick } => {
            let Some(id) = m.pick(pick, JobState::Running) else {
                return;
            };
            let _: () = t
                .sync_conn()
                .zadd(t.key(&format!("q:{QUEUE}:lease")), &id, 0)
                .expect("zadd");
            m.jobs.get_mut(&id).expect("job").lease_expired = true;
        }
        Op::StaleAck { pick } => {
            let Some(id) = m.pick(pick, JobState::Running) else {
                return;
            };
            let applied = e
                .complete(&[(
                    id,
                    "not-the-token".into(),
                    Outcome::Succeeded { result: None },
                )])
                .await
                .expect("complete");
            assert_eq!(applied, vec![Applied::Stale]);
        }
        Op::Cancel { pick } => {
            let mut ids: Vec<String> = m.jobs.keys().cloned().collect();
            if ids.is_empty() {
                return;
            }
            ids.sort();
            let id = ids[pick as usize % ids.len()].clone();
            let state = m.jobs[&id].state;
            let outcome = e.cancel(&id).await.expect("cancel");
            match state {
                JobState::Queued | JobState::Scheduled | JobState::Retrying => {
                    assert_eq!(outcome, CancelOutcome::Cancelled);
                    for list in &mut m.ready {
                        list.retain(|r| r != &id);
                    }
                    m.set(&id, JobState::Cancelled);
                    m.expect(&id, "cancelled");
                }
                JobState::Running => {
                    assert_eq!(outcome, CancelOutcome::Requested);
                    m.jobs.get_mut(&id).expect("job").cancel_requested = true;
                }
                other => assert_eq!(
                    outcome,
                    CancelOutcome::NotCancellable(other.as_str().into())
                ),
            }
        }
        Op::Requeue { pick } => {
            let Some(id) = m.pick(pick, JobState::Dead) else {
                return;
            };
            let out = e
                .requeue_dead(std::slice::from_ref(&id))
                .await
                .expect("requeue");
            assert_eq!(out, vec![DeadOpOutcome::Done]);
            m.jobs.get_mut(&id).expect("job").attempt = 0;
            m.set(&id, JobState::Queued);
            let level = rank(m.jobs[&id].priority);
            m.ready[level].push_back(id.clone());
            m.expect(&id, "requeued");
        }
        Op::Discard { pick } => {
            let Some(id) = m.pick(pick, JobState::Dead) else {
                return;
            };
            assert_eq!(
                e.discard_dead(&id).await.expect("discard"),
                DeadOpOutcome::Done
            );
            m.jobs.remove(&id);
            m.expect(&id, "discarded");
        }
    }
}

async fn check(t: &TestQueue, m: &mut Model, cursor: &mut String) {
    // Events: exactly the expected transitions, each carrying the state it entered.
    let entries = t
        .engine
        .read_stream(EventStream::Jobs, cursor, 10_000)
        .await
        .expect("events");
    if let Some(last) = entries.last() {
        *cursor = last.cursor.clone();
    }
    let events: Vec<JobEvent> = entries.iter().filter_map(JobEvent::from_entry).collect();
    assert_eq!(
        events.len(),
        entries.len(),
        "every entry parses as a job event"
    );
    let mut got: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.job_id.clone(), e.event.clone()))
        .collect();
    let mut want = std::mem::take(&mut m.expected_events);
    got.sort();
    want.sort();
    assert_eq!(got, want, "events of this step");
    for ev in &events {
        if let Some(job) = m.jobs.get(&ev.job_id) {
            let last_for_job = events.iter().rev().find(|e| e.job_id == ev.job_id);
            if last_for_job.map(|e| &e.cursor) == Some(&ev.cursor) {
                assert_eq!(
                    ev.state, job.state,
                    "last event of {} names its state",
                    ev.job_id
                );
            }
        }
    }
    // Placement: one place per job, matching its state and the model.
    let placement = t.check_placement(QUEUE);
    let model_states: HashMap<String, JobState> =
        m.jobs.iter().map(|(id, j)| (id.clone(), j.state)).collect();
    assert_eq!(placement, model_states, "placement matches the model");
    let ids: Vec<String> = m.jobs.keys().cloned().collect();
    for (id, record) in ids.iter().zip(t.engine.jobs(&ids).await.expect("jobs")) {
        let record = record.expect("live job has its hash");
        assert_eq!(record.attempt, m.jobs[id].attempt, "attempt of {id}");
    }
    let stats = t.engine.stats(QUEUE).await.expect("stats");
    let count = |s: JobState| m.jobs.values().filter(|j| j.state == s).count() as u64;
    assert_eq!(stats.ready, count(JobState::Queued));
    assert_eq!(stats.running, count(JobState::Running));
    assert_eq!(stats.dead, count(JobState::Dead));
    assert_eq!(
        stats.scheduled,
        count(JobState::Scheduled) + count(JobState::Retrying)
    );
}

async fn run_case(ops: Vec<Op>) {
    let t = TestQueue::one_partition("prop").await;
    let mut model = Model::default();
    let mut cursor = "0-0".to_string();
    for op in &ops {
        step(&t, &mut model, op).await;
        check(&t, &mut model, &mut cursor).await;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn every_job_is_in_exactly_one_place_and_every_transition_has_its_event(ops in prop::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(run_case(ops));
    }
}
