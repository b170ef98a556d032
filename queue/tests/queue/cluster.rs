//! A real Redis Cluster of the test's own (3 primaries, 3 replicas, on loopback): the engine's
//! work goes on across a primary SIGKILLed while clients push and workers drain, its replica
//! lagging (stopped for 800 ms) just before. With `replicated` durability no acknowledged push
//! and no acknowledged outcome is lost, and no job has two acknowledged outcomes; with `local`
//! the writes acknowledged while the replica lagged are lost, and counted.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use queue::{
    Applied, Durability, Engine, JobState, NewJob, Outcome,
    testing::{RedisCluster, RedisSentinels},
};

use super::common::fetch_req;

const QUEUE: &str = "fo";

/// What the clients were told.
#[derive(Default)]
struct Told {
    pushed: HashSet<String>,
    /// Outcomes acknowledged as applied, per job.
    outcomes: HashMap<String, u32>,
    push_errors: u64,
    outcome_errors: u64,
}

struct Run {
    told: Told,
    /// Acknowledged pushes the cluster no longer knows.
    lost_pushes: usize,
    /// Jobs whose acknowledged outcome is gone (they ran again, or wait to).
    lost_outcomes: usize,
    /// How long the failover (or the slot's move) took.
    disruption: Duration,
    /// Acknowledged pushes that did not end succeeded, with the state each is in.
    unfinished: Vec<(String, Option<JobState>)>,
}

/// A Redis set-up with automatic failover, as the failover test drives it.
trait Failover {
    fn url(&self) -> String;
    /// The port of the primary that holds `key` now (none while nobody has taken over).
    fn primary_of(&self, key: &str) -> Option<u16>;
    fn replica_of(&self, primary: u16) -> Option<u16>;
    fn pause(&self, port: u16, pause: bool);
    fn kill(&mut self, port: u16);
}

impl Failover for RedisCluster {
    fn url(&self) -> String {
        RedisCluster::url(self)
    }
    fn primary_of(&self, key: &str) -> Option<u16> {
        self.primary_for(key)
    }
    fn replica_of(&self, primary: u16) -> Option<u16> {
        RedisCluster::replica_of(self, primary)
    }
    fn pause(&self, port: u16, pause: bool) {
        RedisCluster::pause(self, port, pause)
    }
    fn kill(&mut self, port: u16) {
        RedisCluster::kill(self, port)
    }
}

impl Failover for RedisSentinels {
    fn url(&self) -> String {
        RedisSentinels::url(self)
    }
    fn primary_of(&self, _key: &str) -> Option<u16> {
        self.primary()
    }
    fn replica_of(&self, primary: u16) -> Option<u16> {
        Some(self.other_than(primary))
    }
    fn pause(&self, port: u16, pause: bool) {
        RedisSentinels::pause(self, port, pause)
    }
    fn kill(&mut self, port: u16) {
        RedisSentinels::kill(self, port)
    }
}

impl Run {
    fn report_and_check_the_load_ran(&self, what: &str) {
        let t = &self.told;
        println!(
            "{what}: {} pushes and {} outcomes acknowledged, {} push and {} outcome calls refused; disruption {:?}; lost {} pushes, {} outcomes",
            t.pushed.len(),
            t.outcomes.len(),
            t.push_errors,
            t.outcome_errors,
            self.disruption,
            self.lost_pushes,
            self.lost_outcomes
        );
        assert!(
            t.pushed.len() > 500,
            "the load ran: {} pushes",
            t.pushed.len()
        );
    }
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("steadfast-{tag}-{}", std::process::id()))
}

