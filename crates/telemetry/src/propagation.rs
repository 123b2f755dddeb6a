//! W3C trace context across process boundaries: a span's context as
//! headers (`traceparent`, `tracestate`) for gRPC metadata, AMQP message
//! headers and the task row, and a span made the child of the context such
//! headers carry. Everything here is a no-op while spans are not exported.

use std::collections::HashMap;

use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TraceContextExt;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header of the W3C trace context that names the parent span.
pub const TRACEPARENT: &str = "traceparent";

/// Trace context headers, as carried by messages.
pub type Headers = HashMap<String, String>;

/// The trace context of `span` as headers; empty when it is not traced.
pub fn headers(span: &Span) -> Headers {
    let cx = span.context();
    let mut out = Headers::new();
    if cx.span().span_context().is_valid() {
        opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut out));
    }
    out
}

/// The `traceparent` of the current span, the form a task keeps its trace
/// context in.
pub fn current_traceparent() -> Option<String> {
    headers(&Span::current()).remove(TRACEPARENT)
}

/// Makes `span` a child of the context `carrier` holds. Call it before the
/// span is first entered; a carrier without a valid context changes nothing.
pub fn set_parent(span: &Span, carrier: &dyn Extractor) {
    // Against an empty context: a carrier without one must not make the
    // span a child of whatever the current thread is in.
    let cx = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract_with_context(&opentelemetry::Context::new(), carrier)
    });
    if cx.span().span_context().is_valid() {
        // Fails only when spans are not exported or the span already
        // started: it then stays where it is.
        let _ = span.set_parent(cx);
    }
}

/// Makes `span` a child of a stored `traceparent`.
pub fn set_parent_traceparent(span: &Span, traceparent: Option<&str>) {
    if let Some(value) = traceparent {
        let carrier = Headers::from([(TRACEPARENT.to_owned(), value.to_owned())]);
        set_parent(span, &carrier);
    }
}

/// Adds the current span's trace context to a gRPC call's metadata.
pub fn inject_metadata(metadata: &mut MetadataMap) {
    for (name, value) in headers(&Span::current()) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(name.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            metadata.insert(key, value);
        }
    }
}

/// Reads trace context from HTTP headers (a gRPC call's metadata).
pub struct HttpHeaders<'a>(pub &'a tonic::codegen::http::HeaderMap);

impl Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn a_context_travels_through_headers_and_metadata() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry().with(
            tracing_opentelemetry::layer()
                .with_tracer(opentelemetry::trace::TracerProvider::tracer(&provider, "t")),
        );
        tracing::subscriber::with_default(subscriber, || {
            let root = tracing::info_span!("webhook");
            let trace_id = root.context().span().span_context().trace_id();
            let _entered = root.enter();

            let mut metadata = MetadataMap::new();
            inject_metadata(&mut metadata);
            let traceparent = metadata
                .get(TRACEPARENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            assert!(
                traceparent
                    .as_deref()
                    .is_some_and(|t| t.contains(&trace_id.to_string())),
                "{traceparent:?}"
            );
            assert_eq!(current_traceparent(), traceparent);

            let child = tracing::info_span!(parent: None, "consume");
            set_parent_traceparent(&child, traceparent.as_deref());
            assert_eq!(child.context().span().span_context().trace_id(), trace_id);
            let stranger = tracing::info_span!(parent: None, "consume");
            set_parent_traceparent(&stranger, Some("not a traceparent"));
            assert_ne!(
                stranger.context().span().span_context().trace_id(),
                trace_id
            );
        });
    }

    #[test]
    fn without_export_nothing_is_carried() {
        let span = tracing::info_span!("webhook");
        assert!(headers(&span).is_empty());
        assert_eq!(current_traceparent(), None);
    }
}
