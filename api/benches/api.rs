//! The API process under load, run as its own process (the real `api` binary, release build):
//!
//! 1. Jobs/s accepted through `submitJobs`, 1,000 jobs per request, `BENCH_CLIENTS` requests in
//!    flight (default 4), `BENCH_REQUESTS` requests (default 60).
//! 2. `BENCH_SUBSCRIBERS` websocket clients (default 1,000), each subscribed to `jobUpdates`
//!    filtered to its own workflow run, while jobs make `BENCH_TRANSITIONS` transitions/s in
//!    total (default 2,000; each goes to the one subscriber of its run) for `BENCH_SECS` seconds
//!    (default 10). Latency is from the transition's append to Redis (its stream id's time) to the
//!    client having parsed it; the API's resident memory is read before and after the
//!    subscribers connect.
//!
//! `cargo bench -p steadfast-api --bench api` (needs Redis).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use migration::testing::TestDb;
use queue::{NewJob, testing::TestPrefix};
use serde_json::{Value, json};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let fields: Vec<&str> = s.rsplit_once(") ")?.1.split(' ').collect();
            let user: f64 = fields.get(11)?.parse().ok()?;
            let system: f64 = fields.get(12)?.parse().ok()?;
            Some((user + system) / 100.0)
        })
        .unwrap_or(0.0)
}

