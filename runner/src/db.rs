//! The connection pool. It connects lazily so that a runner started while the database is
//! down keeps running, reports itself unready, and recovers by itself.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::config::DatabaseConfig;

/// A pool that opens connections on demand.
pub fn lazy_pool(config: &DatabaseConfig) -> PgPool {
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(300))
        .connect_lazy_with(config.connect.clone())
}
