//! The LearningWorker operator as a library: pure builders (`desired`), pure status
//! computation (`status`) from what was observed (`observed`), pruning decisions (`prune`),
//! the runners' autoscaling engines (`autoscale`), the RBAC it needs (`rbac`), the I/O
//! layers (`observe`, `apply`), the controller, leader election
//! and the operator's own HTTP endpoints. The binary (`main.rs`) only parses and dispatches.

pub mod apply;
pub mod autoscale;
pub mod caches;
pub mod cli;
pub mod controller;
pub mod desired;
pub mod error;
pub mod http;
pub mod idle_gpu;
pub mod leader;
pub mod metrics;
pub mod observe;
pub mod observed;
pub mod pod_issues;
pub mod probes;
pub mod prune;
pub mod quantity;
pub mod rbac;
pub mod render;
pub mod run;
pub mod runner_image;
pub mod status;
pub mod watches;
pub mod written;
