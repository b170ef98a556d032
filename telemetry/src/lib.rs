//! Logs and traces of a Steadfast process (`api` and `workers` alike).
//!
//! * Logs: text for a terminal, or JSON lines (`LOG_FORMAT=json`) that carry the fields of
//!   every enclosing span: the trace id, and on a job's lines its id, kind and attempt.
//! * Traces: every process runs an OpenTelemetry tracer, so spans always have W3C trace ids,
//!   and the queue carries the context in each job (`queue::TracePropagator`): one trace
//!   follows a request through every job it causes, across processes. Spans leave the process
//!   only when `OTEL_EXPORTER_OTLP_ENDPOINT` names an OTLP/HTTP collector.

use std::collections::HashMap;

use opentelemetry::{
    propagation::TextMapPropagator as _,
    trace::{TraceContextExt as _, TracerProvider as _},
};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::Level;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{
    EnvFilter, Layer as _, filter::Targets, layer::SubscriberExt as _, util::SubscriberInitExt as _,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Telemetry settings, shared by the `api` and `workers` binaries.
#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryArgs {
    /// Log lines as `text`, or `json` (one object per line, with the enclosing spans' fields).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Base URL of an OTLP/HTTP collector (e.g. `http://otel-collector:4318`); spans are
    /// exported to `<url>/v1/traces` only when it is set.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of this process's spans (default: the binary's name).
    #[arg(long, env = "OTEL_SERVICE_NAME")]
    pub service_name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("a global subscriber is already installed: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
}

/// The process's tracer; [`Telemetry::shutdown`] sends the spans not yet exported.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Installs logging and tracing for the process. Call it before starting the async
    /// runtime: the exporter's HTTP client runs on a thread of its own.
    pub fn init(
        args: &TelemetryArgs,
        default_service: &str,
        default_filter: &str,
    ) -> Result<Self, TelemetryError> {
        let service = args
            .service_name
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| default_service.to_owned());
        let mut provider = SdkTracerProvider::builder()
            .with_resource(Resource::builder().with_service_name(service).build());
        if let Some(endpoint) = args.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
            use opentelemetry_otlp::WithExportConfig as _;
            // The exporter's client speaks HTTPS with the process's one TLS provider (ring).
            let _ = rustls::crypto::ring::default_provider().install_default();
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
                .build()?;
            provider = provider.with_batch_exporter(exporter);
        }
        let provider = provider.build();
        let filter =
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
        let logs = match args.log_format {
            LogFormat::Text => tracing_subscriber::fmt::layer().boxed(),
            LogFormat::Json => tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(false)
                .with_span_list(true)
                .boxed(),
        };
        let traces = tracing_opentelemetry::layer().with_tracer(provider.tracer("steadfast"));
        // Spans are traced whatever RUST_LOG says about logging: a quieter log must not cut
        // a trace (and the context jobs carry) in two. Dependencies' spans stay out.
        let traced = Targets::new()
            .with_target("api", Level::INFO)
            .with_target("queue", Level::INFO)
            .with_target("workflows", Level::INFO)
            .with_target("runtime", Level::INFO)
            .with_target("workers", Level::INFO);
        tracing_subscriber::registry()
            .with(logs.with_filter(filter))
            .with(traces.with_filter(traced))
            .try_init()?;
        queue::set_trace_propagator(W3cTraceContext);
        Ok(Self { provider })
    }

    /// Exports what is still buffered; call it after the runtime has stopped.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("traces not all exported at exit: {e}");
        }
    }
}

/// W3C trace context, `traceparent` and `tracestate`, in and out of spans, for the queue and
/// for HTTP requests. A job carries it as one text: the `traceparent`, then a space and the
/// `tracestate` when there is one (a `traceparent` has no spaces, so the first one splits them).
#[derive(Debug, Clone, Copy)]
pub struct W3cTraceContext;

impl W3cTraceContext {
    /// Makes `span` continue the trace named by a `traceparent` value (ignored when malformed),
    /// with the vendors' `tracestate` entries, and records its trace id in the span's
    /// `trace_id` field.
    pub fn continue_span(
        span: &tracing::Span,
        traceparent: Option<&str>,
        tracestate: Option<&str>,
    ) {
        if let Some(traceparent) = traceparent {
            let mut carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
            if let Some(tracestate) = tracestate {
                carrier.insert("tracestate".to_owned(), tracestate.to_owned());
            }
            let parent = TraceContextPropagator::new().extract(&carrier);
            if parent.span().span_context().is_valid() {
                // Fails only for a disabled span, which has nothing to continue.
                let _ = span.set_parent(parent);
            }
        }
        let trace_id = span.context().span().span_context().trace_id();
        if trace_id != opentelemetry::TraceId::INVALID {
            span.record("trace_id", tracing::field::display(trace_id));
        }
    }
}

impl queue::TracePropagator for W3cTraceContext {
    fn current(&self) -> Option<String> {
        let context = tracing::Span::current().context();
        if !context.span().span_context().is_valid() {
            return None;
        }
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(&context, &mut carrier);
        let traceparent = carrier.remove("traceparent")?;
        Some(
            match carrier.remove("tracestate").filter(|s| !s.is_empty()) {
                Some(tracestate) => format!("{traceparent} {tracestate}"),
                None => traceparent,
            },
        )
    }

    fn continue_job(&self, span: &tracing::Span, carried: Option<&str>) {
        let (traceparent, tracestate) = match carried.map(|c| c.split_once(' ')) {
            Some(Some((traceparent, tracestate))) => (Some(traceparent), Some(tracestate)),
            Some(None) => (carried, None),
            None => (None, None),
        };
        Self::continue_span(span, traceparent, tracestate);
    }
}
