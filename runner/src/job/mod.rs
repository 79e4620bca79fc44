//! One job, start to finish: the payload read from the queue row, the vision and feedback
//! steps ([`process`]), the analysis GUSTAV stores, the outcome (completed, retry, failed) and
//! the error codes and messages a teacher or administrator sees.

pub mod admission;
pub mod analysis;
pub mod error_code;
pub mod message;
pub mod outcome;
pub mod payload;
pub mod process;
