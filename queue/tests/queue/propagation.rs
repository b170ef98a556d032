//! Trace context travels with jobs: a push takes the pusher's context unless the caller set
//! one, and each attempt's span is handed the context its job carried.

use std::{sync::Mutex, time::Duration};

use apalis_core::worker::builder::WorkerBuilder;
use queue::{JobContext, JobError, NewJob, RedisBackend, TracePropagator, WorkerOptions};

use super::common::{TestQueue, wait_for_stats};

tokio::task_local! {
    /// The "current span's context" of this test's pushers.
    static PUSHER_CONTEXT: String;
}

/// Every context handed to an attempt's span, in order.
static CONTINUED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Traced only inside `PUSHER_CONTEXT.scope`, so the other tests of this binary (which share
/// the process-wide propagator) push untraced jobs, as before.
struct TaskLocalPropagator;

impl TracePropagator for TaskLocalPropagator {
    fn current(&self) -> Option<String> {
        PUSHER_CONTEXT.try_with(Clone::clone).ok()
    }
    fn continue_job(&self, span: &tracing::Span, carried: Option<&str>) {
        assert!(
            span.field("trace_id").is_some() || span.is_disabled(),
            "an attempt's span declares trace_id"
        );
        if let Some(carried) = carried {
            CONTINUED.lock().expect("lock").push(carried.to_owned());
        }
    }
}

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const CALLERS: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

#[tokio::test]
async fn a_push_carries_the_pushers_trace_context_to_the_attempt() {
    queue::set_trace_propagator(TaskLocalPropagator);
    let t = TestQueue::new("propagation").await;
    let traced = PUSHER_CONTEXT
        .scope(PARENT.to_owned(), async {
            t.engine
                .push(NewJob::raw("trace", "trace", "{}".into()))
                .await
        })
        .await
        .expect("push")
        .id;
    let own = PUSHER_CONTEXT
        .scope(PARENT.to_owned(), async {
            t.engine
                .push(NewJob::raw("trace", "trace", "{}".into()).with_trace_context(CALLERS))
                .await
        })
        .await
        .expect("push")
        .id;
    let untraced = t.push_payload("trace", "{}").await;

    let context = |id: String| {
        let engine = t.engine.clone();
        async move {
            engine
                .job(&id)
                .await
                .expect("job")
                .expect("exists")
                .trace_context
        }
    };
    assert_eq!(context(traced.clone()).await.as_deref(), Some(PARENT));
    assert_eq!(
        context(own.clone()).await.as_deref(),
        Some(CALLERS),
        "a context the caller set is kept"
    );
    assert_eq!(context(untraced).await, None, "no span, no context");

    async fn handler(_: serde_json::Value, _: JobContext) -> Result<(), JobError> {
        Ok(())
    }
    let backend = RedisBackend::<serde_json::Value>::new(
        t.engine.clone(),
        WorkerOptions::new("trace").lease(Duration::from_millis(500)),
    );
    let worker = WorkerBuilder::new("propagation")
        .backend(backend)
        .build(handler);
    let engine = t.engine.clone();
    worker
        .run_until(async move {
            wait_for_stats(&engine, "trace", Duration::from_secs(10), |s| {
                s.succeeded_total == 3
            })
            .await;
            Ok::<(), std::io::Error>(())
        })
        .await
        .expect("worker");
    let mut continued = CONTINUED.lock().expect("lock").clone();
    continued.sort();
    assert_eq!(continued, vec![CALLERS.to_owned(), PARENT.to_owned()]);
}
