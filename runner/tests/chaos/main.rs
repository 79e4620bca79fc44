//! The chaos suite (`make chaos`): faults a school's infrastructure really has, each against
//! real PostgreSQL and real `learning-runner` processes, each ending with the same invariant
//! check ([`invariant`]): every submission completed or failed exactly once, no job left
//! queued or leased, and every runner still alive serves `/readyz`.
//!
//! Built only with the `chaos` feature (`cargo test -p learning-runner --features chaos
//! --test chaos`), so `make test` stays fast; `.ci/run` runs `make chaos` after `make test`.
//! The operator's scenario (a leader whose Lease renewals stall) is the whole-loop test
//! `a_leader_whose_lease_requests_stall_steps_down_before_its_lease_expires`, which
//! `make chaos` runs as well.

#[path = "../common/mod.rs"]
mod common;

mod db_down;
mod db_restart;
mod hostile_files;
mod invariant;
mod poison;
mod proxy_faults;
mod row_lock;
mod runners;
