//! The orchestrator's gRPC services. Generated proto types stop here: each
//! handler converts its request into domain or row types (`convert`), calls
//! [`App`](crate::app::App), and converts the answer back.

mod convert;
mod insights;
mod notifier;
mod public;
mod runner;

pub use convert::alert_event;
pub use notifier::NotifierService;
pub use public::PublicApi;
pub use runner::RunnerService;

/// Checks the bearer token of every call.
pub use proto::auth::RequireBearer as Auth;

/// The span of one call, named after its method (`slipway.v1.RunnerApi/
/// Heartbeat`): a child of the caller's trace context when the call's
/// metadata carries one (`traceparent`), so the work a task's callers ask
/// for joins the task's trace.
pub fn call_span(request: &tonic::codegen::http::Request<()>) -> tracing::Span {
    let path = request.uri().path();
    // Only our own methods name a span: any other path is one name.
    let method = match path.strip_prefix('/') {
        Some(m) if m.starts_with("slipway.v1.") && m.len() <= 80 => m,
        _ => "unknown",
    };
    let span = tracing::info_span!("grpc", otel.name = method, otel.kind = "server");
    telemetry::propagation::set_parent(
        &span,
        &telemetry::propagation::HttpHeaders(request.headers()),
    );
    span
}