/// Clients pushing and workers draining one queue, counting what they were told.
struct Load {
    engine: Engine,
    told: Arc<Mutex<Told>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(engine: &Engine) -> Self {
        let told = Arc::new(Mutex::new(Told::default()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pusher = {
            let (engine, told, stop) = (engine.clone(), told.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                // Payloads of 2 KB: what a stopped replica misses then outgrows the socket
                // buffers between it and the primary (the kernel would otherwise keep it for
                // the replica).
                let payload = format!("{{\"pad\":\"{}\"}}", "x".repeat(2048));
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let batch: Vec<NewJob> = (0..20)
                        .map(|i| {
                            NewJob::raw(QUEUE, QUEUE, payload.clone())
                                .with_id(format!("j{}", n + i))
                        })
                        .collect();
                    match engine.push_many(batch).await {
                        Ok(outcomes) => {
                            let mut t = told.lock().expect("told");
                            t.pushed.extend(outcomes.into_iter().map(|o| o.id));
                            n += 20;
                        }
                        // Not acknowledged: the same ids are pushed again (a known id is no
                        // second job), as a client retrying would.
                        Err(_) => {
                            told.lock().expect("told").push_errors += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            })
        };
        let worker = |name: &'static str| {
            let (engine, told, stop) = (engine.clone(), told.clone(), stop.clone());
            tokio::spawn(async move {
                let mut idle_since: Option<Instant> = None;
                loop {
                    let mut req = fetch_req(QUEUE, 50, 1000);
                    req.worker_id = name;
                    let jobs = match engine.fetch(&req).await {
                        Ok(f) => f.jobs,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    };
                    if jobs.is_empty() {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            let since = *idle_since.get_or_insert_with(Instant::now);
                            // Past every lease that a lost fetch or outcome may have left.
                            if since.elapsed() > Duration::from_secs(3) {
                                return;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                    idle_since = None;
                    let outcomes: Vec<(String, String, Outcome)> = jobs
                        .iter()
                        .map(|j| {
                            (
                                j.id.clone(),
                                j.token.clone(),
                                Outcome::Succeeded { result: None },
                            )
                        })
                        .collect();
                    // As a worker does: an outcome not acknowledged is sent again (a repeat
                    // of one that did apply is refused by its token), until its lease would
                    // be gone.
                    for _ in 0..8 {
                        match engine.complete(&outcomes).await {
                            Ok(applied) => {
                                let mut t = told.lock().expect("told");
                                for ((id, _, _), a) in outcomes.iter().zip(applied) {
                                    if a == Applied::Ok {
                                        *t.outcomes.entry(id.clone()).or_default() += 1;
                                    }
                                }
                                break;
                            }
                            Err(_) => {
                                told.lock().expect("told").outcome_errors += 1;
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                }
            })
        };
        let tasks = vec![pusher, worker("w1"), worker("w2")];
        Self {
            engine: engine.clone(),
            told,
            stop,
            tasks,
        }
    }

    /// Stops the clients, lets the workers drain, and compares what the clients were told
    /// with what the cluster holds.
    async fn finish(self, disruption: Duration) -> Run {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("load task");
        }
        let told = std::mem::take(&mut *self.told.lock().expect("told"));
        let ids: Vec<String> = told
            .pushed
            .iter()
            .chain(told.outcomes.keys())
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let records = self.engine.jobs(&ids).await.expect("records");
        let state: HashMap<&str, Option<JobState>> = ids
            .iter()
            .zip(&records)
            .map(|(id, r)| (id.as_str(), r.as_ref().map(|r| r.state)))
            .collect();
        let lost_pushes = told
            .pushed
            .iter()
            .filter(|id| state.get(id.as_str()).is_none_or(Option::is_none))
            .count();
        let lost_outcomes = told
            .outcomes
            .keys()
            .filter(|id| state.get(id.as_str()).copied().flatten() != Some(JobState::Succeeded))
            .count();
        let unfinished = told
            .pushed
            .iter()
            .map(|id| (id.clone(), state.get(id.as_str()).copied().flatten()))
            .filter(|(_, state)| *state != Some(JobState::Succeeded))
            .collect();
        Run {
            unfinished,
            told,
            lost_pushes,
            lost_outcomes,
            disruption,
        }
    }
}

async fn failover_under_load(
    cluster: &mut dyn Failover,
    durability: Durability,
    partitions: u16,
    tag: &str,
) -> Run {
    let prefix = format!("fo-{tag}");
    let mut config = queue::testing::config(&prefix);
    config.durability = durability;
    config.partitions = partitions;
    config.response_timeout = Duration::from_millis(1500);
    let engine = Engine::connect(&cluster.url(), config)
        .await
        .expect("engine on the cluster");
    let load = Load::start(&engine);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let victim = cluster
        .primary_of(&format!("{{{prefix}}}"))
        .expect("a primary holds the deployment");
    // Its replica stops copying for a moment before the primary dies, as a replica that lags
    // does: writes acknowledged in that moment exist on the primary alone.
    let replica = cluster
        .replica_of(victim)
        .expect("the primary has a replica");
    cluster.pause(replica, true);
    tokio::time::sleep(Duration::from_millis(800)).await;
    cluster.kill(victim);
    cluster.pause(replica, false);
    let killed_at = Instant::now();
    // Work goes on against the promoted replica.
    let mut failover = None;
    while killed_at.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let new_primary = cluster.primary_of(&format!("{{{prefix}}}"));
        if new_primary.is_some_and(|p| p != victim) && engine.stats(QUEUE).await.is_ok() {
            failover = Some(killed_at.elapsed());
            break;
        }
    }
    let failover = failover.expect("a replica took over within 20 s");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    load.finish(failover).await
}

const REPLICATED: Durability = Durability::Replicated {
    replicas: 1,
    timeout: Duration::from_millis(250),
};

#[tokio::test]
async fn replicated_durability_loses_no_acknowledged_job_or_outcome_when_a_primary_dies() {
    let mut cluster = RedisCluster::start(temp_dir("cluster-replicated"), 3, 1);
    // Three partitions, one per primary: the two the failover spares go on meanwhile, and a
    // push or an outcome that spans partitions is acknowledged only when all of it held.
    let run = failover_under_load(&mut cluster, REPLICATED, 3, "replicated").await;
    assert_nothing_acknowledged_lost(&run, "cluster, replicated");
}

/// The same under Redis Sentinel: the engine asks the sentinels for the new primary.
#[tokio::test]
async fn replicated_durability_under_sentinel_loses_nothing_acknowledged_in_a_failover() {
    let mut sentinels = RedisSentinels::start(temp_dir("sentinel-replicated"));
    let run = failover_under_load(&mut sentinels, REPLICATED, 1, "sentinel").await;
    assert_nothing_acknowledged_lost(&run, "sentinel, replicated");
}

fn assert_nothing_acknowledged_lost(run: &Run, what: &str) {
    let t = &run.told;
    run.report_and_check_the_load_ran(what);
    assert!(
        t.push_errors + t.outcome_errors > 0,
        "the failover was felt by the clients"
    );
    assert_no_loss(run);
}

/// Every acknowledged push ended succeeded, no acknowledged outcome was lost, and no job has
/// two acknowledged outcomes.
fn assert_no_loss(run: &Run) {
    let t = &run.told;
    assert_eq!(run.lost_pushes, 0, "acknowledged pushes lost");
    assert_eq!(run.lost_outcomes, 0, "acknowledged outcomes lost");
    let twice: Vec<_> = t.outcomes.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "jobs with two acknowledged outcomes: {twice:?}"
    );
    assert!(
        run.unfinished.is_empty(),
        "{} acknowledged jobs did not end succeeded, such as {:?}",
        run.unfinished.len(),
        &run.unfinished[..run.unfinished.len().min(5)]
    );
}

/// `local` acknowledges before any replica has the write: a primary killed under load takes
/// the writes its replica had not copied yet with it. Measured, not asserted to be zero.
#[tokio::test]
async fn local_durability_loss_on_a_primary_failure_is_measured() {
    let mut cluster = RedisCluster::start(temp_dir("cluster-local"), 3, 1);
    let run = failover_under_load(&mut cluster, Durability::Local, 1, "local").await;
    run.report_and_check_the_load_ran("local");
    // The scenario bites: were nothing lost here, the replicated tests' zero would prove little.
    assert!(
        run.lost_pushes > 0,
        "a lagging replica promoted loses acknowledged local writes"
    );
}

/// An operator moves a partition's slot to another primary with `redis-cli --cluster reshard`
/// while clients push and workers drain, the moving partitions fenced first when `fenced`.
/// Answers the run and how many keys the partition's slot held when it had moved.
async fn reshard_under_load(fenced: bool) -> (Run, u64) {
    let tag = if fenced { "fenced" } else { "unfenced" };
    let cluster = RedisCluster::start(temp_dir(&format!("cluster-reshard-{tag}")), 3, 0);
    let mut config = queue::testing::config(format!("reshard-{tag}"));
    config.partitions = 3;
    let engine = Engine::connect(&cluster.url(), config)
        .await
        .expect("engine on the cluster");
    let load = Load::start(&engine);
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let slots = engine.partition_slots();
    let slot = slots[1];
    let from = cluster.primary_of_slot(slot).expect("a primary serves it");
    let to = cluster
        .primaries()
        .into_iter()
        .find(|p| *p != from)
        .expect("another primary");
    // Every partition the move splits: those on the source primary up to the slot.
    let moving: Vec<u16> = (0..engine.partitions())
        .filter(|p| {
            let s = slots[usize::from(*p)];
            s <= slot && cluster.primary_of_slot(s) == Some(from)
        })
        .collect();
    assert!(moving.contains(&1));
    if fenced {
        engine
            .fence(&moving, "test: moving slots")
            .await
            .expect("fence");
    }
    let started = Instant::now();
    let moved = {
        let cluster = &cluster;
        tokio::task::block_in_place(|| cluster.reshard_through(slot, to))
    };
    if fenced {
        engine.unfence(&moving).await.expect("unfence");
    }
    let took = started.elapsed();
    assert_eq!(cluster.primary_of_slot(slot), Some(to), "the slot moved");
    let keys_moved: u64 = redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(slot)
        .query(
            &mut redis::Client::open(format!("redis://127.0.0.1:{to}"))
                .and_then(|c| c.get_connection())
                .expect("the target node"),
        )
        .expect("count keys");
    assert!(
        keys_moved > 100,
        "the partition's jobs moved with it: {keys_moved}"
    );
    assert_eq!(
        engine.fences().await.expect("fences"),
        vec![None, None, None]
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let run = load.finish(took).await;
    println!("{tag}: moved {moved} slots, {keys_moved} keys in the partition's slot");
    run.report_and_check_the_load_ran(&format!("reshard, {tag}"));
    assert_no_loss(&run);
    (run, keys_moved)
}

/// Fenced first (`steadfast fence`): no acknowledged job or outcome is lost or doubled, and no
/// client call fails: they wait out the fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_a_fenced_partitions_slot_while_jobs_run_loses_nothing() {
    let (run, _) = reshard_under_load(true).await;
    assert_eq!(
        (run.told.push_errors, run.told.outcome_errors),
        (0, 0),
        "calls wait out the fence instead of failing"
    );
}

/// Not fenced, as an operator who forgot would move it: every script also declares the fence
/// key, which then does not exist, so Redis answers `TRYAGAIN` to each script call on the
/// moving slot instead of running it on half its keys; the client retries. Nothing is lost
/// or doubled; calls may fail while the move lasts, and are retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_an_unfenced_partitions_slot_while_jobs_run_loses_nothing() {
    reshard_under_load(false).await;
}
