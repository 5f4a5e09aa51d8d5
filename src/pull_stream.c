/*
 * pull_stream.c — the request stream of many accounts' rounds (see pull.h):
 * which job sends next, waves of jobs started and finished together, the
 * unchanged calendars' deltaLinks saved a wave at a time.
 *
 * Knows a job only through pull_job.h (pull.c applies the answers) and the
 * caller's hooks; the transactions of starting and ending waves are here,
 * those of each page in pull.c.
 */
#include "postgres.h"

#include "utils/guc.h"
#include "utils/memutils.h"

#include "crypto.h"
#include "graph.h"
#include "http.h"
#include "pull.h"
#include "pull_job.h"
#include "series.h"
#include "store_calendars.h"
#include "xact_util.h"

/* The stream's state: which job sends next, and how answers are applied. */
typedef struct PullStream
{
	M365PullJob **jobs;
	int			n;
	int			n_started;		/* jobs[0 .. n_started) are started */
	int			cursor;			/* round robin over the started jobs */
	int			wave;			/* jobs started, and finished, at a time */
	M365PullJob **finished;		/* done, not yet handed to the finish hook */
	int			n_finished;
	const M365PullHooks *hooks;
	bool		commit_each_page;
	bool		in_answer;		/* an answer is being applied: no wave starts (its transaction is open) */
	MemoryContext keep;			/* the round's memory: links, tokens */
} PullStream;

/* The deltaLinks of answers that changed nothing (pull.c's handle_answer), saved now: one statement for the wave. */
static void
save_cursors(M365PullJob **jobs, int n)
{
	int			cap = 0,
				k = 0;
	int64	   *ids;
	M365PullCalendar **cals;

	for (int i = 0; i < n; i++)
		cap += list_length(jobs[i]->calendars);
	if (cap == 0)
		return;
	ids = palloc(sizeof(int64) * cap);
	cals = palloc(sizeof(M365PullCalendar *) * cap);
	for (int i = 0; i < n; i++)
	{
		ListCell   *lc;

		foreach(lc, jobs[i]->calendars)
		{
			M365PullCalendar *cal = lfirst(lc);

			if (!cal->cursor_unsaved)
				continue;
			cal->cursor_unsaved = false;
			ids[k] = jobs[i]->account_id;
			cals[k++] = cal;
		}
	}
	m365_store_calendars_save_cursors(ids, cals, k);
	pfree(ids);
	pfree(cals);
}

/* Hand the finished jobs to the caller (its rounds end), one transaction. */
static void
finish_wave(PullStream *ps)
{
	if (ps->n_finished == 0)
		return;
	save_cursors(ps->finished, ps->n_finished);
	if (ps->hooks && ps->hooks->finish)
		ps->hooks->finish(ps->finished, ps->n_finished, ps->hooks->arg);
	/* a batch holds thousands of jobs: each one's token goes as it ends, wiped */
	for (int i = 0; i < ps->n_finished; i++)
	{
		M365PullJob *job = ps->finished[i];

		if (job->token != NULL)
		{
			m365_secure_zero(job->token, strlen(job->token));
			pfree(job->token);
			job->token = NULL;
		}
	}
	ps->n_finished = 0;
	if (ps->commit_each_page)
		m365_commit_and_continue();
}

static void
job_finished(PullStream *ps, M365PullJob *job)
{
	if (job->finished)
		return;
	job->finished = true;
	ps->finished[ps->n_finished++] = job;
	if (ps->n_finished >= ps->wave)
		finish_wave(ps);
}

