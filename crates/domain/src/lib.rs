//! Slipway's domain model: what a workflow says, which pushes trigger it, how
//! tasks and steps move between states, and how secrets are kept out of logs.
//! Pure code: no I/O, no wire or database types.

pub mod alert;
pub mod forge;
pub mod image;
pub mod labels;
pub mod logs;
pub mod mask;
pub mod plan;
pub mod pull;
pub mod push;
pub mod state;
pub mod workflow;
