//! Queue engine benchmark: prints figures, asserts nothing about speed.
//!
//! `cargo bench -p steadfast-queue --bench throughput` (Redis at `REDIS_URL`, default local).
//! `BENCH_QUICK=1` runs every scenario at a tenth of the size; `BENCH_PARTITIONS=N` splits each
//! scenario's deployment into N partitions; `BENCH_DURABILITY` sets the durability mode.
//! Everything runs under a prefix of its own, deleted afterwards.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use apalis_core::{task::data::Data, worker::builder::WorkerBuilder};
use hdrhistogram::Histogram;
use queue::{
    Engine, EngineConfig, JobContext, JobError, NewJob, Priority, RedisBackend, RetryPolicy,
    WorkerOptions,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Noop {
    n: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stamped {
    pushed_at_us: u64,
}

/// A job of the fairness scenario: when it was pushed, and whether it is the low one (carried
/// in the payload, so measuring costs no read per job).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Waiting {
    pushed_at_us: u64,
    low: bool,
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// `BENCH_ONLY=drain,latency` runs only the scenarios whose names contain one of the words.
fn wanted(name: &str) -> bool {
    match std::env::var("BENCH_ONLY") {
        Ok(only) => only.split(',').any(|w| name.contains(w.trim())),
        Err(_) => true,
    }
}

fn scale(n: usize) -> usize {
    if std::env::var("BENCH_QUICK").is_ok() {
        (n / 10).max(1)
    } else {
        n
    }
}

struct Cpu {
    redis_s: f64,
    own_s: f64,
}

/// The CPU Redis has used: of the one node, or of every node a cluster URL names (replicas
/// included: copying the writes is part of their cost).
async fn cpu(engine_url: &str) -> anyhow::Result<Cpu> {
    let nodes = match queue::RedisTopology::parse(engine_url)? {
        queue::RedisTopology::Node(url) => vec![url],
        queue::RedisTopology::Cluster(seeds) => seeds,
        queue::RedisTopology::Sentinel { .. } => Vec::new(),
    };
    let mut redis_s = 0.0;
    for node in nodes {
        let client = redis::Client::open(node.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let info: String = redis::cmd("INFO").arg("cpu").query_async(&mut conn).await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        redis_s += field("used_cpu_sys:") + field("used_cpu_user:");
    }
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of /proc/self/stat (11 and 12 after the name).
    let own_s = (ticks(11) + ticks(12)) / 100.0;
    Ok(Cpu { redis_s, own_s })
}

fn report_cpu(label: &str, before: &Cpu, after: &Cpu, wall: Duration) {
    let wall = wall.as_secs_f64();
    println!(
        "    {label}: cpu redis {:.0}% of a core, bench process {:.0}% (wall {:.2}s)",
        100.0 * (after.redis_s - before.redis_s) / wall,
        100.0 * (after.own_s - before.own_s) / wall,
        wall
    );
}

async fn fresh_engine(url: &str, tag: &str) -> anyhow::Result<Engine> {
    let prefix = format!(
        "bench-{tag}-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let mut config = EngineConfig::with_prefix(prefix);
    config.push_chunk = 1000;
    // `BENCH_DURABILITY=replicated:1` measures what waiting for a replica costs.
    if let Ok(durability) = std::env::var("BENCH_DURABILITY") {
        config.durability = durability.parse().map_err(anyhow::Error::msg)?;
    }
    config.partitions = partitions();
    Ok(Engine::connect(url, config).await?)
}

/// `BENCH_PARTITIONS=6` splits each scenario's deployment into six partitions (on a cluster,
/// spread over its primaries).
fn partitions() -> u16 {
    std::env::var("BENCH_PARTITIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

async fn push_noops(engine: &Engine, queue: &str, n: usize) -> anyhow::Result<()> {
    let mut left = n;
    while left > 0 {
        let batch = left.min(10_000);
        let jobs = (0..batch)
            .map(|i| NewJob::raw(queue, queue, format!("{{\"n\":{i}}}")))
            .collect();
        engine.push_many(jobs).await?;
        left -= batch;
    }
    Ok(())
}

/// Runs a worker until `target` handler calls have ended; returns the wall time.
async fn drain(
    engine: &Engine,
    queue: &str,
    target: usize,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    #[derive(Clone)]
    struct Progress {
        done: Arc<AtomicUsize>,
        target: usize,
        notify: Arc<Notify>,
    }
    async fn handler(_: Noop, p: Data<Progress>) -> Result<(), JobError> {
        if p.done.fetch_add(1, Ordering::Relaxed) + 1 == p.target {
            p.notify.notify_one();
        }
        Ok(())
    }
    let progress = Progress {
        done: Arc::new(AtomicUsize::new(0)),
        target,
        notify: Arc::new(Notify::new()),
    };
    let options = WorkerOptions::new(queue)
        .concurrency(concurrency)
        .fetch_batch(concurrency.clamp(1, 200));
    let worker = WorkerBuilder::new(format!("bench-{queue}"))
        .backend(RedisBackend::<Noop>::new(engine.clone(), options))
        .data(progress.clone())
        .build(handler);
    let started = Instant::now();
    let notify = progress.notify.clone();
    let elapsed = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let e = elapsed.clone();
    worker
        .run_until(async move {
            notify.notified().await;
            if let Ok(mut e) = e.lock() {
                *e = started.elapsed();
            }
            Ok::<(), std::io::Error>(())
        })
        .await?;
    let took = *elapsed.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    Ok(took)
}

/// Runs a worker until `to` handler calls have ended; returns the time between the `from`-th
/// and the `to`-th, so the worker's start-up is outside the measured window.
async fn drain_window(
    engine: &Engine,
    queue: &str,
    from: usize,
    to: usize,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    #[derive(Clone)]
    struct Window {
        done: Arc<AtomicUsize>,
        from: usize,
        to: usize,
        started: Arc<std::sync::Mutex<Option<Instant>>>,
        ended: Arc<std::sync::Mutex<Option<Instant>>>,
        notify: Arc<Notify>,
    }
    async fn handler(_: Noop, w: Data<Window>) -> Result<(), JobError> {
        let n = w.done.fetch_add(1, Ordering::Relaxed) + 1;
        if n == w.from
            && let Ok(mut s) = w.started.lock()
        {
            *s = Some(Instant::now());
        }
        if n == w.to {
            if let Ok(mut e) = w.ended.lock() {
                *e = Some(Instant::now());
            }
            w.notify.notify_one();
        }
        Ok(())
    }
    let window = Window {
        done: Arc::new(AtomicUsize::new(0)),
        from,
        to,
        started: Arc::default(),
        ended: Arc::default(),
        notify: Arc::new(Notify::new()),
    };
    let options = WorkerOptions::new(queue)
        .concurrency(concurrency)
        .fetch_batch(concurrency.clamp(1, 200));
    let worker = WorkerBuilder::new(format!("bench-window-{queue}"))
        .backend(RedisBackend::<Noop>::new(engine.clone(), options))
        .data(window.clone())
        .build(handler);
    let notify = window.notify.clone();
    worker
        .run_until(async move {
            notify.notified().await;
            Ok::<(), std::io::Error>(())
        })
        .await?;
    let started = window
        .started
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .ok_or_else(|| anyhow::anyhow!("window never started"))?;
    let ended = window
        .ended
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .ok_or_else(|| anyhow::anyhow!("window never ended"))?;
    Ok(ended - started)
}

/// One bench client's fetch of up to `max` jobs from queue `q`.
fn bench_fetch(max: usize) -> queue::FetchRequest<'static> {
    queue::FetchRequest {
        queue: "q",
        worker_id: "bench",
        max_jobs: max,
        lease: Duration::from_secs(30),
        backoff_base: Duration::from_secs(1),
        backoff_cap: Duration::from_secs(60),
        timeout: None,
        timeout_grace: Duration::ZERO,
    }
}

/// Acknowledges every leased job as succeeded in one call; answers how many.
async fn ack_all(engine: &Engine, jobs: Vec<queue::LeasedJob>) -> anyhow::Result<usize> {
    let outcomes: Vec<_> = jobs
        .into_iter()
        .map(|j| (j.id, j.token, queue::Outcome::Succeeded { result: None }))
        .collect();
    engine.complete(&outcomes).await?;
    Ok(outcomes.len())
}

fn rate(n: usize, d: Duration) -> String {
    format!("{:>9.0} jobs/s", n as f64 / d.as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    println!(
        "steadfast queue benchmark (redis {url}, durability {}, {} partitions, {} cores)",
        std::env::var("BENCH_DURABILITY").unwrap_or_else(|_| "local".into()),
        partitions(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    // 1. Push one at a time.
    if wanted("push-one") {
        let engine = fresh_engine(&url, "push1").await?;
        let n = scale(20_000);
        let started = Instant::now();
        for i in 0..n {
            engine
                .push(NewJob::raw("q", "q", format!("{{\"n\":{i}}}")))
                .await?;
        }
        let took = started.elapsed();
        println!(
            "push one at a time        {n:>8} jobs  {}  ({:.1} us/push)",
            rate(n, took),
            took.as_micros() as f64 / n as f64
        );
        engine.destroy_all_data().await?;
    }

    // 1b. Rate-limit checks (one script call each): what a login or a device POST adds.
    if wanted("rate-limit") {
        let engine = fresh_engine(&url, "rate").await?;
        let n = scale(20_000);
        let budget = queue::RateLimit::per_minute(u32::MAX);
        let started = Instant::now();
        for i in 0..n {
            engine
                .rate_limit(&format!("device:{}", i % 100), budget)
                .await?;
        }
        let took = started.elapsed();
        println!(
            "rate-limit check, serial  {n:>8} calls {:>9.0} calls/s  ({:.1} us/call)",
            n as f64 / took.as_secs_f64(),
            took.as_micros() as f64 / n as f64
        );
        let started = Instant::now();
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let engine = engine.clone();
                tokio::spawn(async move {
                    for i in 0..n / 16 {
                        engine
                            .rate_limit(&format!("device:{}", (t * 7 + i) % 100), budget)
                            .await?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        let took = started.elapsed();
        println!(
            "rate-limit check, 16 at once {n:>5} calls {:>9.0} calls/s",
            n as f64 / took.as_secs_f64()
        );
        engine.destroy_all_data().await?;
    }

    // 2. Push in batches of 1,000.
    if wanted("push-batch") {
        let engine = fresh_engine(&url, "pushb").await?;
        let n = scale(200_000);
        let before = cpu(&url).await?;
        let started = Instant::now();
        for chunk in 0..n / 1000 {
            let jobs = (0..1000)
                .map(|i| NewJob::raw("q", "q", format!("{{\"n\":{}}}", chunk * 1000 + i)))
                .collect();
            engine.push_many(jobs).await?;
        }
        let took = started.elapsed();
        println!("push batches of 1,000     {n:>8} jobs  {}", rate(n, took));
        report_cpu("push batches", &before, &cpu(&url).await?, took);
        engine.destroy_all_data().await?;
    }

    // 3. Drain 20,000 no-op jobs through an apalis worker at concurrency 1, 16, 64, 256
    //    (three runs each; the median and the range are printed).
    for concurrency in [1usize, 16, 64, 256]
        .into_iter()
        .filter(|_| wanted("drain"))
    {
        let n = scale(20_000);
        let mut runs = Vec::new();
        for _ in 0..3 {
            let engine = fresh_engine(&url, "drain").await?;
            push_noops(&engine, "q", n).await?;
            let before = cpu(&url).await?;
            let took = drain(&engine, "q", n, concurrency).await?;
            let after = cpu(&url).await?;
            runs.push((n as f64 / took.as_secs_f64(), before, after, took));
            engine.destroy_all_data().await?;
        }
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (median, before, after, took) = &runs[1];
        println!(
            "drain, concurrency {concurrency:<3}    {n:>8} jobs  {median:>9.0} jobs/s  (3 runs: {:.0}-{:.0})",
            runs[0].0, runs[2].0
        );
        report_cpu("drain (median run)", before, after, *took);
    }

    // 3b. The Redis side alone: fetch + complete in batches of 100 from one serial client,
    // without apalis (what the worker runtime adds is the difference to scenario 3).
    if wanted("engine-only") {
        let engine = fresh_engine(&url, "engine").await?;
        let n = scale(100_000);
        push_noops(&engine, "q", n).await?;
        let before = cpu(&url).await?;
        let started = Instant::now();
        let mut done = 0;
        let (mut fetch_time, mut ack_time) = (Duration::ZERO, Duration::ZERO);
        while done < n {
            let t0 = Instant::now();
            let fetched = engine
                .fetch(&queue::FetchRequest {
                    queue: "q",
                    worker_id: "bench",
                    max_jobs: 100,
                    lease: Duration::from_secs(30),
                    backoff_base: Duration::from_secs(1),
                    backoff_cap: Duration::from_secs(60),
                    timeout: None,
                    timeout_grace: Duration::ZERO,
                })
                .await?;
            let outcomes: Vec<_> = fetched
                .jobs
                .into_iter()
                .map(|j| (j.id, j.token, queue::Outcome::Succeeded { result: None }))
                .collect();
            done += outcomes.len();
            fetch_time += t0.elapsed();
            let t1 = Instant::now();
            engine.complete(&outcomes).await?;
            ack_time += t1.elapsed();
        }
        let took = started.elapsed();
        println!(
            "fetch+ack, engine only    {n:>8} jobs  {}  (batches of 100, one client)",
            rate(n, took)
        );
        println!(
            "    per job: fetch {:.1} us, ack {:.1} us (wall time of the calls, round trips included)",
            fetch_time.as_micros() as f64 / n as f64,
            ack_time.as_micros() as f64 / n as f64
        );
        let after = cpu(&url).await?;
        report_cpu("engine only", &before, &after, took);
        println!(
            "    redis cpu per job: {:.1} us (every node)",
            (after.redis_s - before.redis_s) * 1e6 / n as f64
        );
        engine.destroy_all_data().await?;
    }

    // 3c. The same engine-only loop over a queue whose jobs are a third high, a third normal
    //     and a third low: the cost of choosing among levels at each lease.
    if wanted("priorities-mixed") {
        let engine = fresh_engine(&url, "prio-mixed").await?;
        let n = scale(100_000);
        for start in (0..n).step_by(10_000) {
            let jobs = (start..(start + 10_000).min(n))
                .map(|i| {
                    NewJob::raw("q", "q", format!("{{\"n\":{i}}}"))
                        .with_priority(Priority::ALL[i % 3])
                })
                .collect();
            engine.push_many(jobs).await?;
        }
        let started = Instant::now();
        let mut done = 0;
        while done < n {
            let fetched = engine.fetch(&bench_fetch(100)).await?;
            done += ack_all(&engine, fetched.jobs).await?;
        }
        println!(
            "fetch+ack, three levels   {n:>8} jobs  {}  (batches of 100, one client)",
            rate(n, started.elapsed())
        );
        engine.destroy_all_data().await?;
    }

    // 3d. Fairness under overload: high jobs arrive faster than one consumer drains (a backlog
    //     of them grows all run), with a low job every tenth round. With 100 ms aging, how long
    //     do the low jobs wait, next to the high jobs leased at the same time? And with an
    //     aging longer than the run (strict priority), how many low jobs run at all?
    for aging_ms in [100u64, 60_000]
        .into_iter()
        .filter(|_| wanted("priorities-starvation"))
    {
        let mut config = EngineConfig::with_prefix(format!(
            "bench-prio-fair-{}",
            ulid::Ulid::new().to_string().to_lowercase()
        ));
        config.priority_aging = Duration::from_millis(aging_ms);
        let engine = Engine::connect(&url, config).await?;
        let run_for = Duration::from_millis(if std::env::var("BENCH_QUICK").is_ok() {
            1500
        } else {
            5000
        });
        let (mut low_waits, mut high_waits) = (Vec::new(), Vec::new());
        let (mut lows_pushed, mut round) = (0usize, 0usize);
        let started = Instant::now();
        while started.elapsed() < run_for {
            let mut jobs: Vec<NewJob> = (0..30)
                .map(|_| {
                    NewJob::new(
                        "q",
                        &Waiting {
                            pushed_at_us: now_us(),
                            low: false,
                        },
                    )
                    .map(|j| j.with_priority(Priority::High))
                })
                .collect::<Result<_, _>>()?;
            if round % 10 == 0 {
                jobs.push(
                    NewJob::new(
                        "q",
                        &Waiting {
                            pushed_at_us: now_us(),
                            low: true,
                        },
                    )?
                    .with_priority(Priority::Low),
                );
                lows_pushed += 1;
            }
            round += 1;
            engine.push_many(jobs).await?;
            let fetched = engine.fetch(&bench_fetch(20)).await?;
            let leased_at = now_us();
            let mut outcomes = Vec::new();
            for job in fetched.jobs {
                let waited: Waiting = serde_json::from_str(&job.payload)?;
                let wait_ms = leased_at.saturating_sub(waited.pushed_at_us) as f64 / 1000.0;
                if waited.low {
                    low_waits.push(wait_ms);
                } else {
                    high_waits.push(wait_ms);
                }
                outcomes.push((
                    job.id,
                    job.token,
                    queue::Outcome::Succeeded { result: None },
                ));
            }
            engine.complete(&outcomes).await?;
        }
        let stats = engine.stats("q").await?;
        let pct = |v: &mut Vec<f64>, q: f64| {
            v.sort_by(f64::total_cmp);
            v.get(((v.len() as f64 - 1.0) * q) as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        println!(
            "priorities under overload ({:.1} s, aging {aging_ms} ms): {} low pushed, {} leased; low wait p50 {:.0} ms max {:.0} ms; high wait p50 {:.0} ms max {:.0} ms; {} left waiting",
            run_for.as_secs_f64(),
            lows_pushed,
            low_waits.len(),
            pct(&mut low_waits, 0.5),
            pct(&mut low_waits, 1.0),
            pct(&mut high_waits, 0.5),
            pct(&mut high_waits, 1.0),
            stats.ready
        );
        engine.destroy_all_data().await?;
    }

    // 4. Drain rate with 1,000 versus 1,000,000 queued: a running worker's rate between its
    //    100th and 900th completion (start-up outside the window), from a queue of 1,000 and
    //    from a queue of 1,000,000; median of 9 each. Then 100,000 sustained from the big one.
    // 3e. Timeouts and limits in use: the engine-only loop over jobs that each carry a
    // timeout and a limit key, on a queue with concurrency, rate and per-key limits. With 1000
    // keys in turn no job waits (the cost of counting); with 10 keys and one running per key,
    // each fetch of 100 leases 10 and parks the rest, and each ack lets one go.
    for (label, keys) in [("limits-counted", 1000usize), ("limits-contended", 10)]
        .into_iter()
        .filter(|(label, _)| wanted(label))
    {
        let engine = fresh_engine(&url, label).await?;
        let n = scale(100_000);
        engine
            .set_queue_limits(
                "q",
                &queue::QueueLimits {
                    concurrency: Some(100_000),
                    per_key_concurrency: Some(1),
                    rate: Some(queue::RateLimit::per_second(1_000_000)),
                    per_key_rate: None,
                },
            )
            .await?;
        let mut left = n;
        let mut next = 0usize;
        while left > 0 {
            let batch = left.min(10_000);
            let jobs = (0..batch)
                .map(|_| {
                    next += 1;
                    NewJob::raw("q", "q", format!("{{\"n\":{next}}}"))
                        .with_limit_key(format!("k{}", next % keys))
                        .with_timeout(Duration::from_secs(60))
                })
                .collect();
            engine.push_many(jobs).await?;
            left -= batch;
        }
        let before = cpu(&url).await?;
        let started = Instant::now();
        let mut done = 0;
        let mut request = bench_fetch(100);
        request.timeout_grace = Duration::from_secs(5);
        while done < n {
            let fetched = engine.fetch(&request).await?;
            done += ack_all(&engine, fetched.jobs).await?;
        }
        let took = started.elapsed();
        println!(
            "fetch+ack, {label:<16} {n:>8} jobs  {}  ({keys} keys, one running per key)",
            rate(n, took)
        );
        report_cpu(label, &before, &cpu(&url).await?, took);
        engine.destroy_all_data().await?;
    }

    if wanted("backlog") {
        let (from, to) = (100, 900);
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let mut small = Vec::new();
        for _ in 0..9 {
            let engine = fresh_engine(&url, "backlog-small").await?;
            push_noops(&engine, "q", 1_000).await?;
            let took = drain_window(&engine, "q", from, to, 64).await?;
            small.push((to - from) as f64 / took.as_secs_f64());
            engine.destroy_all_data().await?;
        }
        let big = scale(1_000_000);
        let engine = fresh_engine(&url, "backlog-big").await?;
        push_noops(&engine, "q", big).await?;
        let mut large = Vec::new();
        for _ in 0..9 {
            let took = drain_window(&engine, "q", from, to, 64).await?;
            large.push((to - from) as f64 / took.as_secs_f64());
        }
        let (s, l) = (median(&mut small), median(&mut large));
        println!(
            "drain with 1000 queued        completions {from}-{to}  {s:>9.0} jobs/s  (median of 9, concurrency 64)"
        );
        println!(
            "drain with {big} queued     completions {from}-{to}  {l:>9.0} jobs/s  (median of 9; {:+.1}% vs 1,000 queued)",
            100.0 * (l - s) / s
        );
        let sustained = scale(100_000);
        let took = drain(&engine, "q", sustained, 64).await?;
        println!(
            "drain with {big} queued    {sustained:>8} jobs  {}  (sustained, concurrency 64)",
            rate(sustained, took)
        );
        engine.destroy_all_data().await?;
    }

    // 5. Push -> handler-end latency at a steady 500 jobs/s.
    if wanted("latency") {
        let engine = fresh_engine(&url, "latency").await?;
        let n = scale(5_000);
        let hist = Arc::new(std::sync::Mutex::new(Histogram::<u64>::new(3)?));
        let done = Arc::new(AtomicUsize::new(0));
        #[derive(Clone)]
        struct Rec {
            hist: Arc<std::sync::Mutex<Histogram<u64>>>,
            done: Arc<AtomicUsize>,
        }
        async fn handler(s: Stamped, r: Data<Rec>) -> Result<(), JobError> {
            let latency = now_us().saturating_sub(s.pushed_at_us);
            if let Ok(mut h) = r.hist.lock() {
                let _ = h.record(latency);
            }
            r.done.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        let worker = WorkerBuilder::new("bench-latency")
            .backend(RedisBackend::<Stamped>::new(
                engine.clone(),
                WorkerOptions::new("q").concurrency(16),
            ))
            .data(Rec {
                hist: hist.clone(),
                done: done.clone(),
            })
            .build(handler);
        let producer_engine = engine.clone();
        let d = done.clone();
        worker
            .run_until(async move {
                // Let the worker reach its idle wait first.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let mut tick = tokio::time::interval(Duration::from_millis(2));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                for _ in 0..n {
                    tick.tick().await;
                    let job = NewJob::new(
                        "q",
                        &Stamped {
                            pushed_at_us: now_us(),
                        },
                    )
                    .map_err(std::io::Error::other)?;
                    producer_engine
                        .push(job)
                        .await
                        .map_err(std::io::Error::other)?;
                }
                while d.load(Ordering::Relaxed) < n {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Ok::<(), std::io::Error>(())
            })
            .await?;
        let (p50, p95, p99, max) = {
            let h = hist.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            let ms = |v: u64| v as f64 / 1000.0;
            (
                ms(h.value_at_quantile(0.50)),
                ms(h.value_at_quantile(0.95)),
                ms(h.value_at_quantile(0.99)),
                ms(h.max()),
            )
        };
        println!(
            "latency push->handler end at 500 jobs/s ({n} jobs): p50 {p50:.2} ms  p95 {p95:.2} ms  p99 {p99:.2} ms  max {max:.2} ms"
        );
        engine.destroy_all_data().await?;
    }

    // 6. 2,000 jobs that fail twice then succeed, 10 ms backoff.
    if wanted("retry") {
        let engine = fresh_engine(&url, "retry").await?;
        let n = scale(2_000);
        push_noops(&engine, "q", n).await?;
        let done = Arc::new(AtomicUsize::new(0));
        let notify = Arc::new(Notify::new());
        #[derive(Clone)]
        struct Flaky {
            done: Arc<AtomicUsize>,
            notify: Arc<Notify>,
            target: usize,
        }
        async fn handler(_: Noop, ctx: JobContext, f: Data<Flaky>) -> Result<(), JobError> {
            if ctx.attempt <= 2 {
                return Err(JobError::retryable("transient failure"));
            }
            if f.done.fetch_add(1, Ordering::Relaxed) + 1 == f.target {
                f.notify.notify_one();
            }
            Ok(())
        }
        let retry = RetryPolicy {
            max_attempts: 5,
            backoff_base: Duration::from_millis(10),
            backoff_cap: Duration::from_millis(10),
        };
        let worker = WorkerBuilder::new("bench-retry")
            .backend(RedisBackend::<Noop>::new(
                engine.clone(),
                WorkerOptions::new("q").concurrency(64).retry(retry),
            ))
            .data(Flaky {
                done: done.clone(),
                notify: notify.clone(),
                target: n,
            })
            .build(handler);
        let started = Instant::now();
        worker
            .run_until(async move {
                notify.notified().await;
                Ok::<(), std::io::Error>(())
            })
            .await?;
        let took = started.elapsed();
        let stats = engine.stats("q").await?;
        println!(
            "fail twice then succeed   {n:>8} jobs  {} ({} attempts in {:.2}s; retried {}, dead {})",
            rate(n, took),
            3 * n,
            took.as_secs_f64(),
            stats.retried_total,
            stats.dead
        );
        engine.destroy_all_data().await?;
    }
    Ok(())
}
