//! Sensor-pipeline load through the public API: sensors with an `ABOVE` rule and a webhook to
//! the suite's receiver, then ingest jobs submitted with `submitJobs`. What was accepted is
//! kept, for the books.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use super::cluster::Cluster;
use serde_json::{Value, json};

pub const THRESHOLD: f64 = 80.0;
pub const CLEAR: f64 = 75.0;
pub const READINGS_PER_JOB: i64 = 10;

/// Four stretches of ten low readings, then ten high: an alert episode every fifty readings.
pub fn value(seq: i64) -> f64 {
    if (seq / 10) % 5 == 4 { 90.0 } else { 50.0 }
}

pub fn sensor_key(s: usize) -> String {
    format!("s{s}")
}

/// Creates sensors `s0..s<n>`, without rules.
pub async fn create_sensors(cluster: &Cluster, sensors: usize) {
    for s in 0..sensors {
        cluster
            .admin_ok(
                "mutation($k: String!) { createSensor(input: {key: $k, name: $k, unit: \"C\"}) { key } }",
                json!({ "k": sensor_key(s) }),
            )
            .await;
    }
}

/// Creates `sensors` sensors, one webhook channel to the receiver and a rule per sensor.
pub async fn provision(cluster: &Cluster, sensors: usize) {
    let channel = cluster
        .admin_ok(
            "mutation($url: String!) { createChannel(input: {name: \"ops\", kind: WEBHOOK, url: $url, secret: \"s3cret\"}) { id } }",
            json!({ "url": cluster.receiver.url() }),
        )
        .await;
    let channel = channel["createChannel"]["id"].clone();
    create_sensors(cluster, sensors).await;
    for s in 0..sensors {
        cluster
            .admin_ok(
                "mutation($k: String!, $c: ID!, $t: Float!, $clear: Float!) { createRule(input: {sensor: $k, kind: ABOVE, threshold: $t, clearThreshold: $clear, throttleSeconds: 3600, channelIds: [$c]}) { id } }",
                json!({ "k": sensor_key(s), "c": channel, "t": THRESHOLD, "clear": CLEAR }),
            )
            .await;
    }
}

/// The ingest payload of job number `n`: sensors take turns, each sensor's readings numbered
/// on from its previous job.
pub fn ingest_input(n: usize, sensors: usize) -> Value {
    let sensor = n % sensors;
    let from = (n / sensors) as i64 * READINGS_PER_JOB;
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-11-21T00:00:00Z").expect("time");
    let readings: Vec<Value> = (from..from + READINGS_PER_JOB)
        .map(|seq| {
            json!({
                "sensor": sensor_key(sensor),
                "ts": (t0 + chrono::Duration::seconds(seq)).to_rfc3339(),
                "value": value(seq),
                "seq": seq,
            })
        })
        .collect();
    json!({
        "kind": "INGEST",
        "payload": { "readings": readings },
        // A retried batch (its answer lost) is answered with the first jobs, not queued twice.
        "idempotencyKey": format!("load-{n}"),
    })
}

const SUBMIT_MANY: &str = "mutation($inputs: [SubmitJobInput!]!) { submitJobs(inputs: $inputs) { duplicate job { id } } }";

/// What the load put in.
#[derive(Debug, Default)]
pub struct Submitted {
    /// Ids the API answered for, in submission order.
    pub accepted: Vec<String>,
    /// Calls refused (UNAVAILABLE, a dropped connection), each retried.
    pub refused: u64,
    /// Jobs a retried call found already accepted (answered `duplicate`).
    pub duplicates: u64,
    /// When the first call after the last refusal was accepted.
    pub accepted_again_at: Option<std::time::Instant>,
}

/// The public API as a load client sees it: cloneable, so load runs in a task of its own while
/// the scenario kills and restarts processes.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub urls: Vec<String>,
    pub token: String,
}

impl Client {
    pub fn of(cluster: &Cluster) -> Self {
        Self {
            http: cluster.http.clone(),
            urls: cluster.api_urls.clone(),
            token: cluster.admin.clone(),
        }
    }

    /// Submits jobs `from..to` in batches through the API processes in turn, one batch per
    /// `pace` at most, retrying a refused batch (same idempotency keys) until it is accepted.
    /// Stops early once `stop` is set.
    pub async fn submit_range(
        self,
        from: usize,
        to: usize,
        batch: usize,
        pace: Duration,
        sensors: usize,
        stop: Arc<AtomicBool>,
    ) -> Submitted {
        let mut out = Submitted::default();
        let mut n = from;
        let mut turn = 0;
        let mut next_batch = tokio::time::Instant::now();
        while n < to && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep_until(next_batch).await;
            next_batch += pace;
            let end = (n + batch).min(to);
            let inputs: Vec<Value> = (n..end).map(|i| ingest_input(i, sensors)).collect();
            let url = &self.urls[turn % self.urls.len()];
            turn += 1;
            let body = self.post(url, json!({ "inputs": inputs })).await;
            match body
                .as_ref()
                .ok()
                .and_then(|b| b["data"]["submitJobs"].as_array())
            {
                Some(results) => {
                    for r in results {
                        if r["duplicate"] == true {
                            out.duplicates += 1;
                        }
                        out.accepted
                            .push(r["job"]["id"].as_str().expect("job id").to_owned());
                    }
                    n = end;
                    if out.refused > 0 && out.accepted_again_at.is_none() {
                        out.accepted_again_at = Some(std::time::Instant::now());
                    }
                }
                None => {
                    out.accepted_again_at = None;
                    if let Ok(body) = &body {
                        let code = body["errors"][0]["extensions"]["code"].as_str();
                        assert_eq!(code, Some("UNAVAILABLE"), "a batch refused: {body}");
                    }
                    out.refused += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        out
    }

    async fn post(&self, url: &str, variables: Value) -> Result<Value, String> {
        let response = self
            .http
            .post(format!("{url}/graphql"))
            .timeout(Duration::from_secs(30))
            .bearer_auth(&self.token)
            .json(&json!({ "query": SUBMIT_MANY, "variables": variables }))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        response.json().await.map_err(|e| e.to_string())
    }
}
