-- GUSTAV learning worker: the worker-facing part of the GUSTAV schema.
--
-- A standalone, faithful copy of what the GUSTAV web app's own migrations create
-- (see docs/gustav-contract.md §1-§3): the submissions table, the job queue, the
-- roles, the RLS policies and the SECURITY DEFINER helper functions the worker
-- calls. The runner must work unchanged against both this schema and a database
-- migrated by GUSTAV itself, so nothing here may be "better" than the original.
--
-- Deliberate omissions (not worker-facing): the `courses` / `unit_tasks` tables and
-- therefore the foreign keys of `course_id` / `task_id`.
--
-- Applied by sqlx's migrator, which wraps this file in one transaction: no
-- BEGIN/COMMIT here, and no session-level SET (it would outlive the migration on
-- the migrator's connection): every name is schema-qualified instead.
-- gen_random_uuid() is built in since PostgreSQL 13.

-- ---------------------------------------------------------------------------
-- Roles
--
-- Roles are cluster-global while this migration runs once per database, possibly
-- in many databases of one cluster at the same time (one database per test). So
-- every role is created only when missing, and a concurrent creation by another
-- database's migration (duplicate_object, or unique_violation on pg_authid when
-- both transactions raced past the existence check) is tolerated.
-- All roles are NOLOGIN here; production gives gustav_worker LOGIN and a password
-- out of band (never in a migration).
-- ---------------------------------------------------------------------------
do $$
declare
    r text;
begin
    foreach r in array array['gustav_limited', 'gustav_worker', 'gustav_web', 'gustav_operator']
    loop
        if not exists (select from pg_catalog.pg_roles where rolname = r) then
            begin
                execute format('create role %I nologin', r);
            exception
                when duplicate_object or unique_violation then
                    null; -- created concurrently by a migration in another database
            end;
        end if;
    end loop;
end;
$$;

-- gustav_worker is a member of gustav_limited (repeat-safe, race-tolerant).
do $$
begin
    if not exists (
        select
          from pg_catalog.pg_auth_members m
          join pg_catalog.pg_roles grp on grp.oid = m.roleid
          join pg_catalog.pg_roles mem on mem.oid = m.member
         where grp.rolname = 'gustav_limited'
           and mem.rolname = 'gustav_worker'
    ) then
        begin
            grant gustav_limited to gustav_worker;
        exception
            when duplicate_object or unique_violation then
                null; -- granted concurrently by a migration in another database
        end;
    end if;
end;
$$;

grant usage on schema public to gustav_limited, gustav_worker, gustav_web, gustav_operator;

-- ---------------------------------------------------------------------------
-- Submissions (written by the web app; the worker changes them only through the
-- SECURITY DEFINER functions below)
-- ---------------------------------------------------------------------------
create table public.learning_submissions (
    id                       uuid primary key default gen_random_uuid(),
    course_id                uuid not null,
    task_id                  uuid not null,
    student_sub              text not null,
    kind                     text not null
        constraint learning_submissions_kind_check
        check (kind in ('text', 'image', 'file')),
    text_body                text,
    storage_key              text,
    mime_type                text
        constraint learning_submissions_mime_type_check
        check (mime_type is null or mime_type in ('image/jpeg', 'image/png', 'application/pdf')),
    size_bytes               integer
        constraint learning_submissions_size_bytes_check
        check (size_bytes is null or (size_bytes >= 1 and size_bytes <= 10485760)),
    sha256                   text
        constraint learning_submissions_sha256_check
        check (sha256 is null or sha256 ~ '^[0-9a-f]{64}$'),
    attempt_nr               integer not null,
    analysis_status          text not null default 'pending'
        constraint learning_submissions_analysis_status_check
        check (analysis_status in ('pending', 'extracted', 'completed', 'failed')),
    analysis_json            jsonb,
    feedback_md              text,
    error_code               text
        constraint learning_submissions_error_code_check
        check (error_code is null or error_code in (
            'vision_retrying', 'vision_failed',
            'feedback_retrying', 'feedback_failed',
            'input_corrupt', 'input_unsupported', 'input_too_large')),
    idempotency_key          text
        constraint learning_submissions_idempotency_key_check
        check (idempotency_key is null or char_length(idempotency_key) <= 64),
    created_at               timestamptz default now(),
    completed_at             timestamptz,
    vision_attempts          integer not null default 0,
    vision_last_error        text,
    vision_last_attempt_at   timestamptz,
    feedback_last_error      text,
    feedback_last_attempt_at timestamptz,
    internal_metadata        jsonb not null default '{}'::jsonb
);

