//! Test support shared by the operator's integration tests: the fake API server, a scripted
//! prober for the runner and Ollama endpoints, the RBAC audit of recorded requests, and a
//! deadline-bound poll. Each test crate uses a part of it.
#![allow(dead_code)]

pub mod fake_apiserver;
pub mod operator;
pub mod prober;
pub mod rbac_audit;
pub mod wait;
