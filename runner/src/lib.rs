//! `learning-runner`: a drop-in replacement for GUSTAV's Python learning worker.
//!
//! It leases submission jobs from GUSTAV's PostgreSQL queue, turns each submission into text
//! (vision), asks a model for feedback against the teacher's criteria, and persists the result
//! through GUSTAV's SQL functions. The interface is `docs/gustav-contract.md`.
//!
//! How the pieces fit: [`app`] starts everything from the [`config`] that [`cli`] parsed and
//! [`preflight`] can check. The [`worker`] loop leases jobs through [`db`] (every SQL statement
//! lives in [`db::queue`]), holds their leases, and hands each one to [`job`], which reads the
//! submission's file ([`submission`]), calls the AI backends ([`ai`]: Ollama or the stub) and
//! writes the outcome back through [`db`]. [`http`] serves probes, the health report and the
//! metrics that [`telemetry`] collects along with the logs.

pub mod ai;
pub mod app;
pub mod cli;
pub mod config;
pub mod db;
pub mod http;
pub mod job;
pub mod preflight;
pub mod submission;
pub mod telemetry;
pub mod worker;
