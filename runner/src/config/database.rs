//! The database section: which DSN is used, the superuser guard and the pool size.

use sqlx::postgres::PgConnectOptions;

use super::{invalid, ConfigError};
use crate::cli::Settings;
use crate::db::dsn;

/// Database settings. `Debug` leaves the connection options (and so the password) out.
#[derive(Clone)]
pub struct DatabaseConfig {
    /// Parsed connection options (the password stays inside).
    pub connect: PgConnectOptions,
    /// Pool size.
    pub max_connections: u32,
    /// Whether a login role that bypasses RLS may connect (tests, and `migrate`).
    pub allow_privileged: bool,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("host", &self.connect.get_host())
            .field("user", &self.connect.get_username())
            .field("database", &self.connect.get_database())
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

/// The database settings; `guard_privileged` applies the superuser guard (off for `migrate`,
/// which needs an owner role).
pub fn database_config(
    settings: &Settings,
    guard_privileged: bool,
    default_pool: u32,
) -> Result<DatabaseConfig, ConfigError> {
    let dsn = dsn::pick_dsn([
        settings.database_url.as_ref(),
        settings.learning_db_url.as_ref(),
        settings.fallback_database_url.as_ref(),
    ])?;
    let connect = dsn::connect_options(&dsn)?;
    if guard_privileged {
        dsn::guard_login(&connect, settings.allow_superuser_dsn)?;
    }
    let max_connections = settings.db_max_connections.unwrap_or(default_pool);
    if max_connections == 0 {
        return Err(invalid("LEARNING_DB_MAX_CONNECTIONS", "must be at least 1"));
    }
    Ok(DatabaseConfig {
        connect: connect.application_name("learning-runner"),
        max_connections,
        allow_privileged: !guard_privileged || settings.allow_superuser_dsn,
    })
}