/* Start the next wave of jobs: the caller's part, then ours; one transaction. */
static void
start_wave(PullStream *ps)
{
	M365PullJob **w = &ps->jobs[ps->n_started];
	int			k = Min(ps->wave, ps->n - ps->n_started);
	MemoryContext old = MemoryContextSwitchTo(ps->keep);

	bool		refreshed = false;

	ps->n_started += k;
	if (ps->hooks && ps->hooks->prepare)
		ps->hooks->prepare(w, k, ps->hooks->arg);
	for (int i = 0; i < k; i++)
	{
		w[i]->started = true;
		if (w[i]->skip)
			w[i]->done = true;
		else
			refreshed |= m365_pull_job_start(w[i]);
	}
	if (ps->commit_each_page)
	{
		/*
		 * Round log rows and cleared due marks may commit asynchronously: a
		 * crash that loses them costs a round run again, nothing more. Not
		 * a transaction that may hold a refreshed token.
		 */
		if (!refreshed)
			(void) set_config_option("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_LOCAL, true, 0, false);
		m365_commit_and_continue();
	}
	for (int i = 0; i < k; i++)
		if (w[i]->done)
			job_finished(ps, w[i]);
	MemoryContextSwitchTo(old);
}

/* Jobs started (and finished) together at least, so the wave's transactions are few. */
#define PULL_WAVE_MIN 64

#define PREFER_PAGE_SIZE "Prefer: odata.maxpagesize=" CppAsString2(M365_PULL_PAGE_SIZE)

static M365HttpRequest *
next_request(void *arg)
{
	PullStream *ps = arg;

	for (;;)
	{
		for (int k = 0; k < ps->n_started; k++)
		{
			int			at = (ps->cursor + k) % ps->n_started;
			M365PullJob *job = ps->jobs[at];

			if (job->done || job->in_flight)
				continue;
			ps->cursor = (at + 1) % ps->n_started;
			if (job->listing)
				m365_graph_prepare(&job->request, M365_HTTP_GET, job->url);
			else if (job->series == NULL || !m365_series_next_request(job->series, &job->request))
			{
				m365_graph_prepare(&job->request, M365_HTTP_GET, job->url);
				m365_http_add_header(&job->request, M365_PREFER_UTC);
				m365_http_add_header(&job->request, PREFER_PAGE_SIZE);
			}
			job->request.bearer_token = job->token;
			job->request.user_data = job;
			job->in_flight = true;
			job->stats->http_requests++;
			return &job->request;
		}
		/* every started job is waiting or done: the next wave, while those requests are out */
		if (ps->n_started >= ps->n || ps->in_answer)
			return NULL;
		start_wave(ps);
	}
}

static void
answer_arrived(M365HttpRequest *req, void *arg)
{
	PullStream *ps = arg;
	M365PullJob *job = req->user_data;
	MemoryContext old = MemoryContextSwitchTo(ps->keep);

	job->in_flight = false;
	if (job->done)
	{
		/* a page sent before the one before it was applied, which then failed the job: dropped */
		MemoryContextSwitchTo(old);
		return;
	}
	ps->in_answer = true;
	m365_pull_job_answer(job, req, ps->commit_each_page, ps->keep);
	ps->in_answer = false;
	if (job->done)
		job_finished(ps, job);
	MemoryContextSwitchTo(old);
}

void
m365_pull_run(List *jobs, bool commit_each_page, int max_parallel, const M365PullHooks *hooks)
{
	PullStream	ps = {0};
	ListCell   *lc;

	if (jobs == NIL)
		return;
	ps.jobs = palloc(sizeof(M365PullJob *) * list_length(jobs));
	ps.finished = palloc(sizeof(M365PullJob *) * list_length(jobs));
	foreach(lc, jobs)
	{
		M365PullJob *job = lfirst(lc);

		job->in_flight = false;
		job->started = job->finished = job->done = job->listing = false;
		ps.jobs[ps.n++] = job;
	}
	/* a wave: enough accounts to fill the connections, and few transactions per account */
	ps.wave = Max(max_parallel, PULL_WAVE_MIN);
	ps.hooks = hooks;
	ps.commit_each_page = commit_each_page;
	ps.keep = CurrentMemoryContext;
	m365_http_perform_stream(next_request, answer_arrived, &ps, max_parallel);
	/* the last wave's rounds end (and any job the stream left, which cannot happen) */
	for (int i = 0; i < ps.n; i++)
		if (!ps.jobs[i]->finished)
		{
			ps.jobs[i]->finished = true;
			ps.finished[ps.n_finished++] = ps.jobs[i];
		}
	finish_wave(&ps);
	pfree(ps.finished);
	pfree(ps.jobs);
}
