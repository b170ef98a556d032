//! Prometheus metrics of a worker process: jobs processed, failed, retried, snoozed and dead
//! by kind; handler duration histograms; queue depth by queue and state; the ledger's lag.

use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{BuildError, PrometheusBuilder};
use queue::{Engine, EventStream, JobContext, JobError};

/// Handler durations, in seconds: from a fast SQL write to a slow webhook.
const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Installs the process's recorder; the caller renders `/metrics` on its own port (the API's,
/// or a worker process's `http` module).
pub fn install_recorder() -> Result<metrics_exporter_prometheus::PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&DURATION_BUCKETS)?
        .install_recorder()?;
    describe();
    Ok(handle)
}

fn describe() {
    metrics::describe_counter!(
        "steadfast_jobs_processed_total",
        "Attempts finished, any outcome"
    );
    metrics::describe_counter!("steadfast_jobs_succeeded_total", "Attempts that succeeded");
    metrics::describe_counter!("steadfast_jobs_failed_total", "Attempts that failed");
    metrics::describe_counter!(
        "steadfast_jobs_retried_total",
        "Failed attempts that will be retried"
    );
    metrics::describe_counter!("steadfast_jobs_dead_total", "Jobs that went dead");
    metrics::describe_counter!(
        "steadfast_jobs_snoozed_total",
        "Attempts snoozed (breaker open, Retry-After)"
    );
    metrics::describe_histogram!(
        "steadfast_job_duration_seconds",
        metrics::Unit::Seconds,
        "Handler run time"
    );
    metrics::describe_gauge!("steadfast_queue_depth", "Jobs per queue and state");
    metrics::describe_gauge!(
        "steadfast_queue_oldest_ready_age_seconds",
        metrics::Unit::Seconds,
        "How long the next job to run has waited since it became runnable (0: none ready)"
    );
    metrics::describe_gauge!(
        "steadfast_queue_paused",
        "1 while the queue is paused (workers lease nothing from it), else 0"
    );
    metrics::describe_gauge!(
        "steadfast_breakers",
        "Circuit breakers by state (open, half_open); closed ones are not counted"
    );
    metrics::describe_gauge!(
        "steadfast_ledger_lag_events",
        "Job events the SQL ledger has not been given yet (how far SQL is behind Redis)"
    );
    metrics::describe_gauge!(
        "steadfast_ledger_pending_events",
        "Job events given to a ledger recorder and not yet committed"
    );
    metrics::describe_gauge!(
        "steadfast_subscriptions_active",
        "GraphQL subscriptions open on this API process"
    );
}

/// Counts one finished attempt of `kind`.
pub fn observe<T>(
    kind: &'static str,
    job: &JobContext,
    started: Instant,
    result: &Result<T, JobError>,
) {
    let outcome = match result {
        Ok(_) => "succeeded",
        Err(JobError::Snooze { .. }) => "snoozed",
        Err(JobError::Cancelled) => "cancelled",
        Err(JobError::Permanent(_)) => "dead",
        Err(JobError::Retryable(_)) if job.is_last_attempt() => "dead",
        Err(JobError::Retryable(_)) => "retried",
    };
    metrics::counter!("steadfast_jobs_processed_total", "kind" => kind).increment(1);
    match outcome {
        "succeeded" => {
            metrics::counter!("steadfast_jobs_succeeded_total", "kind" => kind).increment(1)
        }
        "snoozed" => metrics::counter!("steadfast_jobs_snoozed_total", "kind" => kind).increment(1),
        "retried" | "dead" => {
            metrics::counter!("steadfast_jobs_failed_total", "kind" => kind).increment(1);
            let name = if outcome == "dead" {
                "steadfast_jobs_dead_total"
            } else {
                "steadfast_jobs_retried_total"
            };
            metrics::counter!(name, "kind" => kind).increment(1);
        }
        _ => {}
    }
    metrics::histogram!("steadfast_job_duration_seconds", "kind" => kind, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
}

/// Samples every queue's depth and oldest-ready age, the circuit breakers and the ledger's lag
/// into gauges
/// until cancelled.
pub async fn sample_depth(engine: Engine, queues: Vec<String>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        for queue in &queues {
            match engine.stats(queue).await {
                Ok(stats) => {
                    for (state, n) in [
                        ("ready", stats.ready),
                        ("scheduled", stats.scheduled),
                        ("running", stats.running),
                        ("dead", stats.dead),
                    ] {
                        metrics::gauge!("steadfast_queue_depth", "queue" => queue.clone(), "state" => state)
                            .set(n as f64);
                    }
                    metrics::gauge!("steadfast_queue_paused", "queue" => queue.clone()).set(
                        if stats.paused_since_ms.is_some() {
                            1.0
                        } else {
                            0.0
                        },
                    );
                }
                Err(e) => tracing::debug!(error = %e, queue, "queue depth not sampled"),
            }
            match engine.oldest_ready_age(queue).await {
                Ok(age) => metrics::gauge!("steadfast_queue_oldest_ready_age_seconds", "queue" => queue.clone())
                    .set(age.unwrap_or_default().as_secs_f64()),
                Err(e) => tracing::debug!(error = %e, queue, "oldest ready age not sampled"),
            }
        }
        match engine.breakers().await {
            Ok(breakers) => {
                for state in ["open", "half_open"] {
                    let n = breakers.iter().filter(|b| b.state == state).count();
                    metrics::gauge!("steadfast_breakers", "state" => state).set(n as f64);
                }
            }
            Err(e) => tracing::debug!(error = %e, "breakers not sampled"),
        }
        match engine
            .group_progress(EventStream::Jobs, workflows::ledger::LEDGER_GROUP)
            .await
        {
            Ok(Some(progress)) => {
                if let Some(lag) = progress.lag {
                    metrics::gauge!("steadfast_ledger_lag_events").set(lag as f64);
                }
                metrics::gauge!("steadfast_ledger_pending_events").set(progress.pending as f64);
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "ledger progress not sampled"),
        }
    }
}