-- Row-level security: a student (via gustav_limited and the transaction-local GUC
-- app.current_sub) sees and inserts only their own rows. No UPDATE/DELETE policy:
-- all changes go through the SECURITY DEFINER functions.
alter table public.learning_submissions enable row level security;

create policy learning_submissions_select_own
    on public.learning_submissions
    for select
    to gustav_limited
    using (student_sub = current_setting('app.current_sub', true));

create policy learning_submissions_insert_own
    on public.learning_submissions
    for insert
    to gustav_limited
    with check (student_sub = current_setting('app.current_sub', true));

-- ---------------------------------------------------------------------------
-- The job queue (no RLS)
-- ---------------------------------------------------------------------------
create table public.learning_submission_jobs (
    id            uuid primary key default gen_random_uuid(),
    submission_id uuid not null
        references public.learning_submissions (id) on delete cascade,
    payload       jsonb not null,
    status        text not null default 'queued'
        constraint learning_submission_jobs_status_check
        check (status in ('queued', 'leased', 'failed')),
    retry_count   integer not null default 0,
    visible_at    timestamptz not null default now(),
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    lease_key     uuid,
    leased_until  timestamptz,
    error_code    text
);

create index learning_submission_jobs_status_visible_idx
    on public.learning_submission_jobs (status, visible_at);

-- ---------------------------------------------------------------------------
-- Table privileges
-- ---------------------------------------------------------------------------
grant select, insert on public.learning_submissions to gustav_limited;
grant select, insert, update, delete on public.learning_submission_jobs to gustav_limited;

grant select on public.learning_submissions to gustav_worker;
grant select, update, delete on public.learning_submission_jobs to gustav_worker;

-- ---------------------------------------------------------------------------
-- Worker helpers (SECURITY DEFINER, search_path pinned)
--
-- They only touch a submission in 'pending' or 'extracted'; for any other status
-- (or a missing row) they silently do nothing, so a repeated call is a no-op.
-- ---------------------------------------------------------------------------

-- Success: store the results and clear the retry bookkeeping.
create function public.learning_worker_update_completed(
    p_submission_id uuid,
    p_text_body     text,
    p_feedback_md   text,
    p_analysis_json jsonb
) returns void
language plpgsql
security definer
set search_path = public, pg_temp
as $$
begin
    update public.learning_submissions as s
       set analysis_status          = 'completed',
           text_body                = p_text_body,
           feedback_md              = p_feedback_md,
           analysis_json            = p_analysis_json,
           error_code               = null,
           vision_last_error        = null,
           feedback_last_error      = null,
           completed_at             = now(),
           vision_last_attempt_at   = now(),
           feedback_last_attempt_at = now(),
           vision_attempts          = coalesce(s.vision_attempts, 0) + 1
     where s.id = p_submission_id
       and s.analysis_status in ('pending', 'extracted');
end;
$$;

comment on function public.learning_worker_update_completed(uuid, text, text, jsonb) is
    'Worker helper: pending/extracted submission -> completed; clears retry metadata. No-op otherwise.';

-- json overload (GUSTAV has both): callers must bind the last argument explicitly
-- as jsonb, an untyped parameter is ambiguous between the two.
create function public.learning_worker_update_completed(
    p_submission_id uuid,
    p_text_body     text,
    p_feedback_md   text,
    p_analysis_json json
) returns void
language plpgsql
security definer
set search_path = public, pg_temp
as $$
begin
    perform public.learning_worker_update_completed(
        p_submission_id, p_text_body, p_feedback_md, p_analysis_json::jsonb);
end;
$$;

comment on function public.learning_worker_update_completed(uuid, text, text, json) is
    'Worker helper: json overload of learning_worker_update_completed(uuid, text, text, jsonb).';

-- Permanent failure.
create function public.learning_worker_update_failed(
    p_submission_id uuid,
    p_error_code    text,
    p_last_error    text
) returns void
language plpgsql
security definer
set search_path = public, pg_temp
as $$
declare
    v_message text := left(coalesce(p_last_error, ''), 1024);
    v_vision  boolean;
