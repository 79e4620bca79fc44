//! Read-only questions: queue depth, unfinished jobs, the health probe, whether GUSTAV's schema
//! and grants are in place, and whether the login role bypasses row-level security.

use sqlx::{PgPool, Row};

use super::{within, ProbeCheck, QueueDepth};

/// Counts of the queue by state, and the age of the oldest visible job.
pub async fn queue_depth(pool: &PgPool) -> Result<QueueDepth, sqlx::Error> {
    within(async move {
        let r = sqlx::query(
            r#"
            select count(*) filter (where status = 'queued' and visible_at <= now()) as visible,
                   count(*) filter (where status = 'queued' and visible_at > now())  as delayed,
                   count(*) filter (where status = 'leased')                         as leased,
                   count(*) filter (where status = 'failed')                         as failed,
                   coalesce(extract(epoch from now() - min(visible_at) filter (where status = 'queued' and visible_at <= now())), 0)::float8 as oldest
              from public.learning_submission_jobs
            "#,
        )
        .fetch_one(pool)
        .await?;
        Ok(QueueDepth {
            visible: r.try_get("visible")?,
            delayed: r.try_get("delayed")?,
            leased: r.try_get("leased")?,
            failed: r.try_get("failed")?,
            oldest_visible_age_seconds: r.try_get("oldest")?,
        })
    })
    .await
}

/// Jobs that are still to be processed (queued at any time, or leased).
pub async fn unfinished_jobs(pool: &PgPool) -> Result<i64, sqlx::Error> {
    within(async move {
        sqlx::query_scalar(
            "select count(*) from public.learning_submission_jobs where status in ('queued', 'leased')",
        )
        .fetch_one(pool)
        .await
    })
    .await
}

/// The role the pool logs in as, and the rows of `learning_worker_health_probe()`.
pub async fn health_probe(pool: &PgPool) -> Result<(String, Vec<ProbeCheck>), sqlx::Error> {
    within(async move {
        let role = current_role(pool).await?;
        let rows = sqlx::query(
            "select check_name, status, detail from public.learning_worker_health_probe()",
        )
        .fetch_all(pool)
        .await?;
        let checks = rows
            .into_iter()
            .map(|r| {
                Ok(ProbeCheck {
                    check: r
                        .try_get::<Option<String>, _>("check_name")?
                        .unwrap_or_default(),
                    status: r
                        .try_get::<Option<String>, _>("status")?
                        .unwrap_or_default(),
                    detail: r
                        .try_get::<Option<String>, _>("detail")?
                        .unwrap_or_default(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok((role, checks))
    })
    .await
}

/// Whether the queue table and the three update functions exist and the login role may use
/// them (readiness): SELECT on submissions, SELECT/UPDATE/DELETE on jobs, EXECUTE on the
/// functions. A missing grant would otherwise fail every finish while the runner looked ready.
pub async fn schema_present(pool: &PgPool) -> Result<bool, sqlx::Error> {
    within(async move {
        sqlx::query_scalar(
            r#"
            select case
                when to_regclass('public.learning_submission_jobs') is null
                  or to_regclass('public.learning_submissions') is null
                  or to_regprocedure('public.learning_worker_update_completed(uuid,text,text,jsonb)') is null
                  or to_regprocedure('public.learning_worker_update_failed(uuid,text,text)') is null
                  or to_regprocedure('public.learning_worker_mark_retry(uuid,text,text,timestamptz)') is null
                then false
                else has_table_privilege('public.learning_submissions', 'select')
                 and has_table_privilege('public.learning_submission_jobs', 'select')
                 and has_table_privilege('public.learning_submission_jobs', 'update')
                 and has_table_privilege('public.learning_submission_jobs', 'delete')
                 and has_function_privilege('public.learning_worker_update_completed(uuid,text,text,jsonb)', 'execute')
                 and has_function_privilege('public.learning_worker_update_failed(uuid,text,text)', 'execute')
                 and has_function_privilege('public.learning_worker_mark_retry(uuid,text,text,timestamptz)', 'execute')
                end
            "#,
        )
        .fetch_one(pool)
        .await
    })
    .await
}

/// Like [`role_bypasses_rls`], on one connection.
pub async fn role_bypasses_rls_on(conn: &mut sqlx::PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select rolsuper or rolbypassrls from pg_roles where rolname = current_user")
        .fetch_one(conn)
        .await
}

/// Whether the login role bypasses row-level security (superuser or BYPASSRLS).
pub async fn role_bypasses_rls(pool: &PgPool) -> Result<bool, sqlx::Error> {
    within(async move {
        let mut conn = pool.acquire().await?;
        role_bypasses_rls_on(&mut conn).await
    })
    .await
}

/// The role the pool logs in as.
pub async fn current_role(pool: &PgPool) -> Result<String, sqlx::Error> {
    within(async move {
        sqlx::query_scalar("select current_user::text")
            .fetch_one(pool)
            .await
    })
    .await
}

/// The time limits of every runner session, so that no statement of the runner can wait
/// without bound — not on a lock held by the web app, not on a transaction left open:
/// - `statement_timeout` 30 s: the longest statement (the lease) takes milliseconds;
/// - `lock_timeout` 10 s: a finish waiting on a submission row the web app holds fails and
///   is retried, instead of holding its job row (and its runner's slot) indefinitely;
/// - `idle_in_transaction_session_timeout` 60 s: a transaction the runner lost track of is
///   ended by the server, releasing its locks;
/// - TCP keepalives on the server's side of the connection (first probe after 30 s idle,
///   then every 10 s, 3 lost probes end it): the server notices a runner that vanished
///   (node lost, network cut) within about a minute and frees what its session held. The
///   runner's side of a half-open connection is caught by the per-call deadline
///   (`CALL_DEADLINE`): the client library does not expose the socket's keepalive options.
///   (Over a Unix socket PostgreSQL ignores these three settings.)
pub const SESSION_LIMITS: &str = "set statement_timeout = '30s'; \
     set lock_timeout = '10s'; \
     set idle_in_transaction_session_timeout = '60s'; \
     set tcp_keepalives_idle = 30; \
     set tcp_keepalives_interval = 10; \
     set tcp_keepalives_count = 3";

/// Applies [`SESSION_LIMITS`] to a new connection.
pub async fn apply_session_limits(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    use sqlx::Executor as _;
    conn.execute(SESSION_LIMITS).await.map(drop)
}
