//! The runner metrics the operator scrapes from `/metrics` to size and report the queue.

/// Gauge of queue jobs by `state` (one of [`QUEUE_STATES`]).
pub const QUEUE_JOBS: &str = "learning_runner_queue_jobs";
/// Gauge: age of the oldest visible job, in seconds.
pub const OLDEST_JOB_AGE_SECONDS: &str = "learning_runner_oldest_job_age_seconds";
/// The label of [`QUEUE_JOBS`].
pub const QUEUE_STATE_LABEL: &str = "state";
/// Waiting and visible.
pub const STATE_VISIBLE: &str = "visible";
/// Waiting for the retry time.
pub const STATE_DELAYED: &str = "delayed";
/// Leased by a runner.
pub const STATE_LEASED: &str = "leased";
/// Failed for good.
pub const STATE_FAILED: &str = "failed";
/// Every value of [`QUEUE_STATE_LABEL`].
pub const QUEUE_STATES: [&str; 4] = [STATE_VISIBLE, STATE_DELAYED, STATE_LEASED, STATE_FAILED];
