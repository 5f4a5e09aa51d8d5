/*
 * pull_job.h — one account's round, step by step (pull.c), for the request
 * stream that drives many of them at once (pull_stream.c). Private to the
 * pull: no other module includes it.
 */
#ifndef M365SYNC_PULL_JOB_H
#define M365SYNC_PULL_JOB_H

#include "postgres.h"

#include "http.h"
#include "pull.h"

/*
 * Start a job: its calendars (or, first, the calendar list) and a token.
 * The caller commits (before any page). True if the token may have been
 * refreshed (a rotated refresh token to commit durably).
 */
extern bool m365_pull_job_start(M365PullJob *job);

/*
 * The answer to the job's request: a page applied with its cursor, or what
 * comes next decided (fresh token, full round, next calendar, failure).
 * When commit_each_page (the worker), in a transaction of its own that is
 * committed, and an ERROR fails this job only (reported and rolled back,
 * back in keep, the round's memory); otherwise in the caller's transaction.
 */
extern void m365_pull_job_answer(M365PullJob *job, M365HttpRequest *req, bool commit_each_page,
								 MemoryContext keep);

#endif							/* M365SYNC_PULL_JOB_H */
