//! The orchestrator's gRPC services. Generated proto types stop here: each
//! handler converts its request into domain or row types (`convert`), calls
//! [`App`](crate::app::App), and converts the answer back.

mod convert;
mod notifier;
mod public;
mod runner;

pub use convert::alert_event;
pub use notifier::NotifierService;
pub use public::PublicApi;
pub use runner::RunnerService;

/// Checks the bearer token of every call.
pub use proto::auth::RequireBearer as Auth;
