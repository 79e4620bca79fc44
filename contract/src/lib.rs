//! The contract between the runner and the operator, defined once.
//!
//! Both sides of every item live here, so that a LearningWorker the operator accepts never
//! produces a runner that refuses to start, and what the operator reads is what the runner
//! writes:
//!
//! - [`health`]: the health report's path, JSON shape and check names;
//! - [`metrics`]: the runner metrics the operator scrapes;
//! - [`env`](mod@env): the environment variables the runner reads (and which the operator sets itself);
//! - [`url`]: the rules for `OLLAMA_BASE_URL` and `SUPABASE_URL`;
//! - [`model`]: when two Ollama model names mean the same model;
//! - [`gpu`]: a loaded model's share of GPU memory.
//!
//! The crate depends on `serde` only (and `schemars` with the feature of that name).

pub mod env;
pub mod gpu;
pub mod health;
pub mod metrics;
pub mod model;
pub mod url;
