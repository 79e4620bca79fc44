//! `learning-runner`: a drop-in replacement for GUSTAV's Python learning worker.
//!
//! It leases submission jobs from GUSTAV's PostgreSQL queue, turns each submission into text
//! (vision), asks a model for feedback against the teacher's criteria, and persists the result
//! through GUSTAV's SQL functions. The interface is `docs/gustav-contract.md`.
//!
//! Module map: [`config`] (typed settings, validated once) · [`queue`] (every SQL statement) ·
//! [`worker`] (the lease loop, slots, drain) · [`process`] (one job, start to finish) ·
//! [`adapters`] (vision and feedback backends) · [`http`] (probes, health JSON, metrics).

pub mod adapters;
pub mod analysis;
pub mod app;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod db;
pub mod dsn;
pub mod error_code;
pub mod health;
pub mod http;
pub mod lease_registry;
pub mod message;
pub mod metrics;
pub mod ollama;
pub mod ollama_url;
pub mod outcome;
pub mod payload;
pub mod preflight;
pub mod process;
pub mod queue;
pub mod shutdown;
pub mod telemetry;
pub mod wakeup;
pub mod worker;