struct ApiProcess {
    child: std::process::Child,
    url: String,
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_api(redis: &TestPrefix, db: &TestDb) -> ApiProcess {
    let port = queue::testing::free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_api"))
        .args([
            format!("--addr=127.0.0.1:{port}"),
            format!("--redis-url={}", redis.url),
            format!("--prefix={}", redis.prefix),
            format!("--database-url={}", db.url()),
            "--jwt-secret=bench-secret-of-at-least-thirty-two-bytes".into(),
            "--static-dir=/nonexistent".into(),
            "--migrate".into(),
        ])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("api binary");
    // Owned at once, so the process is killed and reaped however this ends.
    let process = ApiProcess {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = client();
    for _ in 0..200 {
        if http
            .get(format!("{}/health", process.url))
            .send()
            .await
            .is_ok()
        {
            return process;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("api did not start");
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn gql(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> Value {
    let mut request = http
        .post(format!("{url}/graphql"))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

fn quantiles(h: &Histogram<u64>, unit: &str) -> String {
    format!(
        "p50 {:.1} {unit}, p99 {:.1} {unit}, p99.9 {:.1} {unit}, max {:.1} {unit}",
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.value_at_quantile(0.999) as f64 / 1000.0,
        h.max() as f64 / 1000.0
    )
}

#[tokio::main]
async fn main() {
    let redis = TestPrefix::new("bench-api").await;
    let db = TestDb::sqlite().await;
    let api = start_api(&redis, &db).await;
    let pid = api.child.id();
    let http = client();
    let token = gql(
        &http,
        &api.url,
        None,
        "mutation { register(email: \"bench@example.com\", password: \"bench password 123\") { accessToken } }",
        json!({}),
    )
    .await["data"]["register"]["accessToken"]
        .as_str()
        .expect("token")
        .to_owned();

    // Phase 1: submitJobs.
    let requests = env_or("BENCH_REQUESTS", 60) as usize;
    let clients = env_or("BENCH_CLIENTS", 4) as usize;
    let batch: Vec<Value> = (0..1000)
        .map(|i| json!({ "kind": "EVALUATE", "payload": { "sensor": format!("sensor-{i}") } }))
        .collect();
    let batch = Arc::new(batch);
    let next = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Histogram::<u64>::new(3).expect("histogram")));
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (http, url, token, batch, next, latencies) = (
            http.clone(),
            api.url.clone(),
            token.clone(),
            batch.clone(),
            next.clone(),
            latencies.clone(),
        );
        tasks.spawn(async move {
            while (next.fetch_add(1, Ordering::Relaxed) as usize) < requests {
                let sent = Instant::now();
                let body = gql(
                    &http,
                    &url,
                    Some(&token),
                    "mutation($inputs: [SubmitJobInput!]!) { submitJobs(inputs: $inputs) { duplicate job { id } } }",
                    json!({ "inputs": *batch }),
                )
                .await;
                assert_eq!(
                    body["data"]["submitJobs"].as_array().map(Vec::len),
                    Some(1000),
                    "{body}"
                );
                let _ = latencies
                    .lock()
                    .expect("lock")
                    .record(sent.elapsed().as_micros() as u64);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    let accepted = requests * 1000;
    println!(
        "submitJobs: {accepted} jobs in {elapsed:.2} s = {:.0} jobs/s accepted ({clients} clients, 1,000 per request); request latency {}; api CPU {:.2} s",
        accepted as f64 / elapsed,
        quantiles(&latencies.lock().expect("lock"), "ms"),
        cpu_seconds(pid) - cpu_before
    );

    // Phase 2: subscribers.
    let subscribers = env_or("BENCH_SUBSCRIBERS", 1000) as usize;
    let rate = env_or("BENCH_TRANSITIONS", 2000);
    let secs = env_or("BENCH_SECS", 10);
    let rss_before = rss_mib(pid);
    let ws_url = format!("{}/graphql/ws", api.url.replacen("http", "ws", 1));
    let delivered = Arc::new(AtomicU64::new(0));
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new(3).expect("histogram")));
    let mut clients = tokio::task::JoinSet::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(subscribers);
    for i in 0..subscribers {
        let (ws_url, token, delivered, histogram, ready) = (
            ws_url.clone(),
            token.clone(),
            delivered.clone(),
            histogram.clone(),
            ready_tx.clone(),
        );
        clients.spawn(async move {
            let mut request = ws_url.into_client_request().expect("request");
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_static("graphql-transport-ws"),
            );
            let (mut socket, _) = connect_async(request).await.expect("ws");
            let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
            socket.send(Message::Text(init.to_string().into())).await.expect("init");
            let _ack = socket.next().await;
            let subscribe = json!({
                "id": "1",
                "type": "subscribe",
                "payload": {
                    "query": "subscription($r: ID) { jobUpdates(filter: {workflowRunId: $r}) { cursor at job { id state } } }",
                    "variables": { "r": format!("run-{i}") },
                },
            });
            socket.send(Message::Text(subscribe.to_string().into())).await.expect("subscribe");
            let _ = ready.send(()).await;
            while let Some(Ok(message)) = socket.next().await {
                let Message::Text(text) = message else { continue };
                let value: Value = serde_json::from_str(&text).expect("json");
                if value["type"] == "ping" {
                    let _ = socket.send(Message::Text(json!({ "type": "pong" }).to_string().into())).await;
                    continue;
                }
                let Some(at) = value["payload"]["data"]["jobUpdates"]["at"].as_str() else { continue };
                let at = chrono::DateTime::parse_from_rfc3339(at).expect("time");
                let now = chrono::Utc::now();
                let micros = (now - at.with_timezone(&chrono::Utc)).num_microseconds().unwrap_or(0).max(0);
                let _ = histogram.lock().expect("lock").record(micros as u64);
                delivered.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    for _ in 0..subscribers {
        ready_rx.recv().await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_subscribed = rss_mib(pid);

    // Transitions: pushes of jobs into the subscribers' runs, `rate` per second in 10 ms ticks.
    let engine = redis.engine.clone();
    let per_tick = (rate / 100).max(1) as usize;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let mut pushed = 0u64;
    let mut run = 0usize;
    while started.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        let jobs: Vec<NewJob> = (0..per_tick)
            .map(|_| {
                run = (run + 1) % subscribers;
                NewJob::raw("bench", "bench", "{}".into())
                    .with_workflow_id(format!("run-{run}"))
                    .with_delay(Duration::from_secs(3600))
            })
            .collect();
        pushed += engine.push_many(jobs).await.expect("push").len() as u64;
    }
    let pushing = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = cpu_seconds(pid) - cpu_before;
    let rss_after = rss_mib(pid);
    println!(
        "subscriptions: {subscribers} subscribers, {pushed} transitions in {pushing:.1} s ({:.0}/s), {} delivered",
        pushed as f64 / pushing,
        delivered.load(Ordering::Relaxed)
    );
    clients.abort_all();
    while clients.join_next().await.is_some() {}
    println!(
        "delivery latency (append to client): {}",
        quantiles(&histogram.lock().expect("lock"), "ms")
    );
    println!(
        "api memory: {rss_before:.1} MiB before subscribers, {rss_subscribed:.1} MiB with {subscribers} subscribed, {rss_after:.1} MiB after the run; api CPU {:.2} s for {pushing:.1} s ({:.0}% of one core)",
        cpu,
        cpu / pushing * 100.0
    );
}
