//! The REST API's JSON shapes (api.md): they live in `proto::json`, shared
//! with the CLI, so `--output json` and the API answer alike.

pub use proto::json::*;
