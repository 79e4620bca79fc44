-- Runner addition (NOT part of GUSTAV's schema): wake idle runners on new work.
--
-- Whenever a job becomes (or stays) 'queued' -- inserted, nacked back to the queue,
-- or its visible_at moved -- notify channel `learning_jobs` with the job's
-- visible_at as Unix epoch seconds (with fraction, as text, e.g. '1764326400.123456').
-- A listening runner leases at once when that time has passed, or schedules a
-- wake-up for it. NOTIFY is delivered on commit; identical payloads within one
-- transaction are folded into one, which is fine for a wake-up signal.
--
-- GUSTAV's own schema lacks this trigger: there the runner gets no notifications
-- and falls back to polling (it must never rely on them for correctness).

create function public.learning_submission_jobs_notify()
returns trigger
language plpgsql
set search_path = public, pg_temp
as $$
begin
    perform pg_catalog.pg_notify(
        'learning_jobs',
        extract(epoch from new.visible_at)::text);
    return null; -- AFTER trigger: the return value is ignored
end;
$$;

comment on function public.learning_submission_jobs_notify() is
    'Runner addition: pg_notify(''learning_jobs'', <visible_at epoch seconds>) for queued jobs.';

create trigger learning_submission_jobs_notify
    after insert or update of status, visible_at
    on public.learning_submission_jobs
    for each row
    when (new.status = 'queued')
    execute function public.learning_submission_jobs_notify();
