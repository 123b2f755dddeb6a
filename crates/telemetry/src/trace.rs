//! Logging and span export. Logs go to stderr, human-readable or as JSON
//! lines; a line written inside a traced span carries its `trace_id`. When
//! an OTLP endpoint is configured, the spans of Slipway's own crates are
//! exported over OTLP/gRPC in batches, from a thread of their own: a slow or
//! unreachable collector costs dropped spans, never a stalled service.

use std::time::Duration;

use opentelemetry::trace::{TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// The crates whose spans are exported: Slipway's own. The spans of the
/// libraries under them (hyper, h2, tonic, lapin) would bury a task's trace,
/// and the exporter's own calls would feed back into it.
const OWN_CRATES: &[&str] = &[
    "gateway",
    "orchestrator",
    "runner",
    "notifier",
    "store",
    "queue",
    "proto",
    "telemetry",
    "domain",
];

/// How long a stop waits for the last spans to reach the collector.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where spans are exported, and as which service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The collector's OTLP/gRPC endpoint, e.g. `http://127.0.0.1:4317`.
    pub endpoint: String,
    /// The `service.name` resource attribute of every span.
    pub service_name: String,
}

impl Export {
    /// From the standard variables: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
    /// else `OTEL_EXPORTER_OTLP_ENDPOINT` (neither: no export),
    /// `OTEL_SERVICE_NAME` (else `service`); `OTEL_SDK_DISABLED=true` turns
    /// export off.
    pub fn from_env(service: &str) -> Option<Self> {
        Self::from_vars(service, |name| std::env::var(name).ok())
    }

    fn from_vars(service: &str, var: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let set = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return None;
        }
        let endpoint = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))?;
        Some(Self {
            endpoint,
            service_name: set("OTEL_SERVICE_NAME").unwrap_or_else(|| service.to_owned()),
        })
    }
}

/// Keeps span export running; dropping it (or [`Tracing::shutdown`])
/// flushes the spans not yet exported, waiting a few seconds at most.
#[must_use = "dropping the guard stops span export"]
pub struct Tracing {
    /// `None` when nothing is exported.
    provider: Option<SdkTracerProvider>,
}

impl Tracing {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes the spans not yet exported and stops export.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(provider) = self.provider.take() else {
            return;
        };
        let flush = move || {
            let _ = provider.shutdown_with_timeout(FLUSH_TIMEOUT);
        };
        // The exporter's gRPC connection is driven by the runtime: a
        // runtime worker must not sit blocked while it flushes.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(flush);
            }
            _ => flush(),
        }
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sets up the process-wide subscriber: logs filtered by `filter` (as
/// JSON lines when `json`), and span export when `export` is given. Must be
/// called inside a Tokio runtime when exporting. A process that already has
/// a subscriber (tests start several services in one) keeps it.
pub fn init(filter: &str, json: bool, export: Option<Export>) -> Tracing {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (provider, failure) = match &export {
        Some(e) => match provider(e) {
            Ok(p) => (Some(p), None),
            Err(err) => (None, Some(err)),
        },
        None => (None, None),
    };
    let subscriber = subscriber(filter, json, ansi, std::io::stderr, provider.as_ref());
    if subscriber.try_init().is_err() {
        return Tracing { provider: None };
    }
    if let (Some(_), Some(e)) = (&provider, &export) {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        tracing::info!(endpoint = %e.endpoint, service = %e.service_name, "exporting spans over otlp");
    }
    if let Some(err) = failure {
        // A service runs without its traces rather than not at all.
        tracing::warn!(error = %err, "cannot export spans; running without");
    }
    Tracing { provider }
}

fn provider(export: &Export) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(export.endpoint.clone())
        .build()?;
    let resource = Resource::builder()
        .with_service_name(export.service_name.clone())
        .build();
    // The batch processor exports from its own thread and drops spans when
    // its queue is full, so a collector that is away never holds a caller.
    Ok(SdkTracerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build())
}

/// Logs to `writer`, and spans to `provider` when given.
fn subscriber<W>(
    filter: &str,
    json: bool,
    ansi: bool,
    writer: W,
    provider: Option<&SdkTracerProvider>,
) -> impl Subscriber + Send + Sync + for<'a> LookupSpan<'a>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // The log filter applies to logs only: spans are exported whatever
    // SLIPWAY_LOG hides.
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs: Box<dyn Layer<Registry> + Send + Sync> = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .event_format(WithTraceId {
                inner: format().json(),
                json: true,
            })
            .with_writer(writer)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .event_format(WithTraceId {
                inner: format().with_ansi(ansi),
                json: false,
            })
            .with_writer(writer)
            .with_filter(filter)
            .boxed()
    };
    let exported = OWN_CRATES.iter().fold(Targets::new(), |t, krate| {
        t.with_target(*krate, LevelFilter::INFO)
    });
    let spans = provider.map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("slipway"))
            .with_filter(exported)
    });
    tracing_subscriber::registry().with(logs).with(spans)
}

fn format() -> format::Format {
    format::Format::default()
}

