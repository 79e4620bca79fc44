//! The connection pools. They connect lazily so that a runner started while the database is
//! down keeps running, reports itself unready, and recovers by itself. Every new connection
//! is checked: a login role that bypasses row-level security is refused (unless allowed), so
//! the guard holds even when the database was unreachable at start.

pub mod abandoned;
pub mod dsn;
pub mod phase_locks;
pub mod queue;

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::config::DatabaseConfig;

/// The message of a connection refused because its role bypasses RLS.
pub const PRIVILEGED_ROLE_REFUSED: &str =
    "the database role bypasses row-level security (superuser or BYPASSRLS); use the gustav_worker login role";

/// A pool that opens up to `max_connections` on demand. Every connection gets the session
/// limits of [`queue::SESSION_LIMITS`] and, unless allowed, the row-level-security guard.
pub fn lazy_pool_sized(config: &DatabaseConfig, max_connections: u32) -> PgPool {
    let allow_privileged = config.allow_privileged;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(300))
        .after_release(|conn, _meta| Box::pin(abandoned::check_on_release(conn)))
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                queue::apply_session_limits(conn).await?;
                if !allow_privileged {
                    let bypasses = queue::role_bypasses_rls_on(conn).await?;
                    if bypasses {
                        return Err(sqlx::Error::Configuration(PRIVILEGED_ROLE_REFUSED.into()));
                    }
                }
                Ok(())
            })
        })
        .connect_lazy_with(config.connect.clone())
}

/// A one-connection pool with the options of `pool`, for work that must never queue behind
/// the job connections: the lease heartbeat. Its connection carries the same timeouts.
pub fn dedicated_pool(pool: &PgPool) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(300))
        .after_release(|conn, _meta| Box::pin(abandoned::check_on_release(conn)))
        .after_connect(|conn, _meta| Box::pin(queue::apply_session_limits(conn)))
        .connect_lazy_with(pool.connect_options().as_ref().clone())
}

/// Whether `error` says the database could not be reached or did not answer in time — a
/// dropped or half-open connection, a restart, a pool without a free connection, a lock or
/// statement timeout, a serialization failure or deadlock — as opposed to the database
/// answering and refusing the statement (a permission, a constraint, a trigger). The first
/// kind passes by itself; a job it interrupts goes back to the queue without counting a
/// retry. The second kind may not pass: it counts.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|code| {
            code.starts_with("08")
                || matches!(
                    code.as_ref(),
                    "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01" | "55P03" | "57014"
                )
        }),
        _ => false,
    }
}

/// A pool of the configured size.
pub fn lazy_pool(config: &DatabaseConfig) -> PgPool {
    lazy_pool_sized(config, config.max_connections)
}
