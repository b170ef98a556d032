//! W3C trace context across the queue. A push carries the pushing code's trace context in the
//! job (`NewJob::trace_context`, unless the caller set one), and the span of each attempt
//! continues it, so one trace follows a request through every job it causes, across processes.
//! The queue only carries the text: the process installs a [`TracePropagator`] that reads and
//! writes it (the binaries use OpenTelemetry's). Without one, jobs carry what callers set.

use std::sync::OnceLock;

/// Reads and continues trace contexts for the queue.
pub trait TracePropagator: Send + Sync + 'static {
    /// The current span's context as text, if it is traced (the binaries' propagator writes
    /// the W3C `traceparent`, then a space and the `tracestate` when there is one).
    fn current(&self) -> Option<String>;
    /// Called on each attempt's span (which declares an empty `trace_id` field) before it is
    /// entered: makes it a child of the context the job carried, if any, and records its
    /// trace id.
    fn continue_job(&self, span: &tracing::Span, carried: Option<&str>);
}

static PROPAGATOR: OnceLock<Box<dyn TracePropagator>> = OnceLock::new();

/// Installs the process's propagator. Only the first call counts; later ones return false.
pub fn set_trace_propagator(propagator: impl TracePropagator) -> bool {
    PROPAGATOR.set(Box::new(propagator)).is_ok()
}

pub(crate) fn current() -> Option<String> {
    PROPAGATOR.get().and_then(|p| p.current())
}

pub(crate) fn continue_job(span: &tracing::Span, carried: Option<&str>) {
    if let Some(p) = PROPAGATOR.get() {
        p.continue_job(span, carried);
    }
}
