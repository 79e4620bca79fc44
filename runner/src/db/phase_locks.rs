//! Cross-runner agreement on the GPU's phase, through PostgreSQL advisory locks (no table, so
//! GUSTAV's schema stays as it is). While a runner has steps of a model in flight it holds a
//! shared lock on that model's key, one per step; before it begins another model's phase it
//! asks whether any runner still holds the current one's. Runners sharing a database share
//! the answer, so a runner whose own steps have drained does not swap the model out from under
//! another runner's running phase.
//!
//! One task owns one connection (session-level locks belong to it) and carries out the holds,
//! releases and questions in the order they were sent: a step aborted while its hold is on
//! the way still has it counted and released. Every statement has a short deadline; any
//! failure ends the session — and with it every lock it held, so the count starts from zero —
//! and for a while the answer is "unknown": the admission then decides as if alone.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};

use crate::job::admission::PhaseLocks;
use learning_contract::model::with_tag;

/// The first key of every lock (`'LR'`), so that they cannot collide with other users of
/// advisory locks in the same database, which use other classes or one-key locks.
const LOCK_CLASS: i32 = 0x4c52;
/// The longest one statement (or a connect) may take.
const DEADLINE: Duration = Duration::from_millis(1_500);
/// After a failure, no new connection and no question for this long.
const QUIET_AFTER_ERROR: Duration = Duration::from_secs(10);
/// How long an answer about another runner's phase is reused (every waiting step asks).
const FRESH_FOR: Duration = Duration::from_millis(250);

/// (`pg_advisory_lock_shared` returns `void`, which has no Rust type: select `true` after it.)
const HOLD: &str = "select true from (select pg_advisory_lock_shared($1, hashtext($2))) taken";
const RELEASE: &str = "select pg_advisory_unlock_shared($1, hashtext($2))";
/// True when no session holds the model's lock: taken exclusively for an instant and let go.
const FREE: &str = "select case when pg_try_advisory_lock($1, hashtext($2)) \
                    then pg_advisory_unlock($1, hashtext($2)) else false end";

/// What the session task is asked to do, in order.
enum Order {
    Hold(String),
    Release(String),
    Free(String, oneshot::Sender<Option<bool>>),
}

/// The advisory locks of one runner; the handle of its session task.
pub struct PgPhaseLocks {
    orders: mpsc::UnboundedSender<Order>,
}

impl PgPhaseLocks {
    /// Starts the session task (within a Tokio runtime), which connects as `pool` does when
    /// first needed. It ends when the handle is dropped.
    pub fn new(pool: &PgPool) -> Self {
        let (orders, inbox) = mpsc::unbounded_channel();
        let session = Session {
            options: pool.connect_options().as_ref().clone(),
            conn: None,
            holds: HashMap::new(),
            answers: HashMap::new(),
            quiet_until: None,
        };
        tokio::spawn(session.run(inbox));
        PgPhaseLocks { orders }
    }
}

#[async_trait]
impl PhaseLocks for PgPhaseLocks {
    async fn hold(&self, model: &str) {
        let _ = self.orders.send(Order::Hold(with_tag(model)));
    }

    async fn release(&self, model: &str) {
        let _ = self.orders.send(Order::Release(with_tag(model)));
    }

    async fn held_elsewhere(&self, model: &str) -> Option<bool> {
        let (answer, answered) = oneshot::channel();
        self.orders
            .send(Order::Free(with_tag(model), answer))
            .ok()?;
        // The queue ahead is short (holds and releases of this runner): one deadline for all.
        let free = tokio::time::timeout(DEADLINE * 2, answered)
            .await
            .ok()?
            .ok()??;
        Some(!free)
    }
}

/// The session task's state.
struct Session {
    options: PgConnectOptions,
    conn: Option<PgConnection>,
    /// Holds taken on the current connection, per model.
    holds: HashMap<String, u32>,
    /// The last answers about other runners, per model.
    answers: HashMap<String, (Instant, bool)>,
    /// No connection attempt before this instant (after a failure).
    quiet_until: Option<Instant>,
}

impl Session {
    async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<Order>) {
        while let Some(order) = inbox.recv().await {
            match order {
                Order::Hold(model) => {
                    if self.ask(HOLD, &model).await.is_some() {
                        *self.holds.entry(model).or_default() += 1;
                    }
                }
                Order::Release(model) => {
                    if let Some(n) = self.holds.get_mut(&model).filter(|n| **n > 0) {
                        *n -= 1;
                        self.ask(RELEASE, &model).await;
                    }
                }
                Order::Free(model, reply) => {
                    let _ = reply.send(self.free(&model).await);
                }
            }
        }
    }

    /// Whether no session holds `model`'s lock (a fresh answer is reused).
    async fn free(&mut self, model: &str) -> Option<bool> {
        if let Some((at, free)) = self.answers.get(model) {
            if at.elapsed() < FRESH_FOR {
                return Some(*free);
            }
        }
        let free = self.ask(FREE, model).await?;
        self.answers
            .insert(model.to_owned(), (Instant::now(), free));
        Some(free)
    }

    /// Runs `sql` for `model` within the deadline; `None` after any failure, which ends the
    /// session (its locks go with it: nothing is held any more).
    async fn ask(&mut self, sql: &'static str, model: &str) -> Option<bool> {
        let conn = self.connection().await?;
        let query = sqlx::query_scalar::<_, Option<bool>>(sql)
            .bind(LOCK_CLASS)
            .bind(model)
            .fetch_one(conn);
        match tokio::time::timeout(DEADLINE, query).await {
            Ok(Ok(answer)) => Some(answer.unwrap_or(true)),
            _ => {
                self.fail();
                None
            }
        }
    }

    /// The connection, opened (with the runner's session limits) when there is none.
    async fn connection(&mut self) -> Option<&mut PgConnection> {
        if self.conn.is_none() {
            if self.quiet_until.is_some_and(|t| Instant::now() < t) {
                return None;
            }
            let opened = tokio::time::timeout(DEADLINE, async {
                let mut conn = self.options.connect().await?;
                super::queue::apply_session_limits(&mut conn).await?;
                Ok::<_, sqlx::Error>(conn)
            })
            .await;
            match opened {
                Ok(Ok(conn)) => self.conn = Some(conn),
                _ => {
                    self.fail();
                    return None;
                }
            }
        }
        self.conn.as_mut()
    }

    fn fail(&mut self) {
        // Dropping the connection ends the session on the server, and its locks with it.
        self.conn = None;
        self.holds.clear();
        self.answers.clear();
        self.quiet_until = Some(Instant::now() + QUIET_AFTER_ERROR);
        tracing::debug!(event = "learning.admission.phase_locks_unavailable");
    }
}
