//! Cross-runner agreement on the GPU's phase, through PostgreSQL advisory locks (no table, so
//! GUSTAV's schema stays as it is). While a runner has steps of a model in flight it holds a
//! shared lock on that model's key, one per step; before it begins another model's phase it
//! asks whether any runner still holds the current one's. Runners sharing a database share
//! the answer, so a runner whose own steps have drained does not swap the model out from under
//! another runner's running phase.
//!
//! Every statement runs on one dedicated connection (session-level locks belong to it) under
//! a short deadline. A database that does not answer makes the answer "unknown": the
//! admission then decides as if alone, and a lost connection frees its locks by itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::job::admission::PhaseLocks;
use learning_contract::model::with_tag;

/// The first key of every lock (`'LR'`), so that they cannot collide with other users of
/// advisory locks in the same database, which use other classes or one-key locks.
const LOCK_CLASS: i32 = 0x4c52;
/// The longest one statement may take.
const DEADLINE: Duration = Duration::from_millis(1_500);
/// After a failed statement, no new question for this long (the answer is "unknown").
const QUIET_AFTER_ERROR: Duration = Duration::from_secs(10);
/// How long an answer of [`PhaseLocks::held_elsewhere`] is reused (every waiting step asks).
const FRESH_FOR: Duration = Duration::from_millis(250);

/// (`pg_advisory_lock_shared` returns `void`, which has no Rust type: select `true` after it.)
const HOLD: &str = "select true from (select pg_advisory_lock_shared($1, hashtext($2))) taken";
const RELEASE: &str = "select pg_advisory_unlock_shared($1, hashtext($2))";
/// True when no session holds the model's lock: taken exclusively for an instant and let go.
const FREE: &str = "select case when pg_try_advisory_lock($1, hashtext($2)) \
                    then pg_advisory_unlock($1, hashtext($2)) else false end";

/// The advisory locks of one runner, on one connection of its own.
pub struct PgPhaseLocks {
    options: PgConnectOptions,
    /// Replaced (and the old one's session, with its locks, ended) after any failure.
    pool: Mutex<PgPool>,
    started: Instant,
    /// Milliseconds since `started` until which no question is asked; 0: none.
    quiet_until: AtomicU64,
    /// Holds taken on this session, per model (a release gives back only what was taken).
    holds: Mutex<HashMap<String, u32>>,
    /// The last answers of `held_elsewhere`, per model.
    answers: Mutex<HashMap<String, (Instant, bool)>>,
}

impl PgPhaseLocks {
    /// Locks on a one-connection pool with the options of `pool` that never closes its
    /// connection for idleness (that would drop the locks).
    pub fn new(pool: &PgPool) -> Self {
        let options = pool.connect_options().as_ref().clone();
        PgPhaseLocks {
            pool: Mutex::new(session(&options)),
            options,
            started: Instant::now(),
            quiet_until: AtomicU64::new(0),
            holds: Mutex::default(),
            answers: Mutex::default(),
        }
    }

    fn pool(&self) -> PgPool {
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Ends the session (its locks go with it) and starts afresh with nothing held.
    fn reset(&self) {
        let old = std::mem::replace(
            &mut *self.pool.lock().unwrap_or_else(|e| e.into_inner()),
            session(&self.options),
        );
        self.holds.lock().unwrap_or_else(|e| e.into_inner()).clear();
        tokio::spawn(async move { old.close().await });
    }

    fn quiet(&self) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        now < self.quiet_until.load(Ordering::Relaxed)
    }

    /// Runs `sql` for `model` within the deadline; `None` (and a quiet period) on any failure.
    async fn ask(&self, sql: &'static str, model: &str) -> Option<bool> {
        let pool = self.pool();
        let query = sqlx::query_scalar::<_, Option<bool>>(sql)
            .bind(LOCK_CLASS)
            .bind(with_tag(model))
            .fetch_one(&pool);
        match tokio::time::timeout(DEADLINE, query).await {
            Ok(Ok(answer)) => Some(answer.unwrap_or(true)),
            _ => {
                self.reset();
                let until = self.started.elapsed() + QUIET_AFTER_ERROR;
                self.quiet_until
                    .store(until.as_millis() as u64, Ordering::Relaxed);
                tracing::debug!(event = "learning.admission.phase_lock_unavailable");
                None
            }
        }
    }
}

/// A lazy one-connection pool that never closes its connection for idleness (that would drop
/// the locks), with the runner's session limits.
fn session(options: &PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(DEADLINE)
        .idle_timeout(None)
        .after_connect(|conn, _meta| Box::pin(super::queue::apply_session_limits(conn)))
        .connect_lazy_with(options.clone())
}

#[async_trait]
impl PhaseLocks for PgPhaseLocks {
    async fn hold(&self, model: &str) {
        if !self.quiet() && self.ask(HOLD, model).await.is_some() {
            let mut holds = self.holds.lock().unwrap_or_else(|e| e.into_inner());
            *holds.entry(with_tag(model)).or_default() += 1;
        }
    }

    async fn release(&self, model: &str) {
        let taken = {
            let mut holds = self.holds.lock().unwrap_or_else(|e| e.into_inner());
            match holds.get_mut(&with_tag(model)) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            }
        };
        if taken {
            self.ask(RELEASE, model).await;
        }
    }

    async fn held_elsewhere(&self, model: &str) -> Option<bool> {
        if self.quiet() {
            return None;
        }
        let key = with_tag(model);
        if let Some((at, held)) = self
            .answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            if at.elapsed() < FRESH_FOR {
                return Some(*held);
            }
        }
        let held = !self.ask(FREE, model).await?;
        self.answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (Instant::now(), held));
        Some(held)
    }
}