begin
    if p_error_code is null or p_error_code not in (
        'vision_failed', 'feedback_failed',
        'input_corrupt', 'input_unsupported', 'input_too_large'
    ) then
        raise exception 'learning_worker_update_failed: invalid error code %', p_error_code
            using errcode = 'invalid_parameter_value';
    end if;

    -- vision_failed and input_* are recorded on the vision columns,
    -- feedback_failed on the feedback columns.
    v_vision := p_error_code <> 'feedback_failed';

    update public.learning_submissions as s
       set analysis_status          = 'failed',
           analysis_json            = null,
           error_code               = p_error_code,
           vision_attempts          = case when p_error_code = 'vision_failed'
                                           then coalesce(s.vision_attempts, 0) + 1
                                           else s.vision_attempts end,
           vision_last_error        = case when v_vision then v_message
                                           else s.vision_last_error end,
           vision_last_attempt_at   = case when v_vision then now()
                                           else s.vision_last_attempt_at end,
           feedback_last_error      = case when v_vision then s.feedback_last_error
                                           else v_message end,
           feedback_last_attempt_at = case when v_vision then s.feedback_last_attempt_at
                                           else now() end
     where s.id = p_submission_id
       and s.analysis_status in ('pending', 'extracted');
end;
$$;

comment on function public.learning_worker_update_failed(uuid, text, text) is
    'Worker helper: pending/extracted submission -> failed with a validated error code. No-op otherwise.';

-- Transient failure: record the attempt, keep the status.
create function public.learning_worker_mark_retry(
    p_submission_id uuid,
    p_phase         text,
    p_message       text,
    p_attempted_at  timestamptz
) returns void
language plpgsql
security definer
set search_path = public, pg_temp
as $$
declare
    v_message text := left(coalesce(p_message, ''), 1024);
begin
    if p_phase is null or p_phase not in ('vision', 'feedback') then
        raise exception 'learning_worker_mark_retry: invalid phase %', p_phase
            using errcode = 'invalid_parameter_value';
    end if;

    if p_phase = 'vision' then
        update public.learning_submissions as s
           set vision_attempts        = coalesce(s.vision_attempts, 0) + 1,
               vision_last_attempt_at = p_attempted_at,
               vision_last_error      = v_message,
               error_code             = 'vision_retrying'
         where s.id = p_submission_id
           and s.analysis_status in ('pending', 'extracted');
    else
        update public.learning_submissions as s
           set feedback_last_attempt_at = p_attempted_at,
               feedback_last_error      = v_message,
               error_code               = 'feedback_retrying'
         where s.id = p_submission_id
           and s.analysis_status in ('pending', 'extracted');
    end if;
end;
$$;

comment on function public.learning_worker_mark_retry(uuid, text, text, timestamptz) is
    'Worker helper: record a transient vision/feedback failure; status unchanged. No-op unless pending/extracted.';

-- Health probe for the web app's /internal/health/learning-worker and the worker's
-- own health check. The output columns are plpgsql variables; `status` is also a
-- column of learning_submission_jobs, hence use_column plus qualified names.
create function public.learning_worker_health_probe()
returns table (check_name text, status text, detail text)
language plpgsql
security definer
set search_path = public, pg_temp
as $$
#variable_conflict use_column
declare
    v_has_worker_role boolean;
    v_visible_jobs    bigint;
begin
    select exists (select from pg_catalog.pg_roles r where r.rolname = 'gustav_worker')
      into v_has_worker_role;

    select count(*)
      into v_visible_jobs
      from public.learning_submission_jobs as j
     where j.status = 'queued'
       and j.visible_at <= now();

    check_name := 'db_role';
    if v_has_worker_role then
        status := 'ok';
        detail := 'role gustav_worker present';
    else
        status := 'failed';
        detail := 'role gustav_worker is not available';
    end if;
    return next;

    check_name := 'queue_visibility';
    status := 'ok';
    detail := 'visible_jobs=' || v_visible_jobs;
    return next;
end;
$$;

comment on function public.learning_worker_health_probe() is
    'Diagnostics for the learning worker health endpoint: db_role and queue_visibility.';

-- ---------------------------------------------------------------------------
-- Function privileges
-- ---------------------------------------------------------------------------
revoke execute on function public.learning_worker_update_completed(uuid, text, text, jsonb) from public;
revoke execute on function public.learning_worker_update_completed(uuid, text, text, json) from public;
revoke execute on function public.learning_worker_update_failed(uuid, text, text) from public;
revoke execute on function public.learning_worker_mark_retry(uuid, text, text, timestamptz) from public;
revoke execute on function public.learning_worker_health_probe() from public;

grant execute on function public.learning_worker_update_completed(uuid, text, text, jsonb) to gustav_worker;
grant execute on function public.learning_worker_update_completed(uuid, text, text, json) to gustav_worker;
grant execute on function public.learning_worker_update_failed(uuid, text, text) to gustav_worker;
grant execute on function public.learning_worker_mark_retry(uuid, text, text, timestamptz) to gustav_worker;

grant execute on function public.learning_worker_health_probe() to gustav_web, gustav_operator, gustav_limited;
