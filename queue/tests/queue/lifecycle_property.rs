//! Random sequences of push / fetch / ack / retry / fail / snooze / lease expiry / stale ack /
//! cancel / requeue / discard, checked against a model after every step: every job is in
//! exactly one place that matches its state, and the events appended are exactly the
//! transitions the model expects.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::Duration,
};

use proptest::prelude::*;
use queue::{
    Applied, CancelOutcome, DeadOpOutcome, EventStream, FetchRequest, JobEvent, JobState, KeyScope,
    NewJob, Outcome,
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
        3 => (1u8..4, prop::bool::weighted(0.15), prop::option::weighted(0.3, 0u8..3))
            .prop_map(|(count, delayed, key)| Op::Push { count, delayed, key }),
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
}

#[derive(Default)]
struct Model {
    jobs: HashMap<String, ModelJob>,
    keys: HashMap<u8, String>,
    ready: VecDeque<String>,
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
    }
}

async fn step(t: &TestQueue, m: &mut Model, op: &Op) {
    let e = &t.engine;
    match *op {
        Op::Push {
            count,
            delayed,
            key,
        } => {
            let jobs: Vec<NewJob> = (0..count)
                .map(|_| {
                    let mut job =
                        NewJob::raw(QUEUE, QUEUE, "{}".into()).with_max_attempts(MAX_ATTEMPTS);
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
                    },
                );
                if delayed {
                    m.expect(&out.id, "scheduled");
                } else {
                    m.ready.push_back(out.id.clone());
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
            let expected_count = (max as usize).min(m.ready.len() + promoted.len());
            assert_eq!(fetched.len(), expected_count, "fetch count");
            for (i, job) in fetched.iter().enumerate() {
                if i < m.ready.len() {
                    assert_eq!(job.id, m.ready[i], "FIFO order of the ready list");
                } else {
                    assert!(promoted.contains(&job.id), "{} came from nowhere", job.id);
                }
            }
            let taken: HashSet<&String> = fetched.iter().map(|j| &j.id).collect();
            m.ready.retain(|id| !taken.contains(id));
            for job in &fetched {
                let mj = m.jobs.get_mut(&job.id).expect("known job");
                mj.attempt += 1;
                assert_eq!(job.attempt, mj.attempt, "attempt counts started attempts");
                mj.state = JobState::Running;
                mj.token = Some(job.token.clone());
                m.expect(&job.id, "started");
            }
            // The promoted jobs not taken joined the ready list in an order the model adopts.
            let actual: Vec<String> = t
                .sync_conn()
                .lrange(t.key(&format!("q:{QUEUE}:ready")), 0, -1)
                .expect("lrange");
            let live: Vec<String> = actual
                .into_iter()
                .filter(|id| m.jobs.get(id).is_some_and(|j| j.state == JobState::Queued))
                .collect();
            let mut expected: Vec<&String> = m
                .ready
                .iter()
                .chain(promoted.iter().filter(|id| !taken.contains(id)))
                .collect();
            expected.sort();
            let mut got: Vec<&String> = live.iter().collect();
            got.sort();
            assert_eq!(got, expected, "ready list contents");
            assert_eq!(
                &live[..m.ready.len()],
                m.ready.make_contiguous(),
                "older ready jobs keep their order"
            );
            m.ready = live.into();
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
                    m.ready.retain(|r| r != &id);
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
            m.ready.push_back(id.clone());
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
        *cursor = last.id.clone();
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
    let t = TestQueue::new("prop").await;
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
