//! The database DSN: where it comes from (contract §3: `LEARNING_DATABASE_URL`, then
//! `LEARNING_DB_URL`, then `DATABASE_URL`), the superuser guard, and a redacting wrapper so the
//! password never reaches a log line or a `Debug` print.

use std::fmt;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

/// Login names that bypass row-level security and must not run the worker.
pub const PRIVILEGED_USERS: [&str; 3] = ["postgres", "service_role", "supabase_admin"];

/// A string that must not be printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret::new(s))
    }
}

/// Why a DSN was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    /// None of the three variables is set.
    #[error("no database DSN: set LEARNING_DATABASE_URL (or LEARNING_DB_URL, DATABASE_URL) or pass --database-url")]
    Missing,
    /// The DSN is not a PostgreSQL URL.
    #[error("the database DSN is not a valid postgres:// URL: {0}")]
    Invalid(String),
    /// The DSN logs in as a role that bypasses row-level security.
    #[error(
        "the database DSN logs in as '{0}', a privileged role that bypasses row-level security; \
         use the gustav_worker login role (set LEARNING_ALLOW_SUPERUSER_DSN=true only in tests)"
    )]
    Privileged(String),
}

/// The DSN in the contract's order of precedence: the first non-empty of the three.
pub fn pick_dsn(candidates: [Option<&Secret>; 3]) -> Result<Secret, DsnError> {
    candidates
        .into_iter()
        .flatten()
        .find(|s| !s.expose().trim().is_empty())
        .cloned()
        .ok_or(DsnError::Missing)
}

/// Parses the DSN; error messages never contain the DSN itself.
pub fn connect_options(dsn: &Secret) -> Result<PgConnectOptions, DsnError> {
    let raw = dsn.expose().trim();
    if !(raw.starts_with("postgres://") || raw.starts_with("postgresql://")) {
        return Err(DsnError::Invalid(
            "it must start with postgres:// or postgresql://".to_owned(),
        ));
    }
    PgConnectOptions::from_str(raw).map_err(|e| {
        // sqlx's messages describe the syntax problem; strip anything that echoes the input.
        let text = e.to_string();
        let safe = if text.contains(dsn.expose()) {
            "unparseable URL".to_owned()
        } else {
            text
        };
        DsnError::Invalid(safe)
    })
}

/// Refuses the privileged login names unless `allow_privileged` is set.
pub fn guard_login(options: &PgConnectOptions, allow_privileged: bool) -> Result<(), DsnError> {
    let user = options.get_username();
    if !allow_privileged && PRIVILEGED_USERS.contains(&user) {
        return Err(DsnError::Privileged(user.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::new(s)
    }

    #[test]
    fn precedence_follows_the_contract() {
        let a = secret("postgres://a@h/db");
        let b = secret("postgres://b@h/db");
        let c = secret("postgres://c@h/db");
        assert_eq!(pick_dsn([Some(&a), Some(&b), Some(&c)]).unwrap(), a);
        assert_eq!(pick_dsn([None, Some(&b), Some(&c)]).unwrap(), b);
        assert_eq!(pick_dsn([Some(&secret(" ")), None, Some(&c)]).unwrap(), c);
        assert_eq!(pick_dsn([None, None, None]), Err(DsnError::Missing));
    }

    #[test]
    fn superuser_names_are_refused_without_the_override() {
        for user in PRIVILEGED_USERS {
            let opts =
                connect_options(&secret(&format!("postgres://{user}:pw@localhost/db"))).unwrap();
            assert_eq!(
                guard_login(&opts, false),
                Err(DsnError::Privileged(user.into()))
            );
            assert!(guard_login(&opts, true).is_ok());
        }
        let worker = connect_options(&secret("postgres://gustav_worker:pw@localhost/db")).unwrap();
        assert!(guard_login(&worker, false).is_ok());
    }

    #[test]
    fn secrets_do_not_print() {
        let s = secret("postgres://u:hunter2@h/db");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
    }

    #[test]
    fn invalid_dsn_errors_do_not_echo_the_password() {
        let err = connect_options(&secret("mysql://u:hunter2@h/db")).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