/// The trace of the span the current thread is in, if it is exported.
fn current_trace_id() -> Option<TraceId> {
    let cx = opentelemetry::Context::current();
    let span = cx.span();
    let context = span.span_context();
    context.is_valid().then(|| context.trace_id())
}

/// A log line format that adds `trace_id` to the lines written inside a
/// traced span: a last field of the JSON object, or ` trace_id=...` at the
/// end of a human-readable line.
struct WithTraceId<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceId<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let Some(trace_id) = current_trace_id() else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let body = line.strip_suffix('\n').unwrap_or(&line);
        match body.strip_suffix('}') {
            Some(object) if self.json => {
                writeln!(writer, "{object},\"trace_id\":\"{trace_id}\"}}")
            }
            _ => writeln!(writer, "{body} trace_id={trace_id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut out) = self.0.lock() {
                out.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            let out = self.0.lock().map(|o| o.clone()).unwrap_or_default();
            String::from_utf8_lossy(&out)
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    /// Logs one line outside any span and one inside a traced span; returns
    /// the lines and the span's trace id.
    fn log_in_a_span(json: bool) -> (Vec<String>, String) {
        let provider = SdkTracerProvider::builder().build();
        let out = Captured::default();
        let subscriber = subscriber("info", json, false, out.clone(), Some(&provider));
        let trace_id = tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside");
            let span = tracing::info_span!(target: "runner", "task", task_id = 7);
            let _entered = span.enter();
            tracing::info!(target: "runner", "inside");
            span.context().span().span_context().trace_id().to_string()
        });
        (out.lines(), trace_id)
    }

    #[test]
    fn human_lines_in_a_traced_span_carry_the_trace_id() {
        let (lines, trace_id) = log_in_a_span(false);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(!lines[0].contains("trace_id"), "{}", lines[0]);
        assert!(
            lines[1].ends_with(&format!("inside trace_id={trace_id}")),
            "{}",
            lines[1]
        );
        assert_eq!(trace_id.len(), 32);
    }

    #[test]
    fn json_lines_in_a_traced_span_carry_the_trace_id() {
        let (lines, trace_id) = log_in_a_span(true);
        assert_eq!(lines.len(), 2, "{lines:?}");
        let outside: serde_json::Value = serde_json::from_str(&lines[0]).unwrap_or_default();
        assert_eq!(outside["fields"]["message"], "outside", "{}", lines[0]);
        assert!(outside.get("trace_id").is_none());
        let inside: serde_json::Value = serde_json::from_str(&lines[1]).unwrap_or_default();
        assert_eq!(inside["fields"]["message"], "inside", "{}", lines[1]);
        assert_eq!(inside["trace_id"], trace_id.as_str());
        assert_eq!(inside["span"]["task_id"], 7);
    }

    #[test]
    fn without_export_lines_carry_no_trace_id() {
        let out = Captured::default();
        let subscriber = subscriber("info", false, false, out.clone(), None);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(target: "runner", "task");
            let _entered = span.enter();
            tracing::info!(target: "runner", "inside");
        });
        let lines = out.lines();
        assert_eq!(lines.len(), 1);
        assert!(!lines[0].contains("trace_id"), "{}", lines[0]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unusable_or_absent_collector_never_stops_the_service() {
        let unusable = Export {
            endpoint: "not a url".to_owned(),
            service_name: "slipway-runner".to_owned(),
        };
        assert!(provider(&unusable).is_err());
        // Nothing listens on port 1: spans are made, exports fail, the
        // stop returns.
        let absent = Export {
            endpoint: "http://127.0.0.1:1".to_owned(),
            service_name: "slipway-runner".to_owned(),
        };
        let provider = provider(&absent).expect("an exporter for a valid url");
        let out = Captured::default();
        let subscriber = subscriber("info", false, false, out.clone(), Some(&provider));
        tracing::subscriber::with_default(subscriber, || {
            for task_id in 0..100 {
                let span = tracing::info_span!(target: "runner", "task", task_id);
                let _entered = span.enter();
                tracing::info!(target: "runner", "inside");
            }
        });
        assert_eq!(out.lines().len(), 100);
        Tracing {
            provider: Some(provider),
        }
        .shutdown();
    }

    #[test]
    fn export_follows_the_standard_variables() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(Export::from_vars("slipway-runner", vars(&[])), None);
        assert_eq!(
            Export::from_vars(
                "slipway-runner",
                vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])
            ),
            None
        );
        assert_eq!(
            Export::from_vars(
                "slipway-runner",
                vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")])
            ),
            Some(Export {
                endpoint: "http://collector:4317".to_owned(),
                service_name: "slipway-runner".to_owned(),
            })
        );
        assert_eq!(
            Export::from_vars(
                "slipway-runner",
                vars(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
                    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"),
                    ("OTEL_SERVICE_NAME", "runner-eu-1"),
                ])
            ),
            Some(Export {
                endpoint: "http://traces:4317".to_owned(),
                service_name: "runner-eu-1".to_owned(),
            })
        );
        assert_eq!(
            Export::from_vars(
                "slipway-runner",
                vars(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
                    ("OTEL_SDK_DISABLED", "true"),
                ])
            ),
            None
        );
    }
}
